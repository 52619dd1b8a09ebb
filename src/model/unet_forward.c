/* UNet forward pass (ldm openaimodel.UNetModel.forward), batch-major NCHW activations.
 * Input-block outputs are written straight into the skip stack (they are the skips); the middle and
 * output blocks ping-pong between two working buffers; per-layer scratch sits above them. */
#include <cblas.h>
#include <math.h>
#include <string.h>
#include <time.h>

#include "model/unet.h"

const char *const sd_unet_profile_names[SD_UNET_PROFILE_KINDS] = {"conv",  "norm",  "linear", "attention",
                                                                  "geglu", "hooks", "other"};

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

typedef struct {
  sd_unet *u;
  int B;
  const float *t;
  const float *emb_act; /* SiLU(time embedding) [B, 4·mc], shared by every ResBlock */
  const float *context; /* [B, ctx_len, context_dim] */
  int ctx_len;
  sd_arena *scratch;
  sd_error *err;
  int level_h[SD_UNET_MAX_LEVELS], level_w[SD_UNET_MAX_LEVELS]; /* latent size at each level */
} fwd_ctx;

/* Timed wrappers: the kernels, with their seconds added to the profile when it is on. */
#define TIMED(f, kind, call)                                                                                           \
  do {                                                                                                                 \
    double prof_t0 = (f)->u->profile ? now_seconds() : 0;                                                              \
    call;                                                                                                              \
    if ((f)->u->profile)                                                                                               \
      (f)->u->profile_seconds[kind] += now_seconds() - prof_t0;                                                        \
  } while (0)

static int t_conv(fwd_ctx *f, float *y, const float *x, int B, int h, int w, const sd_conv2d *c, int stride, int pad,
                  int acc) {
  int rc;
  TIMED(f, SD_PROF_CONV, rc = sd_conv2d_forward_batch(y, x, B, h, w, c, stride, pad, acc, f->scratch, f->err));
  return rc;
}
static void t_linear(fwd_ctx *f, float *y, const float *x, int64_t m, const sd_linear *l) {
  TIMED(f, SD_PROF_LINEAR, sd_linear_forward(y, x, m, l));
}
static void t_linear_acc(fwd_ctx *f, float *y, const float *x, int64_t m, const sd_linear *l) {
  TIMED(f, SD_PROF_LINEAR, sd_linear_forward_acc(y, x, m, l));
}
static void t_group_norm(fwd_ctx *f, float *y, const float *x, int c, int64_t hw, float eps, const sd_norm *n,
                         int silu) {
  TIMED(f, SD_PROF_NORM, sd_group_norm(y, x, c, hw, f->u->cfg.norm_groups, eps, n, silu));
}
static void t_layer_norm(fwd_ctx *f, float *y, const float *x, int64_t t, int c, const sd_norm *n) {
  TIMED(f, SD_PROF_NORM, sd_layer_norm(y, x, t, c, 1e-5f, n));
}

/* ldm timestep_embedding, in float32 as upstream: [cos(t·f), sin(t·f)], f_i = exp(-ln(1e4)·i/half). */
static void timestep_embedding(float *out, const float *t, int B, int dim) {
  int half = dim / 2;
  const float neg_log = (float)-9.210340371976184; /* -ln(10000), rounded to float as torch does */
  for (int b = 0; b < B; b++) {
    for (int i = 0; i < half; i++) {
      float f = expf(neg_log * (float)i / (float)half);
      float arg = t[b] * f;
      out[b * dim + i] = cosf(arg);
      out[b * dim + half + i] = sinf(arg);
    }
    if (dim % 2)
      out[b * dim + dim - 1] = 0.0f;
  }
}

