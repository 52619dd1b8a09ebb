/* Tests of the samplers without a UNet: timesteps and schedules against the tiny-sd1 reference files, and
 * whole sampling runs on an analytic fake denoiser against tests/data/sampler_expected.h, which an
 * independent numpy/scipy re-implementation of the upstream samplers generated
 * (tests/data/gen_sampler_expected.py). The real trajectories need the UNet and are checked elsewhere. */
#include <jansson.h>
#include <stdint.h>

#include "data/sampler_expected.h"
#include "io/tensor_store.h"
#include "sample/sampler.h"
#include "sample/schedule.h"
#include "test_util.h"

#define NUMEL EXPECTED_NUMEL

typedef struct {
  int calls;
  float timesteps[64];
  int fail_at; /* 1-based call number that fails, 0 = never */
  int progress_calls, progress_last, progress_total;
} fake_model;

/* eps = 0.1*x + 0.01*(t/1000) in float32, exactly as the generator computes it */
static int fake_denoise(void *ctx, const float *x_in, float t, float *eps, sd_error *err) {
  fake_model *m = ctx;
  if (m->calls < 64) m->timesteps[m->calls] = t;
  m->calls++;
  if (m->fail_at && m->calls == m->fail_at) return sd_fail(err, "fake model refused");
  for (int k = 0; k < NUMEL; k++) eps[k] = 0.1f * x_in[k] + 0.01f * (t / 1000.0f);
  return 0;
}

static void fake_progress(void *ctx, int step, int total) {
  fake_model *m = ctx;
  m->progress_calls++;
  m->progress_last = step;
  m->progress_total = total;
}

static void x_T(float *x) {
  for (int k = 0; k < NUMEL; k++) x[k] = (float)((k * 37) % 101 - 50) / 25.0f;
}

static void run_case(const char *label, const char *name, int steps, double eta, uint64_t *seed,
                     const float *expected) {
  sd_sampler_config cfg = {name, steps, eta};
  float latent[NUMEL];
  x_T(latent);
  fake_model model = {0};
  sd_torch_rng rng;
  if (seed) sd_torch_rng_seed(&rng, *seed);
  sd_error err = {{0}};
  int rc = sd_sample(&cfg, latent, NUMEL, fake_denoise, &model, seed ? &rng : NULL, fake_progress, &err);
  CHECK(rc == 0, "%s: %s", label, err.msg);
  int n_eval = sd_sampler_evaluations(&cfg, &err);
  CHECK(model.calls == n_eval, "%s: %d denoiser calls, want %d", label, model.calls, n_eval);
  CHECK(model.progress_calls == n_eval && model.progress_last == n_eval && model.progress_total == n_eval,
        "%s: progress %d calls, last %d/%d", label, model.progress_calls, model.progress_last, model.progress_total);
  float timesteps[1001];
  sd_sampler_timesteps(&cfg, timesteps, &err);
  int same_t = 1;
  for (int i = 0; i < n_eval && i < 64; i++) same_t &= model.timesteps[i] == timesteps[i];
  CHECK(same_t, "%s: denoiser saw other timesteps than sd_sampler_timesteps lists", label);
  double max_abs = 0, ref_max = 0;
  double rel = test_rel_l2(latent, expected, NUMEL, &max_abs);
  for (int k = 0; k < NUMEL; k++) ref_max = fmax(ref_max, fabs(expected[k]));
  /* tolerance: the same float32 operations in the same order as the numpy re-implementation, so only
   * libm/numpy rounding differences remain (rel-L2 1e-6, far below a formula error) */
  CHECK(rel <= 1e-6, "%s: rel-L2 %.3g (max abs %.3g, max |ref| %.3g)", label, rel, max_abs, ref_max);
  printf("%-22s rel-L2 %.3g  max abs %.3g  (max |ref| %.3g)\n", label, rel, max_abs, ref_max);
}

