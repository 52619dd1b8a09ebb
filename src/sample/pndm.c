/* PNDM in its PLMS form, as diffusers' PNDMScheduler.step_plms runs it with skip_prk_steps (the Runge-Kutta
 * warm-up of the paper is not implemented), float32 with diffusers' schedule. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "sample/sampler.h"
#include "sample/schedule.h"

/* PNDMScheduler._get_prev_sample, formula (9) of the PNDM paper; prev_t < 0 uses alphas_cumprod[0]
 * (set_alpha_to_one false). */
static void pndm_prev_sample(const float *alphas_cumprod, const float *sample, int t, int prev_t,
                             const float *model_output, float *out, int64_t numel) {
  const float a_t = alphas_cumprod[t];
  const float a_prev = prev_t >= 0 ? alphas_cumprod[prev_t] : alphas_cumprod[0];
  const float b_t = 1.0f - a_t, b_prev = 1.0f - a_prev;
  const float sample_coeff = sqrtf(a_prev / a_t);
  const float denom = a_t * sqrtf(b_prev) + sqrtf(a_t * b_t * a_prev);
  const float diff = a_prev - a_t;
  for (int64_t k = 0; k < numel; k++) out[k] = sample_coeff * sample[k] - diff * model_output[k] / denom;
}

int sd_sample_pndm(const sd_sampler_config *cfg, float *latent, int64_t numel, sd_denoise_fn fn, void *ctx,
                   sd_torch_rng *rng, sd_progress_fn progress, sd_error *err) {
  (void)rng;
  const int steps = cfg->steps, n_eval = steps + 1, ratio = SD_TRAIN_TIMESTEPS / steps;
  float alphas_cumprod[SD_TRAIN_TIMESTEPS];
  int timesteps[SD_TRAIN_TIMESTEPS + 1];
  sd_schedule_diffusers_alphas_cumprod(alphas_cumprod);
  if (sd_timesteps_pndm(steps, timesteps, err)) return -1;

  /* ets: the last four model outputs, newest at ets[n_ets - 1] */
  float *buf = sd_malloc((size_t)numel * 7 * sizeof *buf, err);
  if (!buf) return -1;
  float *ets[4] = {buf, buf + numel, buf + 2 * numel, buf + 3 * numel};
  float *eps = buf + 4 * numel, *combined = buf + 5 * numel, *cur_sample = buf + 6 * numel;
  int n_ets = 0, rc = 0;

  for (int counter = 0; counter < n_eval; counter++) {
    int t = timesteps[counter];
    if (fn(ctx, latent, (float)t, eps, err)) {
      sd_fail_prefix(err, "pndm step %d/%d (t=%d)", counter + 1, n_eval, t);
      rc = -1;
      break;
    }
    int prev_t = t - ratio;
    if (counter != 1) {
      if (n_ets == 4) { /* ets = ets[-3:] + [eps] */
        float *oldest = ets[0];
        memmove(ets, ets + 1, 3 * sizeof ets[0]);
        ets[3] = oldest;
        n_ets = 3;
      }
      memcpy(ets[n_ets++], eps, (size_t)numel * sizeof *eps);
    } else {
      /* the repeated timestep: redo the first step with the average of both outputs */
      prev_t = t;
      t = t + ratio;
    }
    const float *sample = latent;
    const float *e1 = n_ets >= 1 ? ets[n_ets - 1] : NULL, *e2 = n_ets >= 2 ? ets[n_ets - 2] : NULL;
    const float *e3 = n_ets >= 3 ? ets[n_ets - 3] : NULL, *e4 = n_ets >= 4 ? ets[n_ets - 4] : NULL;
    if (n_ets == 1 && counter == 0) {
      memcpy(combined, eps, (size_t)numel * sizeof *eps);
      memcpy(cur_sample, latent, (size_t)numel * sizeof *latent);
    } else if (n_ets == 1 && counter == 1) {
      for (int64_t k = 0; k < numel; k++) combined[k] = (eps[k] + e1[k]) / 2.0f;
      sample = cur_sample;
    } else if (n_ets == 2) {
      for (int64_t k = 0; k < numel; k++) combined[k] = (3.0f * e1[k] - e2[k]) / 2.0f;
    } else if (n_ets == 3) {
      for (int64_t k = 0; k < numel; k++) combined[k] = (23.0f * e1[k] - 16.0f * e2[k] + 5.0f * e3[k]) / 12.0f;
    } else {
      const float one_24th = (float)(1.0 / 24.0); /* python's 1/24 cast to the tensor's float32 */
      for (int64_t k = 0; k < numel; k++)
        combined[k] = one_24th * (55.0f * e1[k] - 59.0f * e2[k] + 37.0f * e3[k] - 9.0f * e4[k]);
    }
    pndm_prev_sample(alphas_cumprod, sample, t, prev_t, combined, latent, numel);
    if (progress) progress(ctx, counter + 1, n_eval);
  }
  free(buf);
  return rc;
}
