/* sdprune mask: the pruning mask from one or more statistics files (merged exactly first) by one of the
 * scores of prune/scores.h, written to mask.h5 with its sources, parameters and provenance. Opens the
 * model the statistics were taken on (for wanda's ff.net.2 weights and the weight counts) and checks its
 * hash. Not the scores themselves (prune/scores.c) nor applying the mask (cmd_apply.c). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/files.h"
#include "core/provenance.h"
#include "core/sha256.h"
#include "io/store_view.h"
#include "prune/mask_build.h"
#include "prune/mask_io.h"
#include "prune/scores.h"
#include "stats/stats_io.h"

#define MAX_FILES 256
#define MAX_ADVERSARIAL 64

typedef struct {
  sd_cli_common common;
  const char *files[MAX_FILES];
  int n_files;
  const char *method, *out;
  const char *adversarial[MAX_ADVERSARIAL];
  sd_score_params params;
  int explain, force, quiet;
  int tau_given, select_given, branch_given, scope_given, wanda_given;
} mask_options;

static void usage(FILE *out) {
  fprintf(out,
          "usage: sdprune mask STATS.h5 [MORE.h5 ...] --method wanda|actdiff|sensitivity [options] --out mask.h5\n\n"
          "Chooses the FFN weights (ff.net.2) or whole neurons to prune from concept statistics (`sdprune stats`).\n"
          "Several statistics files are merged exactly first. The model they were taken on is opened (path and\n"
          "--unet override as recorded, or --model/--unet where the files moved) and must have the recorded hash.\n\n"
          "  --method wanda         ConceptPrune: per layer, step t < tau and output row i, input j is selected if\n"
          "                         |W2[i,j]|*a_t[j] (a = sqrt(sum x_hat^2) over all tokens) is among the row's\n"
          "                         floor(ratio*in) largest for the target set and larger than for the anchor set;\n"
          "                         the mask is the union over the steps (ties: the lower j)\n"
          "  --method actdiff       whole neurons with the largest positive standardised mean difference\n"
          "                         (mu_target - mu_anchor) / sqrt((var_target + var_anchor)/2 + 1e-12)\n"
          "  --method sensitivity   the same difference, adversarial sets against the anchor, on statistics\n"
          "                         taken on the erased model (a training-free reading of Yang et al. 2024)\n\n"
          "  --ratio R              (0, 1]: wanda share of each row's inputs; else share of neurons (default 0.01)\n"
          "  --tau N                the first N UNet evaluations (default: wanda 10, else all recorded)\n"
          "  --select-ratio R       wanda: keep weights selected in more than R*tau steps (default 0: the union)\n"
          "  --branch B             actdiff/sensitivity: cond | uncond | both CFG branches (default cond)\n"
          "  --scope S              actdiff/sensitivity: layer (top share of each layer, default) | global\n"
          "  --adversarial NAME     sensitivity: pool only these sets (repeatable; default every adversarial set)\n"
          "  --with-wanda           sensitivity: add the wanda weights of target vs anchor\n"
          "  --wanda-ratio R, --wanda-tau N, --wanda-select-ratio R   those wanda parameters (0.01, 10, 0)\n"
          "  --out FILE.h5          the mask file\n"
          "  --force                replace an existing --out\n"
          "  --explain              print a table per layer (width, shape, pruned weights and neurons, sparsity)\n"
          "  --quiet                no summary line\n");
  sd_cli_common_help(out, 1);
}

static int parse_fraction(const char *opt, const char *v, int open_low, double *out) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  int ok = !errno && end != v && !*end && (open_low ? d > 0 && d <= 1 : d >= 0 && d < 1);
  if (!ok) {
    fprintf(stderr, "sdprune mask: %s must be a number in %s, got '%s'\n", opt, open_low ? "(0, 1]" : "[0, 1)", v);
    return -1;
  }
  *out = d;
  return 0;
}

static int parse_args(mask_options *o, int argc, char **argv) {
  sd_score_params *p = &o->params;
  for (int i = 1; i < argc; i++) {
    int r = sd_cli_common_option(&o->common, "mask", argc, argv, &i);
    if (r < 0)
      return 2;
    if (r > 0)
      continue;
    const char *a = argv[i], *v = NULL;
    long n;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return -1;
    }
    if (a[0] != '-' || !a[1]) {
      if (o->n_files == MAX_FILES) {
        fprintf(stderr, "sdprune mask: at most %d statistics files\n", MAX_FILES);
        return 2;
      }
      o->files[o->n_files++] = a;
      continue;
    }
    int *flag = !strcmp(a, "--explain")      ? &o->explain
                : !strcmp(a, "--force")      ? &o->force
                : !strcmp(a, "--quiet")      ? &o->quiet
                : !strcmp(a, "--with-wanda") ? &p->with_wanda
                                             : NULL;
    if (flag) {
      *flag = 1;
      continue;
    }
    if (!(v = sd_cli_value("mask", argc, argv, &i)))
      return 2;
    if (!strcmp(a, "--method"))
      o->method = v;
    else if (!strcmp(a, "--out"))
      o->out = v;
    else if (!strcmp(a, "--ratio")) {
      if (parse_fraction(a, v, 1, &p->ratio))
        return 2;
    } else if (!strcmp(a, "--wanda-ratio")) {
      if (parse_fraction(a, v, 1, &p->wanda_ratio))
        return 2;
      o->wanda_given = 1;
    } else if (!strcmp(a, "--select-ratio")) {
      if (parse_fraction(a, v, 0, &p->select_ratio))
        return 2;
      o->select_given = 1;
    } else if (!strcmp(a, "--wanda-select-ratio")) {
      if (parse_fraction(a, v, 0, &p->wanda_select_ratio))
        return 2;
      o->wanda_given = 1;
    } else if (!strcmp(a, "--tau") || !strcmp(a, "--wanda-tau")) {
      if (sd_cli_int("mask", a, v, 1, 65535, &n))
        return 2;
      if (!strcmp(a, "--tau"))
        p->tau = (int)n, o->tau_given = 1;
      else
        p->wanda_tau = (int)n, o->wanda_given = 1;
    } else if (!strcmp(a, "--branch")) {
      if (!strcmp(v, "cond"))
        p->branch = SD_BRANCH_COND;
      else if (!strcmp(v, "uncond"))
        p->branch = SD_BRANCH_UNCOND;
      else if (!strcmp(v, "both"))
        p->branch = SD_BRANCH_BOTH;
      else {
        fprintf(stderr, "sdprune mask: --branch must be cond, uncond or both, got '%s'\n", v);
        return 2;
      }
      o->branch_given = 1;
    } else if (!strcmp(a, "--scope")) {
      if (strcmp(v, "layer") && strcmp(v, "global")) {
        fprintf(stderr, "sdprune mask: --scope must be layer or global, got '%s'\n", v);
        return 2;
      }
      p->scope_global = !strcmp(v, "global");
      o->scope_given = 1;
    } else if (!strcmp(a, "--adversarial")) {
      if (p->n_adversarial == MAX_ADVERSARIAL) {
        fprintf(stderr, "sdprune mask: at most %d --adversarial sets\n", MAX_ADVERSARIAL);
        return 2;
      }
      o->adversarial[p->n_adversarial++] = v;
      p->adversarial = o->adversarial;
    } else {
      fprintf(stderr, "sdprune mask: unknown option '%s' (see --help)\n", a);
      return 2;
    }
  }
  if (!o->n_files || !o->method || !o->out) {
    fprintf(stderr, "sdprune mask: statistics files, --method and --out are required (see --help)\n");
    return 2;
  }
  int wanda = !strcmp(o->method, "wanda"), sens = !strcmp(o->method, "sensitivity");
  if (!wanda && !sens && strcmp(o->method, "actdiff")) {
    fprintf(stderr, "sdprune mask: unknown --method '%s' (wanda, actdiff, sensitivity)\n", o->method);
    return 2;
  }
  const char *misplaced =
      wanda && (o->branch_given || o->scope_given) ? "--branch and --scope apply to actdiff and sensitivity"
      : !wanda && o->select_given ? "--select-ratio applies to wanda (sensitivity: --wanda-select-ratio)"
      : !sens && (p->n_adversarial || p->with_wanda || o->wanda_given)
          ? "--adversarial, --with-wanda and --wanda-* apply to sensitivity"
      : sens && o->wanda_given && !p->with_wanda ? "--wanda-* need --with-wanda"
                                                 : NULL;
  if (misplaced) {
    fprintf(stderr, "sdprune mask: %s\n", misplaced);
    return 2;
  }
  return 0;
}

/* "a.h5" or "a.h5 + 2 more" for messages. */
static void files_label(const mask_options *o, char *buf, size_t size) {
  if (o->n_files == 1)
    snprintf(buf, size, "%s", o->files[0]);
  else
    snprintf(buf, size, "%s + %d more", o->files[0], o->n_files - 1);
}