static void test_samplers_vs_numpy(void) {
  uint64_t seed0 = 0;
  run_case("ddim S=10", "ddim", 10, 0.0, NULL, expected_ddim_s10);
  run_case("ddim S=10 (rng given)", "ddim", 10, 0.0, &seed0, expected_ddim_s10);
  run_case("ddim S=5", "ddim", 5, 0.0, NULL, expected_ddim_s5);
  run_case("ddim S=10 eta=0.5", "ddim", 10, 0.5, &seed0, expected_ddim_s10_eta05_seed0);
  run_case("pndm S=10", "pndm", 10, 0.0, NULL, expected_pndm_s10);
  run_case("pndm S=4", "pndm", 4, 0.0, NULL, expected_pndm_s4);
  run_case("lms S=8", "lms", 8, 0.0, NULL, expected_lms_s8);
  run_case("lms S=3", "lms", 3, 0.0, NULL, expected_lms_s3);
  run_case("euler S=7", "euler", 7, 0.0, NULL, expected_euler_s7);
  run_case("euler S=20", "euler", 20, 0.0, NULL, expected_euler_s20);
}

static void test_lms_coefficients(void) {
  double worst = 0;
  int n = (int)(sizeof expected_lms_coeffs / sizeof expected_lms_coeffs[0]);
  for (int i = 0; i < n; i++) {
    int steps = expected_lms_coeffs[i].steps;
    float timesteps[1000], sigmas[1001], ac[1000];
    sd_error err;
    sd_schedule_diffusers_alphas_cumprod(ac);
    sd_timesteps_linspace(steps, timesteps, &err);
    sd_sigmas_interp(ac, timesteps, steps, sigmas);
    double got = sd_lms_coefficient(sigmas, expected_lms_coeffs[i].order, expected_lms_coeffs[i].t,
                                    expected_lms_coeffs[i].current_order);
    double want = expected_lms_coeffs[i].value;
    double rel = fabs(got - want) / fmax(fabs(want), 1e-300);
    if (rel > worst) worst = rel;
    /* same 21-point rule on the same float32 integrand as scipy's quad: equal up to summation order */
    CHECK(rel <= 1e-12, "lms coefficient steps %d order %d t %d c %d: got %.17g want %.17g", steps,
          expected_lms_coeffs[i].order, expected_lms_coeffs[i].t, expected_lms_coeffs[i].current_order, got, want);
  }
  printf("lms coefficients: %d vs scipy.integrate.quad, worst rel error %.3g\n", n, worst);
}

static void test_diffusers_schedule(void) {
  float ac[SD_TRAIN_TIMESTEPS];
  sd_schedule_diffusers_alphas_cumprod(ac);
  int n = (int)(sizeof expected_diffusers_ac / sizeof expected_diffusers_ac[0]);
  for (int i = 0; i < n; i++)
    CHECK(ac[expected_diffusers_ac[i].index] == expected_diffusers_ac[i].value,
          "diffusers alphas_cumprod[%d] %.9g want %.9g", expected_diffusers_ac[i].index,
          ac[expected_diffusers_ac[i].index], expected_diffusers_ac[i].value);
  /* torch.linspace(0, 1, 5) = [0, 0.25, 0.5, 0.75, 1] exactly; a 1000-point run ends on both end points */
  float small[5], big[1000];
  sd_torch_linspace_f32(0.0, 1.0, 5, small);
  CHECK(small[0] == 0.0f && small[1] == 0.25f && small[2] == 0.5f && small[3] == 0.75f && small[4] == 1.0f,
        "linspace(0,1,5) = %g %g %g %g %g", small[0], small[1], small[2], small[3], small[4]);
  sd_torch_linspace_f32(sqrt(SD_BETA_START), sqrt(SD_BETA_END), 1000, big);
  CHECK(big[0] == (float)sqrt(SD_BETA_START) && big[999] == (float)sqrt(SD_BETA_END), "linspace end points");
}

/* Reads a "ddim.case0"-style metadata entry (a JSON string holding an object). */
static json_t *metadata_entry(json_t *meta, const char *key) {
  json_t *s = json_object_get(meta, key);
  if (!json_is_string(s)) return NULL;
  return json_loads(json_string_value(s), 0, NULL);
}

