/* Forward passes of the VAE (ldm ldm/modules/diffusionmodules/model.py Encoder/Decoder around
 * AutoencoderKL's quant_conv/post_quant_conv), one image at a time, NCHW float32. Weights are
 * bound by vae.c; no file or name handling here. */
#include <math.h>
#include <string.h>

#include "core/kernels.h"
#include "model/vae.h"

#define VAE_GROUPS 32
#define VAE_EPS 1e-6f /* ldm Normalize(): GroupNorm(32, C, eps=1e-6) */

static int conv_forward(float *y, const float *x, int h, int w, const sd_conv2d *conv, int stride, int pad,
                        int accumulate, sd_arena *arena, sd_error *err) {
  /* sd_conv2d_forward bands its im2col, so SD's 512x512 layers need ~16 MiB of columns, not 2.4 GB */
  return sd_conv2d_forward(y, x, h, w, conv, stride, pad, accumulate, arena, err);
}

/* ldm ResnetBlock (no temb; dropout is identity at inference): out[cout, h, w] from x[cin, h, w].
 * out may be x when cin == cout (the residual is then added in place). */
static int resblock_forward(float *out, float *x, int h, int w, const sd_vae_resblock *rb, sd_arena *arena,
                            sd_error *err) {
  int64_t hw = (int64_t)h * w;
  size_t mark = sd_arena_mark(arena);
  float *normed = sd_arena_floats(arena, (size_t)(rb->cin * hw), err);
  float *hidden = normed ? sd_arena_floats(arena, (size_t)(rb->cout * hw), err) : NULL;
  if (!hidden) return -1;
  sd_group_norm(normed, x, rb->cin, hw, VAE_GROUPS, VAE_EPS, &rb->norm1, 1);
  if (conv_forward(hidden, normed, h, w, &rb->conv1, 1, 1, 0, arena, err) != 0) return -1;
  sd_group_norm(hidden, hidden, rb->cout, hw, VAE_GROUPS, VAE_EPS, &rb->norm2, 1);
  if (rb->nin_shortcut.w) {
    if (conv_forward(out, x, h, w, &rb->nin_shortcut, 1, 0, 0, arena, err) != 0) return -1;
  } else if (out != x) {
    memcpy(out, x, sizeof(float) * (size_t)(rb->cout * hw));
  }
  /* out = shortcut(x) + conv2(h): conv2 accumulates onto the shortcut. */
  if (conv_forward(out, hidden, h, w, &rb->conv2, 1, 1, 1, arena, err) != 0) return -1;
  sd_arena_release(arena, mark);
  return 0;
}

/* ldm AttnBlock, in place on x[c, h, w]: x += proj_out(softmax(q kᵀ · c^-0.5) v), single head over
 * the h·w positions, q/k/v 1×1 convs of GroupNorm(x). Computed on tokens [hw, c]. */
static int attn_forward(float *x, int h, int w, const sd_vae_attn *at, sd_arena *arena, sd_error *err) {
  int c = at->c;
  int64_t hw = (int64_t)h * w;
  size_t n = (size_t)(c * hw), mark = sd_arena_mark(arena);
  float *normed = sd_arena_floats(arena, n, err);
  float *tokens = normed ? sd_arena_floats(arena, n, err) : NULL;
  float *q = tokens ? sd_arena_floats(arena, n, err) : NULL;
  float *k = q ? sd_arena_floats(arena, n, err) : NULL;
  float *v = k ? sd_arena_floats(arena, n, err) : NULL;
  if (!v) return -1;
  sd_group_norm(normed, x, c, hw, VAE_GROUPS, VAE_EPS, &at->norm, 0);
  sd_transpose(tokens, normed, c, hw);
  /* A 1×1 conv's weight [c, c, 1, 1] is a Linear weight [out, in]. */
  sd_linear lq = {at->q.w, at->q.b, c, c}, lk = {at->k.w, at->k.b, c, c}, lv = {at->v.w, at->v.b, c, c};
  sd_linear_forward(q, tokens, hw, &lq);
  sd_linear_forward(k, tokens, hw, &lk);
  sd_linear_forward(v, tokens, hw, &lv);
  float scale = (float)(1.0 / sqrt((double)c)); /* python: int(c)**(-0.5) */
  if (sd_attention(tokens, c, q, c, k, v, c, (int)hw, (int)hw, 1, c, scale, 0, arena, err) != 0) return -1;
  sd_transpose(normed, tokens, hw, c);
  if (conv_forward(x, normed, h, w, &at->proj_out, 1, 0, 1, arena, err) != 0) return -1;
  sd_arena_release(arena, mark);
  return 0;
}

/* Runs a resblock reading *cur; the result is in *cur afterwards (ping-pong with *other when the
 * channel count changes). */