static int read_statistics(const mask_options *o, sd_stats *s, sd_error *err) {
  if (sd_stats_read(o->files[0], s, 1, err) != 0)
    return -1;
  for (int k = 1; k < o->n_files; k++) {
    sd_stats more;
    if (sd_stats_read(o->files[k], &more, 1, err) != 0)
      return -1;
    int rc = sd_stats_merge(s, &more, o->files[k], err);
    sd_stats_free(&more);
    if (rc != 0)
      return -1;
  }
  return 0;
}

static void print_explain(const sd_mask *m) {
  int name_w = 5;
  for (int i = 0; i < m->n_layers; i++) {
    int len = (int)strlen(m->layers[i].layer);
    if (len > name_w)
      name_w = len;
  }
  printf("%-*s  %6s  %12s  %10s  %8s  %8s\n", name_w, "layer", "width", "rows x cols", "pruned", "neurons", "sparsity");
  int64_t total = 0, pruned = 0, neurons = 0, width = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const sd_mask_layer *l = &m->layers[i];
    int64_t size = (int64_t)l->rows * l->cols, p = sd_mask_layer_pruned(l);
    char shape[32];
    snprintf(shape, sizeof shape, "%d x %d", l->rows, l->cols);
    printf("%-*s  %6d  %12s  %10lld  %8d  %7.3f%%\n", name_w, l->layer, l->cols, shape, (long long)p, l->n_neurons,
           size ? 100.0 * (double)p / (double)size : 0.0);
    total += size, pruned += p, neurons += l->n_neurons, width += l->cols;
  }
  printf("%-*s  %6lld  %12s  %10lld  %8lld  %7.3f%%\n", name_w, "total", (long long)width, "", (long long)pruned,
         (long long)neurons, total ? 100.0 * (double)pruned / (double)total : 0.0);
}

