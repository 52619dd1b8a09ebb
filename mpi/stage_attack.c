/* sdprune-mpi attack: the attack evaluation over ranks. Every rank builds the same plan (eval/attack.h),
 * reads the shards of earlier runs (resume: done items are skipped, a rank continues its own shard), takes
 * the next pending item from the shared counter, runs it through the library's runner and rewrites its shard
 * RUN/attack/shards/rank-NNNNN.h5; at the end rank 0 reads every shard and writes RUN/metrics.h5 and
 * RUN/summary.md. Moves work items and nothing else: no model, no HDF5 here. */
#include "mpi/stage_attack.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/files.h"
#include "core/provenance.h"
#include "eval/attack.h"
#include "eval/attack_io.h"
#include "io/job.h"
#include "mpi/driver.h"
#include "sample/sampler.h"
#include "stats/concept_stats.h"

static volatile sig_atomic_t stop_signal = 0;
static void on_stop(int sig) {
  stop_signal = sig;
}

typedef struct {
  sd_attack_plan plan;
  int have_plan;
  sd_attack_runner *runner;
  sd_attack_result *res;
  int *owner;
  unsigned char *mine;
  char (*hashes)[16];
  float *timesteps;
  int evals;
} attack_state;

static void state_free(attack_state *a) {
  for (int64_t i = 0; a->res && a->have_plan && i < a->plan.n_items; i++)
    sd_attack_result_clear(&a->res[i]);
  free(a->res);
  free(a->owner);
  free(a->mine);
  free(a->hashes);
  free(a->timesteps);
  sd_attack_runner_close(a->runner);
  if (a->have_plan)
    sd_attack_plan_free(&a->plan);
}

/* Plan, runner and the shards read back, on every rank. */
static int open_state(attack_state *a, const sd_job *job, const char *dir, const char *cache, sd_error *err) {
  if (sd_attack_plan_build(job, dir, &a->plan, err) != 0)
    return -1;
  a->have_plan = 1;
  if (sd_attack_runner_open(&a->plan, cache, &a->runner, err) != 0)
    return -1;
  a->evals = sd_attack_runner_evals(a->runner);
  size_t n = (size_t)(a->plan.n_items ? a->plan.n_items : 1);
  sd_sampler_config sc = {.name = a->plan.sampler, .steps = a->plan.steps, .eta = a->plan.eta};
  if (!(a->res = sd_calloc(n, sizeof *a->res, err)) || !(a->owner = sd_calloc(n, sizeof *a->owner, err)) ||
      !(a->mine = sd_calloc(n, 1, err)) || !(a->hashes = sd_calloc((size_t)a->plan.n_models, sizeof *a->hashes, err)) ||
      !(a->timesteps = sd_malloc(sizeof(float) * (size_t)a->evals, err)) ||
      sd_sampler_timesteps(&sc, a->timesteps, err) != 0)
    return -1;
  return 0;
}

