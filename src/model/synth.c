/* Synthetic checkpoints (see synth.h): architecture presets, one key walker per part (ldm UNetModel,
 * CLIPTextModel / open_clip text tower, ldm AutoencoderKL), the seeded value streams, the metadata
 * and the streaming writer. It does not read checkpoints and does not run any model. */
#include "model/synth.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/files.h"
#include "core/half.h"
#include "io/safetensors.h"

#define SCHEDULE_STEPS 1000
#define LINEAR_START 0.00085
#define LINEAR_END 0.012

/* ---- architectures ---- */

static void sd_vae(sd_synth_arch *a) {
  /* ldm v1-inference.yaml first_stage_config: ch 128, ch_mult [1,2,4,4], 2 res blocks, z 4 */
  a->vae.ch = 128;
  a->vae.out_ch = 3;
  a->vae.in_channels = 3;
  a->vae.resolution = 256;
  a->vae.z_channels = 4;
  a->vae.embed_dim = 4;
  a->vae.n_levels = 4;
  int mult[4] = {1, 2, 4, 4};
  memcpy(a->vae.ch_mult, mult, sizeof mult);
  a->vae.num_res_blocks = 2;
  a->vae.scale_factor = 0.18215;
}

static void sd_unet(sd_synth_arch *a) {
  /* ldm v1-inference.yaml unet_config: 320 channels, mult [1,2,4,4], attention at ds 1, 2, 4 */
  a->unet.image_size = 64;
  a->unet.in_channels = a->unet.out_channels = 4;
  a->unet.model_channels = 320;
  a->unet.n_levels = 4;
  int mult[4] = {1, 2, 4, 4};
  memcpy(a->unet.channel_mult, mult, sizeof mult);
  a->unet.num_res_blocks = 2;
  for (int l = 0; l < 3; l++) a->unet.attention[l] = 1;
  a->unet.transformer_depth = 1;
}

int sd_synth_arch_get(const char *name, sd_synth_arch *a, sd_error *err) {
  memset(a, 0, sizeof *a);
  a->text.vocab_size = 49408;
  a->text.max_positions = 77;
  if (strcmp(name, "sd15") == 0) {
    a->kind = "sd15";
    sd_unet(a);
    a->unet.num_heads = 8;
    a->unet.context_dim = 768;
    /* openai CLIP ViT-L/14 text tower */
    a->text.hidden = 768;
    a->text.layers = 12;
    a->text.heads = 12;
    a->text.intermediate = 3072;
    a->text.hidden_act = "quick_gelu";
    sd_vae(a);
  } else if (strcmp(name, "sd21") == 0) {
    a->kind = "sd21";
    sd_unet(a);
    a->unet.image_size = 96; /* v2-inference-v.yaml (768 px); the 512 px base says 64 */
    a->unet.num_head_channels = 64;
    a->unet.context_dim = 1024;
    a->unet.linear_proj = 1;
    /* OpenCLIP ViT-H/14 text tower, stored in open_clip naming */
    a->text.openclip = 1;
    a->text.hidden = 1024;
    a->text.layers = 24;
    a->text.heads = 16;
    a->text.intermediate = 4096;
    a->text.hidden_act = "gelu";
    sd_vae(a);
  } else if (strcmp(name, "tiny-sd1") == 0) {
    /* the shapes of shared/reference/tiny-sd1/model.safetensors */
    a->kind = "tiny-sd1";
    a->unet.image_size = 32;
    a->unet.in_channels = a->unet.out_channels = 4;
    a->unet.model_channels = 32;
    a->unet.n_levels = 2;
    a->unet.channel_mult[0] = 1;
    a->unet.channel_mult[1] = 2;
    a->unet.num_res_blocks = 1;
    a->unet.attention[0] = a->unet.attention[1] = 1;
    a->unet.num_heads = 2;
    a->unet.transformer_depth = 1;
    a->unet.context_dim = 32;
    a->text.hidden = 32;
    a->text.layers = 2;
    a->text.heads = 2;
    a->text.intermediate = 64;
    a->text.hidden_act = "quick_gelu";
    a->vae.ch = 32;
    a->vae.out_ch = 3;
    a->vae.in_channels = 3;
    a->vae.resolution = 16;
    a->vae.z_channels = 4;
    a->vae.embed_dim = 4;
    a->vae.n_levels = 2;
    a->vae.ch_mult[0] = 1;
    a->vae.ch_mult[1] = 2;
    a->vae.num_res_blocks = 1;
    a->vae.scale_factor = 0.18215;
  } else {
    return sd_fail(err, "unknown architecture '%s' (expected %s)", name, sd_synth_arch_names());
  }
  return 0;
}

const char *sd_synth_arch_names(void) { return "tiny-sd1|sd15|sd21"; }

/* ---- key list ---- */

void sd_synth_list_free(sd_synth_list *l) {
  free(l->items);
  l->items = NULL;
  l->count = l->capacity = 0;
}

