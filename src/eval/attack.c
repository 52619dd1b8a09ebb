/* The attack evaluation's engine: loads each model once, runs an item (txt2img, the PNG, the judge, the
 * re-activation of the mask's neurons) and fills its result (attack.h). The plan is attack_plan.c. */
#include "eval/attack.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/files.h"
#include "core/provenance.h"
#include "core/sha256.h"
#include "eval/clip_model.h"
#include "io/png_write.h"
#include "model/parts.h"
#include "model/weight_cache.h"
#include "prune/apply.h"
#include "prune/mask_io.h"
#include "sample/sampler.h"
#include "sample/txt2img.h"
#include "stats/concept_stats.h"
#include "stats/stats_io.h"
#include "stats/stats_run.h"

void sd_attack_result_clear(sd_attack_result *r) {
  free(r->probs);
  free(r->react_steps);
  free(r->error);
  memset(r, 0, sizeof *r);
}

/* ---- re-activation reference ---------------------------------------------------------------------- */

/* One mask layer's concept neurons with the reference means, [n_ref_steps, n] each. */
typedef struct {
  char *layer;
  int n;
  int32_t *cols;
  double *mu_target, *mu_anchor;
  int collector_layer; /* index among the collector's layers for the loaded UNet, -1 if absent */
} concept_layer;

typedef struct {
  int n_layers;
  concept_layer *layers;
  int n_ref_steps;
  float *ref_timesteps;
  int *step_of_eval; /* [evals]: reference step matched to each evaluation, -1 none */
} reactivation_ref;

static int cmp_i32(const void *a, const void *b) {
  int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
  return (x > y) - (x < y);
}

/* Columns of a mask layer with any pruned weight, sorted, unique. */
static int concept_columns(const sd_mask_layer *ml, int32_t **cols, int *n, sd_error *err) {
  int64_t cap = ml->n_neurons + ml->n_weights;
  int32_t *c = sd_malloc(sizeof *c * (size_t)(cap ? cap : 1), err);
  if (!c)
    return -1;
  int64_t k = 0;
  for (int i = 0; i < ml->n_neurons; i++)
    c[k++] = ml->neurons[i];
  for (int64_t i = 0; i < ml->n_weights; i++)
    c[k++] = (int32_t)(ml->weights[i] % ml->cols);
  qsort(c, (size_t)k, sizeof *c, cmp_i32);
  int64_t u = 0;
  for (int64_t i = 0; i < k; i++)
    if (u == 0 || c[u - 1] != c[i])
      c[u++] = c[i];
  *cols = c;
  *n = (int)u;
  return 0;
}

static int find_set_role(const sd_stats *s, const char *role) {
  for (int k = 0; k < s->n_sets; k++)
    if (!strcmp(s->sets[k].role, role))
      return k;
  return -1;
}

static int find_layer(const sd_stats *s, const char *name) {
  for (int l = 0; l < s->n_layers; l++)
    if (!strcmp(s->layers[l].name, name))
      return l;
  return -1;
}

/* mu[t, j] = sum / count over the cond branch (branch 1) of the set's totals. */
static void set_means(const sd_stats *s, const sd_stats_acc *a, int width, const int32_t *cols, int n, double *mu) {
  for (int t = 0; t < s->n_steps; t++) {
    int64_t count = a->count[t * SD_STATS_BRANCHES + 1];
    const int64_t *sum = a->q[SD_Q_SUM] + ((size_t)t * SD_STATS_BRANCHES + 1) * width;
    for (int j = 0; j < n; j++)
      mu[(size_t)t * n + j] = count > 0 ? sd_stats_fix_to_double(sum[cols[j]]) / (double)count : NAN;
  }
}

static void reference_free(reactivation_ref *r) {
  for (int l = 0; l < r->n_layers; l++) {
    free(r->layers[l].layer);
    free(r->layers[l].cols);
    free(r->layers[l].mu_target);
    free(r->layers[l].mu_anchor);
  }
  free(r->layers);
  free(r->ref_timesteps);
  free(r->step_of_eval);
  memset(r, 0, sizeof *r);
}

