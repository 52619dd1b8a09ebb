/* Per-neuron sums over tokens (see neuron_stats.h). Tokens are summed in float over blocks of 64
 * (exact enough: relative error ~1e-6 per block) and blocks are added in double. */
#include "stats/neuron_stats.h"

#include <omp.h>
#include <stdlib.h>

#define TOKEN_BLOCK 64

void sd_neuron_stats_accumulate(double *sum, double *sumsq, const float *data, int64_t tokens, int channels) {
  const int chunk = 256; /* channels per task */
#pragma omp parallel for schedule(static)
  for (int c0 = 0; c0 < channels; c0 += chunk) {
    int n = channels - c0 < chunk ? channels - c0 : chunk;
    float s[256], q[256];
    for (int64_t t0 = 0; t0 < tokens; t0 += TOKEN_BLOCK) {
      int64_t t1 = t0 + TOKEN_BLOCK < tokens ? t0 + TOKEN_BLOCK : tokens;
      for (int c = 0; c < n; c++) s[c] = q[c] = 0.0f;
      for (int64_t t = t0; t < t1; t++) {
        const float *row = data + t * channels + c0;
#pragma omp simd
        for (int c = 0; c < n; c++) {
          s[c] += row[c];
          q[c] += row[c] * row[c];
        }
      }
      for (int c = 0; c < n; c++) {
        sum[c0 + c] += s[c];
        sumsq[c0 + c] += q[c];
      }
    }
  }
}
