/* UNet module tree and weight binding (see unet.h); the forward pass is in unet_forward.c. */
#include "model/unet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/store_view.h"

/* Binding context: looks tensors up by "<prefix>.<name>", records every missing one. */
typedef struct {
  sd_tensor_store *view;
  sd_error *err;
  char missing[900];
  int n_missing;
  int failed; /* a shape or conversion error (message already in err) */
} binder;

static const float *bind(binder *b, const char *prefix, const char *name, int ndim, const int64_t *shape) {
  char full[256];
  snprintf(full, sizeof full, "%s%s%s", prefix, *prefix ? "." : "", name);
  if (!sd_store_find(b->view, full)) {
    size_t used = strlen(b->missing);
    if (b->n_missing < 8) snprintf(b->missing + used, sizeof b->missing - used, "%s%s", b->n_missing ? ", " : "", full);
    b->n_missing++;
    return NULL;
  }
  if (b->failed) return NULL;
  sd_error e;
  const float *p = sd_view_get(b->view, full, ndim, shape, &e);
  if (!p) {
    *b->err = e;
    b->failed = 1;
  }
  return p;
}

static void bind_norm(binder *b, const char *prefix, int c, sd_norm *n) {
  int64_t s[1] = {c};
  n->gamma = bind(b, prefix, "weight", 1, s);
  n->beta = bind(b, prefix, "bias", 1, s);
  n->c = c;
}

static void bind_conv(binder *b, const char *prefix, int cin, int cout, int k, sd_conv2d *conv) {
  int64_t ws[4] = {cout, cin, k, k}, bs[1] = {cout};
  conv->w = bind(b, prefix, "weight", 4, ws);
  conv->b = bind(b, prefix, "bias", 1, bs);
  conv->cin = cin;
  conv->cout = cout;
  conv->k = k;
}

static void bind_linear(binder *b, const char *prefix, int in, int out, int with_bias, sd_linear *lin) {
  int64_t ws[2] = {out, in}, bs[1] = {out};
  lin->w = bind(b, prefix, "weight", 2, ws);
  lin->b = with_bias ? bind(b, prefix, "bias", 1, bs) : NULL;
  lin->in = in;
  lin->out = out;
}

/* proj_in/proj_out: Linear [out, in] (SD 2.x) or 1x1 Conv [out, in, 1, 1] (SD 1.x), same memory. */
static void bind_proj(binder *b, const char *prefix, int in, int out, int linear, sd_linear *lin) {
  if (linear) {
    bind_linear(b, prefix, in, out, 1, lin);
    return;
  }
  sd_conv2d c;
  bind_conv(b, prefix, in, out, 1, &c);
  lin->w = c.w;
  lin->b = c.b;
  lin->in = in;
  lin->out = out;
}

static void bind_resblock(binder *b, const char *prefix, int cin, int cout, int emb_dim, sd_unet_resblock *r) {
  char p[200];
  r->cin = cin;
  r->cout = cout;
  snprintf(p, sizeof p, "%s.in_layers.0", prefix); /* 1 is SiLU */
  bind_norm(b, p, cin, &r->in_norm);
  snprintf(p, sizeof p, "%s.in_layers.2", prefix);
  bind_conv(b, p, cin, cout, 3, &r->in_conv);
  snprintf(p, sizeof p, "%s.emb_layers.1", prefix); /* 0 is SiLU */
  bind_linear(b, p, emb_dim, cout, 1, &r->emb_proj);
  snprintf(p, sizeof p, "%s.out_layers.0", prefix); /* 1 SiLU, 2 Dropout */
  bind_norm(b, p, cout, &r->out_norm);
  snprintf(p, sizeof p, "%s.out_layers.3", prefix);
  bind_conv(b, p, cout, cout, 3, &r->out_conv);
  memset(&r->skip, 0, sizeof r->skip);
  if (cin != cout) {
    snprintf(p, sizeof p, "%s.skip_connection", prefix);
    bind_conv(b, p, cin, cout, 1, &r->skip);
  }
}

