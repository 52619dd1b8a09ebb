/* What the stages of sdprune-mpi share: who this rank is, the checked MPI call (MPI_CHECK prints the
 * library's message with rank, host, call and place, then aborts the job: a return would leave the other
 * ranks waiting forever), the fatal stop of one rank, and the shared work counter at rank 0 (MPI one-sided,
 * passive target) with the progress line it feeds. The only place that calls MPI_Abort. */
#ifndef SDM_DRIVER_H
#define SDM_DRIVER_H

#include <mpi.h>
#include <stdint.h>

extern int sdm_rank, sdm_size;
extern char sdm_host[MPI_MAX_PROCESSOR_NAME];

void sdm_mpi_failed(int rc, const char *call, const char *file, int line) __attribute__((noreturn));
#define MPI_CHECK(call)                                                                                                \
  do {                                                                                                                 \
    int mpi_rc_ = (call);                                                                                              \
    if (mpi_rc_ != MPI_SUCCESS)                                                                                        \
      sdm_mpi_failed(mpi_rc_, #call, __FILE__, __LINE__);                                                              \
  } while (0)

/* A rank that cannot go on (a shard it cannot write): named with its host, then the whole job stops. */
void sdm_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Collective: 1 on every rank if any rank passes a non-zero failed. */
int sdm_any(int failed);

/* Window at rank 0: [0] the next position in the pending list, then per rank [1 + 2r] items done and
 * [2 + 2r] items failed (for the progress lines). Collective open/close. */
typedef struct {
  MPI_Win win;
  int64_t *base;
} sdm_counter;

void sdm_counter_open(sdm_counter *c);
void sdm_counter_close(sdm_counter *c);
int64_t sdm_counter_take(sdm_counter *c);              /* the next position, atomically */
void sdm_counter_count(sdm_counter *c, int failed);     /* this rank finished an item */
void sdm_counter_read(sdm_counter *c, int64_t *out);    /* [1 + 2 * size] */

/* Rank 0's progress line: items done/total, items/s, ETA, per-rank counts; rewritten in place on a
 * terminal, one line every `every` seconds in a log. */
typedef struct {
  int quiet, tty;
  double t_start, last_print, every;
  int64_t todo;
  int64_t *counts;
  int printed;
} sdm_progress;

void sdm_progress_print(sdm_progress *p, sdm_counter *c, int final);

#endif
