/* The OpenMP wait policy sdprune runs under when the user chose none. Only the executables' main()
 * call this (before anything else, and before MPI_Init in sdprune-mpi); the engine's kernels never do. */
#ifndef SD_OMP_ENV_H
#define SD_OMP_ENV_H

/* The spin count chosen for libgomp (GOMP_SPINCOUNT) when neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT
 * is set; the measurements behind it are in omp_env.c. */
#define SD_OMP_DEFAULT_SPINCOUNT "10000"

/* If the environment sets neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT, sets GOMP_SPINCOUNT to the
 * default above and re-executes /proc/self/exe with the same argv (libgomp reads both variables once,
 * when it is loaded, before main runs). Returns only when nothing was to be done or the exec failed
 * (the run then continues under libgomp's own default); argv must be main's, NULL-terminated. */
void sd_omp_default_wait_policy(char **argv);

/* One line for provenance and bench headers: "GOMP_SPINCOUNT=10000 (sdprune default)",
 * "OMP_WAIT_POLICY=passive (user)", ... */
const char *sd_omp_wait_policy_describe(void);

#endif