static int bind_transformer(sd_unet *u, binder *b, const char *prefix, int channels, int level, int depth,
                            sd_unet_transformer *st, sd_error *err) {
  const sd_unet_config *c = &u->cfg;
  char p[200];
  sd_unet_heads(c, level, channels, &st->heads, &st->dim_head);
  st->channels = channels;
  st->inner = st->heads * st->dim_head;
  st->depth = depth;
  snprintf(p, sizeof p, "%s.norm", prefix);
  bind_norm(b, p, channels, &st->norm);
  snprintf(p, sizeof p, "%s.proj_in", prefix);
  bind_proj(b, p, channels, st->inner, c->linear_proj, &st->proj_in);
  snprintf(p, sizeof p, "%s.proj_out", prefix);
  bind_proj(b, p, st->inner, channels, c->linear_proj, &st->proj_out);
  st->blocks = sd_calloc((size_t)depth, sizeof *st->blocks, err);
  if (!st->blocks) return -1;
  int dim = st->inner, ctx = c->context_dim;
  for (int d = 0; d < depth; d++) {
    sd_unet_tblock *t = &st->blocks[d];
    char q[240];
    snprintf(t->site, sizeof t->site, "%s.transformer_blocks.%d", prefix, d);
    t->site_index = u->n_tblocks++;
    /* The FFN width is read from ff.net.2 (4·dim in SD, but never assumed). */
    snprintf(q, sizeof q, "%s.ff.net.2.weight", t->site);
    sd_tensor *ff2 = sd_store_find(b->view, q);
    t->ff_inner = ff2 && ff2->ndim == 2 ? (int)ff2->shape[1] : 4 * dim;
    const char *norms[3] = {"norm1", "norm2", "norm3"};
    sd_norm *nt[3] = {&t->norm1, &t->norm2, &t->norm3};
    for (int i = 0; i < 3; i++) {
      snprintf(q, sizeof q, "%s.%s", t->site, norms[i]);
      bind_norm(b, q, dim, nt[i]);
    }
    snprintf(q, sizeof q, "%s.attn1.to_q", t->site);
    bind_linear(b, q, dim, dim, 0, &t->attn1_q);
    snprintf(q, sizeof q, "%s.attn1.to_k", t->site);
    bind_linear(b, q, dim, dim, 0, &t->attn1_k);
    snprintf(q, sizeof q, "%s.attn1.to_v", t->site);
    bind_linear(b, q, dim, dim, 0, &t->attn1_v);
    snprintf(q, sizeof q, "%s.attn1.to_out.0", t->site);
    bind_linear(b, q, dim, dim, 1, &t->attn1_out);
    snprintf(q, sizeof q, "%s.attn2.to_q", t->site);
    bind_linear(b, q, dim, dim, 0, &t->attn2_q);
    snprintf(q, sizeof q, "%s.attn2.to_k", t->site);
    bind_linear(b, q, ctx, dim, 0, &t->attn2_k);
    snprintf(q, sizeof q, "%s.attn2.to_v", t->site);
    bind_linear(b, q, ctx, dim, 0, &t->attn2_v);
    snprintf(q, sizeof q, "%s.attn2.to_out.0", t->site);
    bind_linear(b, q, dim, dim, 1, &t->attn2_out);
    snprintf(q, sizeof q, "%s.ff.net.0.proj", t->site);
    bind_linear(b, q, dim, 2 * t->ff_inner, 1, &t->ff_proj);
    snprintf(q, sizeof q, "%s.ff.net.2", t->site);
    bind_linear(b, q, t->ff_inner, dim, 1, &t->ff_out);
    if (u->hooks_on) {
      t->hook_ff = u->hooks.wants ? u->hooks.wants(u->hooks.ctx, t->site, SD_HOOK_FF_NEURONS) : 1;
      t->hook_attn2 = u->hooks.wants ? u->hooks.wants(u->hooks.ctx, t->site, SD_HOOK_ATTN2_OUT) : 1;
    }
  }
  return 0;
}

static sd_unet_layer *add_layer(sd_unet_block *blk, sd_unet_layer_kind kind) {
  sd_unet_layer *l = &blk->layers[blk->n_layers++];
  memset(l, 0, sizeof *l);
  l->kind = kind;
  return l;
}

