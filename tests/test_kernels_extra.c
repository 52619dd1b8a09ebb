/* sd_conv2d_forward_banded against the whole-image sd_conv2d_forward on small random shapes,
 * with scratch limits that force one, several and single-row bands. */
#include <stdint.h>

#include "core/kernels.h"
#include "core/kernels_extra.h"
#include "test_util.h"

static uint32_t rng = 12345;
static float frand(void) {
  rng = rng * 1664525u + 1013904223u;
  return (float)((rng >> 8) & 0xffff) / 32768.0f - 1.0f;
}

int main(void) {
  sd_arena arena = {0};
  sd_error err = {{0}};
  const int shapes[][7] = {/* cin, cout, k, h, w, stride, pad */
                           {3, 5, 3, 7, 9, 1, 1}, {4, 6, 3, 9, 8, 2, 0}, {2, 3, 3, 5, 5, 2, 1},
                           {5, 4, 1, 6, 7, 2, 0}, {8, 8, 3, 16, 12, 1, 1}};
  const size_t limits[] = {1, 100, 1000, (size_t)1 << 30};
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    int cin = shapes[s][0], cout = shapes[s][1], k = shapes[s][2], h = shapes[s][3], w = shapes[s][4];
    int stride = shapes[s][5], pad = shapes[s][6];
    int ho = sd_conv_out_size(h, k, stride, pad), wo = sd_conv_out_size(w, k, stride, pad);
    size_t nx = (size_t)cin * h * w, nw = (size_t)cout * cin * k * k, ny = (size_t)cout * ho * wo;
    float *x = malloc(nx * sizeof(float)), *wt = malloc(nw * sizeof(float)), *b = malloc(cout * sizeof(float));
    float *ref = malloc(ny * sizeof(float)), *got = malloc(ny * sizeof(float)), *init = malloc(ny * sizeof(float));
    for (size_t i = 0; i < nx; i++) x[i] = frand();
    for (size_t i = 0; i < nw; i++) wt[i] = frand();
    for (int i = 0; i < cout; i++) b[i] = frand();
    for (size_t i = 0; i < ny; i++) init[i] = frand();
    for (int with_bias = 0; with_bias < 2; with_bias++) {
      sd_conv2d conv = {wt, with_bias ? b : NULL, cout, cin, k};
      for (int acc = 0; acc < 2; acc++) {
        memcpy(ref, init, ny * sizeof(float));
        sd_conv2d_forward(ref, x, h, w, &conv, stride, pad, acc, &arena, &err);
        for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++) {
          memcpy(got, init, ny * sizeof(float));
          int rc = sd_conv2d_forward_banded(got, x, h, w, &conv, stride, pad, acc, limits[l], &arena, &err);
          CHECK(rc == 0, "banded: %s", err.msg);
          double max_abs = 0, rel = test_rel_l2(got, ref, (long)ny, &max_abs);
          CHECK(rel <= 1e-6, "shape %zu bias %d acc %d limit %zu: rel-L2 %.3e max-abs %.3e", s, with_bias, acc,
                limits[l], rel, max_abs);
        }
      }
    }
    free(x), free(wt), free(b), free(ref), free(got), free(init);
  }
  sd_arena_free(&arena);
  return test_finish();
}
