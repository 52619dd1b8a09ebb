/* Statistics jobs: planning and running items (see stats_run.h). */
#include "stats/stats_run.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/provenance.h"
#include "model/parts.h"
#include "sample/sampler.h"

int sd_stats_valid_set_name(const char *name) {
  if (!name || !*name || name[0] == '.' || strlen(name) > 64) return 0;
  for (const char *p = name; *p; p++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-", *p)) return 0;
  return 1;
}

static int plan_set(sd_stats *s, int k, const sd_stats_set_spec *spec, const sd_stats_plan_options *o,
                    sd_tokenizer *tok, int factor, int *n_truncated, sd_error *err) {
  sd_prompt_set *ps = NULL;
  if (sd_prompt_set_load(spec->file, spec->template_str, &ps, err) != 0) return -1;
  int rc = -1;
  sd_stats_set *set = &s->sets[k];
  set->name = sd_strdup(spec->name);
  set->role = sd_strdup(spec->role);
  set->file = sd_strdup(spec->file);
  set->file_sha256 = sd_strdup(ps->sha256_hex);
  set->template_used = ps->template_used ? sd_strdup(ps->template_used) : NULL;
  set->n_rows = ps->n_rows;
  if (!set->name || !set->role || !set->file || !set->file_sha256) {
    sd_fail(err, "out of memory");
    goto done;
  }
  if (ps->n_rows == 0) {
    sd_fail(err, "%s: the %s set has no prompts", spec->file, spec->name);
    goto done;
  }
  int rows = o->limit > 0 && o->limit < ps->n_rows ? o->limit : ps->n_rows;
  int per_row = o->n_seeds > 0 ? o->n_seeds : 1;
  sd_stats_item *items = realloc(s->items, sizeof *s->items * (size_t)(s->n_items + (int64_t)rows * per_row));
  if (!items) {
    sd_fail(err, "out of memory");
    goto done;
  }
  s->items = items;
  for (int r = 0; r < rows; r++) {
    const sd_prompt *row = &ps->rows[r];
    int W = o->width, H = o->height;
    if (!o->size_given && row->width > 0 && row->height > 0) {
      W = row->width;
      H = row->height;
    }
    if (W % factor || H % factor) {
      sd_fail(err, "%s:%d: image size %dx%d must be a multiple of %d for this model", spec->file, row->line, W, H,
              factor);
      goto done;
    }
    if (tok) {
      int32_t ids[SD_TOKENIZER_CONTEXT];
      int n = 0;
      if (sd_tokenizer_encode(tok, row->prompt, ids, &n, err) != 0) {
        sd_fail_prefix(err, "%s:%d", spec->file, row->line);
        goto done;
      }
      if (n > SD_TOKENIZER_CONTEXT - 2) (*n_truncated)++;
    }
    for (int q = 0; q < per_row; q++) {
      sd_stats_item *it = &s->items[s->n_items++];
      memset(it, 0, sizeof *it);
      it->set = k;
      it->row = row->index;
      it->case_number = row->case_number;
      it->prompt = sd_strdup(row->prompt);
      it->seed = o->n_seeds > 0 ? o->seeds[q] : (row->has_seed && !o->seed_given) ? row->seed : o->seed;
      it->guidance = (row->has_guidance && !o->guidance_given) ? row->guidance : o->guidance;
      it->width = W;
      it->height = H;
      it->status = SD_ITEM_PENDING;
      if (!it->prompt) {
        sd_fail(err, "out of memory");
        goto done;
      }
    }
  }
  rc = 0;
done:
  sd_prompt_set_free(ps);
  return rc;
}

int sd_stats_plan(sd_stats *s, const sd_stats_plan_options *o, sd_tokenizer *tok, int latent_factor,
                  int *n_truncated, sd_error *err) {
  *n_truncated = 0;
  sd_sampler_config sc = {.name = o->sampler, .steps = o->steps, .eta = o->eta};
  int evals = sd_sampler_evaluations(&sc, err);
  if (evals < 0) return -1;
  s->n_steps = o->max_steps > 0 && o->max_steps < evals ? o->max_steps : evals;
  float *all = sd_malloc(sizeof(float) * (size_t)evals, err);
  if (!all) return -1;
  if (sd_sampler_timesteps(&sc, all, err) != 0) {
    free(all);
    return -1;
  }
  s->timesteps = all; /* only the first n_steps are written */
  s->settings.sampler = sd_strdup(o->sampler);
  s->settings.steps = o->steps;
  s->settings.max_steps = o->max_steps;
  s->settings.eta = o->eta;
  if (!(s->sets = sd_calloc((size_t)(o->n_sets ? o->n_sets : 1), sizeof *s->sets, err))) return -1;
  for (int k = 0; k < o->n_sets; k++) {
    if (!sd_stats_valid_set_name(o->sets[k].name))
      return sd_fail(err, "set name '%s' must be 1-64 characters of A-Z a-z 0-9 _ . - and not start with '.'",
                     o->sets[k].name);
    for (int j = 0; j < k; j++)
      if (!strcmp(o->sets[j].name, o->sets[k].name)) return sd_fail(err, "set name '%s' is used twice", o->sets[k].name);
    s->n_sets = k + 1;
    if (plan_set(s, k, &o->sets[k], o, tok, latent_factor, n_truncated, err) != 0) return -1;
  }
  return 0;
}

/* ---- running ------------------------------------------------------------------------------------ */

int sd_stats_runner_init(sd_stats_runner *r, sd_model *m, const char *hooks, int n_steps, int per_item,
                         sd_error *err) {
  memset(r, 0, sizeof *r);
  r->model = m;
  if (sd_stats_collector_new(hooks, n_steps, per_item, &r->collector, err) != 0) return -1;
  sd_unet_hooks h = sd_stats_collector_hooks(r->collector);
  if (sd_parts_unet(m, &h, &r->unet, err) != 0) return -1;
  r->have_unet = 1;
  if (sd_stats_collector_bind(r->collector, &r->unet, err) != 0) return -1;
  if (sd_parts_text(m, &r->text, err) != 0) return -1;
  r->have_text = 1;
  if (sd_stats_latent_factor(m, &r->latent_factor, err) != 0) return -1;
  return sd_parts_tokenizer(m, &r->tokenizer, err);
}

void sd_stats_runner_free(sd_stats_runner *r) {
  if (r->have_text) sd_clip_text_free(&r->text);
  if (r->have_unet) sd_unet_free(&r->unet);
  sd_tokenizer_free(r->tokenizer);
  sd_stats_collector_free(r->collector);
  memset(r, 0, sizeof *r);
}

static int after_eval(void *ctx, int eval, sd_error *err) {
  return sd_stats_collector_end_step(ctx, err);
}

int sd_stats_latent_factor(sd_model *m, int *factor, sd_error *err) {
  sd_vae_config cfg;
  *factor = 8;
  if (m->vae_config_json) {
    if (sd_vae_config_from_json(m->vae_config_json, &cfg, err) != 0) return -1;
  } else if (m->vae_view) {
    if (sd_vae_config_infer(m->vae_view, &cfg, err) != 0) return -1;
  } else {
    return 0; /* no VAE: SD's factor */
  }
  *factor = 1 << (cfg.n_levels - 1);
  return 0;
}

int sd_stats_run_item(sd_stats_runner *r, const sd_stats *s, const sd_stats_item *it, sd_error *err) {
  int f = r->latent_factor > 0 ? r->latent_factor : 8;
  if (it->width <= 0 || it->height <= 0 || it->width % f || it->height % f)
    return sd_fail(err, "image size %dx%d is not a multiple of %d", it->width, it->height, f);
  sd_pipeline p = {.unet = &r->unet, .text = &r->text, .vae = NULL, .tokenizer = r->tokenizer};
  sd_txt2img_params pr = {
      .prompt = it->prompt,
      .negative = "",
      .sampler = s->settings.sampler,
      .steps = s->settings.steps,
      .guidance = it->guidance,
      .eta = s->settings.eta,
      .seed = it->seed,
      .latent_h = it->height / f,
      .latent_w = it->width / f,
      .batch = 1,
      .v_prediction = r->model->v_prediction,
      .progress = r->progress,
      .progress_ctx = r->progress_ctx,
      .after_eval = after_eval,
      .after_eval_ctx = r->collector,
  };
  sd_stats_collector_begin_item(r->collector, sd_txt2img_uses_cfg(pr.sampler, pr.guidance), 1);
  int width = r->text.cfg.hidden;
  int64_t numel = (int64_t)r->unet.cfg.in_channels * pr.latent_h * pr.latent_w;
  float *uncond = sd_malloc(sizeof(float) * 77 * (size_t)width, err);
  float *cond = sd_malloc(sizeof(float) * 77 * (size_t)width, err);
  float *latent = sd_malloc(sizeof(float) * (size_t)numel, err);
  int rc = -1;
  if (!uncond || !cond || !latent) goto done;
  if (sd_encode_prompt(&p, "", uncond, err) != 0 || sd_encode_prompt(&p, pr.prompt, cond, err) != 0) goto done;
  sd_torch_rng rng;
  sd_torch_rng_seed(&rng, pr.seed);
  sd_torch_randn(&rng, latent, numel);
  if (sd_txt2img_sample(&p, &pr, uncond, cond, latent, &rng, err) != 0) goto done;
  if (sd_stats_collector_steps_done(r->collector) < s->n_steps) {
    sd_fail(err, "the sampler made %d UNet evaluations, %d expected", sd_stats_collector_steps_done(r->collector),
            s->n_steps);
    goto done;
  }
  rc = 0;
done:
  free(uncond);
  free(cond);
  free(latent);
  return rc;
}

void sd_stats_add_item(sd_stats *s, int64_t item, const sd_stats_collector *c, double seconds) {
  sd_stats_item *it = &s->items[item];
  sd_stats_set *set = &s->sets[it->set];
  const sd_stats_acc *acc = sd_stats_collector_item(c);
  for (int l = 0; l < s->n_layers; l++) sd_stats_acc_add(&set->layers[l], &acc[l], s->n_steps, s->layers[l].width);
  set->items_done++;
  it->status = SD_ITEM_DONE;
  it->seconds = seconds;
  free(it->error);
  it->error = NULL;
}