/* out[B, cout, h, w] = ResBlock(in[B, cin, h, w], emb). out may equal in when the skip is the identity. */
static int resblock_forward(fwd_ctx *f, const sd_unet_resblock *r, const float *in, float *out, int h, int w) {
  sd_unet *u = f->u;
  int B = f->B;
  int64_t hw = (int64_t)h * w;
  size_t mark = sd_arena_mark(f->scratch);
  float *emb_out = sd_arena_floats(f->scratch, (size_t)B * r->cout, f->err);
  float *a = sd_arena_floats(f->scratch, (size_t)(B * r->cin * hw), f->err);
  float *c1 = sd_arena_floats(f->scratch, (size_t)(B * r->cout * hw), f->err);
  if (!emb_out || !a || !c1) return -1;
  t_linear(f, emb_out, f->emb_act, B, &r->emb_proj);
  for (int b = 0; b < B; b++)
    t_group_norm(f, a + (int64_t)b * r->cin * hw, in + (int64_t)b * r->cin * hw, r->cin, hw, u->cfg.norm_eps,
                 &r->in_norm, 1);
  if (t_conv(f, c1, a, B, h, w, &r->in_conv, 1, 1, 0) != 0) return -1;
  for (int b = 0; b < B; b++) { /* out_layers(h + emb_out[:, :, None, None]): the addition inside the norm */
    float *cb = c1 + (int64_t)b * r->cout * hw;
    TIMED(f, SD_PROF_NORM, sd_group_norm_add(cb, cb, emb_out + (int64_t)b * r->cout, r->cout, hw, u->cfg.norm_groups,
                                             u->cfg.norm_eps, &r->out_norm, 1));
  }
  if (r->skip.w) {
    if (t_conv(f, out, in, B, h, w, &r->skip, 1, 0, 0) != 0) return -1;
  } else if (out != in) { /* the middle block's ResBlocks run in place */
    memcpy(out, in, sizeof(float) * (size_t)(B * r->cout * hw));
  }
  if (t_conv(f, out, c1, B, h, w, &r->out_conv, 1, 1, 1) != 0) return -1;
  sd_arena_release(f->scratch, mark);
  return 0;
}

static void hook(fwd_ctx *f, const sd_unet_tblock *tb, sd_hook_kind kind, float *data, int64_t T, int channels) {
  for (int b = 0; b < f->B; b++)
    f->u->hooks.observe(f->u->hooks.ctx, tb->site_index, tb->site, kind, b, f->t[b], data + (int64_t)b * T * channels,
                        T, channels);
}