static int reference_load(const char *stats_path, const char *mask_path, reactivation_ref *r, sd_error *err) {
  memset(r, 0, sizeof *r);
  sd_stats s;
  sd_mask mask = {0};
  int rc = -1;
  if (sd_stats_read(stats_path, &s, 1, err) != 0)
    return -1;
  if (sd_mask_read(mask_path, &mask, err) != 0)
    goto done;
  int kt = find_set_role(&s, "target"), ka = find_set_role(&s, "anchor");
  if (kt < 0 || ka < 0) {
    sd_fail(err, "%s: re-activation needs a target and an anchor set in the reference statistics", stats_path);
    goto done;
  }
  if (!(r->layers = sd_calloc((size_t)mask.n_layers + 1, sizeof *r->layers, err)))
    goto done;
  r->n_ref_steps = s.n_steps;
  if (!(r->ref_timesteps = sd_malloc(sizeof(float) * (size_t)(s.n_steps ? s.n_steps : 1), err)))
    goto done;
  memcpy(r->ref_timesteps, s.timesteps, sizeof(float) * (size_t)s.n_steps);
  for (int l = 0; l < mask.n_layers; l++) {
    const sd_mask_layer *ml = &mask.layers[l];
    int sl = find_layer(&s, ml->layer);
    if (sl < 0) {
      sd_fail(err, "%s: mask layer %s is not in the reference statistics %s", mask_path, ml->layer, stats_path);
      goto done;
    }
    concept_layer *cl = &r->layers[r->n_layers++];
    cl->collector_layer = -1;
    if (!(cl->layer = sd_strdup(ml->layer)) || concept_columns(ml, &cl->cols, &cl->n, err) != 0)
      goto done;
    size_t cells = (size_t)s.n_steps * (size_t)(cl->n ? cl->n : 1);
    if (!(cl->mu_target = sd_malloc(sizeof(double) * cells, err)) ||
        !(cl->mu_anchor = sd_malloc(sizeof(double) * cells, err)))
      goto done;
    int width = s.layers[sl].width;
    set_means(&s, &s.sets[kt].layers[sl], width, cl->cols, cl->n, cl->mu_target);
    set_means(&s, &s.sets[ka].layers[sl], width, cl->cols, cl->n, cl->mu_anchor);
  }
  rc = 0;
done:
  sd_stats_free(&s);
  sd_mask_free(&mask);
  if (rc)
    reference_free(r);
  return rc;
}

/* Each evaluation's nearest reference timestep, when within half the reference's step spacing. */
static int reference_match_steps(reactivation_ref *r, const float *timesteps, int evals, sd_error *err) {
  free(r->step_of_eval);
  if (!(r->step_of_eval = sd_malloc(sizeof(int) * (size_t)evals, err)))
    return -1;
  double spacing = 1000.0;
  for (int t = 1; t < r->n_ref_steps; t++) {
    double d = fabs((double)r->ref_timesteps[t] - r->ref_timesteps[t - 1]);
    if (d > 0 && d < spacing)
      spacing = d;
  }
  for (int e = 0; e < evals; e++) {
    int best = -1;
    double bd = INFINITY;
    for (int t = 0; t < r->n_ref_steps; t++) {
      double d = fabs((double)timesteps[e] - r->ref_timesteps[t]);
      if (d < bd)
        bd = d, best = t;
    }
    r->step_of_eval[e] = best >= 0 && bd <= spacing / 2 ? best : -1;
  }
  return 0;
}

/* ---- the runner ----------------------------------------------------------------------------------- */

struct sd_attack_runner {
  const sd_attack_plan *plan;
  const char *weights_cache;
  int current; /* loaded model index, -1 none */
  sd_model *model;
  sd_unet unet;
  sd_clip_text text;
  sd_vae vae;
  sd_tokenizer *tok;
  int have_unet, have_text, have_vae;
  sd_mask mask;
  sd_mask_unet_copies copies;
  sd_stats_collector *collector;
  int latent_factor;
  char (*hashes)[16]; /* [n_models] */
  char mask_sha256[65];
  /* evaluations */
  int evals;
  float *timesteps;
  /* detector */
  sd_clip_model *clip;
  float *label_embeds; /* [n_labels, SD_CLIP_MAX_PROJ] */
  /* re-activation */
  int reactivation;
  reactivation_ref ref;
};

