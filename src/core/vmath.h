/* Vectorisable float32 elementwise math for the hot loops (softmax, SiLU, GELU): exp accurate to
 * about 1 ulp and erf to 5e-7 absolute, written so the compiler vectorises them (no libm calls).
 * The libm versions (expf, erff) remain the reference; tests/test_vmath.c compares the two. */
#ifndef SD_VMATH_H
#define SD_VMATH_H

#include <stdint.h>
#include <string.h>

/* exp(x) by Cody-Waite range reduction and the cephes degree-6 polynomial; x clamped to
 * [-87.3, 88.7]; below -87.3 the result is 0. */
static inline float sd_exp_approx(float x) {
  float underflow = x < -87.3f ? 0.0f : 1.0f; /* exp of very negative scores is 0, as softmax needs */
  x = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  /* round(x·log2 e) with the 1.5·2^23 trick, which vectorises without SSE4.1 */
  float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r + 1.0f;
  uint32_t bits = (uint32_t)((int32_t)n + 127) << 23; /* unsigned: NaN/-inf inputs make it negative */
  float scale;
  memcpy(&scale, &bits, 4);
  return p * scale * underflow;
}

/* erf(x): Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7) with the exp above. */
static inline float sd_erf_approx(float x) {
  float s = x < 0 ? -1.0f : 1.0f, a = x < 0 ? -x : x;
  float t = 1.0f / (1.0f + 0.3275911f * a);
  float y = 1.061405429f;
  y = y * t - 1.453152027f;
  y = y * t + 1.421413741f;
  y = y * t - 0.284496736f;
  y = y * t + 0.254829592f;
  y = y * t;
  return s * (1.0f - y * sd_exp_approx(-a * a));
}

static inline float sd_gelu_approx(float x) { return 0.5f * x * (1.0f + sd_erf_approx(x * 0.70710678118654752f)); }
static inline float sd_silu_approx(float x) { return x / (1.0f + sd_exp_approx(-x)); }

/* Softmax of one row in place; returns nothing. Sums in float with a vectorised reduction. */
void sd_softmax_row(float *row, int n);
/* exp(row - max(row)) in place; returns the sum (the caller divides). */
float sd_softmax_row_unnormalised(float *row, int n);
void sd_silu_vec(float *y, const float *x, int64_t n);
/* out[j] = a[j] · gelu(g[j]) for j < n (one GEGLU row). */
void sd_geglu_row(float *out, const float *a, const float *g, int n);

#endif
