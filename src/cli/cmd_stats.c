/* sdprune stats: FFN neuron statistics of the UNet over target, anchor and adversarial prompt sets,
 * one work item (set, row, seed) = one sampler trajectory, into stats.h5. The file is replaced whole
 * (temporary name, then rename) after completed items, so it is always valid; --resume continues it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/files.h"
#include "core/provenance.h"
#include "model/parts.h"
#include "model/weight_cache.h"
#include "stats/stats_io.h"
#include "stats/stats_run.h"

#define MAX_SETS 64
#define MAX_SEEDS 4096

typedef struct {
  sd_cli_common common;
  sd_stats_set_spec sets[MAX_SETS];
  int n_sets;
  const char *template_str, *hooks, *out;
  sd_stats_plan_options plan;
  uint64_t seeds[MAX_SEEDS];
  int per_item, resume, force, quiet, checkpoint_every;
  char names[MAX_SETS][72]; /* adversarial set names (argv stays as given, for the provenance) */
} stats_options;

static volatile sig_atomic_t stop_signal = 0;
static void on_signal(int sig) { stop_signal = sig; }

static void usage(FILE *out) {
  fprintf(out,
          "usage: sdprune stats --model M [--unet U] --target T.txt|.csv --anchor A.txt|.csv\n"
          "                     [--adversarial NAME=FILE]... [options] --out run/stats.h5\n\n"
          "Runs every prompt of every set through the sampler (as `generate` does, without the VAE decode) and\n"
          "records, per set, FFN layer (input of each transformer block's ff.net.2), UNet evaluation and CFG\n"
          "branch, per neuron: token count, sum x, sum x^2, sum |x|, max x and sum x_hat^2 (x_hat = token row over\n"
          "its L2 norm, ConceptPrune's Wanda input). Totals are exact fixed-point sums: bit-identical whatever\n"
          "the order of the items. A row's evaluation_seed / evaluation_guidance / size win unless given here.\n\n"
          "  --target FILE          prompts of the concept (ConceptPrune: \"a photo of a naked {h}\" ...)\n"
          "  --anchor FILE          prompts without it\n"
          "  --adversarial NAME=FILE  an attack set (repeatable), e.g. ring-a-bell=ringabell.csv\n"
          "  --template T           build prompts of CSV files from columns, e.g. \"{nudity} {people}\"\n"
          "  --sampler NAME         ddim | pndm | lms | euler (default ddim)\n"
          "  --steps N              sampling steps (default 50)\n"
          "  --max-steps K          record and run only the first K UNet evaluations (Wanda uses the first tau)\n"
          "  --guidance G           classifier-free guidance scale (default 7.5)\n"
          "  --eta E                DDIM eta (default 0)\n"
          "  --seed S               seed when a row has none (default 0)\n"
          "  --seeds LIST           several seeds per row: 0,1,2 or 0-9 (wins over the rows' seeds)\n"
          "  --size WxH             image size (default: the row's size, else 512x512)\n"
          "  --limit N              only the first N rows of each set\n"
          "  --hooks ff|ff,attn2    sites to record (attn2: the cross-attention output too; default ff)\n"
          "  --per-item             also keep per item, step and layer the mean and max over tokens of every\n"
          "                         neuron (cond branch) in <out stem>.items/<set>/<row>_seed<seed>.h5\n"
          "  --out FILE.h5          the statistics file\n"
          "  --resume               continue an interrupted run of the same settings (skips completed items)\n"
          "  --force                replace an existing output\n"
          "  --checkpoint-every N   rewrite the file after every N items (default: after each item, or less\n"
          "                         often when rewriting costs more than 5%% of the item time)\n"
          "  --quiet                no progress on stderr\n");
  sd_cli_common_help(out, 1);
}

static int add_set(stats_options *o, const char *name, const char *role, const char *file) {
  if (o->n_sets >= MAX_SETS) {
    fprintf(stderr, "sdprune stats: at most %d prompt sets\n", MAX_SETS);
    return -1;
  }
  o->sets[o->n_sets++] = (sd_stats_set_spec){.name = name, .role = role, .file = file};
  return 0;
}