int sd_unet_init(sd_unet *u, const sd_unet_config *cfg, sd_tensor_store *view, const sd_unet_hooks *hooks,
                 sd_error *err) {
  memset(u, 0, sizeof *u);
  u->cfg = *cfg;
  if (hooks && hooks->observe) {
    u->hooks = *hooks;
    u->hooks_on = 1;
  }
  const sd_unet_config *c = &u->cfg;
  binder b = {.view = view, .err = err};
  int mc = c->model_channels, emb_dim = 4 * mc;
  bind_linear(&b, "time_embed.0", mc, emb_dim, 1, &u->time_embed_0);
  bind_linear(&b, "time_embed.2", emb_dim, emb_dim, 1, &u->time_embed_2);

  int n_in = 1, n_out = 0;
  for (int l = 0; l < c->n_levels; l++) {
    n_in += c->num_res_blocks[l] + (l != c->n_levels - 1);
    n_out += c->num_res_blocks[l] + 1;
  }
  u->input_blocks = sd_calloc((size_t)n_in, sizeof *u->input_blocks, err);
  u->output_blocks = sd_calloc((size_t)n_out, sizeof *u->output_blocks, err);
  int *chans = sd_calloc((size_t)n_in, sizeof *chans, err);
  if (!u->input_blocks || !u->output_blocks || !chans) {
    free(chans);
    sd_unet_free(u);
    return -1;
  }
  u->n_input_blocks = n_in;
  u->n_output_blocks = n_out;
  char p[200];
  int rc = 0, bi = 0, ch = mc, n_chans = 0;

  sd_unet_block *blk = &u->input_blocks[bi++];
  bind_conv(&b, "input_blocks.0.0", c->in_channels, mc, 3, &add_layer(blk, SD_LAYER_CONV)->conv);
  blk->out_channels = mc;
  chans[n_chans++] = mc;
  for (int l = 0; l < c->n_levels && rc == 0; l++) {
    for (int r = 0; r < c->num_res_blocks[l] && rc == 0; r++) {
      blk = &u->input_blocks[bi];
      blk->level = l;
      int cout = c->channel_mult[l] * mc;
      snprintf(p, sizeof p, "input_blocks.%d.0", bi);
      bind_resblock(&b, p, ch, cout, emb_dim, &add_layer(blk, SD_LAYER_RES)->res);
      ch = cout;
      if (c->attention[l]) {
        snprintf(p, sizeof p, "input_blocks.%d.1", bi);
        rc = bind_transformer(u, &b, p, ch, l, c->transformer_depth[l], &add_layer(blk, SD_LAYER_ATTN)->attn, err);
      }
      blk->out_channels = ch;
      chans[n_chans++] = ch;
      bi++;
    }
    if (l != c->n_levels - 1) {
      blk = &u->input_blocks[bi];
      blk->level = l + 1;
      snprintf(p, sizeof p, "input_blocks.%d.0.op", bi);
      bind_conv(&b, p, ch, ch, 3, &add_layer(blk, SD_LAYER_DOWN)->conv);
      blk->out_channels = ch;
      chans[n_chans++] = ch;
      bi++;
    }
  }
  /* Middle block: ResBlock, SpatialTransformer, ResBlock. */
  blk = &u->middle;
  blk->level = c->n_levels - 1;
  bind_resblock(&b, "middle_block.0", ch, ch, emb_dim, &add_layer(blk, SD_LAYER_RES)->res);
  if (rc == 0)
    rc = bind_transformer(u, &b, "middle_block.1", ch, -1, c->middle_depth, &add_layer(blk, SD_LAYER_ATTN)->attn, err);
  bind_resblock(&b, "middle_block.2", ch, ch, emb_dim, &add_layer(blk, SD_LAYER_RES)->res);
  blk->out_channels = ch;

  int bo = 0;
  for (int l = c->n_levels - 1; l >= 0 && rc == 0; l--) {
    for (int r = 0; r <= c->num_res_blocks[l] && rc == 0; r++) {
      blk = &u->output_blocks[bo];
      blk->level = l;
      int skip_ch = chans[--n_chans];
      int cout = c->channel_mult[l] * mc;
      snprintf(p, sizeof p, "output_blocks.%d.0", bo);
      bind_resblock(&b, p, ch + skip_ch, cout, emb_dim, &add_layer(blk, SD_LAYER_RES)->res);
      ch = cout;
      if (c->attention[l]) {
        snprintf(p, sizeof p, "output_blocks.%d.1", bo);
        rc = bind_transformer(u, &b, p, ch, l, c->transformer_depth[l], &add_layer(blk, SD_LAYER_ATTN)->attn, err);
      }
      if (l > 0 && r == c->num_res_blocks[l]) {
        snprintf(p, sizeof p, "output_blocks.%d.%d.conv", bo, blk->n_layers);
        bind_conv(&b, p, ch, ch, 3, &add_layer(blk, SD_LAYER_UP)->conv);
      }
      blk->out_channels = ch;
      bo++;
    }
  }
  bind_norm(&b, "out.0", ch, &u->out_norm);
  bind_conv(&b, "out.2", mc, c->out_channels, 3, &u->out_conv);
  free(chans);
  if (rc == 0 && b.n_missing)
    rc = sd_fail(err, "%s: %d UNet tensor%s missing: %s%s", view->path, b.n_missing, b.n_missing > 1 ? "s" : "",
                 b.missing, b.n_missing > 8 ? ", ..." : "");
  if (rc == 0 && b.failed) rc = -1;
  if (rc != 0) sd_unet_free(u);
  return rc;
}