int cmd_mask(int argc, char **argv) {
  mask_options o = {0};
  sd_score_params_default(&o.params);
  int rc = parse_args(&o, argc, argv);
  if (rc)
    return rc < 0 ? 0 : rc;
  if (sd_is_dir(o.out)) {
    fprintf(stderr, "sdprune mask: --out %s is a folder; name the mask file (e.g. %s/mask.h5)\n", o.out, o.out);
    return 2;
  }
  if (sd_is_file(o.out) && !o.force) {
    fprintf(stderr, "sdprune mask: %s exists; pass --force to replace it\n", o.out);
    return 2;
  }
  double t0 = sd_now();
  int status = 1;
  char label[1200];
  files_label(&o, label, sizeof label);
  sd_error err;
  sd_stats s;
  sd_mask m;
  sd_model *model = NULL;
  memset(&s, 0, sizeof s);
  memset(&m, 0, sizeof m);
  sd_cli_apply_threads(&o.common, "mask");

  if (read_statistics(&o, &s, &err) != 0)
    goto fail;
  if (sd_score_check(o.method, &s, &o.params, &err) != 0) {
    sd_fail_prefix(&err, "%s", label);
    goto fail;
  }

  /* The model of the statistics, where it was or where --model/--unet say it is now. */
  sd_cli_common common = o.common;
  if (!common.model.path)
    common.model.path = s.settings.model;
  if (!common.model.unet_path)
    common.model.unet_path = s.settings.unet_override;
  if (!common.model.text_encoder_path)
    common.model.text_encoder_path = s.settings.text_encoder_override;
  const char *recorded[] = {common.model.path, common.model.unet_path, common.model.text_encoder_path};
  const char *given[] = {o.common.model.path, o.common.model.unet_path, o.common.model.text_encoder_path};
  const char *opt[] = {"--model", "--unet", "--text-encoder"};
  for (int k = 0; k < 3; k++)
    if (recorded[k] && !given[k] && !sd_is_file(recorded[k]) && !sd_is_dir(recorded[k])) {
      sd_fail(&err, "%s: the statistics were taken with %s %s, which is not there; give %s where it is now", label,
              opt[k], recorded[k], opt[k]);
      goto fail;
    }
  if (!common.model.path) {
    sd_fail(&err, "%s: no model recorded in the statistics; give --model", label);
    goto fail;
  }
  if (sd_cli_open_model(&common, "mask", &model) != 0)
    goto done;
  sd_mask_build_info info;
  if (sd_mask_build(o.method, &s, model, &o.params, &m, &info, &err) != 0) {
    sd_fail_prefix(&err, "%s", label);
    goto fail;
  }
  int64_t ff_total = info.ff_weights, unet_total = info.unet_weights;
  double t_score = info.score_seconds;

  /* Sources and provenance. */
  char when[32];
  m.n_sources = o.n_files;
  m.source_files = sd_calloc((size_t)o.n_files, sizeof(char *), &err);
  m.source_sha256 = sd_calloc((size_t)o.n_files, sizeof(char *), &err);
  if (!m.source_files || !m.source_sha256)
    goto fail;
  for (int k = 0; k < o.n_files; k++) {
    uint8_t digest[32];
    char hex[65];
    if (sd_sha256_file(o.files[k], digest, &err) != 0)
      goto fail;
    sd_sha256_hex(digest, hex);
    m.source_files[k] = sd_strdup(o.files[k]);
    m.source_sha256[k] = sd_strdup(hex);
  }
  m.sdprune_version = sd_strdup(sd_version());
  m.git_revision = sd_strdup(sd_git_revision());
  m.command_line = sd_command_line(argc, argv);
  m.created_utc = sd_strdup(sd_utc_now(when, sizeof when));
  if (sd_mask_write(o.out, &m, &err) != 0)
    goto fail;

  int64_t pruned = 0, neurons = 0;
  for (int i = 0; i < m.n_layers; i++) {
    pruned += sd_mask_layer_pruned(&m.layers[i]);
    neurons += m.layers[i].n_neurons;
  }
  if (o.explain)
    print_explain(&m);
  if (!o.quiet)
    fprintf(stderr,
            "sdprune mask: %s on %s: %d layers, %lld weights pruned (%lld whole neurons), sparsity %.4f%% of "
            "ff.net.2 weights, %.4f%% of UNet weights; scores %.2f s, total %.2f s; wrote %s\n",
            o.method, label, m.n_layers, (long long)pruned, (long long)neurons,
            ff_total ? 100.0 * (double)pruned / (double)ff_total : 0.0,
            unet_total ? 100.0 * (double)pruned / (double)unet_total : 0.0, t_score, sd_now() - t0, o.out);
  status = 0;
  goto done;
fail:
  fprintf(stderr, "sdprune mask: %s\n", err.msg);
done:
  sd_mask_free(&m);
  sd_stats_free(&s);
  sd_model_close(model);
  return status;
}
