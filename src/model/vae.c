/* The VAE's configuration (inferred from tensor shapes or read from a diffusers config.json) and
 * the binding of its weights from a canonical-name view. The forward passes are in vae_forward.c;
 * name mapping of other layouts is in io/names_vae.c. */
#include "model/vae.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "io/names_vae.h"
#include "io/store_view.h"

#define VAE_GROUPS 32
#define VAE_MAX_CHANNELS (1 << 16)

/* ---------------------------------------------------------------- configuration */

static sd_tensor *find_f(sd_tensor_store *view, const char *fmt, int a, int b) {
  char name[256];
  snprintf(name, sizeof name, fmt, a, b);
  return sd_store_find(view, name);
}

int sd_vae_config_infer(sd_tensor_store *view, sd_vae_config *cfg, sd_error *err) {
  memset(cfg, 0, sizeof *cfg);
  sd_tensor *conv_in = sd_store_find(view, "decoder.conv_in.weight");
  sd_tensor *conv_out = sd_store_find(view, "decoder.conv_out.weight");
  sd_tensor *pqc = sd_store_find(view, "post_quant_conv.weight");
  if (!conv_in || conv_in->ndim != 4 || !conv_out || conv_out->ndim != 4 || !pqc || pqc->ndim < 2)
    return sd_fail(err, "%s: not a VAE: needs 4-d decoder.conv_in.weight, decoder.conv_out.weight and "
                        "post_quant_conv.weight", view->path);
  while (cfg->n_levels < SD_VAE_MAX_LEVELS && find_f(view, "decoder.up.%d.block.0.conv1.weight", cfg->n_levels, 0))
    cfg->n_levels++;
  if (cfg->n_levels == 0) return sd_fail(err, "%s: VAE decoder has no decoder.up.0.block.0.conv1.weight", view->path);
  if (find_f(view, "decoder.up.%d.block.0.conv1.weight", cfg->n_levels, 0))
    return sd_fail(err, "%s: VAE decoder has more than %d levels", view->path, SD_VAE_MAX_LEVELS);
  int blocks = 0;
  while (blocks < SD_VAE_MAX_BLOCKS && find_f(view, "decoder.up.%d.block.%d.conv1.weight", 0, blocks)) blocks++;
  cfg->num_res_blocks = blocks - 1;
  if (cfg->num_res_blocks < 1 || find_f(view, "decoder.up.%d.block.%d.conv1.weight", 0, blocks))
    return sd_fail(err, "%s: VAE decoder level 0 has %d blocks; supported: 2 to %d", view->path, blocks,
                   SD_VAE_MAX_BLOCKS);
  for (int i = 0; i < cfg->n_levels; i++)
    if (find_f(view, "decoder.up.%d.attn.0.q.weight", i, 0) || find_f(view, "encoder.down.%d.attn.0.q.weight", i, 0))
      return sd_fail(err, "%s: VAE has attention inside level %d (attn_resolutions); only mid-block attention is "
                          "supported", view->path, i);

  sd_tensor *enc_in = sd_store_find(view, "encoder.conv_in.weight");
  cfg->has_encoder = enc_in && enc_in->ndim == 4 && sd_store_find(view, "quant_conv.weight") != NULL;
  sd_tensor *up0 = find_f(view, "decoder.up.%d.block.%d.conv1.weight", 0, 0);
  cfg->ch = cfg->has_encoder ? (int)enc_in->shape[0] : (int)up0->shape[0]; /* decoder only: assume ch_mult[0] = 1 */
  cfg->in_channels = cfg->has_encoder ? (int)enc_in->shape[1] : 3;
  for (int i = 0; i < cfg->n_levels; i++) {
    int64_t c = find_f(view, "decoder.up.%d.block.%d.conv1.weight", i, 0)->shape[0];
    if (cfg->ch <= 0 || c % cfg->ch != 0)
      return sd_fail(err, "%s: VAE decoder.up.%d has %lld channels, not a multiple of ch=%d", view->path, i,
                     (long long)c, cfg->ch);
    cfg->ch_mult[i] = (int)(c / cfg->ch);
  }
  cfg->z_channels = (int)conv_in->shape[1];
  cfg->out_ch = (int)conv_out->shape[0];
  cfg->embed_dim = (int)pqc->shape[1];
  cfg->scale_factor = 0.18215f;
  return 0;
}