static int resblock_step(float **cur, float **other, int h, int w, const sd_vae_resblock *rb, sd_arena *arena,
                         sd_error *err) {
  if (rb->cin == rb->cout) return resblock_forward(*cur, *cur, h, w, rb, arena, err);
  if (resblock_forward(*other, *cur, h, w, rb, arena, err) != 0) return -1;
  float *t = *cur;
  *cur = *other;
  *other = t;
  return 0;
}

static int mid_forward(float *x, int h, int w, const sd_vae_mid *mid, sd_arena *arena, sd_error *err) {
  if (resblock_forward(x, x, h, w, &mid->block_1, arena, err) != 0) return -1;
  if (attn_forward(x, h, w, &mid->attn_1, arena, err) != 0) return -1;
  return resblock_forward(x, x, h, w, &mid->block_2, arena, err);
}

static size_t max_sz(size_t a, size_t b) { return a > b ? a : b; }

/* Floats of the largest activation the decoder holds in one ping-pong buffer. */
static size_t decoder_buffer_floats(const sd_vae_config *cfg, int h, int w) {
  int L = cfg->n_levels, c = cfg->ch * cfg->ch_mult[L - 1];
  size_t hh = (size_t)h, ww = (size_t)w;
  size_t m = max_sz((size_t)max_sz((size_t)cfg->embed_dim, (size_t)cfg->z_channels), (size_t)c) * hh * ww;
  for (int i = L - 1; i >= 0; i--) {
    int cout = cfg->ch * cfg->ch_mult[i];
    m = max_sz(m, (size_t)(c > cout ? c : cout) * hh * ww);
    c = cout;
    if (i != 0) {
      hh *= 2;
      ww *= 2;
      m = max_sz(m, (size_t)c * hh * ww);
    }
  }
  return m;
}

int sd_vae_decode(sd_vae *vae, const float *latent, int B, int h, int w, float *image, sd_error *err) {
  const sd_vae_config *cfg = &vae->cfg;
  if (!vae->decoder.conv_in.w) return sd_fail(err, "VAE decode: the VAE is not initialised");
  if (B < 1 || h < 1 || w < 1) return sd_fail(err, "VAE decode: bad latent size B=%d h=%d w=%d", B, h, w);
  int L = cfg->n_levels, f = 1 << (L - 1);
  int64_t hw = (int64_t)h * w, out_hw = hw * f * f;
  sd_arena *arena = &vae->arena;
  sd_arena_reset(arena);
  size_t cap = decoder_buffer_floats(cfg, h, w);
  float *buf_a = sd_arena_floats(arena, cap, err);
  float *buf_b = buf_a ? sd_arena_floats(arena, cap, err) : NULL;
  if (!buf_b) return sd_fail_prefix(err, "VAE decode %dx%d", h, w);
  const sd_vae_decoder *dec = &vae->decoder;
  for (int b = 0; b < B; b++) {
    const float *lat = latent + (int64_t)b * cfg->embed_dim * hw;
    float *cur = buf_a, *other = buf_b;
    /* The reference divides (latent / scale_factor), not multiplies by the reciprocal. */
    for (int64_t i = 0; i < cfg->embed_dim * hw; i++) other[i] = lat[i] / cfg->scale_factor;
    if (conv_forward(cur, other, h, w, &vae->post_quant_conv, 1, 0, 0, arena, err) != 0) goto fail;
    if (conv_forward(other, cur, h, w, &dec->conv_in, 1, 1, 0, arena, err) != 0) goto fail;
    cur = buf_b;
    other = buf_a;
    if (mid_forward(cur, h, w, &dec->mid, arena, err) != 0) goto fail;
    int hh = h, ww = w, c = dec->conv_in.cout;
    for (int i = L - 1; i >= 0; i--) {
      for (int j = 0; j < cfg->num_res_blocks + 1; j++) {
        const sd_vae_resblock *rb = &dec->up[i].block[j];
        if (resblock_step(&cur, &other, hh, ww, rb, arena, err) != 0) goto fail;
        c = rb->cout;
      }
      if (i != 0) {
        sd_upsample_nearest2x(other, cur, c, hh, ww);
        hh *= 2;
        ww *= 2;
        if (conv_forward(cur, other, hh, ww, &dec->up[i].upsample, 1, 1, 0, arena, err) != 0) goto fail;
      }
    }
    sd_group_norm(cur, cur, c, (int64_t)hh * ww, VAE_GROUPS, VAE_EPS, &dec->norm_out, 1);
    if (conv_forward(image + (int64_t)b * cfg->out_ch * out_hw, cur, hh, ww, &dec->conv_out, 1, 1, 0, arena,
                          err) != 0)
      goto fail;
  }
  return 0;
fail:
  return sd_fail_prefix(err, "VAE decode");
}

void sd_vae_encoded_size(const sd_vae_config *cfg, int H, int W, int *ho, int *wo) {
  for (int i = 0; i < cfg->n_levels - 1; i++) {
    H = sd_conv_out_size(H + 1, 3, 2, 0); /* ldm Downsample: pad (0,1,0,1), conv3×3 stride 2 */
    W = sd_conv_out_size(W + 1, 3, 2, 0);
  }
  *ho = H;
  *wo = W;
}

