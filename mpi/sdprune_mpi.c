/* sdprune-mpi: the MPI driver of the statistics stage. Every rank plans the same items, takes the next
 * pending one from a shared counter at rank 0 (MPI one-sided, passive target), runs it through a backend
 * (backend.h) and keeps its shard DIR/shards/rank-NNNNN.h5; at the end the totals are reduced with
 * MPI_Reduce and rank 0 writes DIR/stats.h5; `run` then has rank 0 build the mask and the pruned
 * checkpoint (stage_mask.c) while the others wait. Knows no tensors, no HDF5 and no model: only the
 * library's statistics functions. The only place that calls MPI_Abort. */
#include <errno.h>
#include <mpi.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/files.h"
#include "core/omp_env.h"
#include "core/provenance.h"
#include "mpi/backend.h"
#include "mpi/driver.h"
#include "mpi/options.h"
#include "mpi/stage_attack.h"
#include "mpi/stage_mask.h"
#include "stats/stats_io.h"
#include "stats/stats_shards.h"

static char g_crash_msg[1024] = ""; /* what a crashing rank says: prepared before each item */

static volatile sig_atomic_t stop_signal = 0;
static void on_stop(int sig) {
  stop_signal = sig;
}
static void on_crash(int sig) {
  /* async-signal-safe: a prepared message and write(2), then the default action (mpirun names the rank) */
  if (g_crash_msg[0]) {
    ssize_t w = write(STDERR_FILENO, g_crash_msg, strlen(g_crash_msg));
    (void)w;
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

static void marker_path(const char *dir, int rank, char *out, size_t n) {
  snprintf(out, n, "%s/shards/rank-%05d.current", dir, rank);
}

/* The item a rank is working on, on disk: a rank killed outright (kill -9, out of memory) cannot say it
 * itself; the next run names it. */
static void write_marker(const char *dir, const sd_stats *s, int64_t i) {
  char path[4300];
  marker_path(dir, sdm_rank, path, sizeof path);
  FILE *f = fopen(path, "w");
  if (!f)
    return;
  const sd_stats_item *it = &s->items[i];
  fprintf(f, "rank %d (host %s, pid %ld) was working on item %lld (set %s, row %d, seed %llu)\n", sdm_rank, sdm_host,
          (long)getpid(), (long long)i, s->sets[it->set].name, it->row, (unsigned long long)it->seed);
  fclose(f);
}

static void report_stale_markers(const char *dir) {
  char path[4300], line[1200];
  for (int r = 0; r < 1000000; r++) {
    marker_path(dir, r, path, sizeof path);
    if (!sd_is_file(path)) {
      if (r >= sdm_size + 1024)
        break; /* markers of far higher ranks are unlikely: stop scanning */
      continue;
    }
    FILE *f = fopen(path, "r");
    if (f && fgets(line, sizeof line, f)) {
      line[strcspn(line, "\n")] = 0;
      fprintf(stderr, "sdprune-mpi: the previous run ended while %s; that item was not counted and runs again\n", line);
    }
    if (f)
      fclose(f);
    unlink(path);
  }
}

/* Rank 0 at the start: every existing shard's items table checked against the plan (another model or
 * settings, duplicates, items of another plan are refused, named by id), and the done items as a mask
 * over the plan. */
static int scan_shards(const char *dir, const sd_stats *plan, unsigned char *done, int max_report, int64_t *n_done,
                       int *n_shards, sd_error *err) {
  char **paths = NULL;
  int *ranks = NULL, n = 0, rc = 0;
  *n_done = 0;
  if (sd_shards_list(dir, &paths, &ranks, &n, err) != 0)
    return -1;
  *n_shards = n;
  if (n == 0)
    return 0;
  sd_stats *sh = sd_calloc((size_t)n, sizeof *sh, err);
  int got = 0;
  if (!sh)
    rc = -1;
  for (; !rc && got < n; got++)
    if (sd_stats_read(paths[got], &sh[got], 0, err) != 0)
      rc = -1;
  for (int f = 0; !rc && f < n; f++)
    if (sh[f].settings.per_item != plan->settings.per_item)
      rc = sd_fail(err, "%s: written %s --per-item; continue with the same settings", paths[f],
                   sh[f].settings.per_item ? "with" : "without");
  if (!rc) {
    sd_shards_report r;
    sd_shards_check(plan, sh, (const char *const *)paths, n, NULL, 0, &r);
    if (r.duplicate || r.foreign) {
      sd_shards_check(plan, sh, (const char *const *)paths, n, stderr, max_report, &r);
      rc = sd_fail(err,
                   "%s/shards: %lld duplicate and %lld foreign items (%d foreign shards); move them away or use "
                   "another --out",
                   dir, (long long)r.duplicate, (long long)r.foreign, r.foreign_files);
    }
  }
  for (int f = 0; !rc && f < n; f++) /* the same plan: match by (set, row, seed) in plan order */
    for (int64_t i = 0, j = 0; i < sh[f].n_items; i++) {
      const sd_stats_item *it = &sh[f].items[i];
      if (it->status != SD_ITEM_DONE)
        continue;
      const char *set = sh[f].sets[it->set].name;
      int64_t tries = 0;
      while (tries < plan->n_items && !(plan->items[j].row == it->row && plan->items[j].seed == it->seed &&
                                        !strcmp(plan->sets[plan->items[j].set].name, set))) {
        j = (j + 1) % plan->n_items;
        tries++;
      }
      if (tries < plan->n_items && !done[j]) {
        done[j] = 1;
        (*n_done)++;
      }
    }
  for (int f = 0; f < got; f++)
    sd_stats_free(&sh[f]);
  free(sh);
  sd_shards_list_free(paths, ranks, n);
  return rc;
}

/* The in-job reduce of the totals to rank 0: exact integer sums (MPI_SUM on int64) and maxima (MPI_MAX on
 * float), per set × layer × quantity, in O(log N) rounds by the library. */
static void reduce_totals(sd_stats *s) {
  for (int k = 0; k < s->n_sets; k++) {
    for (int l = 0; l < s->n_layers; l++) {
      sd_stats_acc *a = &s->sets[k].layers[l];
      int steps = s->n_steps * SD_STATS_BRANCHES, cells = steps * s->layers[l].width;
      void *in_count = sdm_rank == 0 ? MPI_IN_PLACE : a->count;
      MPI_CHECK(MPI_Reduce(in_count, a->count, steps, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD));
      for (int q = 0; q < SD_STATS_NQ; q++)
        MPI_CHECK(
            MPI_Reduce(sdm_rank == 0 ? MPI_IN_PLACE : a->q[q], a->q[q], cells, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD));
      MPI_CHECK(MPI_Reduce(sdm_rank == 0 ? MPI_IN_PLACE : a->max, a->max, cells, MPI_FLOAT, MPI_MAX, 0, MPI_COMM_WORLD));
    }
    int64_t d = s->sets[k].items_done;
    MPI_CHECK(MPI_Reduce(sdm_rank == 0 ? MPI_IN_PLACE : &d, &d, 1, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD));
    if (sdm_rank == 0)
      s->sets[k].items_done = d;
  }
}

/* Rank 0 after reduce_totals: the items table from every shard on disk (live ranks' states; orphan
 * shards, of ranks >= the job's size, merged with their totals), the completeness check, stats.h5. */
static int finish_reduce(const char *dir, sd_stats *s, int max_report, sd_shards_report *r, sd_error *err) {
  char **paths = NULL;
  int *ranks = NULL, n = 0, rc = -1;
  if (sd_shards_list(dir, &paths, &ranks, &n, err) != 0)
    return -1;
  sd_stats *sh = sd_calloc((size_t)(n ? n : 1), sizeof *sh, err);
  int got = 0;
  if (!sh)
    goto done;
  for (; got < n; got++)
    if (sd_stats_read(paths[got], &sh[got], ranks[got] >= sdm_size, err) != 0)
      goto done;
  int incomplete = sd_shards_check(s, sh, (const char *const *)paths, n, stderr, max_report, r);
  if (r->duplicate || r->foreign) {
    sd_fail(err, "%lld duplicate and %lld foreign items; %s/stats.h5 not written", (long long)r->duplicate,
            (long long)r->foreign, dir);
    goto done;
  }
  for (int f = 0; f < n; f++) {
    if (ranks[f] >= sdm_size) {
      if (sd_stats_merge(s, &sh[f], paths[f], err) != 0)
        goto done;
      continue;
    }
    if (ranks[f] == 0)
      continue; /* rank 0's own states are in s */
    for (int64_t i = 0; i < sh[f].n_items && i < s->n_items; i++) {
      const sd_stats_item *src = &sh[f].items[i];
      sd_stats_item *dst = &s->items[i];
      if (src->status == SD_ITEM_PENDING || dst->status == SD_ITEM_DONE)
        continue;
      if (src->row != dst->row || src->seed != dst->seed) {
        sd_fail(err, "%s: items table not in plan order at item %lld", paths[f], (long long)i);
        goto done;
      }
      dst->status = src->status;
      dst->seconds = src->seconds;
      free(dst->error);
      dst->error = src->error ? sd_strdup(src->error) : NULL;
      free(dst->per_item_file);
      dst->per_item_file = src->per_item_file ? sd_strdup(src->per_item_file) : NULL;
    }
  }
  char out[4300];
  snprintf(out, sizeof out, "%s/stats.h5", dir);
  if (sd_stats_write(out, s, err) != 0)
    goto done;
  rc = incomplete ? 1 : 0;
done:
  for (int f = 0; f < got; f++)
    sd_stats_free(&sh[f]);
  free(sh);
  sd_shards_list_free(paths, ranks, n);
  return rc;
}

static long long shard_bytes(const char *dir) {
  char **paths = NULL;
  int *ranks = NULL, n = 0;
  sd_error err;
  long long total = 0;
  if (sd_shards_list(dir, &paths, &ranks, &n, &err) != 0)
    return -1;
  for (int f = 0; f < n; f++) {
    struct stat st;
    if (stat(paths[f], &st) == 0)
      total += (long long)st.st_size;
  }
  sd_shards_list_free(paths, ranks, n);
  return total;
}

/* sdprune-mpi reduce DIR: rank 0 merges the shards from disk (as `sdprune reduce`). */
static int cmd_reduce_dir(const sdm_options *o) {
  int status = 0;
  if (sdm_rank == 0) {
    char **paths = NULL, out[4300];
    int *ranks = NULL, n = 0;
    sd_error err;
    sd_stats s;
    sd_shards_report r;
    snprintf(out, sizeof out, "%s/stats.h5", o->job_path);
    if (o->out)
      snprintf(out, sizeof out, "%s", o->out);
    if (sd_shards_list(o->job_path, &paths, &ranks, &n, &err) != 0 || n == 0) {
      fprintf(stderr, "sdprune-mpi reduce: %s\n", n == 0 ? "no shards (DIR/shards/rank-*.h5)" : err.msg);
      status = 1;
    } else {
      int rc = sd_shards_merge_files(paths, n, stderr, o->max_report, &s, &r, &err);
      if (rc >= 0 && sd_stats_write(out, &s, &err) != 0)
        rc = -1;
      if (rc >= 0)
        sd_stats_free(&s);
      if (rc < 0)
        fprintf(stderr, "sdprune-mpi reduce: %s\n", err.msg);
      else
        fprintf(stderr,
                "sdprune-mpi reduce: %d shards, %lld planned items: %lld done, %lld failed, %lld missing; wrote "
                "%s%s\n",
                n, (long long)r.planned, (long long)r.done, (long long)r.failed, (long long)r.missing, out,
                rc ? " (incomplete)" : "");
      status = rc ? 1 : 0;
    }
    sd_shards_list_free(paths, ranks, n);
  }
  MPI_CHECK(MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD));
  return status;
}

/* Provenance of this run (identical on every rank but the time, which rank 0's wins in stats.h5). */
static int fill_provenance(sd_stats *s, int per_item, int argc, char **argv, sd_error *err) {
  char when[32];
  sd_stats_settings *st = &s->settings;
  st->per_item = per_item;
  st->sdprune_version = sd_strdup(sd_version());
  st->git_revision = sd_strdup(sd_git_revision());
  st->command_line = sd_command_line(argc, argv);
  st->created_utc = sd_strdup(sd_utc_now(when, sizeof when));
  return st->sdprune_version && st->command_line ? 0 : sd_fail(err, "out of memory");
}

static int cmd_stats_mpi(const sdm_options *o, int argc, char **argv) {
  const sdm_backend *be = sdm_backend_find(o->backend);
  void *ctx = NULL;
  sd_error err;
  sd_stats s;
  memset(&s, 0, sizeof s);
  int failed = 0, threads = 1;
  const char *dir = o->out;
  if (!strcmp(o->backend, "engine"))
    threads = sd_cli_apply_threads(&o->common, "sdprune-mpi");

  /* The first rank of each node opens the model first: it writes the node's float32 weight cache, which
   * the others then map (one copy in the page cache). */
  MPI_Comm node;
  int local = 0;
  MPI_CHECK(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, sdm_rank, MPI_INFO_NULL, &node));
  MPI_CHECK(MPI_Comm_rank(node, &local));
  for (int turn = 0; turn < 2; turn++) {
    if ((local == 0) == (turn == 0) && be->open(o, &ctx, &err) != 0) {
      fprintf(stderr, "sdprune-mpi: rank %d on %s: %s\n", sdm_rank, sdm_host, err.msg);
      failed = 1;
    }
    MPI_CHECK(MPI_Barrier(node));
  }
  MPI_CHECK(MPI_Comm_free(&node));
  if (sdm_any(failed))
    goto fail_quiet;

  int truncated = 0;
  if (be->plan(ctx, o, &s, &truncated, &err) != 0 || fill_provenance(&s, o->per_item, argc, argv, &err) != 0 ||
      sd_stats_alloc_totals(&s, &err) != 0) {
    fprintf(stderr, "sdprune-mpi: rank %d on %s: %s\n", sdm_rank, sdm_host, err.msg);
    failed = 1;
  }
  if (sdm_any(failed))
    goto fail_quiet;
  {
    int64_t n[2] = {s.n_items, -s.n_items}, m[2];
    MPI_CHECK(MPI_Allreduce(n, m, 2, MPI_INT64_T, MPI_MAX, MPI_COMM_WORLD));
    if (m[0] != -m[1]) {
      if (sdm_rank == 0)
        fprintf(stderr,
                "sdprune-mpi: the ranks planned different item counts (%lld to %lld): do all ranks see the "
                "same prompt files?\n",
                (long long)-m[1], (long long)m[0]);
      goto fail_quiet;
    }
  }
  if (truncated && sdm_rank == 0)
    fprintf(stderr, "sdprune-mpi: warning: %d prompt%s longer than 77 CLIP tokens, truncated as CLIP does\n", truncated,
            truncated == 1 ? " is" : "s are");

  /* Resume: rank 0 scans the shards of earlier runs; all ranks get the done mask. */
  unsigned char *done = sd_calloc((size_t)(s.n_items ? s.n_items : 1), 1, &err);
  if (!done)
    sdm_die("%s", err.msg);
  int64_t already = 0;
  int n_old = 0;
  if (sdm_rank == 0) {
    char shards[4300];
    snprintf(shards, sizeof shards, "%s/shards", dir);
    if (sd_is_file(dir))
      failed = sd_fail(&err, "--out %s is a file; name a folder", dir) != 0;
    else if (sd_mkdir_p(shards) != 0)
      failed = sd_fail(&err, "%s: cannot create: %s", shards, strerror(errno)) != 0;
    else if (scan_shards(dir, &s, done, o->max_report, &already, &n_old, &err) != 0)
      failed = 1;
    else
      report_stale_markers(dir);
    if (failed)
      fprintf(stderr, "sdprune-mpi: %s\n", err.msg);
  }
  if (sdm_any(failed))
    goto fail_quiet;
  MPI_CHECK(MPI_Bcast(done, (int)s.n_items, MPI_UNSIGNED_CHAR, 0, MPI_COMM_WORLD));
  MPI_CHECK(MPI_Bcast(&already, 1, MPI_INT64_T, 0, MPI_COMM_WORLD));

  /* A rank continues its own shard: its done items and totals come back into s. */
  char shard[4300];
  sd_shard_path(dir, sdm_rank, shard, sizeof shard);
  if (sd_is_file(shard)) {
    sd_stats old;
    if (sd_stats_read(shard, &old, 1, &err) != 0 || sd_stats_merge(&s, &old, shard, &err) != 0) {
      fprintf(stderr, "sdprune-mpi: rank %d on %s: %s\n", sdm_rank, sdm_host, err.msg);
      failed = 1;
    } else
      sd_stats_free(&old);
  }
  if (sdm_any(failed))
    goto fail_quiet;

  int64_t n_pending = 0;
  int64_t *pending = sd_calloc((size_t)(s.n_items ? s.n_items : 1), sizeof *pending, &err);
  if (!pending)
    sdm_die("%s", err.msg);
  for (int64_t i = 0; i < s.n_items; i++)
    if (!done[i])
      pending[n_pending++] = i;
  if (sdm_rank == 0 && !o->quiet)
    fprintf(stderr,
            "sdprune-mpi: %lld items (%lld already done in %d shards), %d sets, %d layers, %s %d steps "
            "(recording %d evaluations), %d ranks x %d threads, backend %s, model %s\n",
            (long long)s.n_items, (long long)already, n_old, s.n_sets, s.n_layers, s.settings.sampler, s.settings.steps,
            s.n_steps, sdm_size, threads, be->name, s.settings.model_hash);

  sdm_counter c;
  sdm_counter_open(&c);

  signal(SIGTERM, on_stop);
  signal(SIGINT, on_stop);
  signal(SIGSEGV, on_crash);
  signal(SIGBUS, on_crash);
  signal(SIGFPE, on_crash);
  signal(SIGILL, on_crash);
  signal(SIGABRT, on_crash);
  sdm_progress prog = {.quiet = o->quiet,
                   .tty = isatty(STDERR_FILENO),
                   .t_start = sd_now(),
                   .every = o->progress_every,
                   .todo = n_pending};
  prog.counts = calloc((size_t)(1 + 2 * sdm_size), sizeof *prog.counts);
  double t_start = sd_now(), item_seconds = 0, write_seconds = 0, last_write = 0, since_write = 0;
  int64_t my_done = 0, my_failed = 0;
  int unwritten = 0;
  while (!stop_signal) {
    int64_t k = sdm_counter_take(&c);
    if (k >= n_pending)
      break;
    int64_t i = pending[k];
    sd_stats_item *it = &s.items[i];
    snprintf(g_crash_msg, sizeof g_crash_msg,
             "sdprune-mpi: rank %d on %s died while working on item %lld (set %s, "
             "row %d, seed %llu)\n",
             sdm_rank, sdm_host, (long long)i, s.sets[it->set].name, it->row, (unsigned long long)it->seed);
    write_marker(dir, &s, i);
    double t0 = sd_now();
    sd_error ierr;
    if (be->run_item(ctx, &s, i, &ierr) != 0) {
      it->status = SD_ITEM_FAILED;
      free(it->error);
      it->error = sd_strdup(ierr.msg);
      it->seconds = sd_now() - t0;
      my_failed++;
      fprintf(stderr, "%ssdprune-mpi: rank %d on %s: item %lld (set %s, row %d, seed %llu) failed: %s\n",
              prog.printed ? "\n" : "", sdm_rank, sdm_host, (long long)i, s.sets[it->set].name, it->row,
              (unsigned long long)it->seed, ierr.msg);
      prog.printed = 0;
    } else {
      if (o->per_item) { /* DIR/stats.items/<set>/<row>_seed<seed>.h5, linked from DIR/stats.h5 */
        char rel[1200], full[5600], folder[5600];
        snprintf(rel, sizeof rel, "stats.items/%s/%05d_seed%llu.h5", s.sets[it->set].name, it->row,
                 (unsigned long long)it->seed);
        snprintf(full, sizeof full, "%s/%s", dir, rel);
        snprintf(folder, sizeof folder, "%s/stats.items/%s", dir, s.sets[it->set].name);
        if (sd_mkdir_p(folder) != 0)
          sdm_die("cannot create %s: %s", folder, strerror(errno));
        if (be->write_record(ctx, &s, i, full, &err) != 0)
          sdm_die("item %lld: %s", (long long)i, err.msg);
        free(it->per_item_file);
        it->per_item_file = sd_strdup(rel);
      }
      double sec = sd_now() - t0;
      be->add_item(ctx, &s, i, sec);
      item_seconds += sec;
      since_write += sec;
      my_done++;
    }
    unwritten++;
    /* Rewriting the shard costs time proportional to its size; keep that under ~5% of the work. */
    int due = o->checkpoint_every ? unwritten >= o->checkpoint_every : since_write >= 20.0 * last_write;
    if (due) {
      double w0 = sd_now();
      if (sd_stats_write_ex(shard, &s, 0, &err) != 0) /* shards: uncompressed */
        sdm_die("cannot write its shard %s: %s", shard, err.msg);
      last_write = sd_now() - w0;
      write_seconds += last_write;
      since_write = 0;
      unwritten = 0;
    }
    sdm_counter_count(&c, it->status == SD_ITEM_FAILED);
    sdm_progress_print(&prog, &c, 0);
  }
  g_crash_msg[0] = 0;
  {
    double w0 = sd_now();
    if (sd_stats_write_ex(shard, &s, 0, &err) != 0) /* shards: uncompressed */
      sdm_die("cannot write its shard %s: %s", shard, err.msg);
    write_seconds += sd_now() - w0;
    char m[4300];
    marker_path(dir, sdm_rank, m, sizeof m);
    unlink(m);
  }
  int stopped = sdm_any(stop_signal != 0);
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD)); /* every rank's increments are in before the last count */
  if (prog.printed || (!o->quiet && sdm_rank == 0))
    sdm_progress_print(&prog, &c, 1);
  sdm_counter_close(&c);
  int64_t mine[2] = {my_done, my_failed}, all[2] = {0, 0};
  MPI_CHECK(MPI_Reduce(mine, all, 2, MPI_INT64_T, MPI_SUM, 0, MPI_COMM_WORLD));
  double hook = be->hook_seconds(ctx), hook_all = 0, items_all = 0;
  MPI_CHECK(MPI_Reduce(&hook, &hook_all, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD));
  MPI_CHECK(MPI_Reduce(&item_seconds, &items_all, 1, MPI_DOUBLE, MPI_SUM, 0, MPI_COMM_WORLD));
  double el = sd_now() - t_start;
  if (stopped) {
    if (sdm_rank == 0)
      fprintf(stderr,
              "sdprune-mpi: stopped by a signal after %lld items; the shards in %s/shards are complete up to "
              "them (run the same command again to continue)\n",
              (long long)all[0], dir);
    free(done);
    free(pending);
    free(prog.counts);
    be->close(ctx);
    sd_stats_free(&s);
    return 1;
  }

  /* The reduce: totals by MPI, the items table and orphan shards from disk at rank 0. */
  MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
  double r0 = sd_now();
  reduce_totals(&s);
  int status = 0;
  if (sdm_rank == 0) {
    sd_shards_report r;
    int rc = finish_reduce(dir, &s, o->max_report, &r, &err);
    if (rc < 0) {
      fprintf(stderr, "sdprune-mpi: %s\n", err.msg);
      status = 1;
    } else {
      fprintf(stderr,
              "sdprune-mpi: %lld items done, %lld failed, %lld done before, %lld not done, in %.1f s (%.3f items/s on "
              "%d ranks); hooks and accumulation %.1f%% of item time; shard writes %.1f s (rank 0), reduce %.2f s; "
              "shards %s/shards (%lld bytes); wrote %s/stats.h5%s\n",
              (long long)all[0], (long long)all[1], (long long)already, (long long)(r.missing + r.failed), el,
              (all[0] + all[1]) / (el > 0 ? el : 1e-9), sdm_size, items_all > 0 ? 100.0 * hook_all / items_all : 0.0,
              write_seconds, sd_now() - r0, dir, shard_bytes(dir), dir, rc ? " (incomplete: see the items above)" : "");
      status = rc ? 1 : 0;
    }
  }
  MPI_CHECK(MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD));
  free(done);
  free(pending);
  free(prog.counts);
  be->close(ctx);
  sd_stats_free(&s);
  return status;