static int json_int_field(json_t *root, const char *key, int fallback, int *out, sd_error *err) {
  json_t *v = json_object_get(root, key);
  if (!v) {
    *out = fallback;
    return 0;
  }
  if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > INT_MAX)
    return sd_fail(err, "\"%s\" is not a positive integer", key);
  *out = (int)json_integer_value(v);
  return 0;
}

static int json_block_types(json_t *root, const char *key, const char *want, int n, sd_error *err) {
  json_t *arr = json_object_get(root, key);
  if (!arr) return 0;
  if (!json_is_array(arr) || (int)json_array_size(arr) != n)
    return sd_fail(err, "diffusers VAE config: \"%s\" must be an array of %d entries like block_out_channels", key, n);
  for (size_t i = 0; i < json_array_size(arr); i++) {
    const char *s = json_string_value(json_array_get(arr, i));
    if (!s || strcmp(s, want) != 0)
      return sd_fail(err, "diffusers VAE config: %s[%zu] is %s; only %s is supported", key, i, s ? s : "not a string",
                     want);
  }
  return 0;
}

static int json_bool_true_or_absent(json_t *root, const char *key, sd_error *err) {
  json_t *v = json_object_get(root, key);
  if (v && !json_is_null(v) && !json_is_true(v))
    return sd_fail(err, "diffusers VAE config: \"%s\" false is not supported", key);
  return 0;
}