static int add_v(sd_synth_list *l, sd_synth_init init, sd_dtype dtype, int ndim, const int64_t *shape, sd_error *err,
                 const char *fmt, va_list ap) {
  if (l->count == l->capacity) {
    int cap = l->capacity ? 2 * l->capacity : 512;
    sd_synth_tensor *items = realloc(l->items, (size_t)cap * sizeof *items);
    if (!items) return sd_fail(err, "out of memory for %d tensor names", cap);
    l->items = items;
    l->capacity = cap;
  }
  sd_synth_tensor *t = &l->items[l->count];
  memset(t, 0, sizeof *t);
  int n = vsnprintf(t->name, sizeof t->name, fmt, ap);
  if (n < 0 || (size_t)n >= sizeof t->name) return sd_fail(err, "tensor name too long: %s...", t->name);
  t->dtype = dtype;
  t->ndim = ndim;
  memcpy(t->shape, shape, (size_t)ndim * sizeof *shape);
  t->init = init;
  l->count++;
  return 0;
}

int sd_synth_add(sd_synth_list *l, sd_synth_init init, sd_dtype dtype, int ndim, const int64_t *shape, sd_error *err,
                 const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int rc = add_v(l, init, dtype, ndim, shape, err, fmt, ap);
  va_end(ap);
  return rc;
}

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* Weight-dtype tensor "<prefix>.<leaf>" with the given init and shape. */
#define ADD(l, init, prefix, leaf, ...) \
  sd_synth_add((l), (init), (l)->dtype, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), err, "%s." leaf, (prefix))

/* nn.Linear(in, out): weight [out, in], bias [out] (when bias). */
static int linear(sd_synth_list *l, const char *p, int64_t out, int64_t in, int bias, sd_error *err) {
  if (ADD(l, SD_SYNTH_FAN_IN, p, "weight", out, in) != 0) return -1;
  return bias ? ADD(l, SD_SYNTH_BIAS, p, "bias", out) : 0;
}

/* nn.Conv2d(in, out, k): weight [out, in, k, k], bias [out]. */
static int conv(sd_synth_list *l, const char *p, int64_t out, int64_t in, int64_t k, sd_error *err) {
  if (ADD(l, SD_SYNTH_FAN_IN, p, "weight", out, in, k, k) != 0) return -1;
  return ADD(l, SD_SYNTH_BIAS, p, "bias", out);
}

/* GroupNorm / LayerNorm(c): weight (gamma) [c], bias (beta) [c]. */
static int norm(sd_synth_list *l, const char *p, int64_t c, sd_error *err) {
  if (ADD(l, SD_SYNTH_ONES, p, "weight", c) != 0) return -1;
  return ADD(l, SD_SYNTH_ZEROS, p, "bias", c);
}

/* Formats a module path into buf and returns it. */
static const char *path(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static const char *path(char *buf, size_t size, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, size, fmt, ap);
  va_end(ap);
  return buf;
}

#define P(...) path(name, sizeof name, __VA_ARGS__)

/* ---- UNet (ldm openaimodel.UNetModel) ---- */

/* ResBlock(cin -> cout, emb): in_layers (0 GroupNorm, 2 conv3x3), emb_layers.1 Linear(emb, cout),
 * out_layers (0 GroupNorm, 3 conv3x3; 1 SiLU, 2 Dropout hold no weights), skip_connection 1x1 if
 * cin != cout. */
static int unet_resblock(sd_synth_list *l, const char *p, int cin, int cout, int emb, sd_error *err) {
  char name[160];
  if (norm(l, P("%s.in_layers.0", p), cin, err) || conv(l, P("%s.in_layers.2", p), cout, cin, 3, err) ||
      linear(l, P("%s.emb_layers.1", p), cout, emb, 1, err) || norm(l, P("%s.out_layers.0", p), cout, err) ||
      conv(l, P("%s.out_layers.3", p), cout, cout, 3, err))
    return -1;
  return cin != cout ? conv(l, P("%s.skip_connection", p), cout, cin, 1, err) : 0;
}

/* SpatialTransformer(c): norm, proj_in, transformer_blocks.{d} (BasicTransformerBlock: attn1 self,
 * attn2 cross with to_k/to_v [c, context], ff = GEGLU net.0.proj [8c, c] -> net.2 [c, 4c], norm1-3),
 * proj_out. Heads never change a shape: heads x dim_head = c in every SD config. */
