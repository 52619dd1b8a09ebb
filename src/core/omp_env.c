/* Default OpenMP wait policy of the sdprune executables (see omp_env.h). It is not a tuning knob for
 * the kernels: it only decides how long an idle OpenMP thread spins before it sleeps.
 *
 * Why: libgomp's default (neither variable set) spins 300,000 times (~1-3 ms) at every barrier and at
 * the end of every parallel region before it sleeps. On a node shared with other jobs a thread of ours
 * that loses its core makes its partner spin those milliseconds at every barrier instead of handing the
 * core to whoever could use it, and the UNet has thousands of barriers per evaluation (every sgemm of
 * OpenBLAS's OpenMP build is a parallel region too). Measured on the 2-core shared node at load 4.5-7
 * (interleaved; README, "Threads and ranks on a node"), UNet batch 2 at 32x32, median of the run: SD-1.5
 * 94 s with libgomp's default, 28 s with 10000, 45 s with 1000, 46 s passive; tiny-sd1 1.6-6.6 s with
 * the default, 0.46-0.59 s with 10000, 0.27-0.32 s with 1000 (its evaluation is mostly barriers).
 * 10000 keeps a short spin for the quiet node, where waking a sleeping thread costs a few µs per region.
 *
 * Why re-exec: libgomp parses OMP_WAIT_POLICY and GOMP_SPINCOUNT in its constructor, before main, and
 * offers no call that changes the spin count afterwards (omp_set_* cover threads, schedule, nesting).
 * A setenv in main is too late for this process, so the process replaces itself once with the variable
 * set; the pid, arguments, descriptors and the rest of the environment stay as they were. */
#include "core/omp_env.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Set in the re-executed process so that provenance can tell our default from a user's setting. */
#define DEFAULTED_VAR "SDPRUNE_OMP_DEFAULTED"

void sd_omp_default_wait_policy(char **argv) {
  if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT"))
    return; /* the user's choice, or ours after the exec */
  if (setenv("GOMP_SPINCOUNT", SD_OMP_DEFAULT_SPINCOUNT, 1) != 0 || setenv(DEFAULTED_VAR, "1", 1) != 0)
    return;
  execv("/proc/self/exe", argv);
  /* No /proc (or no exec permission): carry on under libgomp's default, and do not claim ours. */
  unsetenv("GOMP_SPINCOUNT");
  unsetenv(DEFAULTED_VAR);
}

const char *sd_omp_wait_policy_describe(void) {
  static char line[160];
  const char *policy = getenv("OMP_WAIT_POLICY"), *spin = getenv("GOMP_SPINCOUNT");
  const char *who = getenv(DEFAULTED_VAR) ? "sdprune default" : "user";
  if (policy && spin)
    snprintf(line, sizeof line, "OMP_WAIT_POLICY=%.40s GOMP_SPINCOUNT=%.40s (%s)", policy, spin, who);
  else if (policy)
    snprintf(line, sizeof line, "OMP_WAIT_POLICY=%.40s (%s)", policy, who);
  else if (spin)
    snprintf(line, sizeof line, "GOMP_SPINCOUNT=%.40s (%s)", spin, who);
  else
    snprintf(line, sizeof line, "libgomp default (spin 300000, then sleep)");
  return line;
}
