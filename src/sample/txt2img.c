/* Text to image (see txt2img.h). */
#include "sample/txt2img.h"

#include "sample/schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int sd_encode_prompt(sd_pipeline *p, const char *prompt, float *context, sd_error *err) {
  int32_t ids[SD_TOKENIZER_CONTEXT];
  if (!p->tokenizer) return sd_fail(err, "no tokenizer: pass --tokenizer DIR (a folder with vocab.json and merges.txt)");
  if (sd_tokenizer_encode(p->tokenizer, prompt ? prompt : "", ids, NULL, err) != 0) return -1;
  return sd_clip_text_forward(p->text, ids, context, err);
}

typedef struct {
  sd_pipeline *p;
  const sd_txt2img_params *params;
  float *context; /* [2·batch, 77, width]: uncond × batch, then cond × batch */
  float *x2, *eps2, *t2;
  int64_t per_image;
  int cfg;
  int evals, stop; /* evaluations made; after_eval asked to end the trajectory */
} guided_ctx;

/* eps = eps_u + g·(eps_c − eps_u), with the batch [uncond…, cond…] in one UNet call (diffusers order). */
static int guided_denoise(void *ctx, const float *x_in, float t, float *eps, sd_error *err) {
  guided_ctx *g = ctx;
  const sd_txt2img_params *pr = g->params;
  int n = pr->batch, B = g->cfg ? 2 * n : n;
  int64_t m = g->per_image * n;
  if (g->stop) return sd_fail(err, "trajectory ended by after_eval");
  memcpy(g->x2, x_in, sizeof(float) * (size_t)m);
  if (g->cfg) memcpy(g->x2 + m, x_in, sizeof(float) * (size_t)m);
  for (int b = 0; b < B; b++) g->t2[b] = t;
  const float *context = g->cfg ? g->context : g->context + (size_t)n * 77 * g->p->text->cfg.hidden;
  if (sd_unet_forward(g->p->unet, g->x2, B, pr->latent_h, pr->latent_w, g->t2, context, 77, g->eps2, err) != 0)
    return -1;
  if (!g->cfg) {
    memcpy(eps, g->eps2, sizeof(float) * (size_t)m);
  } else {
    float scale = (float)pr->guidance;
    for (int64_t i = 0; i < m; i++) eps[i] = g->eps2[i] + scale * (g->eps2[m + i] - g->eps2[i]);
  }
  /* guidance combines the raw outputs (diffusers does it on v too); the conversion is linear */
  if (pr->v_prediction) sd_v_to_eps(eps, eps, x_in, m, t);
  if (pr->after_eval) {
    int r = pr->after_eval(pr->after_eval_ctx, g->evals, err);
    if (r < 0) return -1;
    if (r > 0) g->stop = 1;
  }
  g->evals++;
  return 0;
}

/* The samplers call progress with their denoise context; forward to the caller's own. */
static void forward_progress(void *ctx, int step, int total) {
  guided_ctx *g = ctx;
  if (g->params->progress) g->params->progress(g->params->progress_ctx, step, total);
}

int sd_txt2img_uses_cfg(const char *sampler, double guidance) {
  int is_ddim = sampler && strcmp(sampler, "ddim") == 0;
  return is_ddim ? guidance != 1.0 : guidance > 1.0;
}

int sd_txt2img_sample(sd_pipeline *p, const sd_txt2img_params *pr, const float *uncond, const float *cond,
                      float *latent, sd_torch_rng *rng, sd_error *err) {
  int n = pr->batch, width = p->text->cfg.hidden;
  /* ldm's txt2img (DDIM) guides whenever scale != 1; diffusers' pipelines only when scale > 1 */
  guided_ctx g = {.p = p, .params = pr, .cfg = sd_txt2img_uses_cfg(pr->sampler, pr->guidance)};
  g.per_image = (int64_t)p->unet->cfg.in_channels * pr->latent_h * pr->latent_w;
  size_t ctx_floats = (size_t)77 * width;
  g.context = malloc(sizeof(float) * ctx_floats * 2 * (size_t)n);
  g.x2 = malloc(sizeof(float) * (size_t)(2 * n * g.per_image));
  g.eps2 = malloc(sizeof(float) * (size_t)(2 * n * g.per_image));
  g.t2 = malloc(sizeof(float) * (size_t)(2 * n));
  int rc = -1;
  if (!g.context || !g.x2 || !g.eps2 || !g.t2) {
    sd_fail(err, "out of memory");
    goto done;
  }
  for (int b = 0; b < n; b++) {
    memcpy(g.context + (size_t)b * ctx_floats, uncond, sizeof(float) * ctx_floats);
    memcpy(g.context + (size_t)(n + b) * ctx_floats, cond, sizeof(float) * ctx_floats);
  }
  sd_sampler_config sc = {.name = pr->sampler, .steps = pr->steps, .eta = pr->eta};
  rc = sd_sample(&sc, latent, g.per_image * n, guided_denoise, &g, rng, forward_progress, err);
  if (rc != 0 && g.stop) rc = 0; /* ended early on purpose */
done:
  free(g.context);
  free(g.x2);
  free(g.eps2);
  free(g.t2);
  return rc;
}

int sd_txt2img(sd_pipeline *p, const sd_txt2img_params *pr, float *latent_out, float *image, sd_error *err) {
  int width = p->text->cfg.hidden;
  int64_t numel = (int64_t)pr->batch * p->unet->cfg.in_channels * pr->latent_h * pr->latent_w;
  float *uncond = malloc(sizeof(float) * 77 * (size_t)width), *cond = malloc(sizeof(float) * 77 * (size_t)width);
  float *latent = latent_out ? latent_out : malloc(sizeof(float) * (size_t)numel);
  int rc = -1;
  if (!uncond || !cond || !latent) {
    sd_fail(err, "out of memory");
    goto done;
  }
  if (sd_encode_prompt(p, pr->negative ? pr->negative : "", uncond, err) != 0) goto done;
  if (sd_encode_prompt(p, pr->prompt, cond, err) != 0) goto done;
  sd_torch_rng rng;
  sd_torch_rng_seed(&rng, pr->seed);
  sd_torch_randn(&rng, latent, numel);
  if (sd_txt2img_sample(p, pr, uncond, cond, latent, &rng, err) != 0) goto done;
  /* NaN/Inf weights (or an overflow in fp16 weights) make every later value NaN, and the PNG conversion would
   * turn them into a black image that a detector then scores as if it were one: refuse it here instead. */
  int64_t bad = 0;
  for (int64_t i = 0; i < numel; i++) bad += !isfinite(latent[i]);
  if (bad) {
    sd_fail(err, "the denoised latent holds %lld non-finite values (NaN/Inf in the model's weights or activations)",
            (long long)bad);
    goto done;
  }
  if (image && sd_vae_decode(p->vae, latent, pr->batch, pr->latent_h, pr->latent_w, image, err) != 0) goto done;
  int up = 1 << (p->vae ? p->vae->cfg.n_levels - 1 : 0);
  int64_t image_numel = image ? (int64_t)pr->batch * p->vae->cfg.out_ch * (up * pr->latent_h) * (up * pr->latent_w) : 0;
  for (int64_t i = 0; i < image_numel; i++) bad += !isfinite(image[i]);
  if (bad) {
    sd_fail(err, "the decoded image holds %lld non-finite values (NaN/Inf in the VAE's weights or activations)",
            (long long)bad);
    goto done;
  }
  rc = 0;
done:
  free(uncond);
  free(cond);
  if (!latent_out) free(latent);
  return rc;
}
