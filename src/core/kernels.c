/* Numeric building blocks (see kernels.h). Reductions that decide accuracy (norm statistics,
 * softmax sums) accumulate in double; everything else is float32 like the torch reference. */
#include "core/kernels.h"
#include "core/vmath.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

void openblas_set_num_threads(int num_threads);

void sd_set_threads(int n) {
  if (n < 1) n = 1;
  omp_set_num_threads(n);
  openblas_set_num_threads(n);
}

int sd_get_threads(void) { return omp_get_max_threads(); }

static void add_bias_rows(float *y, int64_t m, int n, const float *b) {
  if (!b) return;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < m; i++)
    for (int j = 0; j < n; j++) y[i * n + j] += b[j];
}

void sd_linear_forward(float *y, const float *x, int64_t m, const sd_linear *lin) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, lin->out, lin->in, 1.0f, x, lin->in, lin->w, lin->in,
              0.0f, y, lin->out);
  add_bias_rows(y, m, lin->out, lin->b);
}

void sd_linear_forward_acc(float *y, const float *x, int64_t m, const sd_linear *lin) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, lin->out, lin->in, 1.0f, x, lin->in, lin->w, lin->in,
              1.0f, y, lin->out);
  add_bias_rows(y, m, lin->out, lin->b);
}

/* col[(ci·k + ky)·k + kx, oy·wo + ox] = x[ci, oy·s + ky − pad, ox·s + kx − pad] (0 outside). */
static void im2col(float *col, const float *x, int cin, int h, int w, int k, int stride, int pad, int ho, int wo) {
#pragma omp parallel for collapse(2) schedule(static)
  for (int ci = 0; ci < cin; ci++) {
    for (int kk = 0; kk < k * k; kk++) {
      int ky = kk / k, kx = kk % k;
      float *dst = col + ((int64_t)ci * k * k + kk) * ho * wo;
      const float *src = x + (int64_t)ci * h * w;
      for (int oy = 0; oy < ho; oy++) {
        int iy = oy * stride + ky - pad;
        float *row = dst + (int64_t)oy * wo;
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

int sd_conv2d_forward(float *y, const float *x, int h, int w, const sd_conv2d *conv, int stride, int pad,
                      int accumulate, sd_arena *arena, sd_error *err) {
  int k = conv->k;
  int ho = sd_conv_out_size(h, k, stride, pad), wo = sd_conv_out_size(w, k, stride, pad);
  int64_t npix = (int64_t)ho * wo;
  int64_t kdim = (int64_t)conv->cin * k * k;
  const float *cols = x;
  size_t mark = sd_arena_mark(arena);
  if (!(k == 1 && stride == 1 && pad == 0)) {
    float *buf = sd_arena_floats(arena, (size_t)(kdim * npix), err);
    if (!buf) return -1;
    im2col(buf, x, conv->cin, h, w, k, stride, pad, ho, wo);
    cols = buf;
  }
  if (conv->b) {
    if (!accumulate) {
#pragma omp parallel for schedule(static)
      for (int co = 0; co < conv->cout; co++)
        for (int64_t p = 0; p < npix; p++) y[co * npix + p] = conv->b[co];
    } else {
#pragma omp parallel for schedule(static)
      for (int co = 0; co < conv->cout; co++)
        for (int64_t p = 0; p < npix; p++) y[co * npix + p] += conv->b[co];
    }
  }
  float beta = (conv->b || accumulate) ? 1.0f : 0.0f;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, conv->cout, (int)npix, (int)kdim, 1.0f, conv->w, (int)kdim,
              cols, (int)npix, beta, y, (int)npix);
  sd_arena_release(arena, mark);
  return 0;
}

void sd_group_norm(float *y, const float *x, int c, int64_t hw, int groups, float eps, const sd_norm *n, int silu) {
  int cpg = c / groups;
#pragma omp parallel for schedule(static)
  for (int g = 0; g < groups; g++) {
    const float *xg = x + (int64_t)g * cpg * hw;
    int64_t count = (int64_t)cpg * hw;
    double sum = 0, sq = 0;
    for (int64_t i = 0; i < count; i++) sum += xg[i];
    double mean = sum / (double)count;
    for (int64_t i = 0; i < count; i++) {
      double d = xg[i] - mean;
      sq += d * d;
    }
    float inv = (float)(1.0 / sqrt(sq / (double)count + eps));
    float fmean = (float)mean;
    for (int ci = 0; ci < cpg; ci++) {
      int ch = g * cpg + ci;
      float scale = inv * n->gamma[ch], shift = n->beta[ch];
      const float *src = xg + (int64_t)ci * hw;
      float *dst = y + (int64_t)ch * hw;
      for (int64_t i = 0; i < hw; i++) dst[i] = (src[i] - fmean) * scale + shift;
      if (silu) sd_silu_vec(dst, dst, hw);
    }
  }
}

void sd_layer_norm(float *y, const float *x, int64_t t, int c, float eps, const sd_norm *n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < t; i++) {
    const float *row = x + i * c;
    float *out = y + i * c;
    double sum = 0, sq = 0;
    for (int j = 0; j < c; j++) sum += row[j];
    double mean = sum / c;
    for (int j = 0; j < c; j++) {
      double d = row[j] - mean;
      sq += d * d;
    }
    float inv = (float)(1.0 / sqrt(sq / c + eps)), fmean = (float)mean;
    for (int j = 0; j < c; j++) out[j] = (row[j] - fmean) * inv * n->gamma[j] + n->beta[j];
  }
}

void sd_silu_inplace(float *x, int64_t n) {
  const int64_t chunk = 16384;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += chunk) sd_silu_vec(x + i, x + i, n - i < chunk ? n - i : chunk);
}

void sd_gelu_inplace(float *x, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) x[i] = sd_gelu_erf(x[i]);
}

