/* Noise schedules and timestep lists (see schedule.h). Each function states the upstream expression it
 * reproduces; the float32/float64 split follows the upstream code, not convenience. */
#include "sample/schedule.h"

#include <math.h>

void sd_schedule_ldm_alphas_cumprod(float *out) {
  /* torch.linspace(..., dtype=float64) ** 2: torch fills the first half from the start and the second
   * half from the end (start + step*i / end - step*(n-1-i)); float64 makes the split invisible in float32. */
  const int n = SD_TRAIN_TIMESTEPS;
  const double start = sqrt(SD_BETA_START), end = sqrt(SD_BETA_END);
  const double step = (end - start) / (double)(n - 1);
  double cumprod = 1.0;
  for (int i = 0; i < n; i++) {
    double sqrt_beta = i < n / 2 ? start + step * (double)i : end - step * (double)(n - 1 - i);
    double beta = sqrt_beta * sqrt_beta;
    cumprod *= 1.0 - beta;
    out[i] = (float)cumprod;
  }
}

/* torch's CPU linspace kernel (RangeFactoriesKernel.cpp) in float32: step = (end - start) / (steps - 1) in
 * float; blocks of 8 (Vectorized<float>::arange(base, step): base + l*step) with base from the start
 * below steps/2 and from the end above it, two blocks per loop turn, the rest one by one. The AVX2 build
 * contracts these products into FMAs, as in the randn kernel. */
void sd_torch_linspace_f32(double start_d, double end_d, int steps, float *out) {
  const float start = (float)start_d, end = (float)end_d;
  if (steps == 1) {
    out[0] = start;
    return;
  }
  const float step = (end - start) / (float)(steps - 1);
  const int halfway = steps / 2;
  const int vectorised = (steps / 16) * 16;
  for (int i = 0; i < vectorised; i += 8) {
    float base = i < halfway ? fmaf(step, (float)i, start) : fmaf(-step, (float)(steps - i - 1), end);
    out[i] = base;
    out[i + 1] = base + step;
    for (int l = 2; l < 8; l++) out[i + l] = fmaf((float)l, step, base);
  }
  for (int i = vectorised; i < steps; i++)
    out[i] = i < halfway ? fmaf(step, (float)i, start) : fmaf(-step, (float)(steps - i - 1), end);
}

void sd_schedule_diffusers_alphas_cumprod(float *out) {
  float sqrt_betas[SD_TRAIN_TIMESTEPS];
  sd_torch_linspace_f32(sqrt(SD_BETA_START), sqrt(SD_BETA_END), SD_TRAIN_TIMESTEPS, sqrt_betas);
  double cumprod = 1.0; /* at::acc_type<float, CPU> is double in torch's cumprod kernel */
  for (int i = 0; i < SD_TRAIN_TIMESTEPS; i++) {
    float beta = sqrt_betas[i] * sqrt_betas[i];
    float alpha = 1.0f - beta;
    cumprod *= (double)alpha;
    out[i] = (float)cumprod;
  }
}

int sd_timesteps_ddim(int steps, int *out, sd_error *err) {
  if (steps < 1 || steps > SD_TRAIN_TIMESTEPS)
    return sd_fail(err, "ddim: steps must be in 1..%d, got %d", SD_TRAIN_TIMESTEPS, steps);
  int stride = SD_TRAIN_TIMESTEPS / steps;
  for (int i = 0; i < steps; i++) out[i] = (steps - 1 - i) * stride + 1;
  return 0;
}

int sd_timesteps_pndm(int steps, int *out, sd_error *err) {
  if (steps < 2 || steps > SD_TRAIN_TIMESTEPS)
    return sd_fail(err, "pndm: steps must be in 2..%d, got %d", SD_TRAIN_TIMESTEPS, steps);
  const int offset = 1, ratio = SD_TRAIN_TIMESTEPS / steps;
  /* plms_timesteps = concat(_t[:-1], _t[-2:-1], _t[-1:])[::-1] with _t = arange(steps)*ratio + offset */
  out[0] = (steps - 1) * ratio + offset;
  out[1] = (steps - 2) * ratio + offset;
  for (int i = 2; i <= steps; i++) out[i] = (steps - i) * ratio + offset;
  return 0;
}

int sd_timesteps_linspace(int steps, float *out, sd_error *err) {
  if (steps < 1 || steps > SD_TRAIN_TIMESTEPS)
    return sd_fail(err, "linspace timesteps: steps must be in 1..%d, got %d", SD_TRAIN_TIMESTEPS, steps);
  /* numpy linspace in float64: i * (999 / (steps - 1)) + 0, last element exactly 999; then float32 */
  const double stop = SD_TRAIN_TIMESTEPS - 1;
  for (int i = 0; i < steps; i++) {
    double v = steps > 1 ? (double)i * (stop / (double)(steps - 1)) + 0.0 : 0.0;
    if (steps > 1 && i == steps - 1) v = stop;
    out[steps - 1 - i] = (float)v;
  }
  return 0;
}

void sd_sigmas_interp(const float *alphas_cumprod, const float *timesteps, int n, float *sigmas) {
  float train_sigmas[SD_TRAIN_TIMESTEPS];
  for (int j = 0; j < SD_TRAIN_TIMESTEPS; j++)
    train_sigmas[j] = sqrtf((1.0f - alphas_cumprod[j]) / alphas_cumprod[j]);
  for (int i = 0; i < n; i++) {
    double x = (double)timesteps[i];
    double value;
    if (x <= 0.0) {
      value = train_sigmas[0];
    } else if (x >= SD_TRAIN_TIMESTEPS - 1) {
      value = train_sigmas[SD_TRAIN_TIMESTEPS - 1];
    } else {
      int j = (int)floor(x);
      if (x == (double)j) {
        value = train_sigmas[j];
      } else { /* numpy interp: slope * (x - xp[j]) + fp[j], in double */
        double slope = ((double)train_sigmas[j + 1] - (double)train_sigmas[j]) / 1.0;
        value = slope * (x - (double)j) + (double)train_sigmas[j];
      }
    }
    sigmas[i] = (float)value;
  }
  sigmas[n] = 0.0f;
}

int sd_schedule_linspace_sigmas(int steps, float *timesteps, float *sigmas, sd_error *err) {
  float alphas_cumprod[SD_TRAIN_TIMESTEPS];
  sd_schedule_diffusers_alphas_cumprod(alphas_cumprod);
  if (sd_timesteps_linspace(steps, timesteps, err)) return -1;
  sd_sigmas_interp(alphas_cumprod, timesteps, steps, sigmas);
  return 0;
}

void sd_v_to_eps(float *out, const float *v, const float *x, int64_t n, float t) {
  float alphas_cumprod[SD_TRAIN_TIMESTEPS], sigma[2];
  sd_schedule_diffusers_alphas_cumprod(alphas_cumprod);
  double ab;
  if (t == floorf(t) && t >= 0 && t < SD_TRAIN_TIMESTEPS) {
    ab = alphas_cumprod[(int)t];
  } else {
    sd_sigmas_interp(alphas_cumprod, &t, 1, sigma);
    ab = 1.0 / (1.0 + (double)sigma[0] * sigma[0]);
  }
  float a = (float)sqrt(ab), b = (float)sqrt(1.0 - ab);
  for (int64_t i = 0; i < n; i++) out[i] = a * v[i] + b * x[i];
}
