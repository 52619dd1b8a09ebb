/* sdprune-mpi options (options.h): the same settings as `sdprune stats`, from a job file and/or the
 * command line, plus the output folder and the backend. */
#include "mpi/options.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/files.h"

#ifdef SDPRUNE_HAVE_JOB
#include "io/job.h"
#endif

#define CMD "sdprune-mpi"

void sdm_usage(FILE *out) {
  fprintf(out, "usage: mpirun -np N sdprune-mpi stats [JOB.yaml] [options] --out DIR\n"
               "       mpirun -np N sdprune-mpi run JOB.yaml [options] [--out DIR]\n"
               "       mpirun -np N sdprune-mpi mask JOB.yaml [--out DIR] [--set K=V ...]\n"
               "       sdprune-mpi reduce DIR [--out FILE.h5]\n"
               "       mpirun -np N sdprune-mpi attack JOB.yaml [--out DIR] [--set K=V ...]\n\n"
               "Statistics of `sdprune stats` over MPI ranks: every rank plans the same items (set, row, seed) and\n"
               "takes the next pending one from a shared counter (one-sided MPI at rank 0), so fast ranks do more.\n"
               "Each rank keeps its items and totals in DIR/shards/rank-NNNNN.h5 (the stats.h5 format), rewritten\n"
               "atomically after completed items. At the end the totals are reduced (MPI_Reduce, exact integer\n"
               "sums) and rank 0 writes DIR/stats.h5, bit-identical for any rank count or schedule.\n"
               "Running the same command again resumes: items done in any shard (of any earlier rank count) are\n"
               "skipped, shards of ranks that no longer exist are kept and merged.\n"
               "`run` = stats, reduce, then (when the job has a mask section) the mask and apply stages on rank 0:\n"
               "DIR/mask.h5 and the pruned checkpoint DIR/pruned.safetensors (DIR/pruned/ for a diffusers folder,\n"
               "DIR/pruned.<ext> in the input's format otherwise) with its restore file DIR/pruned.restore.h5;\n"
               "these are derived and a rerun replaces them. `mask JOB` = those two stages alone, from DIR/stats.h5.\n"
               "`reduce DIR` merges DIR's shards again without computing anything (like `sdprune reduce`).\n"
               "`attack JOB` = the attack evaluation of the job's attack section (as `sdprune attack`, see its --help):\n"
               "items model x set x row x seed from the same shared counter, results in DIR/attack/shards/, images\n"
               "in DIR/images/, then rank 0 writes DIR/metrics.h5 and DIR/summary.md. Resumes like stats; its\n"
               "settings come from the job file and --set only.\n\n"
               "  JOB.yaml               job file (io/job.h); options given here win over its settings\n"
               "  --set SECTION.KEY=V    override one key of the job file (e.g. sampler.steps=20)\n"
               "  --target FILE / --anchor FILE / --adversarial NAME=FILE / --template T\n"
               "  --sampler NAME / --steps N / --max-steps K / --guidance G / --eta E / --seed S / --seeds LIST\n"
               "  --size WxH / --limit N / --hooks ff|ff,attn2   as in `sdprune stats --help`\n"
               "  --per-item             per-item records in DIR/stats.items/ (engine backend), linked from stats.h5\n"
               "  --out DIR              output folder (DIR/shards/, DIR/stats.h5)\n"
               "  --checkpoint-every N   rewrite a rank's shard after every N items (default: after each item, or\n"
               "                         less often when rewriting costs more than 5%% of the item time)\n"
               "  --progress-every S     seconds between progress lines when stderr is not a terminal (default 10)\n"
               "  --max-report N         lines per kind of problem in the completeness check (default 20)\n"
               "  --backend engine|fake  fake: no model, deterministic small-integer activations (tests)\n"
               "  --fake-ms MS           fake: milliseconds per item\n"
               "  --fake-hash V          fake: model hash variant (a shard of another \"model\")\n"
               "  --fake-fail SET:ROW    fake: that row's items fail\n"
               "  --fake-crash SET:ROW   fake: the rank that takes that row's first item crashes (SIGSEGV)\n"
               "  --quiet                no progress on stderr (problems and the summary only)\n");
  sd_cli_common_help(out, 1);
  fprintf(out, "Threads per rank: --threads, else SLURM_CPUS_PER_TASK, OMP_NUM_THREADS, all cores. Ranks on one\n"
               "node share the weights through --weights-cache DIR ($SDPRUNE_WEIGHTS_CACHE): the first rank of\n"
               "each node writes the float32 copy, the others map it.\n");
}