int sd_vae_config_from_diffusers_json(const char *json_text, sd_vae_config *cfg, sd_error *err) {
  memset(cfg, 0, sizeof *cfg);
  json_error_t jerr;
  json_t *root = json_loads(json_text, 0, &jerr);
  if (!root) return sd_fail(err, "diffusers VAE config: invalid JSON at line %d: %s", jerr.line, jerr.text);
  int rc = -1;
  if (!json_is_object(root)) {
    sd_fail(err, "diffusers VAE config: top level is not an object");
    goto done;
  }
  /* Defaults are diffusers' AutoencoderKL.__init__ defaults. */
  json_t *boc = json_object_get(root, "block_out_channels");
  int n = boc ? (int)json_array_size(boc) : 1;
  if (boc && (!json_is_array(boc) || n < 1 || n > SD_VAE_MAX_LEVELS)) {
    sd_fail(err, "diffusers VAE config: \"block_out_channels\" must be an array of 1 to %d integers",
            SD_VAE_MAX_LEVELS);
    goto done;
  }
  int chans[SD_VAE_MAX_LEVELS] = {64};
  for (int i = 0; boc && i < n; i++) {
    json_t *c = json_array_get(boc, (size_t)i);
    if (!json_is_integer(c) || json_integer_value(c) <= 0 || json_integer_value(c) > INT_MAX) {
      sd_fail(err, "diffusers VAE config: block_out_channels[%d] is not a positive integer", i);
      goto done;
    }
    chans[i] = (int)json_integer_value(c);
  }
  cfg->n_levels = n;
  cfg->ch = chans[0];
  for (int i = 0; i < n; i++) {
    if (chans[i] % cfg->ch != 0) {
      sd_fail(err, "diffusers VAE config: block_out_channels[%d]=%d is not a multiple of block_out_channels[0]=%d", i,
              chans[i], cfg->ch);
      goto done;
    }
    cfg->ch_mult[i] = chans[i] / cfg->ch;
  }
  int groups = VAE_GROUPS;
  if (json_int_field(root, "layers_per_block", 1, &cfg->num_res_blocks, err) ||
      json_int_field(root, "latent_channels", 4, &cfg->z_channels, err) ||
      json_int_field(root, "in_channels", 3, &cfg->in_channels, err) ||
      json_int_field(root, "out_channels", 3, &cfg->out_ch, err) ||
      json_int_field(root, "norm_num_groups", VAE_GROUPS, &groups, err)) {
    sd_fail_prefix(err, "diffusers VAE config");
    goto done;
  }
  if (cfg->num_res_blocks > SD_VAE_MAX_BLOCKS - 1) {
    sd_fail(err, "diffusers VAE config: layers_per_block %d exceeds %d", cfg->num_res_blocks, SD_VAE_MAX_BLOCKS - 1);
    goto done;
  }
  if (groups != VAE_GROUPS) {
    sd_fail(err, "diffusers VAE config: norm_num_groups %d is not supported (only 32)", groups);
    goto done;
  }
  json_t *act = json_object_get(root, "act_fn");
  if (act && (!json_is_string(act) || strcmp(json_string_value(act), "silu") != 0)) {
    sd_fail(err, "diffusers VAE config: act_fn must be \"silu\"");
    goto done;
  }
  if (json_block_types(root, "down_block_types", "DownEncoderBlock2D", n, err) ||
      json_block_types(root, "up_block_types", "UpDecoderBlock2D", n, err) ||
      json_bool_true_or_absent(root, "use_quant_conv", err) ||
      json_bool_true_or_absent(root, "use_post_quant_conv", err) ||
      json_bool_true_or_absent(root, "mid_block_add_attention", err))
    goto done;
  cfg->embed_dim = cfg->z_channels;
  json_t *sf = json_object_get(root, "scaling_factor");
  if (sf && !json_is_number(sf)) {
    sd_fail(err, "diffusers VAE config: \"scaling_factor\" is not a number");
    goto done;
  }
  cfg->scale_factor = sf ? (float)json_number_value(sf) : 0.18215f;
  if (!(cfg->scale_factor > 0)) {
    sd_fail(err, "diffusers VAE config: scaling_factor must be positive");
    goto done;
  }
  cfg->has_encoder = 1;
  rc = 0;
done:
  json_decref(root);
  return rc;
}

/* ldm first_stage_config ddconfig (+ embed_dim, scale_factor) as JSON, e.g. the "vae" object of a
 * checkpoint's __metadata__ config. */
int sd_vae_config_from_ldm_json(const char *json_text, sd_vae_config *cfg, sd_error *err) {
  memset(cfg, 0, sizeof *cfg);
  json_error_t jerr;
  json_t *root = json_loads(json_text, 0, &jerr);
  if (!root) return sd_fail(err, "ldm VAE config: invalid JSON at line %d: %s", jerr.line, jerr.text);
  int rc = -1;
  json_t *mult = json_object_get(root, "ch_mult"), *attn = json_object_get(root, "attn_resolutions");
  json_t *dz = json_object_get(root, "double_z"), *sf = json_object_get(root, "scale_factor");
  int n = json_is_array(mult) ? (int)json_array_size(mult) : 0;
  if (!json_is_object(root) || n < 1 || n > SD_VAE_MAX_LEVELS) {
    sd_fail(err, "ldm VAE config: \"ch_mult\" must be an array of 1 to %d integers", SD_VAE_MAX_LEVELS);
    goto done;
  }
  cfg->n_levels = n;
  for (int i = 0; i < n; i++) {
    json_t *m = json_array_get(mult, (size_t)i);
    if (!json_is_integer(m) || json_integer_value(m) <= 0 || json_integer_value(m) > INT_MAX) {
      sd_fail(err, "ldm VAE config: ch_mult[%d] is not a positive integer", i);
      goto done;
    }
    cfg->ch_mult[i] = (int)json_integer_value(m);
  }
  if (attn && (!json_is_array(attn) || json_array_size(attn) != 0)) {
    sd_fail(err, "ldm VAE config: non-empty attn_resolutions (attention inside levels) is not supported");
    goto done;
  }
  if (dz && !json_is_true(dz)) {
    sd_fail(err, "ldm VAE config: double_z false is not supported");
    goto done;
  }
  if (json_int_field(root, "ch", 128, &cfg->ch, err) || json_int_field(root, "out_ch", 3, &cfg->out_ch, err) ||
      json_int_field(root, "in_channels", 3, &cfg->in_channels, err) ||
      json_int_field(root, "z_channels", 4, &cfg->z_channels, err) ||
      json_int_field(root, "embed_dim", cfg->z_channels, &cfg->embed_dim, err) ||
      json_int_field(root, "num_res_blocks", 2, &cfg->num_res_blocks, err)) {
    sd_fail_prefix(err, "ldm VAE config");
    goto done;
  }
  if (sf && !json_is_number(sf)) {
    sd_fail(err, "ldm VAE config: \"scale_factor\" is not a number");
    goto done;
  }
  cfg->scale_factor = sf ? (float)json_number_value(sf) : 0.18215f;
  cfg->has_encoder = 1;
  rc = 0;
done:
  json_decref(root);
  return rc;
}