/* Floats of the largest activation the encoder holds in one ping-pong buffer (the padded input of
 * each Downsample included). */
static size_t encoder_buffer_floats(const sd_vae_config *cfg, int H, int W) {
  int L = cfg->n_levels, c = cfg->ch;
  size_t m = (size_t)c * (size_t)H * (size_t)W;
  for (int i = 0; i < L; i++) {
    int cout = cfg->ch * cfg->ch_mult[i];
    m = max_sz(m, (size_t)(c > cout ? c : cout) * (size_t)H * (size_t)W);
    c = cout;
    if (i != L - 1) {
      m = max_sz(m, (size_t)c * (size_t)(H + 1) * (size_t)(W + 1));
      H = sd_conv_out_size(H + 1, 3, 2, 0);
      W = sd_conv_out_size(W + 1, 3, 2, 0);
    }
  }
  return max_sz(m, (size_t)(2 * cfg->z_channels) * (size_t)H * (size_t)W);
}

/* y[c, h+1, w+1] = x[c, h, w] with a zero row below and a zero column to the right
 * (torch.nn.functional.pad(x, (0, 1, 0, 1))). */
static void pad_right_bottom(float *y, const float *x, int c, int h, int w) {
  for (int ch = 0; ch < c; ch++) {
    float *dst = y + (int64_t)ch * (h + 1) * (w + 1);
    const float *src = x + (int64_t)ch * h * w;
    for (int r = 0; r < h; r++) {
      memcpy(dst + (int64_t)r * (w + 1), src + (int64_t)r * w, sizeof(float) * (size_t)w);
      dst[(int64_t)r * (w + 1) + w] = 0.0f;
    }
    memset(dst + (int64_t)h * (w + 1), 0, sizeof(float) * (size_t)(w + 1));
  }
}

int sd_vae_encode(sd_vae *vae, const float *image, int B, int H, int W, float *moments, sd_error *err) {
  const sd_vae_config *cfg = &vae->cfg;
  if (!cfg->has_encoder || !vae->encoder.conv_in.w) return sd_fail(err, "VAE encode: the VAE has no encoder loaded");
  int L = cfg->n_levels, ho, wo;
  sd_vae_encoded_size(cfg, H, W, &ho, &wo);
  if (B < 1 || H < 1 || W < 1 || ho < 1 || wo < 1)
    return sd_fail(err, "VAE encode: bad image size B=%d %dx%d (at least %d pixels per side)", B, H, W, 1 << (L - 1));
  sd_arena *arena = &vae->arena;
  sd_arena_reset(arena);
  size_t cap = encoder_buffer_floats(cfg, H, W);
  float *buf_a = sd_arena_floats(arena, cap, err);
  float *buf_b = buf_a ? sd_arena_floats(arena, cap, err) : NULL;
  if (!buf_b) return sd_fail_prefix(err, "VAE encode %dx%d", H, W);
  const sd_vae_encoder *enc = &vae->encoder;
  for (int b = 0; b < B; b++) {
    const float *img = image + (int64_t)b * cfg->in_channels * H * W;
    float *cur = buf_a, *other = buf_b;
    if (conv_forward(cur, img, H, W, &enc->conv_in, 1, 1, 0, arena, err) != 0) goto fail;
    int hh = H, ww = W, c = cfg->ch;
    for (int i = 0; i < L; i++) {
      for (int j = 0; j < cfg->num_res_blocks; j++) {
        const sd_vae_resblock *rb = &enc->down[i].block[j];
        if (resblock_step(&cur, &other, hh, ww, rb, arena, err) != 0) goto fail;
        c = rb->cout;
      }
      if (i != L - 1) {
        pad_right_bottom(other, cur, c, hh, ww);
        if (conv_forward(cur, other, hh + 1, ww + 1, &enc->down[i].downsample, 2, 0, 0, arena, err) != 0)
          goto fail;
        hh = sd_conv_out_size(hh + 1, 3, 2, 0);
        ww = sd_conv_out_size(ww + 1, 3, 2, 0);
      }
    }
    if (mid_forward(cur, hh, ww, &enc->mid, arena, err) != 0) goto fail;
    sd_group_norm(cur, cur, c, (int64_t)hh * ww, VAE_GROUPS, VAE_EPS, &enc->norm_out, 1);
    if (conv_forward(other, cur, hh, ww, &enc->conv_out, 1, 1, 0, arena, err) != 0) goto fail;
    float *out = moments + (int64_t)b * 2 * cfg->embed_dim * hh * ww;
    if (conv_forward(out, other, hh, ww, &vae->quant_conv, 1, 0, 0, arena, err) != 0) goto fail;
  }
  return 0;
fail:
  return sd_fail_prefix(err, "VAE encode");
}