static int unet_transformer(sd_synth_list *l, const sd_synth_arch *a, const char *p, int c, sd_error *err) {
  char name[160];
  if (norm(l, P("%s.norm", p), c, err)) return -1;
  if (a->unet.linear_proj ? linear(l, P("%s.proj_in", p), c, c, 1, err) : conv(l, P("%s.proj_in", p), c, c, 1, err))
    return -1;
  for (int d = 0; d < a->unet.transformer_depth; d++) {
    for (int at = 1; at <= 2; at++) {
      int kv_in = at == 1 ? c : a->unet.context_dim;
      if (linear(l, P("%s.transformer_blocks.%d.attn%d.to_q", p, d, at), c, c, 0, err) ||
          linear(l, P("%s.transformer_blocks.%d.attn%d.to_k", p, d, at), c, kv_in, 0, err) ||
          linear(l, P("%s.transformer_blocks.%d.attn%d.to_v", p, d, at), c, kv_in, 0, err) ||
          linear(l, P("%s.transformer_blocks.%d.attn%d.to_out.0", p, d, at), c, c, 1, err))
        return -1;
    }
    if (linear(l, P("%s.transformer_blocks.%d.ff.net.0.proj", p, d), 8 * c, c, 1, err) ||
        linear(l, P("%s.transformer_blocks.%d.ff.net.2", p, d), c, 4 * c, 1, err))
      return -1;
    for (int k = 1; k <= 3; k++)
      if (norm(l, P("%s.transformer_blocks.%d.norm%d", p, d, k), c, err)) return -1;
  }
  return a->unet.linear_proj ? linear(l, P("%s.proj_out", p), c, c, 1, err) : conv(l, P("%s.proj_out", p), c, c, 1, err);
}

int sd_synth_unet_keys(const sd_synth_arch *a, sd_synth_list *l, sd_error *err) {
  const char *u = "model.diffusion_model";
  char name[160], blk[128];
  int mc = a->unet.model_channels, emb = 4 * mc, last = a->unet.n_levels - 1;
  if (linear(l, P("%s.time_embed.0", u), emb, mc, 1, err) || linear(l, P("%s.time_embed.2", u), emb, emb, 1, err) ||
      conv(l, P("%s.input_blocks.0.0", u), mc, a->unet.in_channels, 3, err))
    return -1;
  int skip_chans[64], n_skip = 0, block = 1, ch = mc;
  skip_chans[n_skip++] = ch;
  for (int lev = 0; lev <= last; lev++) {
    int out = mc * a->unet.channel_mult[lev];
    for (int r = 0; r < a->unet.num_res_blocks; r++, block++) {
      path(blk, sizeof blk, "%s.input_blocks.%d", u, block);
      if (unet_resblock(l, P("%s.0", blk), ch, out, emb, err)) return -1;
      ch = out;
      if (a->unet.attention[lev] && unet_transformer(l, a, P("%s.1", blk), ch, err)) return -1;
      if (n_skip < 64) skip_chans[n_skip++] = ch;
    }
    if (lev != last) { /* Downsample: conv3x3 stride 2 named "op" */
      if (conv(l, P("%s.input_blocks.%d.0.op", u, block++), ch, ch, 3, err)) return -1;
      if (n_skip < 64) skip_chans[n_skip++] = ch;
    }
  }
  if (n_skip >= 64) return sd_fail(err, "%s: too many UNet input blocks", a->kind);
  if (unet_resblock(l, P("%s.middle_block.0", u), ch, ch, emb, err) ||
      unet_transformer(l, a, P("%s.middle_block.1", u), ch, err) ||
      unet_resblock(l, P("%s.middle_block.2", u), ch, ch, emb, err))
    return -1;
  block = 0;
  for (int lev = last; lev >= 0; lev--) {
    int out = mc * a->unet.channel_mult[lev];
    for (int r = 0; r <= a->unet.num_res_blocks; r++, block++) {
      int skip = skip_chans[--n_skip], layer = 1;
      path(blk, sizeof blk, "%s.output_blocks.%d", u, block);
      if (unet_resblock(l, P("%s.0", blk), ch + skip, out, emb, err)) return -1;
      ch = out;
      if (a->unet.attention[lev] && unet_transformer(l, a, P("%s.%d", blk, layer++), ch, err)) return -1;
      if (lev != 0 && r == a->unet.num_res_blocks && conv(l, P("%s.%d.conv", blk, layer), ch, ch, 3, err)) return -1;
    }
  }
  /* out: 0 GroupNorm, 1 SiLU, 2 conv3x3 */
  if (norm(l, P("%s.out.0", u), ch, err) || conv(l, P("%s.out.2", u), a->unet.out_channels, ch, 3, err)) return -1;
  return 0;
}

/* ---- text encoder ---- */