/* One BasicTransformerBlock on tokens x[B·T, dim], in place. */
static int tblock_forward(fwd_ctx *f, const sd_unet_transformer *st, const sd_unet_tblock *tb, float *x, int64_t T) {
  int B = f->B, dim = st->inner, S = f->ctx_len;
  int64_t BT = (int64_t)B * T;
  float scale = 1.0f / sqrtf((float)st->dim_head);
  size_t mark = sd_arena_mark(f->scratch);
  float *n = sd_arena_floats(f->scratch, (size_t)(BT * dim), f->err);
  float *q = sd_arena_floats(f->scratch, (size_t)(BT * dim), f->err);
  float *k = sd_arena_floats(f->scratch, (size_t)((BT > (int64_t)B * S ? BT : (int64_t)B * S) * dim), f->err);
  float *v = sd_arena_floats(f->scratch, (size_t)((BT > (int64_t)B * S ? BT : (int64_t)B * S) * dim), f->err);
  float *a = sd_arena_floats(f->scratch, (size_t)(BT * dim), f->err);
  if (!n || !q || !k || !v || !a)
    return -1;

  /* x = attn1(norm1(x)) + x */
  t_layer_norm(f, n, x, BT, dim, &tb->norm1);
  t_linear(f, q, n, BT, &tb->attn1_q);
  t_linear(f, k, n, BT, &tb->attn1_k);
  t_linear(f, v, n, BT, &tb->attn1_v);
  for (int b = 0; b < B; b++) {
    int arc;
    TIMED(f, SD_PROF_ATTENTION,
          arc = sd_attention(a + b * T * dim, dim, q + b * T * dim, dim, k + b * T * dim, v + b * T * dim, dim, (int)T,
                             (int)T, st->heads, st->dim_head, scale, 0, f->scratch, f->err));
    if (arc != 0)
      return -1;
  }
  t_linear_acc(f, x, a, BT, &tb->attn1_out);

  /* x = attn2(norm2(x), context) + x */
  t_layer_norm(f, n, x, BT, dim, &tb->norm2);
  t_linear(f, q, n, BT, &tb->attn2_q);
  t_linear(f, k, f->context, (int64_t)B * S, &tb->attn2_k);
  t_linear(f, v, f->context, (int64_t)B * S, &tb->attn2_v);
  for (int b = 0; b < B; b++) {
    int arc;
    TIMED(f, SD_PROF_ATTENTION,
          arc = sd_attention(a + b * T * dim, dim, q + b * T * dim, dim, k + (int64_t)b * S * dim,
                             v + (int64_t)b * S * dim, dim, (int)T, S, st->heads, st->dim_head, scale, 0, f->scratch,
                             f->err));
    if (arc != 0)
      return -1;
  }
  if (tb->hook_attn2) {
    t_linear(f, n, a, BT, &tb->attn2_out);
    TIMED(f, SD_PROF_HOOKS, hook(f, tb, SD_HOOK_ATTN2_OUT, n, T, dim));
#pragma omp parallel for schedule(dynamic, 16384)
    for (int64_t i = 0; i < BT * dim; i++)
      x[i] += n[i];
  } else {
    t_linear_acc(f, x, a, BT, &tb->attn2_out);
  }

  /* x = ff(norm3(x)) + x, ff = net.2(GEGLU(net.0.proj(.))) */
  t_layer_norm(f, n, x, BT, dim, &tb->norm3);
  float *proj = sd_arena_floats(f->scratch, (size_t)(BT * 2 * tb->ff_inner), f->err);
  float *neurons = sd_arena_floats(f->scratch, (size_t)(BT * tb->ff_inner), f->err);
  if (!proj || !neurons)
    return -1;
  t_linear(f, proj, n, BT, &tb->ff_proj);
  TIMED(f, SD_PROF_GEGLU, sd_geglu(neurons, proj, BT, tb->ff_inner));
  if (tb->hook_ff)
    TIMED(f, SD_PROF_HOOKS, hook(f, tb, SD_HOOK_FF_NEURONS, neurons, T, tb->ff_inner));
  t_linear_acc(f, x, neurons, BT, &tb->ff_out);
  sd_arena_release(f->scratch, mark);
  return 0;
}

/* SpatialTransformer on x[B, C, h, w], in place (x = proj_out(blocks(proj_in(norm(x)))) + x). */
static int transformer_forward(fwd_ctx *f, const sd_unet_transformer *st, float *x, int h, int w) {
  int B = f->B, C = st->channels, dim = st->inner;
  int64_t T = (int64_t)h * w;
  size_t mark = sd_arena_mark(f->scratch);
  float *tokens = sd_arena_floats(f->scratch, (size_t)(B * T * dim), f->err);
  float *g = sd_arena_floats(f->scratch, (size_t)(C * T), f->err);
  if (!tokens || !g)
    return -1;
  for (int b = 0; b < B; b++) {
    t_group_norm(f, g, x + (int64_t)b * C * T, C, T, f->u->cfg.st_norm_eps, &st->norm, 0);
    /* tokens_b[T, dim] = gᵀ[T, C] · W_inᵀ + b: the rearrange 'b c h w -> b (h w) c' folded into the product */
    float *tb = tokens + (int64_t)b * T * dim;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasTrans, (int)T, dim, C, 1.0f, g, (int)T, st->proj_in.w, C, 0.0f, tb,
                dim);
    if (st->proj_in.b) {
#pragma omp parallel for schedule(dynamic, 16)
      for (int64_t i = 0; i < T; i++)
        for (int j = 0; j < dim; j++)
          tb[i * dim + j] += st->proj_in.b[j];
    }
  }
  for (int d = 0; d < st->depth; d++)
    if (tblock_forward(f, st, &st->blocks[d], tokens, T) != 0)
      return -1;
  for (int b = 0; b < B; b++) {
    float *xb = x + (int64_t)b * C * T;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, C, (int)T, dim, 1.0f, st->proj_out.w, dim,
                tokens + (int64_t)b * T * dim, dim, 1.0f, xb, (int)T);
    if (st->proj_out.b) {
#pragma omp parallel for schedule(dynamic, 1)
      for (int c = 0; c < C; c++)
        for (int64_t i = 0; i < T; i++)
          xb[c * T + i] += st->proj_out.b[c];
    }
  }
  sd_arena_release(f->scratch, mark);
  return 0;
}

