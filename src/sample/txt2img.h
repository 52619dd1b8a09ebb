/* Text to image: prompt -> CLIP context, seeded initial noise, classifier-free-guided sampling with the
 * UNet, VAE decode. Mirrors diffusers' StableDiffusionPipeline (and ldm's txt2img for DDIM) so the same
 * checkpoint, prompt, seed and sampler give the same image. Owns no model; knows no files. */
#ifndef SD_TXT2IMG_H
#define SD_TXT2IMG_H

#include <stdint.h>

#include "model/clip_text.h"
#include "model/tokenizer.h"
#include "model/unet.h"
#include "model/vae.h"
#include "sample/sampler.h"

typedef struct {
  sd_unet *unet;
  sd_clip_text *text;
  sd_vae *vae; /* may be NULL when only latents are wanted */
  sd_tokenizer *tokenizer;
} sd_pipeline;

typedef struct {
  const char *prompt;
  const char *negative; /* "" or NULL: the unconditional context is the encoding of "" */
  const char *sampler;  /* ddim, pndm, lms, euler */
  int steps;
  double guidance; /* cfg scale; no unconditional pass at 1 (ddim, as ldm) or at <= 1 (others, as diffusers) */
  double eta;      /* DDIM only */
  uint64_t seed;
  int latent_h, latent_w; /* image size / 8 for SD */
  int batch;              /* images sharing prompt and seed stream: noise drawn as one [batch, 4, h, w] tensor */
  int v_prediction;       /* the UNet predicts v (SD 2.x 768-v), converted to eps for the samplers */
  sd_progress_fn progress;
  void *progress_ctx;
  /* Called after every UNet evaluation (eval = 0, 1, ...): < 0 aborts with err set, > 0 ends the
   * trajectory there (statistics need only the first evaluations; the latent is then not final),
   * 0 continues. May be NULL. */
  int (*after_eval)(void *ctx, int eval, sd_error *err);
  void *after_eval_ctx;
} sd_txt2img_params;

/* 1 when the sampler runs the batch [uncond, cond] for this guidance (ldm's DDIM: scale != 1;
 * diffusers' samplers: scale > 1), 0 when it runs the prompt alone. */
int sd_txt2img_uses_cfg(const char *sampler, double guidance);

/* context[77, width] = text encoder(tokenizer(prompt)). */
int sd_encode_prompt(sd_pipeline *p, const char *prompt, float *context, sd_error *err);

/* Runs the sampler from xT (noise[batch·4·h·w], unscaled N(0,1)); on return latent holds the final
 * latent (unless after_eval ended the trajectory early; that is a success too). uncond/cond are [77, width] contexts. rng continues the noise stream (DDIM eta > 0). */
int sd_txt2img_sample(sd_pipeline *p, const sd_txt2img_params *params, const float *uncond, const float *cond,
                      float *latent, sd_torch_rng *rng, sd_error *err);

/* Whole pipeline: encodes prompts, draws xT = torch.randn([batch, 4, h, w]) with manual_seed(seed), samples,
 * and decodes into image[batch, 3, 8h, 8w] (raw, not clamped) when image != NULL. latent may be NULL. */
int sd_txt2img(sd_pipeline *p, const sd_txt2img_params *params, float *latent, float *image, sd_error *err);

#endif
