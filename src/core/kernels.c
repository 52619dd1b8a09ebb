/* Numeric building blocks (see kernels.h). Reductions that decide accuracy (norm statistics,
 * softmax sums) accumulate in double; everything else is float32 like the torch reference. */
#include "core/kernels.h"
#include "core/attention_kernels.h"
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

/* Work sharing of the loops below. On a shared node a thread of ours can lose its core for a time
 * slice; with static schedules its partner then waits at the barrier with its share done, and the
 * loop takes as long as its slowest thread. The loops are instead cut into chunks of about
 * CHUNK_FLOATS elements (many more chunks than threads, each still long enough to amortise the
 * dynamic schedule's atomic) that idle threads take as they come. No loop here reduces across
 * iterations, so the schedule does not change any result. */
#define CHUNK_FLOATS 16384

static int rows_per_chunk(int64_t row_floats) {
  int64_t r = row_floats > 0 ? CHUNK_FLOATS / row_floats : 1;
  return r < 1 ? 1 : r > (1 << 20) ? (1 << 20) : (int)r;
}

static void add_bias_rows(float *y, int64_t m, int n, const float *b) {
  if (!b) return;
  int chunk = rows_per_chunk(n);
#pragma omp parallel for schedule(dynamic, chunk)
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

/* col[(ci·k + ky)·k + kx, oy·wo + ox] = x[ci, oy·s + ky − pad, ox·s + kx − pad] (0 outside); rows of col
 * are ldc floats apart, so several images can sit side by side in one matrix. Stride 1 copies whole
 * shifted rows (the common case), other strides gather. */
#ifndef SD_IM2COL_BAND_FLOATS
#define SD_IM2COL_BAND_FLOATS (1 << 22) /* 16 MiB of columns per band */
#endif

static void im2col_rows(float *col, int64_t ldc, const float *x, int cin, int h, int w, int k, int stride, int pad,
                        int oy_begin, int n_rows, int wo) {
  int chunk = rows_per_chunk((int64_t)n_rows * wo);
#pragma omp parallel for collapse(2) schedule(dynamic, chunk)
  for (int ci = 0; ci < cin; ci++) {
    for (int kk = 0; kk < k * k; kk++) {
      int ky = kk / k, kx = kk % k;
      float *dst = col + ((int64_t)ci * k * k + kk) * ldc;
      const float *src = x + (int64_t)ci * h * w;
      /* output columns whose input column is inside the image: [ox0, ox1) */
      int shift = kx - pad;
      int ox0 = 0, ox1 = wo;
      if (stride == 1) {
        ox0 = shift < 0 ? -shift : 0;
        ox1 = w - shift < wo ? w - shift : wo;
        if (ox1 < ox0) ox1 = ox0;
      }
      for (int oy = oy_begin; oy < oy_begin + n_rows; oy++) {
        int iy = oy * stride + ky - pad;
        float *row = dst + (int64_t)(oy - oy_begin) * wo;
        if (iy < 0 || iy >= h) {
          memset(row, 0, sizeof(float) * (size_t)wo);
          continue;
        }
        const float *srow = src + (int64_t)iy * w;
        if (stride == 1) {
          for (int ox = 0; ox < ox0; ox++) row[ox] = 0.0f;
          memcpy(row + ox0, srow + ox0 + shift, sizeof(float) * (size_t)(ox1 - ox0));
          for (int ox = ox1; ox < wo; ox++) row[ox] = 0.0f;
        } else {
          for (int ox = 0; ox < wo; ox++) {
            int ix = ox * stride + kx - pad;
            row[ox] = (ix >= 0 && ix < w) ? srow[ix] : 0.0f;
          }
        }
      }
    }
  }
}

int sd_conv2d_forward(float *y, const float *x, int h, int w, const sd_conv2d *conv, int stride, int pad,
                      int accumulate, sd_arena *arena, sd_error *err) {
  return sd_conv2d_forward_batch(y, x, 1, h, w, conv, stride, pad, accumulate, arena, err);
}

/* y[b] (+)= bias + col-product, for images whose columns sit at b·npix in a [cout, B·npix] product. */
static void scatter_batch(float *y, const float *prod, int B, int cout, int64_t npix, const float *bias, int accumulate) {
  int chunk = rows_per_chunk(npix);
#pragma omp parallel for collapse(2) schedule(dynamic, chunk)
  for (int b = 0; b < B; b++)
    for (int co = 0; co < cout; co++) {
      float *dst = y + ((int64_t)b * cout + co) * npix;
      const float *src = prod + (int64_t)co * B * npix + (int64_t)b * npix;
      float add = bias ? bias[co] : 0.0f;
      if (accumulate)
        for (int64_t p = 0; p < npix; p++) dst[p] += src[p] + add;
      else
        for (int64_t p = 0; p < npix; p++) dst[p] = src[p] + add;
    }
}

int sd_conv2d_forward_batch(float *y, const float *x, int B, int h, int w, const sd_conv2d *conv, int stride, int pad,
                            int accumulate, sd_arena *arena, sd_error *err) {
  int k = conv->k;
  int ho = sd_conv_out_size(h, k, stride, pad), wo = sd_conv_out_size(w, k, stride, pad);
  int64_t npix = (int64_t)ho * wo, kdim = (int64_t)conv->cin * k * k;
  int pointwise = k == 1 && stride == 1 && pad == 0;
  /* Small images are multiplied together (one wide product); large ones one by one, straight into y. */
  int merge = B > 1 && npix < 1024;
  size_t mark = sd_arena_mark(arena);
  if (merge) {
    float *cols = sd_arena_floats(arena, (size_t)(kdim * B * npix), err);
    float *prod = sd_arena_floats(arena, (size_t)(conv->cout * B * npix), err);
    if (!cols || !prod) return -1;
    for (int b = 0; b < B; b++) {
      const float *xb = x + (int64_t)b * conv->cin * h * w;
      if (pointwise) {
        for (int ci = 0; ci < conv->cin; ci++)
          memcpy(cols + (int64_t)ci * B * npix + b * npix, xb + (int64_t)ci * npix, sizeof(float) * (size_t)npix);
      } else {
        im2col_rows(cols + b * npix, B * npix, xb, conv->cin, h, w, k, stride, pad, 0, ho, wo);
      }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, conv->cout, (int)(B * npix), (int)kdim, 1.0f, conv->w,
                (int)kdim, cols, (int)(B * npix), 0.0f, prod, (int)(B * npix));
    scatter_batch(y, prod, B, conv->cout, npix, conv->b, accumulate);
    sd_arena_release(arena, mark);
    return 0;
  }
  /* Large images go through im2col in bands of output rows, so the column matrix is still in cache
   * when sgemm reads it (a whole 64x64 im2col is ~47 MB and costs a quarter of the convolution). */
  int band = ho;
  if (!pointwise) {
    int64_t target = ((int64_t)SD_IM2COL_BAND_FLOATS) / (kdim > 0 ? kdim : 1);
    band = (int)(target / wo);
    if (band < 4) band = 4;
    if (band > ho) band = ho;
  }
  float *buf = NULL;
  if (!pointwise && !(buf = sd_arena_floats(arena, (size_t)(kdim * band * wo), err))) return -1;
  for (int b = 0; b < B; b++) {
    const float *xb = x + (int64_t)b * conv->cin * h * w;
    float *yb = y + (int64_t)b * conv->cout * npix;
    if (conv->b) {
      int chunk = rows_per_chunk(npix);
#pragma omp parallel for schedule(dynamic, chunk)
      for (int co = 0; co < conv->cout; co++) {
        float *row = yb + co * npix;
        if (accumulate)
          for (int64_t p = 0; p < npix; p++) row[p] += conv->b[co];
        else
          for (int64_t p = 0; p < npix; p++) row[p] = conv->b[co];
      }
    }
    float beta = (conv->b || accumulate) ? 1.0f : 0.0f;
    if (pointwise) {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, conv->cout, (int)npix, (int)kdim, 1.0f, conv->w,
                  (int)kdim, xb, (int)npix, beta, yb, (int)npix);
      continue;
    }
    for (int oy0 = 0; oy0 < ho; oy0 += band) {
      int rows = ho - oy0 < band ? ho - oy0 : band;
      int n = rows * wo;
      im2col_rows(buf, n, xb, conv->cin, h, w, k, stride, pad, oy0, rows, wo);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, conv->cout, n, (int)kdim, 1.0f, conv->w, (int)kdim, buf, n,
                  beta, yb + (int64_t)oy0 * wo, (int)npix);
    }
  }
  sd_arena_release(arena, mark);
  return 0;
}