int sd_vae_config_from_json(const char *json_text, sd_vae_config *cfg, sd_error *err) {
  json_t *root = json_loads(json_text, 0, NULL);
  int diffusers = json_object_get(root, "block_out_channels") || json_object_get(root, "_class_name") ||
                  json_object_get(root, "latent_channels");
  json_decref(root);
  return diffusers ? sd_vae_config_from_diffusers_json(json_text, cfg, err)
                   : sd_vae_config_from_ldm_json(json_text, cfg, err);
}

/* ---------------------------------------------------------------- weight binding */

/* Collects every problem so one error lists them all (loader policy: missing tensors listed
 * together, wrong shapes as got/expected, unknown tensors ignored). */
typedef struct {
  sd_tensor_store *view;
  int n_missing, n_bad;
  char missing[640];
  size_t missing_len;
  char bad[640];
  size_t bad_len;
} vae_loader;

static void append(char *buf, size_t cap, size_t *len, const char *sep, const char *text) {
  if (*len + 1 >= cap) return;
  int w = snprintf(buf + *len, cap - *len, "%s%s", *len ? sep : "", text);
  if (w < 0 || *len + (size_t)w >= cap) {
    *len = cap - 1;
    if (cap > 4) memcpy(buf + cap - 4, "...", 4);
  } else {
    *len += (size_t)w;
  }
}

static const float *ld_tensor(vae_loader *ld, const char *name, int ndim, const int64_t *shape) {
  sd_tensor *t = sd_store_find(ld->view, name);
  if (!t) {
    ld->n_missing++;
    append(ld->missing, sizeof ld->missing, &ld->missing_len, ", ", name);
    return NULL;
  }
  sd_error e = {{0}};
  const float *data = sd_view_get(ld->view, name, ndim, shape, &e);
  if (!data) {
    size_t plen = strlen(ld->view->path);
    const char *msg = e.msg;
    if (strncmp(msg, ld->view->path, plen) == 0 && strncmp(msg + plen, ": ", 2) == 0) msg += plen + 2;
    ld->n_bad++;
    append(ld->bad, sizeof ld->bad, &ld->bad_len, "; ", msg);
  }
  return data;
}

/* prefix.weight [cout, cin, k, k] and prefix.bias [cout]. A 1×1 conv may also come as a Linear
 * [cout, cin] (diffusers' attention projections): the row-major numbers are the same. */