/* transformers CLIPTextModel under cond_stage_model.transformer. (ldm FrozenCLIPEmbedder). */
static int text_hf(const sd_synth_arch *a, sd_synth_list *l, sd_error *err) {
  const char *t = "cond_stage_model.transformer.text_model";
  char name[192];
  int64_t d = a->text.hidden, f = a->text.intermediate;
  if (ADD(l, SD_SYNTH_EMBEDDING, P("%s.embeddings", t), "token_embedding.weight", a->text.vocab_size, d) ||
      ADD(l, SD_SYNTH_EMBEDDING, P("%s.embeddings", t), "position_embedding.weight", a->text.max_positions, d) ||
      sd_synth_add(l, SD_SYNTH_POSITION_IDS, SD_DTYPE_I64, 2, SHAPE(1, a->text.max_positions), err,
          "%s.embeddings.position_ids", t))
    return -1;
  for (int i = 0; i < a->text.layers; i++) {
    char lay[128];
    path(lay, sizeof lay, "%s.encoder.layers.%d", t, i);
    if (linear(l, P("%s.self_attn.q_proj", lay), d, d, 1, err) || linear(l, P("%s.self_attn.k_proj", lay), d, d, 1, err) ||
        linear(l, P("%s.self_attn.v_proj", lay), d, d, 1, err) ||
        linear(l, P("%s.self_attn.out_proj", lay), d, d, 1, err) || norm(l, P("%s.layer_norm1", lay), d, err) ||
        linear(l, P("%s.mlp.fc1", lay), f, d, 1, err) || linear(l, P("%s.mlp.fc2", lay), d, f, 1, err) ||
        norm(l, P("%s.layer_norm2", lay), d, err))
      return -1;
  }
  return norm(l, P("%s.final_layer_norm", t), d, err);
}

/* open_clip TextTransformer under cond_stage_model.model. (ldm FrozenOpenCLIPEmbedder, which deletes
 * the visual tower). attn is torch nn.MultiheadAttention: stacked in_proj_weight [3d, d]; the causal
 * attn_mask buffer is not persistent, so it is not in the state dict. */
static int text_openclip(const sd_synth_arch *a, sd_synth_list *l, sd_error *err) {
  const char *m = "cond_stage_model.model";
  char name[192];
  int64_t d = a->text.hidden, f = a->text.intermediate;
  if (ADD(l, SD_SYNTH_EMBEDDING, m, "token_embedding.weight", a->text.vocab_size, d) ||
      ADD(l, SD_SYNTH_EMBEDDING, m, "positional_embedding", a->text.max_positions, d))
    return -1;
  for (int i = 0; i < a->text.layers; i++) {
    char blk[128];
    path(blk, sizeof blk, "%s.transformer.resblocks.%d", m, i);
    if (norm(l, P("%s.ln_1", blk), d, err) || ADD(l, SD_SYNTH_FAN_IN, blk, "attn.in_proj_weight", 3 * d, d) ||
        ADD(l, SD_SYNTH_BIAS, blk, "attn.in_proj_bias", 3 * d) || linear(l, P("%s.attn.out_proj", blk), d, d, 1, err) ||
        norm(l, P("%s.ln_2", blk), d, err) || linear(l, P("%s.mlp.c_fc", blk), f, d, 1, err) ||
        linear(l, P("%s.mlp.c_proj", blk), d, f, 1, err))
      return -1;
  }
  if (norm(l, P("%s.ln_final", m), d, err) || ADD(l, SD_SYNTH_FAN_IN, m, "text_projection", d, d)) return -1;
  return sd_synth_add(l, SD_SYNTH_LOGIT_SCALE, l->dtype, 0, SHAPE(0), err, "%s.logit_scale", m);
}

int sd_synth_text_keys(const sd_synth_arch *a, sd_synth_list *l, sd_error *err) {
  return a->text.openclip ? text_openclip(a, l, err) : text_hf(a, l, err);
}

/* ---- VAE (ldm AutoencoderKL: Encoder, Decoder, quant_conv, post_quant_conv) ---- */

/* ResnetBlock(cin -> cout) without time embedding: norm1, conv1, norm2, conv2, nin_shortcut if
 * cin != cout. */
static int vae_resnet(sd_synth_list *l, const char *p, int cin, int cout, sd_error *err) {
  char name[192];
  if (norm(l, P("%s.norm1", p), cin, err) || conv(l, P("%s.conv1", p), cout, cin, 3, err) ||
      norm(l, P("%s.norm2", p), cout, err) || conv(l, P("%s.conv2", p), cout, cout, 3, err))
    return -1;
  return cin != cout ? conv(l, P("%s.nin_shortcut", p), cout, cin, 1, err) : 0;
}

/* mid: block_1, attn_1 (AttnBlock: GroupNorm + q, k, v, proj_out as 1x1 convs), block_2. */
static int vae_mid(sd_synth_list *l, const char *p, int c, sd_error *err) {
  char name[192];
  if (vae_resnet(l, P("%s.mid.block_1", p), c, c, err) || norm(l, P("%s.mid.attn_1.norm", p), c, err)) return -1;
  static const char *const qkvo[] = {"q", "k", "v", "proj_out"};
  for (int i = 0; i < 4; i++)
    if (conv(l, P("%s.mid.attn_1.%s", p, qkvo[i]), c, c, 1, err)) return -1;
  return vae_resnet(l, P("%s.mid.block_2", p), c, c, err);
}

