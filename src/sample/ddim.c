/* DDIM as CompVis ldm's DDIMSampler.p_sample_ddim runs it (eta, 'uniform' discretisation), in float32
 * with ldm's schedule. Not diffusers' DDIMScheduler (different timesteps and alphas_prev). */
#include <math.h>
#include <stdlib.h>

#include "sample/sampler.h"
#include "sample/schedule.h"

int sd_sample_ddim(const sd_sampler_config *cfg, float *latent, int64_t numel, sd_denoise_fn fn, void *ctx,
                   sd_torch_rng *rng, sd_progress_fn progress, sd_error *err) {
  const int steps = cfg->steps;
  if (cfg->eta > 0.0 && !rng) return sd_fail(err, "ddim: eta %g needs a random generator", cfg->eta);
  float alphas_cumprod[SD_TRAIN_TIMESTEPS];
  int timesteps[SD_TRAIN_TIMESTEPS]; /* descending, as evaluated */
  sd_schedule_ldm_alphas_cumprod(alphas_cumprod);
  if (sd_timesteps_ddim(steps, timesteps, err)) return -1;

  float *eps = sd_malloc((size_t)numel * sizeof *eps, err);
  float *noise = sd_malloc((size_t)numel * sizeof *noise, err);
  if (!eps || !noise) {
    free(eps);
    free(noise);
    return -1;
  }
  int rc = 0;
  for (int i = 0; i < steps; i++) {
    /* ldm indexes its parameter arrays with index = steps - 1 - i over ascending timesteps */
    const float a_t = alphas_cumprod[timesteps[i]];
    const float a_prev = i + 1 < steps ? alphas_cumprod[timesteps[i + 1]] : alphas_cumprod[0];
    /* make_ddim_sampling_parameters: float64 numpy/torch arithmetic on the float32 alphas, then
     * torch.full(..., sigmas[index]) rounds to float32 */
    const double sigma_d = cfg->eta * sqrt((1.0 - (double)a_prev) / (double)(1.0f - a_t) *
                                           (1.0 - (double)a_t / (double)a_prev));
    const float sigma_t = (float)sigma_d;
    const float sqrt_one_minus_a_t = sqrtf(1.0f - a_t);
    const float sqrt_a_t = sqrtf(a_t);
    const float sqrt_a_prev = sqrtf(a_prev);
    const float dir_coeff = sqrtf((1.0f - a_prev) - sigma_t * sigma_t);

    if (fn(ctx, latent, (float)timesteps[i], eps, err)) {
      sd_fail_prefix(err, "ddim step %d/%d (t=%d)", i + 1, steps, timesteps[i]);
      rc = -1;
      break;
    }
    /* noise_like(x.shape): ldm draws torch.randn every step, also when sigma_t is 0 */
    if (rng) sd_torch_randn(rng, noise, numel);
    for (int64_t k = 0; k < numel; k++) {
      float pred_x0 = (latent[k] - sqrt_one_minus_a_t * eps[k]) / sqrt_a_t;
      float dir_xt = dir_coeff * eps[k];
      float x_prev = sqrt_a_prev * pred_x0 + dir_xt;
      if (rng) x_prev = x_prev + sigma_t * noise[k];
      latent[k] = x_prev;
    }
    if (progress) progress(ctx, i + 1, steps);
  }
  free(eps);
  free(noise);
  return rc;
}