static void ld_conv(vae_loader *ld, sd_conv2d *conv, const char *prefix, int cout, int cin, int k) {
  char name[400];
  conv->cout = cout;
  conv->cin = cin;
  conv->k = k;
  snprintf(name, sizeof name, "%s.weight", prefix);
  sd_tensor *t = sd_store_find(ld->view, name);
  int64_t shape[4] = {cout, cin, k, k};
  conv->w = ld_tensor(ld, name, (k == 1 && t && t->ndim == 2) ? 2 : 4, shape);
  snprintf(name, sizeof name, "%s.bias", prefix);
  int64_t bshape[1] = {cout};
  conv->b = ld_tensor(ld, name, 1, bshape);
}

static void ld_norm(vae_loader *ld, sd_norm *norm, const char *prefix, int c) {
  char name[400];
  int64_t shape[1] = {c};
  norm->c = c;
  snprintf(name, sizeof name, "%s.weight", prefix);
  norm->gamma = ld_tensor(ld, name, 1, shape);
  snprintf(name, sizeof name, "%s.bias", prefix);
  norm->beta = ld_tensor(ld, name, 1, shape);
}

static void ld_resblock(vae_loader *ld, sd_vae_resblock *rb, const char *prefix, int cin, int cout) {
  char name[320];
  rb->cin = cin;
  rb->cout = cout;
  snprintf(name, sizeof name, "%s.norm1", prefix);
  ld_norm(ld, &rb->norm1, name, cin);
  snprintf(name, sizeof name, "%s.conv1", prefix);
  ld_conv(ld, &rb->conv1, name, cout, cin, 3);
  snprintf(name, sizeof name, "%s.norm2", prefix);
  ld_norm(ld, &rb->norm2, name, cout);
  snprintf(name, sizeof name, "%s.conv2", prefix);
  ld_conv(ld, &rb->conv2, name, cout, cout, 3);
  memset(&rb->nin_shortcut, 0, sizeof rb->nin_shortcut);
  if (cin != cout) {
    snprintf(name, sizeof name, "%s.nin_shortcut", prefix);
    ld_conv(ld, &rb->nin_shortcut, name, cout, cin, 1);
  }
}

static void ld_attn(vae_loader *ld, sd_vae_attn *at, const char *prefix, int c) {
  char name[320];
  at->c = c;
  snprintf(name, sizeof name, "%s.norm", prefix);
  ld_norm(ld, &at->norm, name, c);
  snprintf(name, sizeof name, "%s.q", prefix);
  ld_conv(ld, &at->q, name, c, c, 1);
  snprintf(name, sizeof name, "%s.k", prefix);
  ld_conv(ld, &at->k, name, c, c, 1);
  snprintf(name, sizeof name, "%s.v", prefix);
  ld_conv(ld, &at->v, name, c, c, 1);
  snprintf(name, sizeof name, "%s.proj_out", prefix);
  ld_conv(ld, &at->proj_out, name, c, c, 1);
}

static void ld_mid(vae_loader *ld, sd_vae_mid *mid, const char *part, int c) {
  char name[256];
  snprintf(name, sizeof name, "%s.mid.block_1", part);
  ld_resblock(ld, &mid->block_1, name, c, c);
  snprintf(name, sizeof name, "%s.mid.attn_1", part);
  ld_attn(ld, &mid->attn_1, name, c);
  snprintf(name, sizeof name, "%s.mid.block_2", part);
  ld_resblock(ld, &mid->block_2, name, c, c);
}

/* ldm Decoder.__init__: block_in starts at ch·ch_mult[-1]; level i's blocks output ch·ch_mult[i]. */
static void ld_decoder(vae_loader *ld, sd_vae_decoder *dec, const sd_vae_config *cfg) {
  int L = cfg->n_levels, block_in = cfg->ch * cfg->ch_mult[L - 1];
  char name[256];
  ld_conv(ld, &dec->conv_in, "decoder.conv_in", block_in, cfg->z_channels, 3);
  ld_mid(ld, &dec->mid, "decoder", block_in);
  for (int i = L - 1; i >= 0; i--) {
    int block_out = cfg->ch * cfg->ch_mult[i];
    for (int j = 0; j < cfg->num_res_blocks + 1; j++) {
      snprintf(name, sizeof name, "decoder.up.%d.block.%d", i, j);
      ld_resblock(ld, &dec->up[i].block[j], name, block_in, block_out);
      block_in = block_out;
    }
    memset(&dec->up[i].upsample, 0, sizeof dec->up[i].upsample);
    if (i != 0) {
      snprintf(name, sizeof name, "decoder.up.%d.upsample.conv", i);
      ld_conv(ld, &dec->up[i].upsample, name, block_in, block_in, 3);
    }
  }
  ld_norm(ld, &dec->norm_out, "decoder.norm_out", block_in);
  ld_conv(ld, &dec->conv_out, "decoder.conv_out", cfg->out_ch, block_in, 3);
}