static int add_set(sdm_options *o, const char *name, const char *role, const char *file) {
  for (int k = 0; k < o->n_sets; k++) /* the command line replaces a job file's set of that name */
    if (!strcmp(o->sets[k].name, name)) {
      o->sets[k] = (sd_stats_set_spec){.name = name, .role = role, .file = file};
      return 0;
    }
  if (o->n_sets >= SDM_MAX_SETS) {
    fprintf(stderr, CMD ": at most %d prompt sets\n", SDM_MAX_SETS);
    return -1;
  }
  o->sets[o->n_sets++] = (sd_stats_set_spec){.name = name, .role = role, .file = file};
  return 0;
}

/* Loads the job file, applies every --set KEY=VALUE of argv to it, then takes its settings. */
static int load_job(sdm_options *o, const char *path, int argc, char **argv) {
#ifdef SDPRUNE_HAVE_JOB
  sd_job *job = calloc(1, sizeof *job);
  sd_error err;
  if (!job)
    return -1;
  if (sd_job_load(path, job, &err) != 0) {
    fprintf(stderr, CMD ": %s\n", err.msg);
    free(job);
    return -1;
  }
  o->job = job;
  o->job_path = path;
  for (int i = 3; i + 1 < argc; i++)
    if (!strcmp(argv[i], "--set") && sd_job_set_override(job, argv[++i], &err) != 0) {
      fprintf(stderr, CMD ": --set %s: %s\n", argv[i], err.msg);
      return -1;
    }
  sd_model_options *m = &o->common.model;
  m->path = job->model; /* the job reader leaves synth:ARCH unjoined */
  m->unet_path = job->unet;
  m->text_encoder_path = job->text_encoder;
  m->config_path = job->config;
  m->tokenizer_dir = job->tokenizer;
  m->prediction = job->prediction;
  if (job->threads > 0)
    o->common.threads = job->threads;
  for (int k = 0; k < job->n_sets; k++) {
    if (add_set(o, job->sets[k].name, job->sets[k].role, job->sets[k].file))
      return -1;
    o->sets[o->n_sets - 1].template_str = job->sets[k].template_str;
  }
  if (job->sampler)
    o->plan.sampler = job->sampler;
  if (job->steps > 0)
    o->plan.steps = job->steps;
  o->plan.max_steps = job->max_steps;
  o->plan.eta = job->eta;
  if (job->guidance_given) {
    o->plan.guidance = job->guidance;
    o->plan.guidance_given = 1;
  }
  o->plan.seed = job->seed;
  if (job->n_seeds > 0) {
    if (job->n_seeds > SDM_MAX_SEEDS) {
      fprintf(stderr, CMD ": %s: at most %d seeds\n", path, SDM_MAX_SEEDS);
      return -1;
    }
    memcpy(o->seeds, job->seeds, sizeof *o->seeds * (size_t)job->n_seeds);
    o->plan.seeds = o->seeds;
    o->plan.n_seeds = job->n_seeds;
  }
  if (job->size_given) {
    o->plan.width = job->width;
    o->plan.height = job->height;
    o->plan.size_given = 1;
  }
  o->plan.limit = job->limit;
  if (job->hooks)
    o->hooks = job->hooks;
  o->per_item = job->per_item;
  if (job->out)
    o->out = job->out;
  return 0;
#else
  (void)argc;
  (void)argv;
  fprintf(stderr,
          CMD ": job files need src/io/job.c, which this build lacks; give the settings as options (see "
              "--help) instead of %s\n",
          path);
  return -1;
#endif
}

void sdm_options_free(sdm_options *o) {
#ifdef SDPRUNE_HAVE_JOB
  if (o->job)
    sd_job_free(o->job);
#endif
  free(o->job);
  o->job = NULL;
}