static int conv_batch(fwd_ctx *f, const sd_conv2d *conv, const float *in, float *out, int h, int w, int stride) {
  return t_conv(f, out, in, f->B, h, w, conv, stride, 1, 0);
}

/* Runs the layers of one block. in -> out (distinct), except attention which works in place on out. */
static int block_forward(fwd_ctx *f, const sd_unet_block *blk, const float *in, float *out, float *spare, int *h,
                         int *w) {
  for (int i = 0; i < blk->n_layers; i++) {
    const sd_unet_layer *l = &blk->layers[i];
    switch (l->kind) {
    case SD_LAYER_CONV:
      if (conv_batch(f, &l->conv, in, out, *h, *w, 1) != 0)
        return -1;
      break;
    case SD_LAYER_RES:
      if (resblock_forward(f, &l->res, in, out, *h, *w) != 0)
        return -1;
      break;
    case SD_LAYER_ATTN:
      if (transformer_forward(f, &l->attn, out, *h, *w) != 0)
        return -1;
      break;
    case SD_LAYER_DOWN:
      if (conv_batch(f, &l->conv, in, out, *h, *w, 2) != 0)
        return -1;
      *h = sd_conv_out_size(*h, 3, 2, 1);
      *w = sd_conv_out_size(*w, 3, 2, 1);
      break;
    case SD_LAYER_UP: { /* nearest to the size of the level above (2x, or the skip's size as diffusers
                           does when a size is odd), into spare, then conv back into out */
      int C = l->conv.cin, th = f->level_h[blk->level - 1], tw = f->level_w[blk->level - 1];
      for (int b = 0; b < f->B; b++)
        sd_upsample_nearest(spare + (int64_t)b * C * th * tw, out + (int64_t)b * C * *h * *w, C, *h, *w, th, tw);
      *h = th;
      *w = tw;
      if (conv_batch(f, &l->conv, spare, out, *h, *w, 1) != 0)
        return -1;
    } break;
    }
    in = out;
  }
  return 0;
}

/* Largest working activation (floats) of the middle and output blocks, for the ping-pong buffers. */
static size_t working_capacity(const sd_unet *u, const fwd_ctx *f, int B) {
  size_t cap = 0;
  for (int i = 0; i < u->n_output_blocks; i++) {
    const sd_unet_block *blk = &u->output_blocks[i];
    size_t hw = (size_t)f->level_h[blk->level] * (size_t)f->level_w[blk->level];
    size_t need = hw * (size_t)blk->layers[0].res.cin;
    if (blk->layers[blk->n_layers - 1].kind == SD_LAYER_UP) {
      size_t up = (size_t)f->level_h[blk->level - 1] * (size_t)f->level_w[blk->level - 1] * (size_t)blk->out_channels;
      need = need > up ? need : up;
    }
    if (need > cap)
      cap = need;
  }
  return cap * (size_t)B;
}

