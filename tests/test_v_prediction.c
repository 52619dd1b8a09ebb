/* v-prediction: a UNet output v = sqrt(ᾱ)·eps − sqrt(1−ᾱ)·x0 for the sample x_t = sqrt(ᾱ)·x0 + sqrt(1−ᾱ)·eps
 * converts back to eps, at integer
 * timesteps (DDIM, PNDM) and at the fractional ones of LMS/Euler, where ᾱ = 1 / (1 + σ²) with σ
 * interpolated linearly in t as diffusers does. */
#include <stdint.h>

#include "sample/schedule.h"
#include "test_util.h"

static double alpha_bar(double t, const float *ac) {
  int j = (int)floor(t);
  if (t == j) return ac[j];
  double s0 = sqrt((1.0 - ac[j]) / ac[j]), s1 = sqrt((1.0 - ac[j + 1]) / ac[j + 1]);
  double s = s0 + (s1 - s0) * (t - j);
  return 1.0 / (1.0 + s * s);
}

enum { N = 1000 };

/* The v a perfect model predicts for noise eps in the sample x_t (x0 recovered from both). */
static void make_v(float *v, const float *eps, const float *xt, double ab) {
  for (int i = 0; i < N; i++) {
    double x0 = (xt[i] - sqrt(1.0 - ab) * eps[i]) / sqrt(ab);
    v[i] = (float)(sqrt(ab) * eps[i] - sqrt(1.0 - ab) * x0);
  }
}

int main(void) {
  float ac[SD_TRAIN_TIMESTEPS];
  sd_schedule_diffusers_alphas_cumprod(ac);
  const float ts[] = {1.0f, 500.0f, 999.0f, 856.2857f, 0.5f, 12.75f};
  float eps[N], x[N], v[N], got[N];
  uint64_t st = 7;
  for (int i = 0; i < N; i++) {
    st = st * 6364136223846793005ull + 1442695040888963407ull;
    eps[i] = (float)((st >> 40) & 0xffff) / 32768.0f - 1.0f;
    x[i] = (float)((st >> 20) & 0xffff) / 8192.0f - 4.0f;
  }
  for (size_t k = 0; k < sizeof ts / sizeof *ts; k++) {
    double ab = alpha_bar(ts[k], ac);
    make_v(v, eps, x, ab);
    sd_v_to_eps(got, v, x, N, ts[k]);
    double mx, rel = test_rel_l2(got, eps, N, &mx);
    CHECK(rel < 2e-6, "t=%g: rel-L2 %g (max %g)", ts[k], rel, mx);
  }
  /* in place, as the pipeline calls it */
  double ab = alpha_bar(500, ac);
  make_v(v, eps, x, ab);
  sd_v_to_eps(v, v, x, N, 500.0f);
  double mx, rel = test_rel_l2(v, eps, N, &mx);
  CHECK(rel < 2e-6, "in place: rel-L2 %g", rel);
  return test_finish();
}