/* ldm Encoder.__init__: in_ch_mult = (1,) + ch_mult; level i goes ch·in_ch_mult[i] -> ch·ch_mult[i]. */
static void ld_encoder(vae_loader *ld, sd_vae_encoder *enc, const sd_vae_config *cfg) {
  int L = cfg->n_levels, block_in = cfg->ch;
  char name[256];
  ld_conv(ld, &enc->conv_in, "encoder.conv_in", cfg->ch, cfg->in_channels, 3);
  for (int i = 0; i < L; i++) {
    int block_out = cfg->ch * cfg->ch_mult[i];
    for (int j = 0; j < cfg->num_res_blocks; j++) {
      snprintf(name, sizeof name, "encoder.down.%d.block.%d", i, j);
      ld_resblock(ld, &enc->down[i].block[j], name, block_in, block_out);
      block_in = block_out;
    }
    memset(&enc->down[i].downsample, 0, sizeof enc->down[i].downsample);
    if (i != L - 1) {
      snprintf(name, sizeof name, "encoder.down.%d.downsample.conv", i);
      ld_conv(ld, &enc->down[i].downsample, name, block_in, block_in, 3);
    }
  }
  ld_mid(ld, &enc->mid, "encoder", block_in);
  ld_norm(ld, &enc->norm_out, "encoder.norm_out", block_in);
  ld_conv(ld, &enc->conv_out, "encoder.conv_out", 2 * cfg->z_channels, block_in, 3);
}

static int check_config(const sd_vae_config *cfg, sd_error *err) {
  if (cfg->n_levels < 1 || cfg->n_levels > SD_VAE_MAX_LEVELS)
    return sd_fail(err, "VAE config: n_levels %d out of range 1..%d", cfg->n_levels, SD_VAE_MAX_LEVELS);
  if (cfg->num_res_blocks < 1 || cfg->num_res_blocks > SD_VAE_MAX_BLOCKS - 1)
    return sd_fail(err, "VAE config: num_res_blocks %d out of range 1..%d", cfg->num_res_blocks, SD_VAE_MAX_BLOCKS - 1);
  if (cfg->ch <= 0 || cfg->z_channels <= 0 || cfg->embed_dim <= 0 || cfg->out_ch <= 0 ||
      (cfg->has_encoder && cfg->in_channels <= 0))
    return sd_fail(err, "VAE config: channel counts must be positive");
  /* Far above SD's 512 channels, and low enough that ch x ch_mult and 2 x z_channels stay inside an int. */
  if (cfg->ch > VAE_MAX_CHANNELS || cfg->z_channels > VAE_MAX_CHANNELS || cfg->embed_dim > VAE_MAX_CHANNELS ||
      cfg->out_ch > VAE_MAX_CHANNELS || cfg->in_channels > VAE_MAX_CHANNELS)
    return sd_fail(err, "VAE config: channel counts must be at most %d", VAE_MAX_CHANNELS);
  for (int i = 0; i < cfg->n_levels; i++) {
    if (cfg->ch_mult[i] > VAE_MAX_CHANNELS / cfg->ch)
      return sd_fail(err, "VAE config: level %d has %d x %d channels (at most %d)", i, cfg->ch, cfg->ch_mult[i],
                     VAE_MAX_CHANNELS);
    int c = cfg->ch * cfg->ch_mult[i];
    if (cfg->ch_mult[i] <= 0 || c % VAE_GROUPS != 0)
      return sd_fail(err, "VAE config: level %d has %d channels, not a positive multiple of %d groups", i, c,
                     VAE_GROUPS);
  }
  if (cfg->ch % VAE_GROUPS != 0)
    return sd_fail(err, "VAE config: ch %d is not a multiple of %d groups", cfg->ch, VAE_GROUPS);
  if (!(cfg->scale_factor > 0)) return sd_fail(err, "VAE config: scale_factor must be positive");
  return 0;
}