static int parse_args(stats_options *o, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    int r = sd_cli_common_option(&o->common, "stats", argc, argv, &i);
    if (r < 0) return 2;
    if (r > 0) continue;
    const char *a = argv[i], *v = NULL;
    long n;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return -1;
    }
    int *flag = !strcmp(a, "--per-item") ? &o->per_item
                : !strcmp(a, "--resume") ? &o->resume
                : !strcmp(a, "--force")  ? &o->force
                : !strcmp(a, "--quiet")  ? &o->quiet
                                         : NULL;
    if (flag) {
      *flag = 1;
      continue;
    }
    if (!(v = sd_cli_value("stats", argc, argv, &i))) return 2;
    if (!strcmp(a, "--target")) {
      if (add_set(o, "target", "target", v)) return 2;
    } else if (!strcmp(a, "--anchor")) {
      if (add_set(o, "anchor", "anchor", v)) return 2;
    } else if (!strcmp(a, "--adversarial")) {
      char *eq = strchr(v, '=');
      if (!eq || eq == v || !eq[1]) {
        fprintf(stderr, "sdprune stats: --adversarial needs NAME=FILE, got '%s'\n", v);
        return 2;
      }
      char *name = o->names[o->n_sets < MAX_SETS ? o->n_sets : 0];
      snprintf(name, sizeof o->names[0], "%.*s", (int)(eq - v < 70 ? eq - v : 70), v);
      if (!sd_stats_valid_set_name(name) || (size_t)(eq - v) > 64 || !strcmp(name, "target") || !strcmp(name, "anchor")) {
        fprintf(stderr, "sdprune stats: --adversarial name '%s' must be 1-64 of A-Z a-z 0-9 _ . - (not starting "
                        "with '.', not target/anchor)\n", name);
        return 2;
      }
      if (add_set(o, name, "adversarial", eq + 1)) return 2;
    } else if (!strcmp(a, "--template")) o->template_str = v;
    else if (!strcmp(a, "--sampler")) o->plan.sampler = v;
    else if (!strcmp(a, "--hooks")) o->hooks = v;
    else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--steps") || !strcmp(a, "--max-steps") || !strcmp(a, "--limit") ||
             !strcmp(a, "--checkpoint-every")) {
      if (sd_cli_int("stats", a, v, 1, 100000000, &n)) return 2;
      if (!strcmp(a, "--steps")) o->plan.steps = (int)n;
      else if (!strcmp(a, "--max-steps")) o->plan.max_steps = (int)n;
      else if (!strcmp(a, "--limit")) o->plan.limit = (int)n;
      else o->checkpoint_every = (int)n;
    } else if (!strcmp(a, "--seed")) {
      if (sd_cli_parse_seed(v, &o->plan.seed)) {
        fprintf(stderr, "sdprune stats: --seed must be a non-negative integer, got '%s'\n", v);
        return 2;
      }
      o->plan.seed_given = 1;
    } else if (!strcmp(a, "--seeds")) {
      if (sd_cli_parse_seed_list(v, o->seeds, MAX_SEEDS, &o->plan.n_seeds)) {
        fprintf(stderr, "sdprune stats: --seeds must be a list like 0,1,2 or a range like 0-9 (at most %d), got '%s'\n",
                MAX_SEEDS, v);
        return 2;
      }
      o->plan.seeds = o->seeds;
    } else if (!strcmp(a, "--guidance") || !strcmp(a, "--eta")) {
      double d;
      if (sd_cli_parse_nonneg(v, &d)) {
        fprintf(stderr, "sdprune stats: %s must be a non-negative number, got '%s'\n", a, v);
        return 2;
      }
      if (!strcmp(a, "--eta")) o->plan.eta = d;
      else {
        o->plan.guidance = d;
        o->plan.guidance_given = 1;
      }
    } else if (!strcmp(a, "--size")) {
      if (sd_cli_parse_size(v, &o->plan.width, &o->plan.height)) {
        fprintf(stderr, "sdprune stats: --size must be WIDTHxHEIGHT, got '%s'\n", v);
        return 2;
      }
      o->plan.size_given = 1;
    } else {
      fprintf(stderr, "sdprune stats: unknown option '%s' (see --help)\n", a);
      return 2;
    }
  }
  if (!o->common.model.path || !o->out || o->n_sets == 0) {
    fprintf(stderr, "sdprune stats: --model, --out and at least one prompt set (--target, --anchor, --adversarial) "
                    "are required (see --help)\n");
    return 2;
  }
  for (int k = 0; k < o->n_sets; k++) o->sets[k].template_str = o->template_str;
  o->plan.sets = o->sets;
  o->plan.n_sets = o->n_sets;
  return 0;
}