int sdm_parse(sdm_options *o, int argc, char **argv) {
  memset(o, 0, sizeof *o);
  o->hooks = "ff";
  o->backend = "engine";
  o->max_report = 20;
  o->progress_every = 10;
  o->plan = (sd_stats_plan_options){.sampler = "ddim", .steps = 50, .guidance = 7.5, .width = 512, .height = 512};
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
    sdm_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 1;
  }
  o->command = argv[1];
  if (strcmp(o->command, "stats") && strcmp(o->command, "run") && strcmp(o->command, "reduce") &&
      strcmp(o->command, "mask") && strcmp(o->command, "attack")) {
    fprintf(stderr, CMD ": unknown command '%s' (stats, run, mask, reduce, attack; see --help)\n", o->command);
    return 2;
  }
  if (!strcmp(o->command, "attack") && (argc < 3 || argv[2][0] == '-' || sd_is_dir(argv[2]))) {
    fprintf(stderr, CMD " attack: name the job file (its attack section lists the models, sets and detector)\n");
    return 2;
  }
  if (!strcmp(o->command, "mask") && (argc < 3 || argv[2][0] == '-' || sd_is_dir(argv[2]))) {
    fprintf(stderr, CMD " mask: name the job file (its mask section holds the parameters; --out DIR for another "
                        "folder than its out); for a run folder alone use `sdprune mask DIR/stats.h5 --method ...`\n");
    return 2;
  }
  int first = 2;
  if (!strcmp(o->command, "reduce")) {
    for (int i = 2; i < argc; i++) {
      if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
        sdm_usage(stdout);
        return 1;
      } else if (!strcmp(argv[i], "--out") || !strcmp(argv[i], "--max-report")) {
        const char *v = sd_cli_value("reduce", argc, argv, &i);
        long n;
        if (!v)
          return 2;
        if (!strcmp(argv[i - 1], "--out"))
          o->out = v;
        else if (sd_cli_int("reduce", "--max-report", v, 0, 1000000, &n))
          return 2;
        else
          o->max_report = (int)n;
      } else if (!strcmp(argv[i], "--quiet"))
        o->quiet = 1;
      else if (argv[i][0] != '-' && !o->job_path)
        o->job_path = argv[i]; /* the run folder */
      else {
        fprintf(stderr, CMD " reduce: unexpected argument '%s' (see --help)\n", argv[i]);
        return 2;
      }
    }
    if (!o->job_path) {
      fprintf(stderr, CMD " reduce: name the run folder (see --help)\n");
      return 2;
    }
    return 0;
  }
  if (argc > 2 && argv[2][0] != '-') {
    if (load_job(o, argv[2], argc, argv))
      return 2;
    first = 3;
  }
  for (int i = first; i < argc; i++) {
    int r = sd_cli_common_option(&o->common, o->command, argc, argv, &i);
    if (r < 0)
      return 2;
    if (r > 0)
      continue;
    const char *a = argv[i], *v = NULL;
    long n;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      sdm_usage(stdout);
      return 1;
    }
    if (!strcmp(a, "--quiet")) {
      o->quiet = 1;
      continue;
    }
    if (!strcmp(a, "--per-item")) {
      o->per_item = 1;
      continue;
    }
    if (!(v = sd_cli_value(o->command, argc, argv, &i)))
      return 2;
    if (!strcmp(a, "--set")) {
      if (!o->job) {
        fprintf(stderr, CMD ": --set %s needs a job file (the first argument after the command)\n", v);
        return 2;
      }
    } else if (!strcmp(a, "--target")) {
      if (add_set(o, "target", "target", v))
        return 2;
    } else if (!strcmp(a, "--anchor")) {
      if (add_set(o, "anchor", "anchor", v))
        return 2;
    } else if (!strcmp(a, "--adversarial")) {
      const char *eq = strchr(v, '=');
      if (!eq || eq == v || !eq[1]) {
        fprintf(stderr, CMD ": --adversarial needs NAME=FILE, got '%s'\n", v);
        return 2;
      }
      char *name = o->names[o->n_sets < SDM_MAX_SETS ? o->n_sets : 0];
      snprintf(name, sizeof o->names[0], "%.*s", (int)(eq - v < 70 ? eq - v : 70), v);
      if (!sd_stats_valid_set_name(name) || (size_t)(eq - v) > 64 || !strcmp(name, "target") ||
          !strcmp(name, "anchor")) {
        fprintf(stderr,
                CMD ": --adversarial name '%s' must be 1-64 of A-Z a-z 0-9 _ . - (not starting with '.', "
                    "not target/anchor)\n",
                name);
        return 2;
      }
      if (add_set(o, name, "adversarial", eq + 1))
        return 2;
    } else if (!strcmp(a, "--template"))
      o->template_str = v;
    else if (!strcmp(a, "--sampler"))
      o->plan.sampler = v;
    else if (!strcmp(a, "--hooks"))
      o->hooks = v;
    else if (!strcmp(a, "--out"))
      o->out = v;
    else if (!strcmp(a, "--backend"))
      o->backend = v;
    else if (!strcmp(a, "--fake-fail"))
      o->fake_fail = v;
    else if (!strcmp(a, "--fake-crash"))
      o->fake_crash = v;
    else if (!strcmp(a, "--steps") || !strcmp(a, "--max-steps") || !strcmp(a, "--limit") ||
             !strcmp(a, "--checkpoint-every") || !strcmp(a, "--fake-ms") || !strcmp(a, "--fake-hash") ||
             !strcmp(a, "--max-report")) {
      int zero_ok = !strcmp(a, "--fake-ms") || !strcmp(a, "--fake-hash") || !strcmp(a, "--max-report");
      if (sd_cli_int(o->command, a, v, zero_ok ? 0 : 1, 100000000, &n))
        return 2;
      if (!strcmp(a, "--steps"))
        o->plan.steps = (int)n;
      else if (!strcmp(a, "--max-steps"))
        o->plan.max_steps = (int)n;
      else if (!strcmp(a, "--limit"))
        o->plan.limit = (int)n;
      else if (!strcmp(a, "--checkpoint-every"))
        o->checkpoint_every = (int)n;
      else if (!strcmp(a, "--fake-ms"))
        o->fake_ms = (int)n;
      else if (!strcmp(a, "--fake-hash"))
        o->fake_hash = (unsigned)n;
      else
        o->max_report = (int)n;
    } else if (!strcmp(a, "--seed")) {
      if (sd_cli_parse_seed(v, &o->plan.seed)) {
        fprintf(stderr, CMD ": --seed must be a non-negative integer, got '%s'\n", v);
        return 2;
      }
      o->plan.seed_given = 1;
    } else if (!strcmp(a, "--seeds")) {
      if (sd_cli_parse_seed_list(v, o->seeds, SDM_MAX_SEEDS, &o->plan.n_seeds)) {
        fprintf(stderr, CMD ": --seeds must be a list like 0,1,2 or a range like 0-9 (at most %d), got '%s'\n",
                SDM_MAX_SEEDS, v);
        return 2;
      }
      o->plan.seeds = o->seeds;
    } else if (!strcmp(a, "--guidance") || !strcmp(a, "--eta") || !strcmp(a, "--progress-every")) {
      double d;
      if (sd_cli_parse_nonneg(v, &d)) {
        fprintf(stderr, CMD ": %s must be a non-negative number, got '%s'\n", a, v);
        return 2;
      }
      if (!strcmp(a, "--eta"))
        o->plan.eta = d;
      else if (!strcmp(a, "--progress-every"))
        o->progress_every = d;
      else {
        o->plan.guidance = d;
        o->plan.guidance_given = 1;
      }
    } else if (!strcmp(a, "--size")) {
      if (sd_cli_parse_size(v, &o->plan.width, &o->plan.height)) {
        fprintf(stderr, CMD ": --size must be WIDTHxHEIGHT, got '%s'\n", v);
        return 2;
      }
      o->plan.size_given = 1;
    } else {
      fprintf(stderr, CMD ": unknown option '%s' (see --help)\n", a);
      return 2;
    }
  }
  if (strcmp(o->backend, "engine") && strcmp(o->backend, "fake")) {
    fprintf(stderr, CMD ": --backend must be engine or fake, got '%s'\n", o->backend);
    return 2;
  }
  int attack = !strcmp(o->command, "attack");
  if (!o->out || (o->n_sets == 0 && !attack) || (!strcmp(o->backend, "engine") && !o->common.model.path)) {
    fprintf(stderr, CMD ": --out, at least one prompt set and (engine backend) --model are required, from the job "
                        "file or the command line (see --help)\n");
    return 2;
  }
  if (o->per_item && !strcmp(o->backend, "fake")) {
    fprintf(stderr, CMD ": --per-item needs the engine backend\n");
    return 2;
  }
  for (int k = 0; k < o->n_sets; k++)
    if (!o->sets[k].template_str)
      o->sets[k].template_str = o->template_str;
  o->plan.sets = o->sets;
  o->plan.n_sets = o->n_sets;
  return 0;
}