void sd_quick_gelu_inplace(float *x, int64_t n) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

void sd_geglu(float *out, const float *in, int64_t t, int inner) {
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < t; i++) {
    const float *a = in + i * 2 * inner;
    sd_geglu_row(out + i * inner, a, a + inner, inner);
  }
}

/* Row-wise softmax of s[rows, cols] in place; with causal, keys after the query (row0 + r) get 0. */
static void softmax_rows(float *s, int rows, int cols, int ld, int row0, int causal) {
#pragma omp parallel for schedule(static)
  for (int r = 0; r < rows; r++) {
    float *row = s + (int64_t)r * ld;
    int valid = causal ? (row0 + r + 1 < cols ? row0 + r + 1 : cols) : cols;
    sd_softmax_row(row, valid);
    for (int j = valid; j < cols; j++) row[j] = 0.0f;
  }
}

int sd_attention(float *out, int ldo, const float *q, int ldq, const float *k, const float *v, int ldk, int tq,
                 int tk, int heads, int dh, float scale, int causal, sd_arena *arena, sd_error *err) {
  /* Bound the score block to ~64 MiB. */
  int block = (int)((16u << 20) / (unsigned)(tk > 0 ? tk : 1));
  if (block < 1) block = 1;
  if (block > tq) block = tq;
  size_t mark = sd_arena_mark(arena);
  float *scores = sd_arena_floats(arena, (size_t)block * (size_t)tk, err);
  if (!scores) return -1;
  for (int h = 0; h < heads; h++) {
    for (int r0 = 0; r0 < tq; r0 += block) {
      int rows = tq - r0 < block ? tq - r0 : block;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, tk, dh, scale, q + (int64_t)r0 * ldq + h * dh, ldq,
                  k + h * dh, ldk, 0.0f, scores, tk);
      softmax_rows(scores, rows, tk, tk, r0, causal);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, dh, tk, 1.0f, scores, tk, v + h * dh, ldk, 0.0f,
                  out + (int64_t)r0 * ldo + h * dh, ldo);
    }
  }
  sd_arena_release(arena, mark);
  return 0;
}

void sd_upsample_nearest2x(float *y, const float *x, int c, int h, int w) {
#pragma omp parallel for schedule(static)
  for (int ch = 0; ch < c; ch++) {
    const float *src = x + (int64_t)ch * h * w;
    float *dst = y + (int64_t)ch * 4 * h * w;
    for (int iy = 0; iy < 2 * h; iy++) {
      const float *srow = src + (int64_t)(iy / 2) * w;
      float *drow = dst + (int64_t)iy * 2 * w;
      for (int ix = 0; ix < 2 * w; ix++) drow[ix] = srow[ix / 2];
    }
  }
}

void sd_transpose(float *y, const float *x, int64_t rows, int64_t cols) {
  const int64_t tile = 32;
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t r0 = 0; r0 < rows; r0 += tile)
    for (int64_t c0 = 0; c0 < cols; c0 += tile)
      for (int64_t r = r0; r < r0 + tile && r < rows; r++)
        for (int64_t c = c0; c < c0 + tile && c < cols; c++) y[c * rows + r] = x[r * cols + c];
}
