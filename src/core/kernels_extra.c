/* Row-banded convolution (see kernels_extra.h). The per-band products are the same dot products
 * as the whole-image im2col + sgemm of kernels.c, written straight into y's rows. */
#include "core/kernels_extra.h"

#include <cblas.h>
#include <string.h>

/* col[(ci·k + ky)·k + kx, (oy − oy0)·wo + ox] = x[ci, oy·s + ky − pad, ox·s + kx − pad] (0 outside),
 * for output rows oy0 ≤ oy < oy1. */
static void im2col_rows(float *col, const float *x, int cin, int h, int w, int k, int stride, int pad, int wo,
                        int oy0, int oy1) {
  int64_t band = (int64_t)(oy1 - oy0) * wo;
#pragma omp parallel for collapse(2) schedule(static)
  for (int ci = 0; ci < cin; ci++) {
    for (int kk = 0; kk < k * k; kk++) {
      int ky = kk / k, kx = kk % k;
      float *dst = col + ((int64_t)ci * k * k + kk) * band;
      const float *src = x + (int64_t)ci * h * w;
      for (int oy = oy0; oy < oy1; oy++) {
        int iy = oy * stride + ky - pad;
        float *row = dst + (int64_t)(oy - oy0) * wo;
        if (iy < 0 || iy >= h) {
          memset(row, 0, sizeof(float) * (size_t)wo);
          continue;
        }
        const float *srow = src + (int64_t)iy * w;
        for (int ox = 0; ox < wo; ox++) {
          int ix = ox * stride + kx - pad;
          row[ox] = (ix >= 0 && ix < w) ? srow[ix] : 0.0f;
        }
      }
    }
  }
}

int sd_conv2d_forward_banded(float *y, const float *x, int h, int w, const sd_conv2d *conv, int stride, int pad,
                             int accumulate, size_t max_scratch_floats, sd_arena *arena, sd_error *err) {
  int k = conv->k;
  if (k == 1 && stride == 1 && pad == 0) /* no im2col at all */
    return sd_conv2d_forward(y, x, h, w, conv, stride, pad, accumulate, arena, err);
  int ho = sd_conv_out_size(h, k, stride, pad), wo = sd_conv_out_size(w, k, stride, pad);
  int64_t npix = (int64_t)ho * wo, kdim = (int64_t)conv->cin * k * k;
  int64_t rows = (int64_t)max_scratch_floats / (kdim * wo);
  if (rows < 1) rows = 1;
  if (rows > ho) rows = ho;
  size_t mark = sd_arena_mark(arena);
  float *cols = sd_arena_floats(arena, (size_t)(kdim * rows * wo), err);
  if (!cols) return -1;
  if (conv->b) {
#pragma omp parallel for schedule(static)
    for (int co = 0; co < conv->cout; co++)
      for (int64_t p = 0; p < npix; p++) y[co * npix + p] = accumulate ? y[co * npix + p] + conv->b[co] : conv->b[co];
  }
  float beta = (conv->b || accumulate) ? 1.0f : 0.0f;
  for (int oy0 = 0; oy0 < ho; oy0 += (int)rows) {
    int oy1 = oy0 + (int)rows < ho ? oy0 + (int)rows : ho;
    int band = (oy1 - oy0) * wo;
    im2col_rows(cols, x, conv->cin, h, w, k, stride, pad, wo, oy0, oy1);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, conv->cout, band, (int)kdim, 1.0f, conv->w, (int)kdim, cols,
                band, beta, y + (int64_t)oy0 * wo, (int)npix);
  }
  sd_arena_release(arena, mark);
  return 0;
}