int sd_synth_vae_keys(const sd_synth_arch *a, sd_synth_list *l, sd_error *err) {
  const char *enc = "first_stage_model.encoder", *dec = "first_stage_model.decoder";
  char name[192], blk[160];
  int ch = a->vae.ch, last = a->vae.n_levels - 1, z = a->vae.z_channels, e = a->vae.embed_dim;
  /* Encoder (double_z: conv_out gives mean and logvar) */
  if (conv(l, P("%s.conv_in", enc), ch, a->vae.in_channels, 3, err)) return -1;
  int block_in = ch;
  for (int lev = 0; lev <= last; lev++) {
    int block_out = ch * a->vae.ch_mult[lev];
    for (int j = 0; j < a->vae.num_res_blocks; j++) {
      if (vae_resnet(l, path(blk, sizeof blk, "%s.down.%d.block.%d", enc, lev, j), block_in, block_out, err)) return -1;
      block_in = block_out;
    }
    if (lev != last && conv(l, P("%s.down.%d.downsample.conv", enc, lev), block_in, block_in, 3, err)) return -1;
  }
  if (vae_mid(l, enc, block_in, err) || norm(l, P("%s.norm_out", enc), block_in, err) ||
      conv(l, P("%s.conv_out", enc), 2 * z, block_in, 3, err))
    return -1;
  /* Decoder */
  block_in = ch * a->vae.ch_mult[last];
  if (conv(l, P("%s.conv_in", dec), block_in, z, 3, err) || vae_mid(l, dec, block_in, err)) return -1;
  for (int lev = last; lev >= 0; lev--) {
    int block_out = ch * a->vae.ch_mult[lev];
    for (int j = 0; j <= a->vae.num_res_blocks; j++) {
      if (vae_resnet(l, path(blk, sizeof blk, "%s.up.%d.block.%d", dec, lev, j), block_in, block_out, err)) return -1;
      block_in = block_out;
    }
    if (lev != 0 && conv(l, P("%s.up.%d.upsample.conv", dec, lev), block_in, block_in, 3, err)) return -1;
  }
  if (norm(l, P("%s.norm_out", dec), block_in, err) || conv(l, P("%s.conv_out", dec), a->vae.out_ch, block_in, 3, err))
    return -1;
  return conv(l, "first_stage_model.quant_conv", 2 * e, 2 * z, 1, err) ||
                 conv(l, "first_stage_model.post_quant_conv", z, e, 1, err)
             ? -1
             : 0;
}

int sd_synth_schedule_keys(sd_synth_list *l, sd_error *err) {
  if (sd_synth_add(l, SD_SYNTH_BETAS, SD_DTYPE_F32, 1, SHAPE(SCHEDULE_STEPS), err, "betas") ||
      sd_synth_add(l, SD_SYNTH_ALPHAS_CUMPROD, SD_DTYPE_F32, 1, SHAPE(SCHEDULE_STEPS), err, "alphas_cumprod") ||
      sd_synth_add(l, SD_SYNTH_ALPHAS_CUMPROD_PREV, SD_DTYPE_F32, 1, SHAPE(SCHEDULE_STEPS), err, "alphas_cumprod_prev"))
    return -1;
  return 0;
}

static int compare_names(const void *x, const void *y) {
  return strcmp(((const sd_synth_tensor *)x)->name, ((const sd_synth_tensor *)y)->name);
}

int sd_synth_all_keys(const sd_synth_arch *a, sd_dtype dtype, sd_synth_list *l, sd_error *err) {
  memset(l, 0, sizeof *l);
  l->dtype = dtype;
  if (sd_synth_schedule_keys(l, err) || sd_synth_unet_keys(a, l, err) || sd_synth_text_keys(a, l, err) ||
      sd_synth_vae_keys(a, l, err)) {
    sd_synth_list_free(l);
    return -1;
  }
  qsort(l->items, (size_t)l->count, sizeof *l->items, compare_names);
  return 0;
}

/* ---- values ---- */

