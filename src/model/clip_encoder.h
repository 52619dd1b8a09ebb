/* What the two CLIP towers share: transformers CLIPEncoderLayer (= openai CLIP ResidualAttentionBlock)
 * weights, its pre-LN forward over one sequence, and the weight binder that collects every missing
 * tensor of a part into one error. Not a tower: embeddings, final norms and pooling stay in
 * clip_text.c and clip_vision.c. */
#ifndef SD_CLIP_ENCODER_H
#define SD_CLIP_ENCODER_H

#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/kernels.h"
#include "io/tensor_store.h"

/* transformers CLIPEncoderLayer, d = hidden, f = intermediate. */
typedef struct {
  sd_norm layer_norm1;                        /* [d] (openai ln_1) */
  sd_linear q_proj, k_proj, v_proj, out_proj; /* [d, d] + [d] (openai attn.in_proj rows 0/d/2d, attn.out_proj) */
  sd_norm layer_norm2;                        /* [d] (openai ln_2) */
  sd_linear fc1;                              /* [f, d] + [f] (openai mlp.c_fc) */
  sd_linear fc2;                              /* [d, f] + [d] (openai mlp.c_proj) */
} sd_clip_encoder_layer;

/* The sizes one layer's forward needs (both towers' configs reduce to this). */
typedef struct {
  int hidden, heads, intermediate;
  int act_quick_gelu; /* 1 quick_gelu x·σ(1.702x) (openai CLIP), 0 exact erf gelu */
  float ln_eps;
  int causal; /* 1 text tower (token t sees 0..t), 0 vision tower */
} sd_clip_encoder_dims;

/* Activations of one layer over T tokens, carved from an arena: h, q, k, v, ctx [T, d], mlp [T, f]. */
typedef struct {
  float *h, *q, *k, *v, *ctx, *mlp;
} sd_clip_encoder_scratch;

int sd_clip_encoder_scratch_alloc(sd_clip_encoder_scratch *s, int T, const sd_clip_encoder_dims *dims, sd_arena *arena,
                                  sd_error *err);

/* x [T, d] (the residual stream, updated in place):
 *   x = x + out_proj(attention(LN1(x)))   heads of size d/heads, scale (d/heads)^-0.5
 *   x = x + fc2(act(fc1(LN2(x))))
 * Attention scratch from the arena (released again). */
int sd_clip_encoder_layer_forward(const sd_clip_encoder_layer *L, const sd_clip_encoder_dims *dims, float *x, int T,
                                  sd_clip_encoder_scratch *s, sd_arena *arena, sd_error *err);

/* Binds named tensors of a view while collecting every missing name and the first wrong shape, so
 * one error says it all (loader policy: all missing tensors listed, wrong shapes as got/expected). */
typedef struct {
  sd_tensor_store *view;
  char missing[640];
  int n_missing;
  sd_error first_bad; /* wrong shape or failed conversion */
  int n_bad;
} sd_weight_binder;

/* The float32 data of tensor `fmt...` with shape[ndim] (-1 matches any size), or NULL (recorded). */
const float *sd_bind_tensor(sd_weight_binder *b, int ndim, const int64_t *shape, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* base.weight [out, in] and, when with_bias, base.bias [out]. */
void sd_bind_linear(sd_weight_binder *b, sd_linear *lin, int out, int in, int with_bias, const char *base);
/* base.weight, base.bias [c]. */
void sd_bind_norm(sd_weight_binder *b, sd_norm *n, int c, const char *base);
/* The eight tensors of prefix.{layer_norm1, self_attn.{q,k,v,out}_proj, layer_norm2, mlp.fc1, mlp.fc2}. */
void sd_bind_clip_encoder_layer(sd_weight_binder *b, sd_clip_encoder_layer *L, int d, int f, const char *prefix);
/* 0 when everything bound; else -1 with "<view path>: <part>: N missing tensors: a, b, ..." or the
 * first wrong shape. */
int sd_bind_finish(const sd_weight_binder *b, const char *part, sd_error *err);

#endif