int sdm_attack_stage(const sdm_options *o, int argc, char **argv) {
  const sd_job *job = o->job;
  const char *dir = o->out;
  attack_state a = {0};
  sd_error err;
  char *cmdline = sd_command_line(argc, argv);
  int failed = 0, status = 1;
  int threads = sd_cli_apply_threads(&o->common, "sdprune-mpi");
  const char *cache = o->common.weights_cache ? o->common.weights_cache : getenv("SDPRUNE_WEIGHTS_CACHE");
  char shard_dir[4300], shard[4400];
  snprintf(shard_dir, sizeof shard_dir, "%s/attack/shards", dir);
  snprintf(shard, sizeof shard, "%s/rank-%05d.h5", shard_dir, sdm_rank);
  if (sdm_rank == 0 && sd_mkdir_p(shard_dir) != 0) {
    fprintf(stderr, "sdprune-mpi attack: %s: cannot create\n", shard_dir);
    failed = 1;
  }
  if (sdm_any(failed))
    goto out;
  if (open_state(&a, job, dir, cache && *cache ? cache : NULL, &err) != 0) {
    fprintf(stderr, "sdprune-mpi attack: rank %d on %s: %s\n", sdm_rank, sdm_host, err.msg);
    failed = 1;
  }
  if (sdm_any(failed))
    goto out;
  /* Every rank reads the shards itself (they are small: items and a few numbers each). */
  sd_attack_scan scan;
  if (sd_attack_shards_load(dir, &a.plan, a.evals, a.res, a.owner, a.hashes, &scan, &err) != 0) {
    fprintf(stderr, "sdprune-mpi attack: rank %d on %s: %s\n", sdm_rank, sdm_host, err.msg);
    failed = 1;
  }
  if (sdm_any(failed))
    goto out;
  int64_t n_pending = 0;
  int64_t *pending = sd_calloc((size_t)(a.plan.n_items ? a.plan.n_items : 1), sizeof *pending, &err);
  if (!pending)
    sdm_die("%s", err.msg);
  for (int64_t i = 0; i < a.plan.n_items; i++) {
    a.mine[i] = a.owner[i] == sdm_rank;
    if (a.res[i].status != SD_ITEM_DONE)
      pending[n_pending++] = i;
  }
  if (sdm_rank == 0 && !o->quiet)
    fprintf(stderr,
            "sdprune-mpi attack: %lld items (%d models x %d sets; %lld done before in %d shards), %s %d steps, %d "
            "ranks x %d threads, detector %s, re-activation %s\n",
            (long long)a.plan.n_items, a.plan.n_models, a.plan.n_sets, (long long)scan.done, scan.n_shards,
            a.plan.sampler, a.plan.steps, sdm_size, threads, a.plan.clip ? "CLIP" : "none",
            a.plan.reference_stats ? "on" : "off");

  sdm_counter c;
  sdm_counter_open(&c);
  signal(SIGTERM, on_stop);
  signal(SIGINT, on_stop);
  sdm_progress prog = {.quiet = o->quiet, .tty = isatty(STDERR_FILENO), .t_start = sd_now(),
                       .every = o->progress_every, .todo = n_pending};
  prog.counts = calloc((size_t)(1 + 2 * sdm_size), sizeof *prog.counts);
  double last_write = 0, since_write = 0, t_start = sd_now();
  int64_t my_done = 0, my_failed = 0;
  while (!stop_signal) {
    int64_t k = sdm_counter_take(&c);
    if (k >= n_pending)
      break;
    int64_t i = pending[k];
    char id[600];
    sd_attack_item_id(&a.plan, i, id, sizeof id);
    double t0 = sd_now();
    sd_error ierr;
    if (sd_attack_run_item(a.runner, i, NULL, NULL, &a.res[i], &ierr) != 0) {
      my_failed++;
      fprintf(stderr, "%ssdprune-mpi: rank %d on %s: item %s failed: %s\n", prog.printed ? "\n" : "", sdm_rank,
              sdm_host, id, ierr.msg);
      prog.printed = 0;
    } else
      my_done++;
    a.res[i].seconds = sd_now() - t0;
    if (sd_attack_note_model_hash(&a.plan, a.hashes, a.plan.items[i].model,
                                  sd_attack_runner_model_hash(a.runner, a.plan.items[i].model), &err) != 0)
      sdm_die("%s", err.msg);
    a.mine[i] = 1;
    since_write += a.res[i].seconds;
    if (since_write >= 20.0 * last_write) { /* shard rewrites under ~5% of the work */
      double w0 = sd_now();
      if (sd_attack_shard_write(shard, &a.plan, a.res, a.mine, a.hashes, a.evals, cmdline, &err) != 0)
        sdm_die("cannot write its shard %s: %s", shard, err.msg);
      last_write = sd_now() - w0;
      since_write = 0;
    }
    sdm_counter_count(&c, a.res[i].status == SD_ITEM_FAILED);
    sdm_progress_print(&prog, &c, 0);
  }
  if (sd_attack_shard_write(shard, &a.plan, a.res, a.mine, a.hashes, a.evals, cmdline, &err) != 0)
    sdm_die("cannot write its shard %s: %s", shard, err.msg);
  int stopped = sdm_any(stop_signal != 0);
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD)); /* every rank's shard is on disk before rank 0 merges */
  if (prog.printed || (!o->quiet && sdm_rank == 0))
    sdm_progress_print(&prog, &c, 1);
  sdm_counter_close(&c);
  free(prog.counts);
  free(pending);
  int64_t mine[2] = {my_done, my_failed}, all[2] = {0, 0};
  MPI_CHECK(MPI_Reduce(mine, all, 2, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD));
  if (stopped) {
    if (sdm_rank == 0)
      fprintf(stderr,
              "sdprune-mpi attack: stopped by a signal after %lld items; the shards in %s are complete up to them "
              "(run the same command again to continue)\n",
              (long long)(all[0] + all[1]), shard_dir);
    goto out;
  }
  if (sdm_rank == 0) {
    if (sd_attack_shards_load(dir, &a.plan, a.evals, a.res, a.owner, a.hashes, &scan, &err) != 0 ||
        sd_attack_finish(&a.plan, a.res, a.hashes, a.evals, a.timesteps, cmdline, stdout, &err) != 0) {
      fprintf(stderr, "sdprune-mpi attack: %s\n", err.msg);
      status = 1;
    } else {
      double el = sd_now() - t_start;
      fprintf(stderr,
              "sdprune-mpi attack: %lld items (%lld run now, %lld failed in all) in %.1f s (%.3f items/s on %d "
              "ranks); wrote %s/metrics.h5 and %s/summary.md, images under %s/images\n",
              (long long)a.plan.n_items, (long long)(all[0] + all[1]), (long long)scan.failed, el,
              (all[0] + all[1]) / (el > 0 ? el : 1e-9), sdm_size, dir, dir, dir);
      status = scan.failed ? 1 : 0;
    }
  }
  MPI_CHECK(MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD));
out:
  state_free(&a);
  free(cmdline);
  return status;
}