/* "run/stats.h5" -> folder "run", stem "stats". */
static void split_out(const char *out, char *dir, size_t dn, char *stem, size_t sn) {
  const char *slash = strrchr(out, '/');
  if (slash) snprintf(dir, dn, "%.*s", (int)(slash - out), out);
  else snprintf(dir, dn, ".");
  const char *base = slash ? slash + 1 : out;
  size_t n = strlen(base);
  if (n > 3 && !strcmp(base + n - 3, ".h5")) n -= 3;
  snprintf(stem, sn, "%.*s", (int)n, base);
}

typedef struct {
  int quiet, tty, item, n_items;
  double t_start;
  int printed;
} progress;

static void on_step(void *ctx, int step, int total) {
  progress *p = ctx;
  if (p->quiet || !p->tty) return;
  fprintf(stderr, "\ritem %d/%d  evaluation %d   ", p->item, p->n_items, step);
  p->printed = 1;
}

static void report_item(progress *p, int done, int todo, const sd_stats *s, const sd_stats_item *it, double t0) {
  if (p->quiet) return;
  double el = sd_now() - p->t_start, rate = done / (el > 0 ? el : 1e-9);
  double eta = (todo - done) / (rate > 0 ? rate : 1e-9);
  fprintf(stderr, "%sitem %d/%d  %s row %d seed %llu  %.2f s  %.3f items/s  elapsed %.0fs  ETA %.0fs%s",
          p->tty ? "\r" : "", done, todo, s->sets[it->set].name, it->row, (unsigned long long)it->seed,
          sd_now() - t0, rate, el, eta, p->tty ? "   " : "\n");
  p->printed = p->tty;
}

static int fill_settings(sd_stats *s, const stats_options *o, const sd_model *m, int argc, char **argv, sd_error *err) {
  sd_stats_settings *st = &s->settings;
  char when[32];
  st->model = sd_strdup(m->path);
  st->model_hash = sd_strdup(m->hash);
  st->unet_override = o->common.model.unet_path ? sd_strdup(o->common.model.unet_path) : NULL;
  st->text_encoder_override = o->common.model.text_encoder_path ? sd_strdup(o->common.model.text_encoder_path) : NULL;
  st->hooks = sd_strdup(o->hooks);
  st->per_item = o->per_item;
  st->sdprune_version = sd_strdup(sd_version());
  st->git_revision = sd_strdup(sd_git_revision());
  st->command_line = sd_command_line(argc, argv);
  st->created_utc = sd_strdup(sd_utc_now(when, sizeof when));
  if (!st->model || !st->model_hash || !st->hooks || !st->command_line) return sd_fail(err, "out of memory");
  return 0;
}

/* Resume: the planned (empty) statistics absorb the file's completed items and their totals. */
static int resume_from(sd_stats *s, const char *path, sd_error *err) {
  sd_stats old;
  if (sd_stats_read(path, &old, 1, err) != 0) return -1;
  int rc = 0;
  if (old.settings.per_item != s->settings.per_item)
    rc = sd_fail(err, "%s: written %s --per-item; resume with the same settings", path,
                 old.settings.per_item ? "with" : "without");
  for (int k = 0; !rc && k < old.n_sets; k++) {
    int found = 0;
    for (int j = 0; j < s->n_sets; j++) found |= !strcmp(s->sets[j].name, old.sets[k].name);
    if (!found) rc = sd_fail(err, "%s: has set %s, which this command does not name; resume with the same sets", path,
                             old.sets[k].name);
  }
  if (!rc && sd_stats_merge(s, &old, path, err) != 0) rc = -1;
  sd_stats_free(&old);
  return rc;
}

