/* sdprune attack: the attack evaluation of a job (its attack section) in one process -- every model x set x
 * row x seed item generated, judged and measured (eval/attack.h), results in RUN/attack/shards/rank-00000.h5,
 * then RUN/metrics.h5 and RUN/summary.md. The same layout as `sdprune-mpi attack`, so either continues
 * the other's run. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/files.h"
#include "core/provenance.h"
#include "eval/attack.h"
#include "eval/attack_io.h"
#include "io/job.h"
#include "sample/sampler.h"
#include "stats/concept_stats.h"

static volatile sig_atomic_t stop_signal = 0;
static void on_signal(int sig) {
  stop_signal = sig;
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: sdprune attack JOB.yaml [--out DIR] [--set KEY=VALUE ...] [options]\n\n"
          "Runs the attack evaluation of a job file's `attack` section: every model x attack set x row x seed\n"
          "generates its image with the row's seed, guidance and size (else the job's), writes\n"
          "DIR/images/<model>/<set>/<row>_seed<seed>.png, judges it with the CLIP zero-shot detector\n"
          "(attack.detector) and measures the re-activation of the mask's concept neurons against the\n"
          "reference statistics; then writes DIR/metrics.h5 (per-item table, metrics per model x set) and\n"
          "DIR/summary.md. Rerunning resumes: completed items are skipped (shards in DIR/attack/shards/, the\n"
          "layout of sdprune-mpi attack).\n\n"
          "  --out DIR            output folder (default: the job's `out`)\n"
          "  --set KEY=VALUE      override a job key (e.g. sampler.steps=20, attack.detector.threshold=0.6)\n"
          "  --quiet              no progress lines\n");
  sd_cli_common_help(out, 0);
  fprintf(out, "Exit status: 0 all items done, 1 failures or incomplete, 2 usage.\n");
}

typedef struct {
  int quiet, tty, printed;
  int64_t k, n;
  double t0;
} progress;

static void item_line(progress *pr, const char *id, int final) {
  if (pr->quiet)
    return;
  double el = sd_now() - pr->t0, rate = pr->k / (el > 0 ? el : 1e-9);
  double eta = (pr->n - pr->k) / (rate > 0 ? rate : 1e-9);
  fprintf(stderr, "%sitem %lld/%lld  %.3f items/s  elapsed %.0fs  ETA %.0fs  %s%s", pr->tty ? "\r" : "",
          (long long)pr->k, (long long)pr->n, rate, el, eta, id, pr->tty && !final ? "   " : "\n");
  pr->printed = pr->tty && !final;
}

int cmd_attack(int argc, char **argv) {
  sd_cli_common common = {0};
  const char *job_path = NULL, *out = NULL;
  const char **sets = calloc((size_t)argc + 1, sizeof *sets);
  int n_set = 0, quiet = 0;
  if (!sets)
    return 1;
  for (int i = 1; i < argc; i++) {
    int r = sd_cli_common_option(&common, "attack", argc, argv, &i);
    if (r < 0)
      goto usage_error;
    if (r > 0)
      continue;
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      free(sets);
      return 0;
    } else if (!strcmp(a, "--quiet"))
      quiet = 1;
    else if (!strcmp(a, "--out") || !strcmp(a, "--set")) {
      const char *v = sd_cli_value("attack", argc, argv, &i);
      if (!v)
        goto usage_error;
      if (!strcmp(a, "--out"))
        out = v;
      else
        sets[n_set++] = v;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "sdprune attack: unknown option '%s' (see --help)\n", a);
      goto usage_error;
    } else if (!job_path)
      job_path = a;
    else {
      fprintf(stderr, "sdprune attack: one job file, got '%s' too\n", a);
      goto usage_error;
    }
  }
  if (!job_path) {
    fprintf(stderr, "sdprune attack: a job file is required (see --help)\n");
    goto usage_error;
  }

  sd_job job;
  sd_error err;
  sd_attack_plan plan;
  sd_attack_runner *runner = NULL;
  sd_attack_result *res = NULL;
  int *owner = NULL, status = 1, have_plan = 0;
  unsigned char *mine = NULL;
  char (*hashes)[16] = NULL;
  float *timesteps = NULL;
  char *cmdline = sd_command_line(argc, argv);
  if (sd_job_load(job_path, &job, &err) != 0) {
    fprintf(stderr, "sdprune attack: %s\n", err.msg);
    free(sets);
    free(cmdline);
    return 1;
  }
  for (int k = 0; k < n_set; k++)
    if (sd_job_set_override(&job, sets[k], &err) != 0)
      goto fail;
  if (common.threads == 0 && job.threads > 0)
    common.threads = job.threads;
  int threads = sd_cli_apply_threads(&common, "attack");
  const char *dir = out ? out : job.out;
  if (sd_mkdir_p(dir) != 0) {
    sd_fail(&err, "%s: cannot create the output folder", dir);
    goto fail;
  }
  if (sd_attack_plan_build(&job, dir, &plan, &err) != 0)
    goto fail;
  have_plan = 1;
  const char *cache = common.weights_cache ? common.weights_cache : getenv("SDPRUNE_WEIGHTS_CACHE");
  if (sd_attack_runner_open(&plan, cache && *cache ? cache : NULL, &runner, &err) != 0)
    goto fail;
  int evals = sd_attack_runner_evals(runner);
  size_t n = (size_t)(plan.n_items ? plan.n_items : 1);
  res = sd_calloc(n, sizeof *res, &err);
  owner = sd_calloc(n, sizeof *owner, &err);
  mine = sd_calloc(n, 1, &err);
  hashes = sd_calloc((size_t)plan.n_models, sizeof *hashes, &err);
  timesteps = sd_malloc(sizeof(float) * (size_t)evals, &err);
  sd_sampler_config sc = {.name = plan.sampler, .steps = plan.steps, .eta = plan.eta};
  if (!res || !owner || !mine || !hashes || !timesteps || sd_sampler_timesteps(&sc, timesteps, &err) != 0)
    goto fail;
  sd_attack_scan scan;
  if (sd_attack_shards_load(dir, &plan, evals, res, owner, hashes, &scan, &err) != 0)
    goto fail;
  int64_t todo = 0;
  for (int64_t i = 0; i < plan.n_items; i++) {
    mine[i] = owner[i] == 0;
    todo += res[i].status != SD_ITEM_DONE;
  }
  char shard_dir[4300], shard[4400];
  snprintf(shard_dir, sizeof shard_dir, "%s/attack/shards", dir);
  snprintf(shard, sizeof shard, "%s/rank-00000.h5", shard_dir);
  if (sd_mkdir_p(shard_dir) != 0) {
    sd_fail(&err, "%s: cannot create", shard_dir);
    goto fail;
  }
  if (!quiet)
    fprintf(stderr,
            "sdprune attack: %lld items (%d models x %d sets; %lld done before in %d shards), %s %d steps, %d "
            "threads, detector %s, re-activation %s\n",
            (long long)plan.n_items, plan.n_models, plan.n_sets, (long long)scan.done, scan.n_shards, plan.sampler,
            plan.steps, threads, plan.clip ? "CLIP" : "none", plan.reference_stats ? "on" : "off");
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  progress pr = {.quiet = quiet, .tty = isatty(STDERR_FILENO), .n = todo, .t0 = sd_now()};
  double last_write = 0, since_write = 0;
  int64_t failed = 0;
  for (int64_t i = 0; i < plan.n_items && !stop_signal; i++) {
    if (res[i].status == SD_ITEM_DONE)
      continue;
    char id[600];
    sd_attack_item_id(&plan, i, id, sizeof id);
    double t0 = sd_now();
    sd_error ierr;
    if (sd_attack_run_item(runner, i, NULL, NULL, &res[i], &ierr) != 0) {
      failed++;
      fprintf(stderr, "%ssdprune attack: item %s failed: %s\n", pr.printed ? "\n" : "", id, ierr.msg);
      pr.printed = 0;
    }
    res[i].seconds = sd_now() - t0;
    if (sd_attack_note_model_hash(&plan, hashes, plan.items[i].model,
                                  sd_attack_runner_model_hash(runner, plan.items[i].model), &err) != 0)
      goto fail; /* the shard keeps the items done so far, under the old hash */
    mine[i] = 1;
    since_write += res[i].seconds;
    pr.k++;
    /* rewriting the shard costs time in proportion to its size: keep it under ~5% of the work */
    if (since_write >= 20.0 * last_write || pr.k == pr.n) {
      double w0 = sd_now();
      if (sd_attack_shard_write(shard, &plan, res, mine, hashes, evals, cmdline, &err) != 0)
        goto fail;
      last_write = sd_now() - w0;
      since_write = 0;
    }
    item_line(&pr, id, 0);
  }
  if (sd_attack_shard_write(shard, &plan, res, mine, hashes, evals, cmdline, &err) != 0)
    goto fail;
  if (pr.printed)
    fprintf(stderr, "\n");
  if (stop_signal) {
    fprintf(stderr, "sdprune attack: stopped by signal %d after %lld items; run the same command to continue\n",
            (int)stop_signal, (long long)pr.k);
    goto done;
  }
  /* the other ranks' shards may have changed meanwhile (a run sharing the folder): read them all again */
  if (sd_attack_shards_load(dir, &plan, evals, res, owner, hashes, &scan, &err) != 0 ||
      sd_attack_finish(&plan, res, hashes, evals, timesteps, cmdline, stdout, &err) != 0)
    goto fail;
  fprintf(stderr,
          "sdprune attack: %lld items (%lld run now in %.1f s, %lld failed); wrote %s/metrics.h5 and %s/summary.md, "
          "images under %s/images\n",
          (long long)plan.n_items, (long long)pr.k, sd_now() - pr.t0, (long long)scan.failed, dir, dir, dir);
  status = scan.failed ? 1 : 0;
  goto done;
fail:
  fprintf(stderr, "sdprune attack: %s\n", err.msg);
done:
  for (int64_t i = 0; res && have_plan && i < plan.n_items; i++)
    sd_attack_result_clear(&res[i]);
  free(res);
  free(owner);
  free(mine);
  free(hashes);
  free(timesteps);
  sd_attack_runner_close(runner);
  if (have_plan)
    sd_attack_plan_free(&plan);
  sd_job_free(&job);
  free(cmdline);
  free(sets);
  return status;
usage_error:
  free(sets);
  return 2;
}