static uint64_t splitmix64(uint64_t *state) {
  uint64_t z = (*state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

void sd_synth_stream_init(sd_synth_stream *s, const sd_synth_tensor *t, uint64_t seed) {
  memset(s, 0, sizeof *s);
  s->t = t;
  uint64_t h = 1469598103934665603ull; /* FNV-1a of the name, mixed with the seed */
  for (const char *c = t->name; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
  s->state = seed ^ h;
  splitmix64(&s->state);
  int64_t fan_in = 1;
  for (int d = 1; d < t->ndim; d++) fan_in *= t->shape[d];
  switch (t->init) {
  case SD_SYNTH_FAN_IN: s->std = (float)(1.0 / sqrt((double)fan_in)); break;
  case SD_SYNTH_BIAS: s->std = 0.01f; break;
  case SD_SYNTH_EMBEDDING: s->std = 0.02f; break;
  case SD_SYNTH_UNIT_NORMAL: s->std = 1.0f; break;
  default: s->std = 0; break;
  }
}

/* Standard normal by Box-Muller over two 53-bit uniforms; pairs are consumed in order. */
static double normal(sd_synth_stream *s) {
  if (s->has_spare) {
    s->has_spare = 0;
    return s->spare;
  }
  double u1 = (double)((splitmix64(&s->state) >> 11) + 1) * 0x1p-53; /* (0, 1]: log is finite */
  double u2 = (double)(splitmix64(&s->state) >> 11) * 0x1p-53;
  double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
  s->spare = r * sin(th);
  s->has_spare = 1;
  return r * cos(th);
}

void sd_synth_schedule(int which, double linear_start, double linear_end, int n, float *out) {
  /* torch.linspace(sqrt(start), sqrt(end), n, float64) ** 2; torch fills the second half from the end */
  double a = sqrt(linear_start), b = sqrt(linear_end), step = (b - a) / (n - 1), cum = 1.0;
  for (int i = 0; i < n; i++) {
    double x = i < n / 2 ? a + step * i : b - step * (n - 1 - i), beta = x * x;
    if (which == 0) out[i] = (float)beta;
    if (which == 2) out[i] = (float)cum;
    cum *= 1.0 - beta;
    if (which == 1) out[i] = (float)cum;
  }
}

void sd_synth_stream_next(sd_synth_stream *s, float *out, int64_t n) {
  const sd_synth_tensor *t = s->t;
  if (t->init == SD_SYNTH_BETAS || t->init == SD_SYNTH_ALPHAS_CUMPROD || t->init == SD_SYNTH_ALPHAS_CUMPROD_PREV) {
    float sched[SCHEDULE_STEPS];
    sd_synth_schedule(t->init - SD_SYNTH_BETAS, LINEAR_START, LINEAR_END, SCHEDULE_STEPS, sched);
    for (int64_t i = 0; i < n; i++) out[i] = s->next + i < SCHEDULE_STEPS ? sched[s->next + i] : 0.0f;
    s->next += n;
    return;
  }
  for (int64_t i = 0; i < n; i++) {
    switch (t->init) {
    case SD_SYNTH_ONES: out[i] = 1.0f; break;
    case SD_SYNTH_ZEROS: out[i] = 0.0f; break;
    case SD_SYNTH_LOGIT_SCALE: out[i] = (float)log(1.0 / 0.07); break;
    case SD_SYNTH_POSITION_IDS: out[i] = (float)((s->next + i) % t->shape[t->ndim - 1]); break;
    default: out[i] = (float)(s->std * normal(s)); break;
    }
  }
  s->next += n;
}

/* ---- metadata ---- */

static json_t *int_array(const int *v, int n) {
  json_t *arr = json_array();
  for (int i = 0; i < n; i++) json_array_append_new(arr, json_integer(v[i]));
  return arr;
}

static json_t *config_object(const sd_synth_arch *a) {
  json_t *cfg = json_object(), *u = json_object(), *t = json_object(), *v = json_object(), *s = json_object();
  json_object_set_new(cfg, "kind", json_string(a->kind));
  /* ldm UNetModel params; attention_resolutions are downsampling factors 2^level */
  int ar[SD_SYNTH_MAX_LEVELS], n_ar = 0;
  for (int l = 0; l < a->unet.n_levels; l++)
    if (a->unet.attention[l]) ar[n_ar++] = 1 << l;
  json_object_set_new(u, "image_size", json_integer(a->unet.image_size));
  json_object_set_new(u, "in_channels", json_integer(a->unet.in_channels));
  json_object_set_new(u, "out_channels", json_integer(a->unet.out_channels));
  json_object_set_new(u, "model_channels", json_integer(a->unet.model_channels));
  json_object_set_new(u, "attention_resolutions", int_array(ar, n_ar));
  json_object_set_new(u, "num_res_blocks", json_integer(a->unet.num_res_blocks));
  json_object_set_new(u, "channel_mult", int_array(a->unet.channel_mult, a->unet.n_levels));
  if (a->unet.num_heads > 0) json_object_set_new(u, "num_heads", json_integer(a->unet.num_heads));
  else json_object_set_new(u, "num_head_channels", json_integer(a->unet.num_head_channels));
  json_object_set_new(u, "use_spatial_transformer", json_true());
  json_object_set_new(u, "transformer_depth", json_integer(a->unet.transformer_depth));
  json_object_set_new(u, "context_dim", json_integer(a->unet.context_dim));
  json_object_set_new(u, "use_linear_in_transformer", json_boolean(a->unet.linear_proj));
  json_object_set_new(u, "legacy", json_false());
  json_object_set_new(cfg, "unet", u);
  /* transformers CLIPTextConfig */
  json_object_set_new(t, "vocab_size", json_integer(a->text.vocab_size));
  json_object_set_new(t, "max_position_embeddings", json_integer(a->text.max_positions));
  json_object_set_new(t, "hidden_size", json_integer(a->text.hidden));
  json_object_set_new(t, "num_hidden_layers", json_integer(a->text.layers));
  json_object_set_new(t, "num_attention_heads", json_integer(a->text.heads));
  json_object_set_new(t, "intermediate_size", json_integer(a->text.intermediate));
  json_object_set_new(t, "hidden_act", json_string(a->text.hidden_act));
  json_object_set_new(t, "layer_norm_eps", json_real(1e-5));
  json_object_set_new(cfg, "text", t);
  /* ldm AutoencoderKL ddconfig + embed_dim + scale_factor */
  json_object_set_new(v, "ch", json_integer(a->vae.ch));
  json_object_set_new(v, "out_ch", json_integer(a->vae.out_ch));
  json_object_set_new(v, "ch_mult", int_array(a->vae.ch_mult, a->vae.n_levels));
  json_object_set_new(v, "num_res_blocks", json_integer(a->vae.num_res_blocks));
  json_object_set_new(v, "attn_resolutions", json_array());
  json_object_set_new(v, "in_channels", json_integer(a->vae.in_channels));
  json_object_set_new(v, "resolution", json_integer(a->vae.resolution));
  json_object_set_new(v, "z_channels", json_integer(a->vae.z_channels));
  json_object_set_new(v, "double_z", json_true());
  json_object_set_new(v, "embed_dim", json_integer(a->vae.embed_dim));
  json_object_set_new(v, "scale_factor", json_real(a->vae.scale_factor));
  json_object_set_new(cfg, "vae", v);
  json_object_set_new(s, "beta_schedule", json_string("scaled_linear"));
  json_object_set_new(s, "linear_start", json_real(LINEAR_START));
  json_object_set_new(s, "linear_end", json_real(LINEAR_END));
  json_object_set_new(s, "timesteps", json_integer(SCHEDULE_STEPS));
  json_object_set_new(cfg, "schedule", s);
  json_object_set_new(cfg, "generator", json_string("sdprune synth (random weights)"));
  /* v2-inference-v.yaml: the 768 px SD 2.x model predicts v, not eps */
  json_object_set_new(cfg, "parameterization", json_string(strcmp(a->kind, "sd21") == 0 ? "v" : "eps"));
  return cfg;
}

char *sd_synth_metadata_json(const sd_synth_arch *a, uint64_t seed, sd_error *err) {
  /* 9 significant digits print 0.00085, 1e-05 and 0.18215 as written */
  const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9);
  json_t *cfg = config_object(a);
  char *cfg_text = json_dumps(cfg, flags);
  json_decref(cfg);
  if (!cfg_text) {
    sd_fail(err, "cannot encode the synth config");
    return NULL;
  }
  char seed_text[32];
  snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed);
  json_t *md = json_object(); /* safetensors metadata values must be strings */
  json_object_set_new(md, "format", json_string("pt"));
  json_object_set_new(md, "config", json_string(cfg_text));
  json_object_set_new(md, "sdprune_version", json_string(SDPRUNE_VERSION));
  json_object_set_new(md, "synth_seed", json_string(seed_text));
  json_object_set_new(md, "synth_arch", json_string(a->kind));
  free(cfg_text);
  char *out = json_dumps(md, flags);
  json_decref(md);
  if (!out) sd_fail(err, "cannot encode the synth metadata");
  return out;
}

/* ---- writer ---- */

#define CHUNK 65536

typedef struct {
  uint64_t seed;
  int count;
  sd_synth_progress progress;
  void *progress_ctx;
  float *values;        /* [CHUNK] */
  unsigned char *bytes; /* [CHUNK * 8] */
} writer;

typedef struct {
  writer *w;
  const sd_synth_tensor *t;
  int index;
} entry_ctx;

static int write_tensor(FILE *f, const sd_st_entry *e) {
  entry_ctx *c = e->user;
  writer *w = c->w;
  const sd_synth_tensor *t = c->t;
  if (w->progress) w->progress(w->progress_ctx, c->index, w->count, t->name);
  int64_t numel = 1;
  for (int d = 0; d < t->ndim; d++) numel *= t->shape[d];
  sd_synth_stream s;
  sd_synth_stream_init(&s, t, w->seed);
  size_t esize = sd_dtype_size(t->dtype);
  for (int64_t done = 0; done < numel;) {
    int64_t n = numel - done < CHUNK ? numel - done : CHUNK;
    sd_synth_stream_next(&s, w->values, n);
    for (int64_t i = 0; i < n; i++) {
      unsigned char *b = w->bytes + i * (int64_t)esize;
      if (t->dtype == SD_DTYPE_F16) {
        uint16_t h = sd_f32_to_f16(w->values[i]);
        b[0] = (unsigned char)h, b[1] = (unsigned char)(h >> 8);
      } else if (t->dtype == SD_DTYPE_BF16) {
        uint16_t h = sd_f32_to_bf16(w->values[i]);
        b[0] = (unsigned char)h, b[1] = (unsigned char)(h >> 8);
      } else if (t->dtype == SD_DTYPE_I64) {
        uint64_t v = (uint64_t)(int64_t)w->values[i];
        for (int k = 0; k < 8; k++) b[k] = (unsigned char)(v >> (8 * k));
      } else { /* F32, little-endian */
        uint32_t v;
        memcpy(&v, &w->values[i], 4);
        for (int k = 0; k < 4; k++) b[k] = (unsigned char)(v >> (8 * k));
      }
    }
    if (fwrite(w->bytes, esize, (size_t)n, f) != (size_t)n) return -1;
    done += n;
  }
  return 0;
}

int sd_synth_write_list(const char *path, const sd_synth_list *list, const char *metadata_json, uint64_t seed,
                        sd_synth_progress progress, void *progress_ctx, int *count_out, uint64_t *bytes_out,
                        sd_error *err) {
  int rc = -1;
  sd_st_entry *entries = NULL;
  entry_ctx *ctx = NULL;
  writer w = {.seed = seed, .count = list->count, .progress = progress, .progress_ctx = progress_ctx};
  if (!(entries = sd_calloc((size_t)list->count, sizeof *entries, err)) ||
      !(ctx = sd_calloc((size_t)list->count, sizeof *ctx, err)) ||
      !(w.values = sd_malloc(CHUNK * sizeof *w.values, err)) || !(w.bytes = sd_malloc(CHUNK * 8, err)))
    goto free_all;
  uint64_t bytes = 0;
  for (int i = 0; i < list->count; i++) {
    const sd_synth_tensor *t = &list->items[i];
    ctx[i] = (entry_ctx){.w = &w, .t = t, .index = i};
    entries[i].name = t->name;
    entries[i].dtype = t->dtype;
    entries[i].ndim = t->ndim;
    memcpy(entries[i].shape, t->shape, sizeof t->shape);
    entries[i].write = write_tensor;
    entries[i].user = &ctx[i];
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) numel *= (uint64_t)t->shape[d];
    bytes += numel * sd_dtype_size(t->dtype);
  }
  if (sd_safetensors_write(path, entries, list->count, metadata_json, err) != 0) goto free_all;
  if (count_out) *count_out = list->count;
  if (bytes_out) *bytes_out = bytes;
  rc = 0;
free_all:
  free(w.bytes);
  free(w.values);
  free(ctx);
  free(entries);
  return rc;
}

