/* Minimal test harness: CHECK-style assertions that count, and a closing line
 * "N passed, N failed" that the exit status agrees with. Reference data is found through
 * SDPRUNE_REFERENCE; without it a test skips (exit 77), or fails when CI=true. */
#ifndef SD_TEST_UTIL_H
#define SD_TEST_UTIL_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int tests_passed, tests_failed;

#define CHECK(cond, ...)                                                                                               \
  do {                                                                                                                 \
    if (cond) {                                                                                                        \
      tests_passed++;                                                                                                  \
    } else {                                                                                                           \
      tests_failed++;                                                                                                  \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);                                                  \
      fprintf(stderr, __VA_ARGS__);                                                                                    \
      fprintf(stderr, "\n");                                                                                           \
    }                                                                                                                  \
  } while (0)

#define CHECK_NEAR(got, want, tol, what)                                                                               \
  CHECK(fabs((double)(got) - (double)(want)) <= (tol), "%s: got %.9g want %.9g (tol %g)", (what), (double)(got),     \
        (double)(want), (double)(tol))

static inline int test_finish(void) {
  printf("%d passed, %d failed\n", tests_passed, tests_failed);
  return tests_failed ? 1 : 0;
}

/* Directory of the shared reference data, or NULL after printing why (skip or CI failure). */
static inline const char *test_reference_dir(void) {
  const char *dir = getenv("SDPRUNE_REFERENCE");
  struct stat st;
  if (dir && stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) return dir;
  const char *ci = getenv("CI");
  if (ci && strcmp(ci, "true") == 0) {
    fprintf(stderr, "reference data not found (SDPRUNE_REFERENCE=%s) and CI=true: failing\n", dir ? dir : "(unset)");
    exit(1);
  }
  fprintf(stderr, "SKIP: reference data not found (SDPRUNE_REFERENCE=%s)\n", dir ? dir : "(unset)");
  exit(77);
}

/* Relative L2 error ||a-b|| / ||b||, and max |a-b| through *max_abs. */
static inline double test_rel_l2(const float *a, const float *b, long n, double *max_abs) {
  double num = 0, den = 0, mx = 0;
  for (long i = 0; i < n; i++) {
    double d = (double)a[i] - (double)b[i];
    num += d * d;
    den += (double)b[i] * (double)b[i];
    if (fabs(d) > mx) mx = fabs(d);
  }
  if (max_abs) *max_abs = mx;
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

#endif