void sd_group_norm(float *y, const float *x, int c, int64_t hw, int groups, float eps, const sd_norm *n, int silu) {
  sd_group_norm_add(y, x, NULL, c, hw, groups, eps, n, silu);
}

void sd_group_norm_add(float *y, const float *x, const float *channel_add, int c, int64_t hw, int groups, float eps,
                       const sd_norm *n, int silu) {
  int cpg = c / groups;
#pragma omp parallel for schedule(dynamic, 1) /* 32 groups of cpg·hw floats each */
  for (int g = 0; g < groups; g++) {
    const float *xg = x + (int64_t)g * cpg * hw;
    double sum = 0, sq = 0;
    /* v = x + add rounded to float first, as the separate addition stored it */
    for (int ci = 0; ci < cpg; ci++) {
      float a = channel_add ? channel_add[g * cpg + ci] : 0.0f;
      const float *src = xg + (int64_t)ci * hw;
      for (int64_t i = 0; i < hw; i++) sum += (float)(src[i] + a);
    }
    int64_t count = (int64_t)cpg * hw;
    double mean = sum / (double)count;
    for (int ci = 0; ci < cpg; ci++) {
      float a = channel_add ? channel_add[g * cpg + ci] : 0.0f;
      const float *src = xg + (int64_t)ci * hw;
      for (int64_t i = 0; i < hw; i++) {
        double d = (float)(src[i] + a) - mean;
        sq += d * d;
      }
    }
    float inv = (float)(1.0 / sqrt(sq / (double)count + eps));
    float fmean = (float)mean;
    for (int ci = 0; ci < cpg; ci++) {
      int ch = g * cpg + ci;
      float a = channel_add ? channel_add[ch] : 0.0f;
      float scale = inv * n->gamma[ch], shift = n->beta[ch];
      const float *src = xg + (int64_t)ci * hw;
      float *dst = y + (int64_t)ch * hw;
      for (int64_t i = 0; i < hw; i++) dst[i] = ((float)(src[i] + a) - fmean) * scale + shift;
      if (silu) sd_silu_vec(dst, dst, hw);
    }
  }
}