int sd_unet_forward(sd_unet *u, const float *x, int B, int H, int W, const float *t, const float *context, int ctx_len,
                    float *eps, sd_error *err) {
  const sd_unet_config *c = &u->cfg;
  if (H <= 0 || W <= 0)
    return sd_fail(err, "latent size %dx%d must be positive", H, W);
  sd_arena_reset(&u->skips);
  sd_arena_reset(&u->work);
  fwd_ctx f = {.u = u, .B = B, .t = t, .context = context, .ctx_len = ctx_len, .scratch = &u->work, .err = err};
  for (int l = 0; l < c->n_levels; l++) { /* stride-2 convolutions with padding 1 round up */
    f.level_h[l] = l ? (f.level_h[l - 1] + 1) / 2 : H;
    f.level_w[l] = l ? (f.level_w[l - 1] + 1) / 2 : W;
  }
  int mc = c->model_channels;
  float *temb = sd_arena_floats(&u->work, (size_t)B * mc, err);
  float *e1 = sd_arena_floats(&u->work, (size_t)B * 4 * mc, err);
  float *emb = sd_arena_floats(&u->work, (size_t)B * 4 * mc, err);
  size_t cap = working_capacity(u, &f, B);
  float *ha = sd_arena_floats(&u->work, cap, err), *hb = sd_arena_floats(&u->work, cap, err);
  const float **skip = (const float **)sd_arena_floats(&u->skips, (size_t)u->n_input_blocks * 2, err);
  if (!temb || !e1 || !emb || !ha || !hb || !skip)
    return -1;
  timestep_embedding(temb, t, B, mc);
  sd_linear_forward(e1, temb, B, &u->time_embed_0);
  sd_silu_inplace(e1, (int64_t)B * 4 * mc);
  sd_linear_forward(emb, e1, B, &u->time_embed_2);
  sd_silu_inplace(emb, (int64_t)B * 4 * mc); /* every emb_layers starts with SiLU */
  f.emb_act = emb;

  int h = H, w = W;
  const float *cur = x;
  for (int i = 0; i < u->n_input_blocks; i++) {
    const sd_unet_block *blk = &u->input_blocks[i];
    float *out = sd_arena_floats(&u->skips, (size_t)B * blk->out_channels * f.level_h[blk->level] * f.level_w[blk->level], err);
    if (!out)
      return -1;
    if (block_forward(&f, blk, cur, out, NULL, &h, &w) != 0)
      return -1;
    skip[i] = out;
    cur = out;
  }
  if (block_forward(&f, &u->middle, cur, ha, NULL, &h, &w) != 0)
    return -1;
  float *hcur = ha, *other = hb;
  int ch = u->middle.out_channels;
  for (int i = 0; i < u->n_output_blocks; i++) {
    const sd_unet_block *blk = &u->output_blocks[i];
    int idx = u->n_input_blocks - 1 - i;
    int sc = u->input_blocks[idx].out_channels;
    int64_t hw = (int64_t)h * w;
    /* cat([h, skip], dim=1) per batch element */
    for (int b = 0; b < B; b++) {
      memcpy(other + (int64_t)b * (ch + sc) * hw, hcur + (int64_t)b * ch * hw, sizeof(float) * (size_t)(ch * hw));
      memcpy(other + (int64_t)b * (ch + sc) * hw + ch * hw, skip[idx] + (int64_t)b * sc * hw,
             sizeof(float) * (size_t)(sc * hw));
    }
    if (block_forward(&f, blk, other, hcur, other, &h, &w) != 0)
      return -1;
    ch = blk->out_channels;
  }
  int64_t hw = (int64_t)h * w;
  for (int b = 0; b < B; b++) {
    sd_group_norm(other, hcur + (int64_t)b * ch * hw, ch, hw, c->norm_groups, c->norm_eps, &u->out_norm, 1);
    if (sd_conv2d_forward(eps + (int64_t)b * c->out_channels * hw, other, h, w, &u->out_conv, 1, 1, 0, &u->work, err) !=
        0)
      return -1;
  }
  return 0;
}
