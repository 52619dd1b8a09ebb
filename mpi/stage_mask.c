/* The mask and apply stages of sdprune-mpi (stage_mask.h): what `sdprune mask DIR/stats.h5` and
 * `sdprune apply` do, in one process at rank 0, with the job file's mask section. Not the scores
 * (prune/scores.c), the mask file (prune/mask_io.c) or the checkpoint writer (prune/apply.c). */
#include "mpi/stage_mask.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/files.h"
#include "core/provenance.h"
#include "core/sha256.h"
#include "prune/apply.h"
#include "prune/mask_build.h"
#include "prune/mask_io.h"
#include "stats/stats_io.h"
#ifdef SDPRUNE_HAVE_JOB
#include "io/job.h"
#endif

#define CMD "sdprune-mpi"

int sdm_has_mask_stage(const sdm_options *o) {
#ifdef SDPRUNE_HAVE_JOB
  const sd_job *job = o->job;
  return job && job->mask_method;
#else
  (void)o;
  return 0;
#endif
}

#ifdef SDPRUNE_HAVE_JOB
/* The job's mask section as score parameters (the job already checked the words and ranges). */
static void job_params(const sd_job *job, sd_score_params *p) {
  sd_score_params_default(p);
  p->ratio = job->ratio;
  p->tau = job->tau;
  p->select_ratio = job->select_ratio;
  p->branch = !job->branch || !strcmp(job->branch, "cond") ? SD_BRANCH_COND
              : !strcmp(job->branch, "uncond")             ? SD_BRANCH_UNCOND
                                                           : SD_BRANCH_BOTH;
  p->scope_global = job->scope && !strcmp(job->scope, "global");
  p->adversarial = (const char *const *)job->adversarial;
  p->n_adversarial = job->n_adversarial;
  p->with_wanda = job->with_wanda;
  p->wanda_ratio = job->wanda_ratio;
  p->wanda_tau = job->wanda_tau;
  p->wanda_select_ratio = job->wanda_select_ratio;
}

/* DIR/pruned/ for a diffusers folder, else DIR/pruned.<ext> of the file that apply patches (the
 * checkpoint, or the --unet override), .safetensors when it has no extension. */
static void pruned_path(const char *dir, const sd_model *m, const char *unet_override, char *out, size_t n) {
  const char *src = unet_override ? unet_override : m->path;
  if (!unet_override && !strcmp(m->layout, "diffusers")) {
    snprintf(out, n, "%s/pruned", dir);
    return;
  }
  const char *base = strrchr(src, '/');
  base = base ? base + 1 : src;
  const char *dot = strrchr(base, '.');
  snprintf(out, n, "%s/pruned%s", dir, dot && dot != base && dot[1] ? dot : ".safetensors");
}

static int sha256_hex(const char *path, char hex[65], sd_error *err) {
  uint8_t digest[32];
  if (sd_sha256_file(path, digest, err) != 0)
    return -1;
  sd_sha256_hex(digest, hex);
  return 0;
}