static int write_item_record(const char *dir, const char *stem, sd_stats *s, sd_stats_item *it,
                             const sd_stats_collector *c, sd_error *err) {
  char rel[1200], full[5400], folder[5400];
  snprintf(rel, sizeof rel, "%s.items/%s/%05d_seed%llu.h5", stem, s->sets[it->set].name, it->row,
           (unsigned long long)it->seed);
  snprintf(full, sizeof full, "%s/%s", dir, rel);
  snprintf(folder, sizeof folder, "%s/%s.items/%s", dir, stem, s->sets[it->set].name);
  if (sd_mkdir_p(folder) != 0) return sd_fail(err, "%s: cannot create folder: %s", folder, strerror(errno));
  const float *mean[512], *max[512];
  if (s->n_layers > 512) return sd_fail(err, "too many layers for per-item records (%d)", s->n_layers);
  for (int l = 0; l < s->n_layers; l++) {
    mean[l] = sd_stats_collector_item_mean(c, l);
    max[l] = sd_stats_collector_item_max(c, l);
  }
  if (sd_stats_write_item_record(full, s, it, mean, max, err) != 0) return -1;
  free(it->per_item_file);
  it->per_item_file = sd_strdup(rel);
  return 0;
}

int cmd_stats(int argc, char **argv) {
  stats_options o = {.hooks = "ff"};
  o.plan = (sd_stats_plan_options){.sampler = "ddim", .steps = 50, .guidance = 7.5, .width = 512, .height = 512};
  int rc = parse_args(&o, argc, argv);
  if (rc) return rc < 0 ? 0 : rc;
  int status = 1, have_runner = 0;
  sd_error err;
  sd_model *m = NULL;
  sd_tokenizer *tok = NULL;
  sd_stats s;
  sd_stats_runner runner;
  memset(&s, 0, sizeof s);
  char dir[4096], stem[1024];
  split_out(o.out, dir, sizeof dir, stem, sizeof stem);
  int exists = sd_is_file(o.out);
  if (exists && !o.resume && !o.force) {
    fprintf(stderr, "sdprune stats: %s exists; pass --resume to continue it or --force to replace it\n", o.out);
    return 2;
  }
  if (sd_is_dir(o.out)) {
    fprintf(stderr, "sdprune stats: --out %s is a folder; name the statistics file (e.g. %s/stats.h5)\n", o.out, o.out);
    return 2;
  }
  int threads = sd_cli_apply_threads(&o.common, "stats");
  if (sd_cli_open_model(&o.common, "stats", &m) != 0) goto done;
  int factor = 8, truncated = 0;
  if (sd_stats_latent_factor(m, &factor, &err) != 0 || sd_parts_tokenizer(m, &tok, &err) != 0) goto fail;
  if (sd_stats_plan(&s, &o.plan, tok, factor, &truncated, &err) != 0) goto fail;
  if (truncated)
    fprintf(stderr, "sdprune stats: warning: %d prompt%s longer than 77 CLIP tokens, truncated as CLIP does\n",
            truncated, truncated == 1 ? " is" : "s are");
  if (fill_settings(&s, &o, m, argc, argv, &err) != 0) goto fail;
  if (sd_mkdir_p(dir) != 0) {
    sd_fail(&err, "%s: cannot create output folder: %s", dir, strerror(errno));
    goto fail;
  }
  if (sd_stats_runner_init(&runner, m, o.hooks, s.n_steps, o.per_item, &err) != 0) {
    have_runner = 1;
    goto fail;
  }
  have_runner = 1;
  sd_model_release_source_pages(m);
  {
    int n = 0;
    const sd_stats_layer *layers = sd_stats_collector_layers(runner.collector, &n);
    if (sd_stats_layers_copy(layers, n, &s.layers, &err) != 0) goto fail;
    s.n_layers = n;
  }
  if (sd_stats_alloc_totals(&s, &err) != 0) goto fail;
  if (exists && o.resume && resume_from(&s, o.out, &err) != 0) goto fail;

  int64_t todo = 0, already = 0;
  for (int64_t i = 0; i < s.n_items; i++) {
    if (s.items[i].status == SD_ITEM_DONE) already++;
    else todo++;
  }
  if (!o.quiet)
    fprintf(stderr, "sdprune stats: %lld items (%lld already done), %d sets, %d layers, %s %d steps (recording %d "
                    "evaluations), %d threads, model %s\n",
            (long long)(todo + already), (long long)already, s.n_sets, s.n_layers, s.settings.sampler,
            s.settings.steps, s.n_steps, threads, m->hash);
  signal(SIGTERM, on_signal);
  signal(SIGINT, on_signal);
  progress prog = {.quiet = o.quiet, .tty = isatty(STDERR_FILENO), .n_items = (int)todo, .t_start = sd_now()};
  runner.progress = on_step;
  runner.progress_ctx = &prog;
  if (sd_stats_write(o.out, &s, &err) != 0) goto fail; /* the plan itself: resumable from the start */
  double unet_seconds = 0, write_seconds = 0, last_write = 0, since_write = 0;
  int done = 0, failed = 0, unwritten = 0;
  for (int64_t i = 0; i < s.n_items && !stop_signal; i++) {
    sd_stats_item *it = &s.items[i];
    if (it->status == SD_ITEM_DONE) continue;
    prog.item = done + failed + 1;
    double t0 = sd_now();
    sd_error ierr;
    if (sd_stats_run_item(&runner, &s, it, &ierr) != 0) {
      if (stop_signal) break;
      it->status = SD_ITEM_FAILED;
      free(it->error);
      it->error = sd_strdup(ierr.msg);
      failed++;
      fprintf(stderr, "%ssdprune stats: item %lld (%s row %d seed %llu) failed: %s\n", prog.printed ? "\n" : "",
              (long long)i, s.sets[it->set].name, it->row, (unsigned long long)it->seed, ierr.msg);
      prog.printed = 0;
    } else {
      if (o.per_item && write_item_record(dir, stem, &s, it, runner.collector, &err) != 0) goto fail;
      double sec = sd_now() - t0;
      sd_stats_add_item(&s, i, runner.collector, sec);
      unet_seconds += sec;
      since_write += sec;
      done++;
    }
    unwritten++;
    /* Rewriting the file costs time proportional to its size; keep that under ~5% of the work. */
    int due = o.checkpoint_every ? unwritten >= o.checkpoint_every : since_write >= 20.0 * last_write;
    if (due) {
      double w0 = sd_now();
      if (sd_stats_write(o.out, &s, &err) != 0) goto fail;
      last_write = sd_now() - w0;
      write_seconds += last_write;
      since_write = 0;
      unwritten = 0;
    }
    report_item(&prog, done + failed, (int)todo, &s, it, t0);
  }
  if (prog.printed) fprintf(stderr, "\n");
  {
    double w0 = sd_now();
    if (sd_stats_write(o.out, &s, &err) != 0) goto fail;
    write_seconds += sd_now() - w0;
  }
  double el = sd_now() - prog.t_start, hook = sd_stats_collector_seconds(runner.collector);
  struct stat st;
  long long bytes = stat(o.out, &st) == 0 ? (long long)st.st_size : -1;
  if (stop_signal) {
    fprintf(stderr, "sdprune stats: stopped by signal %d after %d items; %s is complete up to them (continue with "
                    "--resume)\n", (int)stop_signal, done, o.out);
    status = 1;
    goto done;
  }
  fprintf(stderr,
          "sdprune stats: %d items done, %d failed, %lld skipped (done before) in %.1f s (%.3f items/s); hooks and "
          "accumulation %.1f%% of item time, file writes %.1f s; wrote %s (%lld bytes)\n",
          done, failed, (long long)already, el, done / (el > 0 ? el : 1e-9),
          unet_seconds > 0 ? 100.0 * hook / unet_seconds : 0.0, write_seconds, o.out, bytes);
  status = failed ? 1 : 0;
  goto done;
fail:
  fprintf(stderr, "sdprune stats: %s\n", err.msg);
done:
  if (have_runner) sd_stats_runner_free(&runner);
  sd_tokenizer_free(tok);
  sd_stats_free(&s);
  sd_model_close(m);
  return status;
}
