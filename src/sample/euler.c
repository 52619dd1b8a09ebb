/* Euler (Karras et al. Algorithm 2 without churn) as diffusers' EulerDiscreteScheduler runs it with
 * 'linspace' spacing, s_churn 0 and a final sigma of 0, in float32 with diffusers' schedule. No ancestral
 * (Euler a) variant. */
#include <math.h>
#include <stdlib.h>

#include "sample/sampler.h"
#include "sample/schedule.h"

int sd_sample_euler(const sd_sampler_config *cfg, float *latent, int64_t numel, sd_denoise_fn fn, void *ctx,
                    sd_torch_rng *rng, sd_progress_fn progress, sd_error *err) {
  (void)rng;
  const int steps = cfg->steps;
  float timesteps[SD_TRAIN_TIMESTEPS], sigmas[SD_TRAIN_TIMESTEPS + 1];
  if (sd_schedule_linspace_sigmas(steps, timesteps, sigmas, err)) return -1;

  float *buf = sd_malloc((size_t)numel * 2 * sizeof *buf, err);
  if (!buf) return -1;
  float *scaled = buf, *eps = buf + numel;
  int rc = 0;

  float init_noise_sigma = 0.0f; /* sigmas.max() for 'linspace' spacing */
  for (int i = 0; i <= steps; i++) init_noise_sigma = fmaxf(init_noise_sigma, sigmas[i]);
  for (int64_t k = 0; k < numel; k++) latent[k] = latent[k] * init_noise_sigma;

  for (int i = 0; i < steps; i++) {
    const float sigma = sigmas[i];
    const float sigma_hat = sigma; /* sigma * (gamma + 1) with gamma = 0 */
    const float input_scale = sqrtf(sigma * sigma + 1.0f);
    for (int64_t k = 0; k < numel; k++) scaled[k] = latent[k] / input_scale;
    if (fn(ctx, scaled, timesteps[i], eps, err)) {
      sd_fail_prefix(err, "euler step %d/%d (t=%g)", i + 1, steps, (double)timesteps[i]);
      rc = -1;
      break;
    }
    const float dt = sigmas[i + 1] - sigma_hat;
    for (int64_t k = 0; k < numel; k++) {
      float pred_original = latent[k] - sigma_hat * eps[k];
      float derivative = (latent[k] - pred_original) / sigma_hat;
      latent[k] = latent[k] + derivative * dt;
    }
    if (progress) progress(ctx, i + 1, steps);
  }
  free(buf);
  return rc;
}