static void free_block(sd_unet_block *blk) {
  for (int i = 0; i < blk->n_layers; i++)
    if (blk->layers[i].kind == SD_LAYER_ATTN) free(blk->layers[i].attn.blocks);
}

void sd_unet_free(sd_unet *u) {
  for (int i = 0; u->input_blocks && i < u->n_input_blocks; i++) free_block(&u->input_blocks[i]);
  for (int i = 0; u->output_blocks && i < u->n_output_blocks; i++) free_block(&u->output_blocks[i]);
  free_block(&u->middle);
  free(u->input_blocks);
  free(u->output_blocks);
  sd_arena_free(&u->skips);
  sd_arena_free(&u->work);
  memset(u, 0, sizeof *u);
}

static const char *find_site(const sd_unet_block *blocks, int n, int index) {
  for (int i = 0; i < n; i++)
    for (int j = 0; j < blocks[i].n_layers; j++) {
      const sd_unet_layer *l = &blocks[i].layers[j];
      if (l->kind != SD_LAYER_ATTN) continue;
      for (int d = 0; d < l->attn.depth; d++)
        if (l->attn.blocks[d].site_index == index) return l->attn.blocks[d].site;
    }
  return NULL;
}

const char *sd_unet_site(const sd_unet *u, int index) {
  const char *s = find_site(u->input_blocks, u->n_input_blocks, index);
  if (!s) s = find_site(&u->middle, 1, index);
  if (!s) s = find_site(u->output_blocks, u->n_output_blocks, index);
  return s;
}

/* ---- FLOP count (2 per multiply-add), from the module tree ---- */

static double conv_flops(const sd_conv2d *c, int64_t out_pixels) { return 2.0 * c->cout * c->cin * c->k * c->k * out_pixels; }

static double transformer_flops(const sd_unet_transformer *st, int B, int64_t T, int S, int ctx_dim) {
  double d = st->inner, f = 2.0 * st->channels * d * T * 2; /* proj_in + proj_out */
  for (int i = 0; i < st->depth; i++) {
    double ff = st->blocks[i].ff_inner;
    f += 2.0 * T * d * d * 4;            /* attn1 q, k, v, out */
    f += 2.0 * T * d * d * 2 + 2.0 * S * ctx_dim * d * 2; /* attn2 q, out; k, v from the context */
    f += 2.0 * T * T * d * 2;            /* attn1 scores and weighted sum */
    f += 2.0 * T * S * d * 2;            /* attn2 */
    f += 2.0 * T * d * ff * 2 + 2.0 * T * ff * d; /* GEGLU proj (2·ff) and net.2 */
  }
  return f * B;
}

/* Latent size at a level: stride-2 convolutions with padding 1 round up. */
static int64_t level_pixels(int H, int W, int level) {
  for (int l = 0; l < level; l++) {
    H = (H + 1) / 2;
    W = (W + 1) / 2;
  }
  return (int64_t)H * W;
}

static double block_flops(const sd_unet *u, const sd_unet_block *blk, int B, int H, int W, int S) {
  int64_t hw = level_pixels(H, W, blk->level);
  double f = 0;
  for (int i = 0; i < blk->n_layers; i++) {
    const sd_unet_layer *l = &blk->layers[i];
    switch (l->kind) {
    case SD_LAYER_CONV: f += B * conv_flops(&l->conv, hw); break;
    case SD_LAYER_DOWN: f += B * conv_flops(&l->conv, hw); break; /* hw is already the output level's */
    case SD_LAYER_UP: f += B * conv_flops(&l->conv, level_pixels(H, W, blk->level - 1)); break;
    case SD_LAYER_RES:
      f += B * (conv_flops(&l->res.in_conv, hw) + conv_flops(&l->res.out_conv, hw));
      if (l->res.skip.w) f += B * conv_flops(&l->res.skip, hw);
      break;
    case SD_LAYER_ATTN: f += transformer_flops(&l->attn, B, hw, S, u->cfg.context_dim); break;
    }
  }
  return f;
}

double sd_unet_flops(const sd_unet *u, int B, int H, int W, int ctx_len) {
  double f = 0;
  for (int i = 0; i < u->n_input_blocks; i++) f += block_flops(u, &u->input_blocks[i], B, H, W, ctx_len);
  f += block_flops(u, &u->middle, B, H, W, ctx_len);
  for (int i = 0; i < u->n_output_blocks; i++) f += block_flops(u, &u->output_blocks[i], B, H, W, ctx_len);
  f += B * conv_flops(&u->out_conv, (int64_t)H * W);
  return f;
}