int sd_synth_write(const char *path, const sd_synth_arch *a, sd_dtype dtype, uint64_t seed,
                   sd_synth_progress progress, void *progress_ctx, int *count_out, uint64_t *bytes_out,
                   sd_error *err) {
  if (dtype != SD_DTYPE_F32 && dtype != SD_DTYPE_F16 && dtype != SD_DTYPE_BF16)
    return sd_fail(err, "%s: synth writes F32, F16 or BF16 weights, not %s", path, sd_dtype_name(dtype));
  sd_synth_list list;
  if (sd_synth_all_keys(a, dtype, &list, err) != 0) return -1;
  char *metadata = sd_synth_metadata_json(a, seed, err);
  int rc = metadata ? sd_synth_write_list(path, &list, metadata, seed, progress, progress_ctx, count_out, bytes_out, err)
                    : -1;
  free(metadata);
  sd_synth_list_free(&list);
  return rc;
}

/* ---- the synth: model-path prefix ---- */

int sd_synth_spec_parse(const char *spec, char *name, size_t name_size, uint64_t *seed, const char *expected,
                        sd_error *err) {
  const char *colon = strchr(spec, ':');
  size_t len = colon ? (size_t)(colon - spec) : strlen(spec);
  *seed = 0;
  if (len == 0 || len >= name_size)
    return sd_fail(err, "synth:%s: expected synth:ARCH[:SEED] with ARCH one of %s", spec, expected);
  memcpy(name, spec, len);
  name[len] = 0;
  if (colon) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(colon + 1, &end, 10);
    if (errno || end == colon + 1 || *end || colon[1] == '-')
      return sd_fail(err, "synth:%s: the seed must be an integer in [0, 2^64-1]", spec);
    *seed = (uint64_t)v;
  }
  return 0;
}

int sd_synth_cache_file(const char *kind, uint64_t seed, char *out, size_t n, sd_error *err) {
  const char *dir = getenv("SDPRUNE_SYNTH_CACHE"), *tmp = getenv("TMPDIR");
  char folder[4096];
  if (dir && *dir) snprintf(folder, sizeof folder, "%s", dir);
  else snprintf(folder, sizeof folder, "%s/sdprune-synth", tmp && *tmp ? tmp : "/tmp");
  if ((size_t)snprintf(out, n, "%s/%s-seed%llu-f16.safetensors", folder, kind, (unsigned long long)seed) >= n)
    return sd_fail(err, "synth:%s: cache path too long", kind);
  if (sd_is_file(out)) return 1;
  if (sd_mkdir_p(folder) != 0) return sd_fail(err, "synth:%s: cannot create %s: %s", kind, folder, strerror(errno));
  return 0;
}