fail_quiet:
  if (ctx)
    be->close(ctx);
  sd_stats_free(&s);
  return 1;
}

/* The stages after the reduce: rank 0 alone runs them while the others wait in a non-blocking barrier
 * polled every 20 ms (a blocking MPI wait spins a core in most implementations, a core that rank 0's
 * threads on the same node need); then every rank returns rank 0's status. */
static int mask_on_rank0(const sdm_options *o, int argc, char **argv) {
  int status = 0, flag = 0;
  if (sdm_rank == 0)
    status = sdm_mask_stage(o, argc, argv);
  MPI_Request req;
  MPI_CHECK(MPI_Ibarrier(MPI_COMM_WORLD, &req));
  while (!flag) {
    MPI_CHECK(MPI_Test(&req, &flag, MPI_STATUS_IGNORE));
    if (!flag)
      nanosleep(&(struct timespec){.tv_nsec = 20 * 1000 * 1000}, NULL);
  }
  MPI_CHECK(MPI_Bcast(&status, 1, MPI_INT, 0, MPI_COMM_WORLD));
  return status;
}

/* `run` after a complete stats + reduce: the mask stage when the job has a mask section. */
static int run_after_reduce(const sdm_options *o, int argc, char **argv) {
  const char *why = !sdm_has_mask_stage(o)         ? "the job has no mask section: done after the reduce"
                    : strcmp(o->backend, "engine") ? "the fake backend has no model: mask stage skipped"
                                                   : NULL;
  if (!why)
    return mask_on_rank0(o, argc, argv);
  if (sdm_rank == 0 && !o->quiet)
    fprintf(stderr, "sdprune-mpi run: %s\n", why);
  return 0;
}