static void unload(sd_attack_runner *r) {
  if (r->have_vae)
    sd_vae_free(&r->vae);
  if (r->have_text)
    sd_clip_text_free(&r->text);
  if (r->have_unet)
    sd_unet_free(&r->unet);
  sd_mask_unet_copies_free(&r->copies); /* after the UNet that points at them */
  sd_mask_free(&r->mask);
  memset(&r->mask, 0, sizeof r->mask);
  sd_stats_collector_free(r->collector);
  r->collector = NULL;
  sd_tokenizer_free(r->tok);
  r->tok = NULL;
  sd_model_close(r->model);
  r->model = NULL;
  r->have_unet = r->have_text = r->have_vae = 0;
  r->current = -1;
}

/* Binds the concept layers to the collector's layers of the UNet just loaded. */
static int bind_concept_layers(sd_attack_runner *r, sd_error *err) {
  int n = 0;
  const sd_stats_layer *layers = sd_stats_collector_layers(r->collector, &n);
  for (int l = 0; l < r->ref.n_layers; l++) {
    concept_layer *cl = &r->ref.layers[l];
    cl->collector_layer = -1;
    for (int k = 0; k < n; k++)
      if (!strcmp(layers[k].name, cl->layer))
        cl->collector_layer = k;
    if (cl->collector_layer < 0)
      return sd_fail(err, "%s: mask layer %s is not a layer of model %s", r->plan->reactivation_mask, cl->layer,
                     r->plan->models[r->current].name);
  }
  return 0;
}

static int load_model(sd_attack_runner *r, int m, sd_error *err) {
  unload(r);
  const sd_attack_plan *p = r->plan;
  const sd_attack_model *am = &p->models[m];
  sd_model_options mo = {.path = am->path,
                         .unet_path = am->unet,
                         .text_encoder_path = am->text_encoder,
                         .config_path = p->config,
                         .tokenizer_dir = p->tokenizer,
                         .prediction = p->prediction};
  r->current = m;
  if (sd_model_open(&mo, &r->model, err) != 0)
    goto fail;
  if (r->weights_cache) {
    char note[1200] = "";
    if (sd_weight_cache_apply(r->model, r->weights_cache, 1800, note, sizeof note) != 0)
      fprintf(stderr, "sdprune attack: warning: %s\n", note);
  }
  sd_unet_hooks hooks = {0};
  if (r->reactivation) {
    if (sd_stats_collector_new("ff", r->evals, 1, &r->collector, err) != 0)
      goto fail;
    hooks = sd_stats_collector_hooks(r->collector);
  }
  if (sd_parts_unet(r->model, r->reactivation ? &hooks : NULL, &r->unet, err) != 0)
    goto fail;
  r->have_unet = 1;
  if (r->reactivation &&
      (sd_stats_collector_bind(r->collector, &r->unet, err) != 0 || bind_concept_layers(r, err) != 0))
    goto fail;
  r->mask_sha256[0] = 0;
  if (am->mask) {
    uint8_t digest[32];
    if (sd_mask_read(am->mask, &r->mask, err) != 0 || sd_sha256_file(am->mask, digest, err) != 0)
      goto fail;
    sd_sha256_hex(digest, r->mask_sha256);
    if (sd_mask_apply_unet(&r->unet, &r->mask, &r->copies, err) != 0) {
      sd_fail_prefix(err, "%s", am->mask);
      goto fail;
    }
  }
  if (sd_parts_text(r->model, &r->text, err) != 0)
    goto fail;
  r->have_text = 1;
  if (sd_parts_vae(r->model, &r->vae, err) != 0)
    goto fail;
  r->have_vae = 1;
  if (sd_parts_tokenizer(r->model, &r->tok, err) != 0)
    goto fail;
  r->latent_factor = 1 << (r->vae.cfg.n_levels - 1);
  sd_model_release_source_pages(r->model);
  if (!strcmp(r->model->layout, "single-file") && !am->unet) {
    if (sd_a1111_autov2_hash(r->model->path, r->hashes[m], err) != 0)
      goto fail;
  } else {
    snprintf(r->hashes[m], sizeof r->hashes[m], "%.10s", r->model->hash);
  }
  return 0;
fail:
  sd_fail_prefix(err, "model %s", am->name);
  unload(r);
  return -1;
}

