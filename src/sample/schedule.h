/* Noise schedules and timestep lists of the samplers, in the precisions their upstream code uses:
 * ldm's DDPM schedule (float64, cast to float32) for DDIM, diffusers' schedule (torch float32) for
 * PNDM/LMS/Euler, and each sampler's discretisation of [0, 1000). No sampling arithmetic here. */
#ifndef SD_SCHEDULE_H
#define SD_SCHEDULE_H

#include <stdint.h>

#include "core/error.h"

#define SD_TRAIN_TIMESTEPS 1000
#define SD_BETA_START 0.00085
#define SD_BETA_END 0.012

/* ldm (DDPM.register_schedule, make_beta_schedule "linear"): betas = linspace(sqrt(0.00085), sqrt(0.012),
 * 1000)^2 in float64, alphas_cumprod = cumprod(1 - betas) in float64, then cast to float32 (the
 * `alphas_cumprod` buffer that SD checkpoints carry). out[1000]. */
void sd_schedule_ldm_alphas_cumprod(float *out);

/* diffusers (scaled_linear): betas = torch.linspace(sqrt(0.00085), sqrt(0.012), 1000, float32)^2,
 * alphas = 1 - betas in float32, torch.cumprod (accumulated in double on CPU, stored float32). out[1000]. */
void sd_schedule_diffusers_alphas_cumprod(float *out);

/* torch.linspace(start, end, steps, dtype=float32) on CPU (AVX2 build), as used for diffusers' betas. */
void sd_torch_linspace_f32(double start, double end, int steps, float *out);

/* ldm make_ddim_timesteps 'uniform': (arange(steps) * (1000 // steps)) + 1, returned in the order the
 * sampler evaluates them (descending). out[steps]. Fails unless 1 <= steps <= 1000. */
int sd_timesteps_ddim(int steps, int *out, sd_error *err);

/* diffusers PNDMScheduler, skip_prk_steps, 'leading' spacing, steps_offset 1: steps+1 UNet evaluations,
 * the second timestep repeated (e.g. 901, 801, 801, 701, ..., 1 for 10 steps). out[steps + 1].
 * Fails unless 2 <= steps <= 1000. */
int sd_timesteps_pndm(int steps, int *out, sd_error *err);

/* diffusers LMS/Euler 'linspace' spacing: np.linspace(0, 999, steps, dtype=float32)[::-1] (fractional).
 * out[steps]. Fails unless 1 <= steps <= 1000. */
int sd_timesteps_linspace(int steps, float *out, sd_error *err);

/* Karras-style sigmas of the diffusers discrete schedulers: sigma_train[j] = sqrt((1 - ac[j]) / ac[j]) in
 * float32, np.interp (float64) at the fractional timesteps, cast to float32, with a final 0 appended.
 * timesteps[n] -> sigmas[n + 1]. */
void sd_sigmas_interp(const float *alphas_cumprod, const float *timesteps, int n, float *sigmas);

/* The sigma schedule LMS and Euler share: diffusers' alphas_cumprod, 'linspace' timesteps[steps] and
 * sigmas[steps + 1] interpolated at them (the last one 0). */
int sd_schedule_linspace_sigmas(int steps, float *timesteps, float *sigmas, sd_error *err);

/* v-prediction (SD 2.x 768-v): eps = sqrt(ᾱ_t)·v + sqrt(1 − ᾱ_t)·x_t, where x_t is the model input in
 * DDPM space (what DDIM and PNDM pass, and what LMS/Euler's scale_model_input produces) and ᾱ_t comes
 * from diffusers' alphas_cumprod, through the interpolated sigma at fractional t. out may alias v. */
void sd_v_to_eps(float *out, const float *v, const float *x, int64_t n, float t);

#endif