void sd_layer_norm(float *y, const float *x, int64_t t, int c, float eps, const sd_norm *n) {
  int chunk = rows_per_chunk(c);
#pragma omp parallel for schedule(dynamic, chunk)
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
  const int64_t chunk = CHUNK_FLOATS;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t i = 0; i < n; i += chunk) sd_silu_vec(x + i, x + i, n - i < chunk ? n - i : chunk);
}

void sd_gelu_inplace(float *x, int64_t n) {
#pragma omp parallel for schedule(dynamic, CHUNK_FLOATS)
  for (int64_t i = 0; i < n; i++) x[i] = sd_gelu_erf(x[i]);
}

void sd_quick_gelu_inplace(float *x, int64_t n) {
#pragma omp parallel for schedule(dynamic, CHUNK_FLOATS)
  for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-1.702f * x[i]));
}

void sd_geglu(float *out, const float *in, int64_t t, int inner) {
  int chunk = rows_per_chunk(3 * (int64_t)inner);
#pragma omp parallel for schedule(dynamic, chunk)
  for (int64_t i = 0; i < t; i++) {
    const float *a = in + i * 2 * inner;
    sd_geglu_row(out + i * inner, a, a + inner, inner);
  }
}

int sd_attention(float *out, int ldo, const float *q, int ldq, const float *k, const float *v, int ldk, int tq,
                 int tk, int heads, int dh, float scale, int causal, sd_arena *arena, sd_error *err) {
  /* AVX-512 CPUs take the register-tiled kernels (about twice the rate of sgemm on these thin
   * products); SDPRUNE_ATTENTION=blas keeps the sgemm path below for A/B comparisons. */
  if (sd_attention_avx512_selected())
    return sd_attention_avx512(out, ldo, q, ldq, k, v, ldk, tq, tk, heads, dh, scale, causal, arena, err);
  /* Tasks of (head, block of query rows) run in parallel, each with single-threaded sgemm calls and a
   * score block small enough to stay in L2 between the two products and the softmax. */
#ifndef SD_ATTENTION_ROWS
#define SD_ATTENTION_ROWS 64
#endif
  int rows = SD_ATTENTION_ROWS;
  if (rows > tq) rows = tq;
  int n_blocks = (tq + rows - 1) / rows, n_threads = omp_get_max_threads();
  size_t mark = sd_arena_mark(arena);
  float *scores = sd_arena_floats(arena, (size_t)n_threads * rows * (size_t)tk, err);
  if (!scores) return -1;
#pragma omp parallel
  {
    float *s = scores + (size_t)omp_get_thread_num() * rows * (size_t)tk;
#pragma omp for schedule(dynamic, 1)
    for (int task = 0; task < heads * n_blocks; task++) {
      int h = task / n_blocks, r0 = (task % n_blocks) * rows;
      int m = tq - r0 < rows ? tq - r0 : rows;
      /* keys after the last query of the block are masked anyway: skip them */
      int cols = causal ? (r0 + m < tk ? r0 + m : tk) : tk;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, cols, dh, scale, q + (int64_t)r0 * ldq + h * dh, ldq,
                  k + h * dh, ldk, 0.0f, s, cols);
      float inv_sum[SD_ATTENTION_ROWS];
      for (int r = 0; r < m; r++) {
        float *row = s + (int64_t)r * cols;
        int valid = causal ? (r0 + r + 1 < cols ? r0 + r + 1 : cols) : cols;
        inv_sum[r] = 1.0f / sd_softmax_row_unnormalised(row, valid);
        for (int j = valid; j < cols; j++) row[j] = 0.0f;
      }
      /* normalising the dh outputs of a row is cheaper than the tk probabilities */
      float *o = out + (int64_t)r0 * ldo + h * dh;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, m, dh, cols, 1.0f, s, cols, v + h * dh, ldk, 0.0f, o, ldo);
      for (int r = 0; r < m; r++)
        for (int c = 0; c < dh; c++) o[(int64_t)r * ldo + c] *= inv_sum[r];
    }
  }
  sd_arena_release(arena, mark);
  return 0;
}