static int encode_labels(sd_attack_runner *r, sd_error *err) {
  const sd_attack_plan *p = r->plan;
  if (sd_clip_model_load(p->clip, &r->clip, err) != 0)
    return -1;
  if (!(r->label_embeds = sd_calloc((size_t)p->n_labels * SD_CLIP_MAX_PROJ, sizeof(float), err)))
    return -1;
  for (int l = 0; l < p->n_labels; l++)
    if (sd_clip_encode_text(r->clip, p->labels[l], r->label_embeds + (size_t)l * SD_CLIP_MAX_PROJ, err) != 0)
      return sd_fail_prefix(err, "%s: label '%s'", p->clip, p->labels[l]);
  return 0;
}

int sd_attack_runner_open(const sd_attack_plan *p, const char *weights_cache, sd_attack_runner **out, sd_error *err) {
  sd_attack_runner *r = sd_calloc(1, sizeof *r, err);
  if (!r)
    return -1;
  r->plan = p;
  r->weights_cache = weights_cache;
  r->current = -1;
  r->reactivation = p->reference_stats != NULL;
  sd_sampler_config sc = {.name = p->sampler, .steps = p->steps, .eta = p->eta};
  if (!(r->hashes = sd_calloc((size_t)p->n_models, sizeof *r->hashes, err)) ||
      (r->evals = sd_sampler_evaluations(&sc, err)) < 0 ||
      !(r->timesteps = sd_malloc(sizeof(float) * (size_t)r->evals, err)) ||
      sd_sampler_timesteps(&sc, r->timesteps, err) != 0)
    goto fail;
  if (p->clip && encode_labels(r, err) != 0)
    goto fail;
  if (r->reactivation && (reference_load(p->reference_stats, p->reactivation_mask, &r->ref, err) != 0 ||
                          reference_match_steps(&r->ref, r->timesteps, r->evals, err) != 0))
    goto fail;
  *out = r;
  return 0;
fail:
  sd_attack_runner_close(r);
  return -1;
}

int sd_attack_runner_evals(const sd_attack_runner *r) {
  return r->evals;
}

const char *sd_attack_runner_model_hash(const sd_attack_runner *r, int m) {
  return r->hashes[m];
}

void sd_attack_runner_close(sd_attack_runner *r) {
  if (!r)
    return;
  unload(r);
  sd_clip_model_free(r->clip);
  free(r->label_embeds);
  reference_free(&r->ref);
  free(r->hashes);
  free(r->timesteps);
  free(r);
}

/* The collector signals "all evaluations recorded" with 1 at the last one; the image must still finish. */
static int after_eval(void *ctx, int eval, sd_error *err) {
  return sd_stats_collector_end_step(ctx, err) < 0 ? -1 : 0;
}

static void measure_reactivation(sd_attack_runner *r, sd_attack_result *res) {
  int n_layers = 0;
  const sd_stats_layer *layers = sd_stats_collector_layers(r->collector, &n_layers);
  double num_all = 0, den_all = 0;
  for (int e = 0; e < r->evals; e++) {
    int t = r->ref.step_of_eval[e];
    double num = 0, den = 0;
    for (int l = 0; t >= 0 && l < r->ref.n_layers; l++) {
      const concept_layer *cl = &r->ref.layers[l];
      const float *mean = sd_stats_collector_item_mean(r->collector, cl->collector_layer);
      int w = layers[cl->collector_layer].width;
      for (int j = 0; j < cl->n; j++) {
        double mt = cl->mu_target[(size_t)t * cl->n + j], ma = cl->mu_anchor[(size_t)t * cl->n + j];
        if (!isfinite(mt) || !isfinite(ma))
          continue;
        num += (double)mean[(size_t)e * w + cl->cols[j]] - ma;
        den += mt - ma;
      }
    }
    res->react_steps[e] = t >= 0 && den != 0 ? (float)(num / den) : NAN;
    num_all += num;
    den_all += den;
  }
  res->reactivation = den_all != 0 ? num_all / den_all : NAN;
}