int sd_vae_init(sd_vae *vae, const sd_vae_config *cfg, sd_tensor_store *view, sd_error *err) {
  memset(vae, 0, sizeof *vae);
  if (check_config(cfg, err) != 0) return sd_fail_prefix(err, "%s", view->path);
  vae->cfg = *cfg;
  vae_loader ld = {.view = view};
  ld_decoder(&ld, &vae->decoder, cfg);
  ld_conv(&ld, &vae->post_quant_conv, "post_quant_conv", cfg->z_channels, cfg->embed_dim, 1);
  if (cfg->has_encoder) {
    ld_encoder(&ld, &vae->encoder, cfg);
    ld_conv(&ld, &vae->quant_conv, "quant_conv", 2 * cfg->embed_dim, 2 * cfg->z_channels, 1);
  }
  if (ld.n_missing || ld.n_bad) {
    char missing[700] = "", bad[700] = "";
    if (ld.n_missing) snprintf(missing, sizeof missing, "%d missing tensor%s: %s", ld.n_missing,
                               ld.n_missing == 1 ? "" : "s", ld.missing);
    if (ld.n_bad) snprintf(bad, sizeof bad, "%s%d bad tensor%s: %s", ld.n_missing ? "; " : "", ld.n_bad,
                           ld.n_bad == 1 ? "" : "s", ld.bad);
    sd_fail(err, "%s: VAE: %s%s", view->path, missing, bad);
    memset(vae, 0, sizeof *vae);
    return -1;
  }
  return 0;
}

int sd_vae_load(sd_vae *vae, sd_tensor_store *view, const char *config_json, sd_error *err) {
  sd_vae_config cfg;
  sd_tensor_store *mapped = NULL;
  memset(vae, 0, sizeof *vae);
  if (config_json && sd_vae_config_from_json(config_json, &cfg, err) != 0)
    return sd_fail_prefix(err, "%s", view->path);
  if (sd_store_find(view, "decoder.conv_norm_out.weight") ||
      sd_store_find(view, "decoder.mid_block.resnets.0.conv1.weight")) {
    /* diffusers names: the level count (for reversing up_blocks) from the config or the keys. */
    int n_levels = config_json ? cfg.n_levels : 0;
    char name[64];
    if (!config_json)
      for (; n_levels < SD_VAE_MAX_LEVELS; n_levels++) {
        snprintf(name, sizeof name, "decoder.up_blocks.%d.resnets.0.conv1.weight", n_levels);
        if (!sd_store_find(view, name)) break;
      }
    if (!(mapped = sd_vae_view_from_diffusers(view, n_levels, err))) return -1;
    view = mapped;
  }
  if (!config_json && sd_vae_config_infer(view, &cfg, err) != 0) goto fail;
  if (!sd_store_find(view, "encoder.conv_in.weight")) cfg.has_encoder = 0; /* decoder-only files */
  if (sd_vae_init(vae, &cfg, view, err) != 0) goto fail;
  vae->owned_view = mapped;
  return 0;
fail:
  sd_store_close(mapped);
  return -1;
}

void sd_vae_free(sd_vae *vae) {
  if (!vae) return;
  sd_arena_free(&vae->arena);
  sd_store_close(vae->owned_view);
  memset(vae, 0, sizeof *vae);
}
