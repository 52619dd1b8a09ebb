/* Per-neuron sums over tokens against a plain double loop, on shapes that are not multiples of the
 * channel chunk or the token block, and accumulation across calls (the merge is addition). */
#include <stdint.h>

#include "core/kernels.h"
#include "stats/neuron_stats.h"
#include "test_util.h"

int main(void) {
  int shapes[][2] = {{1, 1}, {7, 300}, {64, 256}, {130, 1280}, {4096, 320}};
  uint64_t st = 99;
  for (size_t k = 0; k < sizeof shapes / sizeof *shapes; k++) {
    int T = shapes[k][0], C = shapes[k][1];
    float *x = malloc(sizeof(float) * (size_t)T * C);
    for (int64_t i = 0; i < (int64_t)T * C; i++) {
      st = st * 6364136223846793005ull + 1442695040888963407ull;
      x[i] = (float)((st >> 40) & 0xffffff) / 16777216.0f * 4.0f - 1.0f;
    }
    double *sum = calloc((size_t)C, sizeof(double)), *sq = calloc((size_t)C, sizeof(double));
    sd_neuron_stats_accumulate(sum, sq, x, T, C);
    sd_neuron_stats_accumulate(sum, sq, x, T, C); /* twice: accumulates */
    double worst = 0;
    for (int c = 0; c < C; c++) {
      double rs = 0, rq = 0;
      for (int t = 0; t < T; t++) {
        rs += x[(int64_t)t * C + c];
        rq += (double)x[(int64_t)t * C + c] * x[(int64_t)t * C + c];
      }
      double e1 = fabs(sum[c] - 2 * rs) / (fabs(rq) + 1), e2 = fabs(sq[c] - 2 * rq) / (rq + 1e-30);
      if (e1 > worst) worst = e1;
      if (e2 > worst) worst = e2;
    }
    CHECK(worst < 1e-6, "tokens %d channels %d: worst relative error %g", T, C, worst);
    free(x), free(sum), free(sq);
  }
  return test_finish();
}