static const char *a1111_sampler_name(const char *s) {
  return !strcmp(s, "ddim") ? "DDIM" : !strcmp(s, "pndm") ? "PLMS" : !strcmp(s, "lms") ? "LMS" : "Euler";
}

static char *provenance_json(sd_attack_runner *r, int64_t i, const sd_txt2img_params *pr) {
  const sd_attack_plan *p = r->plan;
  const sd_attack_item *it = &p->items[i];
  const sd_attack_model *am = &p->models[it->model];
  const sd_prompt_set *ps = p->sets[it->set].prompts;
  json_t *j = json_object();
  char seed[32];
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)pr->seed);
  json_object_set_new(j, "sdprune_version", json_string(sd_version()));
  json_object_set_new(j, "git_revision", json_string(sd_git_revision()));
  json_object_set_new(j, "job", json_string(p->job_path));
  json_object_set_new(j, "attack_model", json_string(am->name));
  json_object_set_new(j, "model", json_string(am->path));
  json_object_set_new(j, "model_hash", json_string(r->model->hash));
  if (am->unet)
    json_object_set_new(j, "unet_override", json_string(am->unet));
  if (am->text_encoder)
    json_object_set_new(j, "text_encoder_override", json_string(am->text_encoder));
  if (am->mask) {
    json_object_set_new(j, "mask", json_string(am->mask));
    json_object_set_new(j, "mask_sha256", json_string(r->mask_sha256));
  }
  json_object_set_new(j, "attack_set", json_string(p->sets[it->set].name));
  json_object_set_new(j, "prompt_set", json_string(ps->path));
  json_object_set_new(j, "prompt_set_sha256", json_string(ps->sha256_hex));
  json_object_set_new(j, "case_number", json_integer(ps->rows[it->row].case_number));
  json_object_set_new(j, "row", json_integer(it->row));
  json_object_set_new(j, "prompt", json_string(pr->prompt));
  json_object_set_new(j, "seed", json_string(seed));
  json_object_set_new(j, "sampler", json_string(pr->sampler));
  json_object_set_new(j, "steps", json_integer(pr->steps));
  json_object_set_new(j, "guidance", json_real(pr->guidance));
  json_object_set_new(j, "eta", json_real(pr->eta));
  json_object_set_new(j, "plan_hash", json_string(p->plan_hash));
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return s;
}

static int write_image(sd_attack_runner *r, int64_t i, const sd_txt2img_params *pr, const uint8_t *rgb, int W, int H,
                       sd_error *err) {
  const sd_attack_plan *p = r->plan;
  const sd_attack_item *it = &p->items[i];
  char rel[1200], path[5400], folder[5400];
  sd_attack_item_image(p, i, rel, sizeof rel);
  snprintf(path, sizeof path, "%s/%s", p->out_dir, rel);
  snprintf(folder, sizeof folder, "%s/images/%s/%s", p->out_dir, p->models[it->model].name, p->sets[it->set].name);
  if (sd_mkdir_p(folder) != 0)
    return sd_fail(err, "%s: cannot create: %s", folder, strerror(errno));
  const char *slash = strrchr(p->models[it->model].path, '/');
  char *params = sd_a1111_parameters(pr->prompt, "", pr->steps, a1111_sampler_name(pr->sampler), pr->guidance, pr->seed,
                                     W, H, r->hashes[it->model], slash ? slash + 1 : p->models[it->model].path, NULL);
  char *prov = provenance_json(r, i, pr);
  int rc = -1;
  if (params && prov) {
    sd_png_text texts[2] = {{"parameters", params}, {"sdprune", prov}};
    rc = sd_png_write_rgb8(path, rgb, H, W, texts, 2, err);
  } else
    sd_fail(err, "out of memory");
  free(params);
  free(prov);
  return rc;
}