void sd_upsample_nearest2x(float *y, const float *x, int c, int h, int w) {
  int chunk = rows_per_chunk(5 * (int64_t)h * w);
#pragma omp parallel for schedule(dynamic, chunk)
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

void sd_upsample_nearest(float *y, const float *x, int c, int h, int w, int oh, int ow) {
  if (oh == 2 * h && ow == 2 * w) {
    sd_upsample_nearest2x(y, x, c, h, w);
    return;
  }
  /* torch's nearest_idx for an output size: floor(dst · (in / out)) in float, clamped (exact halving
   * and identity use dst >> 1 and dst). */
  float sy = (float)h / (float)oh, sx = (float)w / (float)ow;
  int chunk = rows_per_chunk((int64_t)oh * ow + (int64_t)h * w);
#pragma omp parallel for schedule(dynamic, chunk)
  for (int ch = 0; ch < c; ch++) {
    const float *src = x + (int64_t)ch * h * w;
    float *dst = y + (int64_t)ch * oh * ow;
    for (int iy = 0; iy < oh; iy++) {
      int yy = oh == 2 * h ? iy >> 1 : oh == h ? iy : (int)floorf((float)iy * sy);
      if (yy > h - 1) yy = h - 1;
      for (int ix = 0; ix < ow; ix++) {
        int xx = ow == 2 * w ? ix >> 1 : ow == w ? ix : (int)floorf((float)ix * sx);
        if (xx > w - 1) xx = w - 1;
        dst[(int64_t)iy * ow + ix] = src[(int64_t)yy * w + xx];
      }
    }
  }
}

void sd_transpose(float *y, const float *x, int64_t rows, int64_t cols) {
  const int64_t tile = 32;
#pragma omp parallel for collapse(2) schedule(dynamic, 8)
  for (int64_t r0 = 0; r0 < rows; r0 += tile)
    for (int64_t c0 = 0; c0 < cols; c0 += tile)
      for (int64_t r = r0; r < r0 + tile && r < rows; r++)
        for (int64_t c = c0; c < c0 + tile && c < cols; c++) y[c * rows + r] = x[r * cols + c];
}