int sdm_mask_stage(const sdm_options *o, int argc, char **argv) {
  const sd_job *job = o->job;
  double t0 = sd_now();
  char stats_path[4300], mask_path[4300], out[4300], hex[65];
  snprintf(stats_path, sizeof stats_path, "%s/stats.h5", o->out);
  snprintf(mask_path, sizeof mask_path, "%s/mask.h5", o->out);
  sd_error err;
  sd_stats s;
  sd_mask m;
  sd_model *model = NULL;
  sd_score_params p;
  int status = 1;
  memset(&s, 0, sizeof s);
  memset(&m, 0, sizeof m);
  job_params(job, &p);
  signal(SIGXFSZ, SIG_IGN); /* a file size limit makes a write fail (temporaries removed), not kill the rank */
  sd_cli_apply_threads(&o->common, "sdprune-mpi");

  if (sd_stats_read(stats_path, &s, 1, &err) != 0)
    goto fail;
  if (sd_score_check(job->mask_method, &s, &p, &err) != 0) {
    sd_fail_prefix(&err, "%s", stats_path);
    goto fail;
  }
  /* opened directly, never through the weight cache: apply needs the UNet view in the source files;
   * sd_mask_build checks that it is the model of the statistics (hash) */
  if (sd_model_open(&o->common.model, &model, &err) != 0)
    goto fail;
  sd_mask_build_info info;
  if (sd_mask_build(job->mask_method, &s, model, &p, &m, &info, &err) != 0) {
    sd_fail_prefix(&err, "%s", stats_path);
    goto fail;
  }
  char when[32];
  m.n_sources = 1;
  m.source_files = sd_calloc(1, sizeof(char *), &err);
  m.source_sha256 = sd_calloc(1, sizeof(char *), &err);
  if (!m.source_files || !m.source_sha256 || sha256_hex(stats_path, hex, &err) != 0)
    goto fail;
  m.source_files[0] = sd_strdup(stats_path);
  m.source_sha256[0] = sd_strdup(hex);
  m.sdprune_version = sd_strdup(sd_version());
  m.git_revision = sd_strdup(sd_git_revision());
  m.command_line = sd_command_line(argc, argv);
  m.created_utc = sd_strdup(sd_utc_now(when, sizeof when));
  if (sd_mask_write(mask_path, &m, &err) != 0)
    goto fail;
  int64_t pruned = 0, neurons = 0;
  for (int i = 0; i < m.n_layers; i++) {
    pruned += sd_mask_layer_pruned(&m.layers[i]);
    neurons += m.layers[i].n_neurons;
  }
  if (!o->quiet)
    fprintf(stderr,
            CMD " mask: %s on %s: %d layers, %lld weights pruned (%lld whole neurons), sparsity %.4f%% of ff.net.2 "
                "weights, %.4f%% of UNet weights; scores %.2f s; wrote %s\n",
            job->mask_method, stats_path, m.n_layers, (long long)pruned, (long long)neurons,
            info.ff_weights ? 100.0 * (double)pruned / (double)info.ff_weights : 0.0,
            info.unet_weights ? 100.0 * (double)pruned / (double)info.unet_weights : 0.0, info.score_seconds,
            mask_path);

  double t1 = sd_now();
  if (sha256_hex(mask_path, hex, &err) != 0)
    goto fail;
  pruned_path(o->out, model, o->common.model.unet_path, out, sizeof out);
  sd_apply_options ao = {.out = out,
                         .force = 1, /* derived outputs: a rerun replaces them */
                         .unet_override = o->common.model.unet_path != NULL,
                         .mask_path = mask_path,
                         .mask_sha256 = hex,
                         .command_line = m.command_line};
  sd_apply_result res;
  if (sd_apply_mask_checkpoint(model, &m, &ao, &res, &err) != 0)
    goto fail;
  if (res.note[0])
    fprintf(stderr, CMD " apply: note: %s\n", res.note);
  if (!o->quiet)
    fprintf(stderr,
            CMD " apply: pruned %lld of %lld ff.net.2 weights (%.4g%%) in %d layers; wrote %s (%s, %.1f MB) and %s in "
                "%.1f s (mask and apply %.1f s)\n",
            (long long)res.pruned, (long long)res.total,
            res.total ? 100.0 * (double)res.pruned / (double)res.total : 0.0, res.n_layers, res.out_path, res.format,
            (double)res.bytes / 1e6, res.restore_path, sd_now() - t1, sd_now() - t0);
  status = 0;
  goto done;
fail:
  fprintf(stderr, CMD ": mask stage: %s\n", err.msg);
done:
  sd_mask_free(&m);
  sd_stats_free(&s);
  sd_model_close(model);
  return status;
}
#else
int sdm_mask_stage(const sdm_options *o, int argc, char **argv) {
  (void)o;
  (void)argc;
  (void)argv;
  fprintf(stderr, CMD ": the mask stage needs job files (src/io/job.c), which this build lacks\n");
  return 1;
}
#endif
