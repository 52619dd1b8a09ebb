/* Sampler dispatch by name, and the timestep lists callers need for reports and reference checks.
 * The sampling arithmetic lives in ddim.c, pndm.c, lms.c, euler.c. */
#include "sample/sampler.h"

#include <string.h>

#include "sample/schedule.h"

static int check_config(const sd_sampler_config *cfg, sd_error *err) {
  if (!cfg || !cfg->name) return sd_fail(err, "sampler: no sampler name given");
  if (cfg->steps < 1 || cfg->steps > SD_TRAIN_TIMESTEPS)
    return sd_fail(err, "sampler %s: steps must be in 1..%d, got %d", cfg->name, SD_TRAIN_TIMESTEPS, cfg->steps);
  if (!(cfg->eta >= 0.0)) return sd_fail(err, "sampler %s: eta must be >= 0, got %g", cfg->name, cfg->eta);
  if (cfg->eta > 0.0 && strcmp(cfg->name, "ddim") != 0)
    return sd_fail(err, "sampler %s: eta is a DDIM setting (got %g)", cfg->name, cfg->eta);
  return 0;
}

int sd_sampler_evaluations(const sd_sampler_config *cfg, sd_error *err) {
  if (check_config(cfg, err)) return -1;
  if (strcmp(cfg->name, "ddim") == 0 || strcmp(cfg->name, "lms") == 0 || strcmp(cfg->name, "euler") == 0)
    return cfg->steps;
  if (strcmp(cfg->name, "pndm") == 0) {
    if (cfg->steps < 2) return sd_fail(err, "sampler pndm: needs at least 2 steps, got %d", cfg->steps);
    return cfg->steps + 1;
  }
  return sd_fail(err, "unknown sampler '%s' (expected ddim, pndm, lms or euler)", cfg->name);
}

int sd_sampler_timesteps(const sd_sampler_config *cfg, float *out, sd_error *err) {
  int n = sd_sampler_evaluations(cfg, err);
  if (n < 0) return -1;
  if (strcmp(cfg->name, "lms") == 0 || strcmp(cfg->name, "euler") == 0)
    return sd_timesteps_linspace(cfg->steps, out, err);
  int ints[SD_TRAIN_TIMESTEPS + 1];
  int rc = strcmp(cfg->name, "ddim") == 0 ? sd_timesteps_ddim(cfg->steps, ints, err)
                                          : sd_timesteps_pndm(cfg->steps, ints, err);
  if (rc) return -1;
  for (int i = 0; i < n; i++) out[i] = (float)ints[i];
  return 0;
}

int sd_sample(const sd_sampler_config *cfg, float *latent, int64_t numel, sd_denoise_fn fn, void *ctx,
              sd_torch_rng *rng, sd_progress_fn progress, sd_error *err) {
  if (sd_sampler_evaluations(cfg, err) < 0) return -1;
  if (!latent || numel <= 0) return sd_fail(err, "sampler %s: empty latent (numel %lld)", cfg->name, (long long)numel);
  if (!fn) return sd_fail(err, "sampler %s: no denoiser callback", cfg->name);
  if (strcmp(cfg->name, "ddim") == 0) return sd_sample_ddim(cfg, latent, numel, fn, ctx, rng, progress, err);
  if (strcmp(cfg->name, "pndm") == 0) return sd_sample_pndm(cfg, latent, numel, fn, ctx, rng, progress, err);
  if (strcmp(cfg->name, "lms") == 0) return sd_sample_lms(cfg, latent, numel, fn, ctx, rng, progress, err);
  return sd_sample_euler(cfg, latent, numel, fn, ctx, rng, progress, err);
}
