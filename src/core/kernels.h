/* Numeric building blocks shared by the model parts (UNet, VAE, CLIP): matrix products through
 * OpenBLAS sgemm, convolutions as im2col + sgemm, normalisations, activations and attention.
 * Plain functions over caller-owned float buffers; no model knowledge, no allocation except from
 * the arena passed in. Layouts are given per function (NCHW images, [tokens, channels] sequences). */
#ifndef SD_KERNELS_H
#define SD_KERNELS_H

#include <math.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"

/* A linear layer as stored by torch: weight [out, in] row-major, bias [out] or NULL. */
typedef struct {
  const float *w, *b;
  int out, in;
} sd_linear;

/* A 2-D convolution: weight [cout, cin, k, k], bias [cout] or NULL. */
typedef struct {
  const float *w, *b;
  int cout, cin, k;
} sd_conv2d;

/* Affine parameters of a GroupNorm/LayerNorm over c channels. */
typedef struct {
  const float *gamma, *beta;
  int c;
} sd_norm;

/* y[m, out] = x[m, in] · Wᵀ + b. y may not alias x. */
void sd_linear_forward(float *y, const float *x, int64_t m, const sd_linear *lin);
/* y[m, out] += x[m, in] · Wᵀ + b (accumulates into y: fused residual add). */
void sd_linear_forward_acc(float *y, const float *x, int64_t m, const sd_linear *lin);

/* One image: y[cout, ho, wo] = conv(x[cin, h, w]), zero padding `pad`, stride 1 or 2.
 * accumulate != 0 adds into y instead of overwriting. Uses arena scratch for im2col. */
int sd_conv2d_forward(float *y, const float *x, int h, int w, const sd_conv2d *conv, int stride, int pad,
                      int accumulate, sd_arena *arena, sd_error *err);
/* The same for B images x[B, cin, h, w] -> y[B, cout, ho, wo]; small images share one product. */
int sd_conv2d_forward_batch(float *y, const float *x, int B, int h, int w, const sd_conv2d *conv, int stride, int pad,
                            int accumulate, sd_arena *arena, sd_error *err);
static inline int sd_conv_out_size(int n, int k, int stride, int pad) { return (n + 2 * pad - k) / stride + 1; }

/* GroupNorm over one image x[c, hw] (torch semantics: biased variance, per-group statistics),
 * written to y (may alias x); silu != 0 applies SiLU after the affine transform. */
void sd_group_norm(float *y, const float *x, int c, int64_t hw, int groups, float eps, const sd_norm *n, int silu);

/* The same on x[c, hw] + channel_add[c] (each sum rounded to float, as a separate addition would
 * store it), in one pass fewer and one parallel region fewer; channel_add may be NULL. */
void sd_group_norm_add(float *y, const float *x, const float *channel_add, int c, int64_t hw, int groups, float eps,
                       const sd_norm *n, int silu);
/* LayerNorm over the last dimension: y[t, c] = LN(x[t, c]). y may alias x. */
void sd_layer_norm(float *y, const float *x, int64_t t, int c, float eps, const sd_norm *n);

void sd_silu_inplace(float *x, int64_t n);
static inline float sd_gelu_erf(float x) { return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f)); }
void sd_gelu_inplace(float *x, int64_t n);       /* exact erf GELU */
void sd_quick_gelu_inplace(float *x, int64_t n); /* x·sigmoid(1.702x), CLIP's activation */
/* GEGLU of ldm/diffusers: in[t, 2·inner] = [a | g] -> out[t, inner] = a · gelu(g). */
void sd_geglu(float *out, const float *in, int64_t t, int inner);

/* Multi-head scaled dot-product attention for one sequence (AVX-512 kernels of attention_kernels.c when
 * the CPU has them and SDPRUNE_ATTENTION is not "blas"; otherwise sgemm + softmax per query block):
 * out[tq, heads·dh] = softmax(q·kᵀ·scale + mask) · v per head, q [tq, ldq], k/v [tk, ldk] with head h at
 * column offset h·dh. causal != 0 masks keys after the query position (CLIP). Row blocks keep
 * the score buffer bounded; scratch from the arena. */
int sd_attention(float *out, int ldo, const float *q, int ldq, const float *k, const float *v, int ldk, int tq,
                 int tk, int heads, int dh, float scale, int causal, sd_arena *arena, sd_error *err);

/* Nearest-neighbour ×2 upsampling of one image: y[c, 2h, 2w] from x[c, h, w]. */
void sd_upsample_nearest2x(float *y, const float *x, int c, int h, int w);
/* Nearest-neighbour resize of one image to [c, oh, ow] as torch's F.interpolate(size=..., mode="nearest"). */
void sd_upsample_nearest(float *y, const float *x, int c, int h, int w, int oh, int ow);
/* y[cols, rows] = x[rows, cols]ᵀ (e.g. NCHW [c, hw] <-> tokens [hw, c]). */
void sd_transpose(float *y, const float *x, int64_t rows, int64_t cols);

/* Number of threads for the engine's own loops and for OpenBLAS (set once by the CLI). */
void sd_set_threads(int n);
int sd_get_threads(void);

#endif