static void test_reference(const char *ref_dir) {
  char path[4096];
  sd_error err;
  sd_tensor_store *model = NULL, *vectors = NULL;
  snprintf(path, sizeof path, "%s/tiny-sd1/model.safetensors", ref_dir);
  if (sd_store_open(path, &model, &err) == 0) {
    sd_tensor *t = sd_store_find(model, "alphas_cumprod");
    const float *ref = t ? sd_tensor_f32(t, &err) : NULL;
    CHECK(ref && sd_tensor_numel(t) == SD_TRAIN_TIMESTEPS, "alphas_cumprod missing in %s", path);
    if (ref) {
      float ac[SD_TRAIN_TIMESTEPS];
      sd_schedule_ldm_alphas_cumprod(ac);
      int n_diff = 0;
      for (int i = 0; i < SD_TRAIN_TIMESTEPS; i++) n_diff += ac[i] != ref[i];
      /* the checkpoint's buffer is ldm's float64 schedule cast to float32: bit-exact */
      CHECK(n_diff == 0, "ldm alphas_cumprod: %d of 1000 differ from the checkpoint", n_diff);
    }
    sd_store_close(model);
  } else {
    CHECK(0, "%s", err.msg);
  }

  snprintf(path, sizeof path, "%s/tiny-sd1/vectors.safetensors", ref_dir);
  if (sd_store_open(path, &vectors, &err) != 0) {
    CHECK(0, "%s", err.msg);
    return;
  }
  json_t *meta = vectors->metadata_json ? json_loads(vectors->metadata_json, 0, NULL) : NULL;
  CHECK(meta != NULL, "%s: no __metadata__", path);
  const struct {
    const char *key, *sampler;
  } cases[] = {{"ddim.case0", "ddim"}, {"ddim.case1", "ddim"}, {"pndm.case0", "pndm"},
               {"lms.case0", "lms"},   {"euler.case0", "euler"}};
  for (int c = 0; c < 5 && meta; c++) {
    json_t *settings = metadata_entry(meta, cases[c].key);
    CHECK(settings != NULL, "%s: metadata %s missing or not JSON", path, cases[c].key);
    if (!settings) continue;
    int steps = (int)json_integer_value(json_object_get(settings, "steps"));
    double eta = json_number_value(json_object_get(settings, "eta"));
    sd_sampler_config cfg = {cases[c].sampler, steps, eta};
    if (strcmp(cases[c].sampler, "ddim") == 0) {
      CHECK(strcmp(json_string_value(json_object_get(settings, "discretize")), "uniform") == 0 &&
                json_integer_value(json_object_get(settings, "timestep_offset")) == 1,
            "%s: not the uniform/+1 discretisation", cases[c].key);
    } else {
      json_t *sc = json_object_get(settings, "scheduler_config");
      const char *spacing = json_string_value(json_object_get(sc, "timestep_spacing"));
      int offset = (int)json_integer_value(json_object_get(sc, "steps_offset"));
      CHECK(json_real_value(json_object_get(sc, "beta_start")) == SD_BETA_START &&
                json_real_value(json_object_get(sc, "beta_end")) == SD_BETA_END &&
                strcmp(json_string_value(json_object_get(sc, "beta_schedule")), "scaled_linear") == 0 &&
                strcmp(json_string_value(json_object_get(sc, "prediction_type")), "epsilon") == 0 &&
                json_integer_value(json_object_get(sc, "num_train_timesteps")) == SD_TRAIN_TIMESTEPS,
            "%s: schedule differs from scaled_linear 0.00085..0.012 epsilon", cases[c].key);
      if (strcmp(cases[c].sampler, "pndm") == 0)
        CHECK(json_is_true(json_object_get(sc, "skip_prk_steps")) &&
                  json_is_false(json_object_get(sc, "set_alpha_to_one")) && strcmp(spacing, "leading") == 0 &&
                  offset == 1,
              "%s: not skip_prk/leading/offset 1", cases[c].key);
      else
        CHECK(strcmp(spacing, "linspace") == 0 && !json_is_true(json_object_get(sc, "use_karras_sigmas")),
              "%s: not linspace spacing without karras sigmas", cases[c].key);
      int evals = (int)json_integer_value(json_object_get(settings, "unet_evaluations"));
      CHECK(evals == sd_sampler_evaluations(&cfg, &err), "%s: %d UNet evaluations, sampler makes %d", cases[c].key,
            evals, sd_sampler_evaluations(&cfg, &err));
    }
    char name[128];
    snprintf(name, sizeof name, "%s.timesteps", cases[c].key);
    sd_tensor *t = sd_store_find(vectors, name);
    const float *ref = t ? sd_tensor_f32(t, &err) : NULL;
    CHECK(ref != NULL, "%s missing from %s", name, path);
    int n = sd_sampler_evaluations(&cfg, &err);
    if (ref && n > 0) {
      CHECK(sd_tensor_numel(t) == n, "%s: %lld timesteps, sampler evaluates %d", name,
            (long long)sd_tensor_numel(t), n);
      float got[1001];
      CHECK(sd_sampler_timesteps(&cfg, got, &err) == 0, "%s", err.msg);
      int n_diff = 0;
      for (int i = 0; i < n && i < sd_tensor_numel(t); i++) n_diff += got[i] != ref[i];
      CHECK(n_diff == 0, "%s: %d of %d timesteps differ (first got %g want %g)", name, n_diff, n, got[0], ref[0]);
    }
    json_decref(settings);
  }
  json_decref(meta);
  sd_store_close(vectors);
}