int main(int argc, char **argv) {
  /* Before MPI_Init: the re-exec (core/omp_env.c) must happen while the MPI library holds nothing. */
  sd_omp_default_wait_policy(argv);
  MPI_CHECK(MPI_Init(&argc, &argv));
  MPI_CHECK(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  MPI_CHECK(MPI_Comm_rank(MPI_COMM_WORLD, &sdm_rank));
  MPI_CHECK(MPI_Comm_size(MPI_COMM_WORLD, &sdm_size));
  int hl = 0;
  MPI_CHECK(MPI_Get_processor_name(sdm_host, &hl));
  /* Every rank parses (they need the settings); only rank 0 speaks about them. */
  int saved = -1;
  if (sdm_rank != 0) {
    fflush(stderr);
    saved = dup(STDERR_FILENO);
    FILE *null = fopen("/dev/null", "w");
    if (null) {
      dup2(fileno(null), STDERR_FILENO);
      fclose(null);
    }
  }
  sdm_options o;
  int rc = sdm_parse(&o, argc, argv);
  if (saved >= 0) {
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
  }
  int status;
  if (rc)
    status = rc == 1 ? 0 : 2;
  else if (!strcmp(o.command, "reduce"))
    status = cmd_reduce_dir(&o);
  else if (!strcmp(o.command, "attack"))
    status = sdm_attack_stage(&o, argc, argv);
  else if (!strcmp(o.command, "mask")) {
    if (!sdm_has_mask_stage(&o)) {
      if (sdm_rank == 0)
        fprintf(stderr, "sdprune-mpi mask: %s has no mask section (give one, or --set mask.method=wanda)\n",
                o.job_path);
      status = 2;
    } else
      status = mask_on_rank0(&o, argc, argv);
  } else {
    status = cmd_stats_mpi(&o, argc, argv); /* the same on every rank */
    if (!status && !strcmp(o.command, "run"))
      status = run_after_reduce(&o, argc, argv);
  }
  sdm_options_free(&o);
  MPI_CHECK(MPI_Finalize());
  return status;
}
