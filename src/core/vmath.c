/* Vectorised elementwise kernels (see vmath.h). Built with -O3 and one clone per x86 vector ISA
 * (AVX-512, AVX2+FMA, baseline), chosen at load time, so a generic build runs at full width. */
#include "core/vmath.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SD_CLONES __attribute__((target_clones("avx512f", "avx2,fma", "default")))
#else
#define SD_CLONES
#endif

SD_CLONES float sd_softmax_row_unnormalised(float *row, int n) {
  float mx = row[0];
#pragma omp simd reduction(max : mx)
  for (int j = 0; j < n; j++) mx = row[j] > mx ? row[j] : mx;
  float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
  for (int j = 0; j < n; j++) {
    float e = sd_exp_approx(row[j] - mx);
    row[j] = e;
    sum += e;
  }
  return sum;
}

SD_CLONES void sd_softmax_row(float *row, int n) {
  float inv = 1.0f / sd_softmax_row_unnormalised(row, n);
#pragma omp simd
  for (int j = 0; j < n; j++) row[j] *= inv;
}

SD_CLONES void sd_silu_vec(float *y, const float *x, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; i++) y[i] = sd_silu_approx(x[i]);
}

SD_CLONES void sd_geglu_row(float *out, const float *a, const float *g, int n) {
#pragma omp simd
  for (int j = 0; j < n; j++) out[j] = a[j] * sd_gelu_approx(g[j]);
}