static void test_bad_input(void) {
  float latent[NUMEL];
  fake_model model = {0};
  sd_error err = {{0}};
  sd_sampler_config unknown = {"heun", 10, 0.0};
  CHECK(sd_sample(&unknown, latent, NUMEL, fake_denoise, &model, NULL, NULL, &err) == -1 &&
            strstr(err.msg, "unknown sampler 'heun'"),
        "unknown sampler: '%s'", err.msg);
  sd_sampler_config zero = {"ddim", 0, 0.0};
  CHECK(sd_sample(&zero, latent, NUMEL, fake_denoise, &model, NULL, NULL, &err) == -1 && strstr(err.msg, "steps"),
        "0 steps: '%s'", err.msg);
  sd_sampler_config pndm1 = {"pndm", 1, 0.0};
  CHECK(sd_sampler_evaluations(&pndm1, &err) == -1 && strstr(err.msg, "pndm"), "pndm 1 step: '%s'", err.msg);
  sd_sampler_config eta = {"ddim", 10, 0.5};
  CHECK(sd_sample(&eta, latent, NUMEL, fake_denoise, &model, NULL, NULL, &err) == -1 && strstr(err.msg, "random"),
        "eta without rng: '%s'", err.msg);
  sd_sampler_config eta_euler = {"euler", 10, 0.5};
  CHECK(sd_sample(&eta_euler, latent, NUMEL, fake_denoise, &model, NULL, NULL, &err) == -1 && strstr(err.msg, "eta"),
        "eta on euler: '%s'", err.msg);
  const char *names[4] = {"ddim", "pndm", "lms", "euler"};
  for (int s = 0; s < 4; s++) {
    sd_sampler_config cfg = {names[s], 6, 0.0};
    fake_model failing = {.fail_at = 3};
    x_T(latent);
    int rc = sd_sample(&cfg, latent, NUMEL, fake_denoise, &failing, NULL, NULL, &err);
    CHECK(rc == -1 && strstr(err.msg, names[s]) && strstr(err.msg, "step 3/") && strstr(err.msg, "fake model refused"),
          "%s: denoiser failure not reported with the step: '%s'", names[s], err.msg);
    CHECK(failing.calls == 3, "%s: sampler went on after a failed call (%d calls)", names[s], failing.calls);
  }
}

int main(void) {
  test_samplers_vs_numpy();
  test_lms_coefficients();
  test_diffusers_schedule();
  test_bad_input();
  test_reference(test_reference_dir());
  return test_finish();
}
