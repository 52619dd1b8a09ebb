/* Diffusion samplers (DDIM, PNDM/PLMS, K-LMS, Euler) over an abstract denoiser: the sampler owns the
 * schedule, timesteps, input scaling and update rule; the caller's callback owns the UNet and
 * classifier-free guidance. Knows nothing of the UNet, text encoder or VAE.
 *
 * What each sampler reproduces (float32 with the upstream precisions):
 *  - "ddim":  CompVis ldm DDIMSampler (ddim_discretize 'uniform': timesteps (1000//S)*i + 1, descending;
 *             alphas from ldm's float64 schedule cast to float32; alphas_prev[0] = alphas_cumprod[0];
 *             eta: sigma_t = eta*sqrt((1-a_prev)/(1-a)*(1-a/a_prev)), noise = sigma_t * randn_like(x)).
 *             S UNet evaluations.
 *  - "pndm":  diffusers PNDMScheduler with skip_prk_steps, set_alpha_to_one false, steps_offset 1,
 *             'leading' spacing (the PLMS sampler of SD's diffusers configs). S+1 evaluations.
 *  - "lms":   diffusers LMSDiscreteScheduler, order 4, 'linspace' spacing (fractional timesteps).
 *  - "euler": diffusers EulerDiscreteScheduler, 'linspace' spacing, s_churn 0, final sigma 0.
 *             LMS and Euler: latents = xT * init_noise_sigma and model input = x / sqrt(sigma^2 + 1), both
 *             done here. S evaluations each.
 * The diffusers samplers use diffusers' float32 schedule, DDIM uses ldm's; as the upstream code does. */
#ifndef SD_SAMPLER_H
#define SD_SAMPLER_H

#include <stdint.h>

#include "core/error.h"
#include "sample/rng_torch.h"

/* Returns the guided noise prediction eps[numel] for model input x_in[numel] at timestep t (fractional
 * for LMS/Euler, integer-valued for DDIM/PNDM). x_in is already scaled (scale_model_input). The callback
 * does classifier-free guidance (batch [uncond, cond], eps_u + g*(eps_c - eps_u)). 0 on success, -1 with
 * a message in err to abort the sampling. */
typedef int (*sd_denoise_fn)(void *ctx, const float *x_in, float t, float *eps, sd_error *err);

/* Called after every denoiser evaluation: step = 1..total, total = number of evaluations. */
typedef void (*sd_progress_fn)(void *ctx, int step, int total);

typedef struct {
  const char *name; /* "ddim", "pndm", "lms", "euler" */
  int steps;        /* inference steps S */
  double eta;       /* DDIM only: 0 = deterministic; > 0 needs an rng */
} sd_sampler_config;

/* Runs the sampler. latent[numel]: in = xT (unscaled N(0,1) noise, e.g. sd_torch_randn), out = final
 * latent (before the VAE's 1/0.18215 scaling). rng: the generator ldm's DDIM draws its per-step
 * randn_like(x) from (it draws every step, also with eta 0, as ldm does; with eta 0 it may be NULL);
 * unused by the other samplers. progress may be NULL; it receives ctx. 0 on success, -1 with err set. */
int sd_sample(const sd_sampler_config *cfg, float *latent, int64_t numel, sd_denoise_fn fn, void *ctx,
              sd_torch_rng *rng, sd_progress_fn progress, sd_error *err);

/* Number of denoiser evaluations sd_sample will make (S, or S+1 for pndm); -1 with err on a bad config. */
int sd_sampler_evaluations(const sd_sampler_config *cfg, sd_error *err);

/* The timesteps passed to the denoiser, in call order: out[sd_sampler_evaluations(cfg)]. */
int sd_sampler_timesteps(const sd_sampler_config *cfg, float *out, sd_error *err);

/* One function per sampler (ddim.c, pndm.c, lms.c, euler.c), same contract as sd_sample. */
int sd_sample_ddim(const sd_sampler_config *cfg, float *latent, int64_t numel, sd_denoise_fn fn, void *ctx,
                   sd_torch_rng *rng, sd_progress_fn progress, sd_error *err);
int sd_sample_pndm(const sd_sampler_config *cfg, float *latent, int64_t numel, sd_denoise_fn fn, void *ctx,
                   sd_torch_rng *rng, sd_progress_fn progress, sd_error *err);
int sd_sample_lms(const sd_sampler_config *cfg, float *latent, int64_t numel, sd_denoise_fn fn, void *ctx,
                  sd_torch_rng *rng, sd_progress_fn progress, sd_error *err);
int sd_sample_euler(const sd_sampler_config *cfg, float *latent, int64_t numel, sd_denoise_fn fn, void *ctx,
                    sd_torch_rng *rng, sd_progress_fn progress, sd_error *err);

/* K-LMS coefficient: integral from sigmas[t] to sigmas[t+1] of the Lagrange basis polynomial of
 * sigmas[t - current_order] over sigmas[t], ..., sigmas[t - order + 1], by 21-point Gauss-Kronrod with the
 * integrand in float32 (what scipy.integrate.quad returns on diffusers' torch-float32 integrand). */
double sd_lms_coefficient(const float *sigmas, int order, int t, int current_order);

#endif
