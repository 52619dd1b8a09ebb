/* The pieces every sdprune-mpi stage shares (driver.h). */
#include "mpi/driver.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_common.h"

int sdm_rank = 0, sdm_size = 1;
char sdm_host[MPI_MAX_PROCESSOR_NAME] = "?";

void sdm_mpi_failed(int rc, const char *call, const char *file, int line) {
  char msg[MPI_MAX_ERROR_STRING];
  int len = 0;
  MPI_Error_string(rc, msg, &len);
  fprintf(stderr, "sdprune-mpi: rank %d on %s: %s failed (%s:%d): %s\n", sdm_rank, sdm_host, call, file, line, msg);
  MPI_Abort(MPI_COMM_WORLD, 1);
  exit(1); /* not reached */
}

void sdm_die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(stderr, "sdprune-mpi: rank %d on %s: ", sdm_rank, sdm_host);
  vfprintf(stderr, fmt, ap);
  fprintf(stderr, "\n");
  va_end(ap);
  fflush(stderr);
  MPI_Abort(MPI_COMM_WORLD, 1);
  exit(1); /* not reached */
}

int sdm_any(int failed) {
  int out = 0;
  MPI_CHECK(MPI_Allreduce(&failed, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
  return out;
}

void sdm_counter_open(sdm_counter *c) {
  MPI_Aint bytes = sdm_rank == 0 ? (MPI_Aint)sizeof(int64_t) * (1 + 2 * sdm_size) : 0;
  MPI_CHECK(MPI_Win_allocate(bytes, sizeof(int64_t), MPI_INFO_NULL, MPI_COMM_WORLD, &c->base, &c->win));
  MPI_CHECK(MPI_Win_set_errhandler(c->win, MPI_ERRORS_RETURN));
  if (sdm_rank == 0)
    memset(c->base, 0, (size_t)bytes);
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD)); /* the window is zeroed before anyone takes an item */
  MPI_CHECK(MPI_Win_lock_all(0, c->win));
}

void sdm_counter_close(sdm_counter *c) {
  MPI_CHECK(MPI_Win_unlock_all(c->win));
  MPI_CHECK(MPI_Win_free(&c->win));
}

int64_t sdm_counter_take(sdm_counter *c) {
  int64_t one = 1, k = 0;
  MPI_CHECK(MPI_Fetch_and_op(&one, &k, MPI_INT64_T, 0, 0, MPI_SUM, c->win));
  MPI_CHECK(MPI_Win_flush(0, c->win));
  return k;
}

void sdm_counter_count(sdm_counter *c, int failed) {
  int64_t one = 1, old = 0;
  MPI_CHECK(MPI_Fetch_and_op(&one, &old, MPI_INT64_T, 0, (MPI_Aint)(1 + 2 * sdm_rank + failed), MPI_SUM, c->win));
  MPI_CHECK(MPI_Win_flush(0, c->win));
}

void sdm_counter_read(sdm_counter *c, int64_t *out) {
  int n = 1 + 2 * sdm_size;
  MPI_CHECK(MPI_Get_accumulate(NULL, 0, MPI_INT64_T, out, n, MPI_INT64_T, 0, 0, n, MPI_INT64_T, MPI_NO_OP, c->win));
  MPI_CHECK(MPI_Win_flush(0, c->win));
}

void sdm_progress_print(sdm_progress *p, sdm_counter *c, int final) {
  if (p->quiet || sdm_rank != 0)
    return;
  double now = sd_now();
  if (!final && now - p->last_print < (p->tty ? 0.2 : p->every))
    return;
  p->last_print = now;
  sdm_counter_read(c, p->counts);
  int64_t done = 0, failed = 0;
  for (int r = 0; r < sdm_size; r++) {
    done += p->counts[1 + 2 * r];
    failed += p->counts[2 + 2 * r];
  }
  double el = now - p->t_start, rate = (done + failed) / (el > 0 ? el : 1e-9);
  double eta = (p->todo - done - failed) / (rate > 0 ? rate : 1e-9);
  char ranks[400] = "";
  size_t len = 0;
  for (int r = 0; r < sdm_size && len < sizeof ranks - 24; r++)
    len += (size_t)snprintf(ranks + len, sizeof ranks - len, "%s%lld", r ? " " : "",
                            (long long)(p->counts[1 + 2 * r] + p->counts[2 + 2 * r]));
  if (len >= sizeof ranks - 24)
    snprintf(ranks + len, sizeof ranks - len, " ...");
  fprintf(stderr, "%sitems %lld/%lld (%lld failed)  %.3f items/s  elapsed %.0fs  ETA %.0fs  per rank: %s%s",
          p->tty ? "\r" : "", (long long)(done + failed), (long long)p->todo, (long long)failed, rate, el, eta, ranks,
          p->tty && !final ? "   " : "\n");
  p->printed = p->tty && !final;
}