static int judge(sd_attack_runner *r, int64_t i, const uint8_t *rgb, int W, int H, sd_attack_result *res,
                 sd_error *err) {
  const sd_attack_plan *p = r->plan;
  float img[SD_CLIP_MAX_PROJ], txt[SD_CLIP_MAX_PROJ];
  if (!(res->probs = sd_calloc((size_t)p->n_labels, sizeof(float), err)))
    return -1;
  if (sd_clip_encode_image_rgb8(r->clip, rgb, W, H, img, err) != 0 ||
      sd_clip_encode_text(r->clip, sd_attack_item_prompt(p, i), txt, err) != 0)
    return -1;
  sd_clip_zero_shot(r->clip, img, r->label_embeds, SD_CLIP_MAX_PROJ, p->n_labels, res->probs);
  double concept = 0;
  for (int l = 0; l < p->n_concept; l++)
  concept += res->probs[l];
  res->score = concept;
  res->success = concept > p->threshold;
  res->clip_score = sd_clip_score(img, txt, r->clip->projection_dim);
  return 0;
}

int sd_attack_run_item(sd_attack_runner *r, int64_t i, void (*progress)(void *ctx, int step, int total),
                       void *progress_ctx, sd_attack_result *res, sd_error *err) {
  const sd_attack_plan *p = r->plan;
  const sd_attack_item *it = &p->items[i];
  sd_attack_result_clear(res);
  res->success = -1;
  res->score = res->clip_score = res->reactivation = NAN;
  float *image = NULL;
  uint8_t *rgb = NULL;
  int rc = -1;
  if (r->current != it->model && load_model(r, it->model, err) != 0)
    goto done;
  int f = r->latent_factor, W = it->width, H = it->height;
  if (W % f || H % f) {
    const sd_prompt *row = &p->sets[it->set].prompts->rows[it->row];
    sd_fail(err, "%s:%d: image size %dx%d must be a multiple of %d for this model", p->sets[it->set].prompts->path,
            row->line, W, H, f);
    goto done;
  }
  sd_txt2img_params pr = {
      .prompt = sd_attack_item_prompt(p, i),
      .negative = "",
      .sampler = p->sampler,
      .steps = p->steps,
      .guidance = it->guidance,
      .eta = p->eta,
      .seed = it->seed,
      .latent_h = H / f,
      .latent_w = W / f,
      .batch = 1,
      .v_prediction = r->model->v_prediction,
      .progress = progress,
      .progress_ctx = progress_ctx,
      .after_eval = r->reactivation ? after_eval : NULL,
      .after_eval_ctx = r->collector,
  };
  if (!(image = sd_malloc(sizeof(float) * 3 * (size_t)W * H, err)) || !(rgb = sd_malloc((size_t)3 * W * H, err)))
    goto done;
  if (r->reactivation) {
    if (!(res->react_steps = sd_malloc(sizeof(float) * (size_t)r->evals, err)))
      goto done;
    sd_stats_collector_begin_item(r->collector, sd_txt2img_uses_cfg(pr.sampler, pr.guidance), 1);
  }
  sd_pipeline pipe = {.unet = &r->unet, .text = &r->text, .vae = &r->vae, .tokenizer = r->tok};
  if (sd_txt2img(&pipe, &pr, NULL, image, err) != 0) {
    const sd_prompt *row = &p->sets[it->set].prompts->rows[it->row];
    sd_fail_prefix(err, "%s:%d", p->sets[it->set].prompts->path, row->line);
    goto done;
  }
  sd_image_to_rgb8(image, H, W, rgb);
  if (write_image(r, i, &pr, rgb, W, H, err) != 0)
    goto done;
  if (r->clip && judge(r, i, rgb, W, H, res, err) != 0)
    goto done;
  if (r->reactivation)
    measure_reactivation(r, res);
  rc = 0;
done:
  free(image);
  free(rgb);
  if (rc) {
    res->status = SD_ITEM_FAILED;
    res->error = sd_strdup(err->msg);
  } else
    res->status = SD_ITEM_DONE;
  return rc;
}
