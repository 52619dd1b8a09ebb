/* UNet architecture: presets, ldm-style and diffusers JSON configs, and inference from tensor shapes.
 * Only configuration; the module tree is built in unet.c. */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "io/store_view.h"
#include "model/unet.h"

static void config_defaults(sd_unet_config *c) {
  memset(c, 0, sizeof *c);
  c->in_channels = c->out_channels = 4;
  c->norm_groups = 32;
  c->norm_eps = 1e-5f;
  c->st_norm_eps = 1e-6f;
  c->head_channels = -1;
}

void sd_unet_config_sd15(sd_unet_config *c) {
  config_defaults(c);
  c->model_channels = 320;
  c->n_levels = 4;
  int mult[4] = {1, 2, 4, 4};
  for (int l = 0; l < 4; l++) {
    c->channel_mult[l] = mult[l];
    c->num_res_blocks[l] = 2;
    c->attention[l] = l < 3;
    c->transformer_depth[l] = 1;
    c->heads_per_level[l] = 8;
  }
  c->middle_depth = 1;
  c->middle_heads = 8;
  c->context_dim = 768;
}

void sd_unet_config_sd21(sd_unet_config *c) {
  sd_unet_config_sd15(c);
  for (int l = 0; l < 4; l++) c->heads_per_level[l] = 0;
  c->middle_heads = 0;
  c->head_channels = 64;
  c->context_dim = 1024;
  c->linear_proj = 1;
}

void sd_unet_heads(const sd_unet_config *c, int level, int channels, int *heads, int *dim_head) {
  int h = level < 0 ? c->middle_heads : c->heads_per_level[level];
  if (h <= 0) h = c->head_channels > 0 ? channels / c->head_channels : 8;
  if (h < 1) h = 1;
  *heads = h;
  *dim_head = channels / h;
}

/* Reads an int or an int list into out[n_levels] (a scalar is broadcast). Returns 0, or -1 if absent. */
static int get_int_list(json_t *obj, const char *key, int *out, int n, int *count) {
  json_t *v = json_object_get(obj, key);
  if (json_is_integer(v)) {
    for (int i = 0; i < n; i++) out[i] = (int)json_integer_value(v);
    if (count) *count = -1;
    return 0;
  }
  if (json_is_array(v)) {
    int m = (int)json_array_size(v);
    for (int i = 0; i < m && i < n; i++) out[i] = (int)json_integer_value(json_array_get(v, (size_t)i));
    for (int i = m; i < n && m > 0; i++) out[i] = out[m - 1];
    if (count) *count = m;
    return 0;
  }
  return -1;
}

/* Bounds far above any real UNet (SD: 320 channels x 1-4, 2-3 res blocks, depth 1-10, context 768-2048) that keep
 * every product of them (4 * model_channels, channels x mult, block counts) inside an int and the module tree that
 * sd_unet_init allocates small, whatever numbers a config file holds. */
#define UNET_MAX_CHANNELS (1 << 16)
#define UNET_MAX_BLOCKS 64

static int check_config(const sd_unet_config *c, sd_error *err) {
  if (c->n_levels < 1 || c->n_levels > SD_UNET_MAX_LEVELS) return sd_fail(err, "unet config: %d levels (1..%d allowed)", c->n_levels, SD_UNET_MAX_LEVELS);
  if (c->model_channels <= 0 || c->in_channels <= 0 || c->out_channels <= 0) return sd_fail(err, "unet config: channel counts must be positive");
  if (c->context_dim <= 0) return sd_fail(err, "unet config: context_dim must be positive");
  if (c->model_channels > UNET_MAX_CHANNELS || c->in_channels > UNET_MAX_CHANNELS || c->out_channels > UNET_MAX_CHANNELS ||
      c->context_dim > UNET_MAX_CHANNELS)
    return sd_fail(err, "unet config: channel counts and context_dim must be at most %d", UNET_MAX_CHANNELS);
  if (c->norm_groups <= 0) return sd_fail(err, "unet config: norm_num_groups must be positive");
  for (int l = 0; l < c->n_levels; l++) {
    if (c->channel_mult[l] <= 0 || c->num_res_blocks[l] <= 0) return sd_fail(err, "unet config: level %d has no channels or res blocks", l);
    if (c->channel_mult[l] > UNET_MAX_CHANNELS / c->model_channels || c->num_res_blocks[l] > UNET_MAX_BLOCKS ||
        c->transformer_depth[l] < 0 || c->transformer_depth[l] > UNET_MAX_BLOCKS)
      return sd_fail(err, "unet config: level %d: %d x %d channels, %d res blocks, transformer depth %d (at most %d channels, %d blocks)",
                     l, c->model_channels, c->channel_mult[l], c->num_res_blocks[l], c->transformer_depth[l],
                     UNET_MAX_CHANNELS, UNET_MAX_BLOCKS);
    if (c->model_channels * c->channel_mult[l] % c->norm_groups != 0)
      return sd_fail(err, "unet config: level %d has %d channels, not a multiple of norm_num_groups %d", l,
                     c->model_channels * c->channel_mult[l], c->norm_groups);
  }
  if (c->middle_depth < 0 || c->middle_depth > UNET_MAX_BLOCKS)
    return sd_fail(err, "unet config: transformer depth %d of the middle block (0..%d allowed)", c->middle_depth, UNET_MAX_BLOCKS);
  return 0;
}

static int from_ldm(json_t *u, sd_unet_config *c, sd_error *err) {
  config_defaults(c);
  json_t *v;
  if ((v = json_object_get(u, "in_channels"))) c->in_channels = (int)json_integer_value(v);
  if ((v = json_object_get(u, "out_channels"))) c->out_channels = (int)json_integer_value(v);
  c->model_channels = (int)json_integer_value(json_object_get(u, "model_channels"));
  json_t *mult = json_object_get(u, "channel_mult");
  if (!json_is_array(mult)) return sd_fail(err, "unet config: channel_mult must be a list");
  c->n_levels = (int)json_array_size(mult);
  if (c->n_levels < 1 || c->n_levels > SD_UNET_MAX_LEVELS) return sd_fail(err, "unet config: %d levels", c->n_levels);
  for (int l = 0; l < c->n_levels; l++) c->channel_mult[l] = (int)json_integer_value(json_array_get(mult, (size_t)l));
  if (get_int_list(u, "num_res_blocks", c->num_res_blocks, c->n_levels, NULL) != 0) return sd_fail(err, "unet config: num_res_blocks missing");
  int depth[SD_UNET_MAX_LEVELS];
  int depth_count = 0;
  for (int l = 0; l < c->n_levels; l++) depth[l] = 1;
  get_int_list(u, "transformer_depth", depth, c->n_levels, &depth_count);
  json_t *ar = json_object_get(u, "attention_resolutions");
  for (int l = 0, ds = 1; l < c->n_levels; l++, ds *= 2) {
    c->transformer_depth[l] = depth[l];
    for (size_t i = 0; json_is_array(ar) && i < json_array_size(ar); i++)
      if (json_integer_value(json_array_get(ar, i)) == ds) c->attention[l] = 1;
  }
  c->middle_depth = depth[c->n_levels - 1];
  if ((v = json_object_get(u, "transformer_depth_middle")) && json_is_integer(v)) c->middle_depth = (int)json_integer_value(v);
  int num_heads = -1;
  if ((v = json_object_get(u, "num_heads")) && json_is_integer(v)) num_heads = (int)json_integer_value(v);
  if ((v = json_object_get(u, "num_head_channels")) && json_is_integer(v)) c->head_channels = (int)json_integer_value(v);
  if (c->head_channels == -1) {
    for (int l = 0; l < c->n_levels; l++) c->heads_per_level[l] = num_heads;
    c->middle_heads = num_heads;
  }
  if ((v = json_object_get(u, "legacy"))) c->legacy = json_is_true(v);
  if ((v = json_object_get(u, "context_dim"))) c->context_dim = (int)json_integer_value(v);
  if ((v = json_object_get(u, "use_linear_in_transformer"))) c->linear_proj = json_is_true(v);
  return check_config(c, err);
}

static int from_diffusers(json_t *u, sd_unet_config *c, sd_error *err) {
  config_defaults(c);
  json_t *v;
  if ((v = json_object_get(u, "in_channels"))) c->in_channels = (int)json_integer_value(v);
  if ((v = json_object_get(u, "out_channels"))) c->out_channels = (int)json_integer_value(v);
  json_t *boc = json_object_get(u, "block_out_channels");
  c->n_levels = (int)json_array_size(boc);
  if (c->n_levels < 1 || c->n_levels > SD_UNET_MAX_LEVELS) return sd_fail(err, "unet config: block_out_channels has %d entries", c->n_levels);
  c->model_channels = (int)json_integer_value(json_array_get(boc, 0));
  for (int l = 0; l < c->n_levels; l++) {
    int ch = (int)json_integer_value(json_array_get(boc, (size_t)l));
    if (c->model_channels <= 0 || ch % c->model_channels) return sd_fail(err, "unet config: block_out_channels must be multiples of the first");
    c->channel_mult[l] = ch / c->model_channels;
  }
  if (get_int_list(u, "layers_per_block", c->num_res_blocks, c->n_levels, NULL) != 0) return sd_fail(err, "unet config: layers_per_block missing");
  json_t *types = json_object_get(u, "down_block_types");
  for (int l = 0; l < c->n_levels; l++) {
    const char *t = json_string_value(json_array_get(types, (size_t)l));
    c->attention[l] = t && strstr(t, "CrossAttn") != NULL;
    c->transformer_depth[l] = 1;
  }
  get_int_list(u, "transformer_layers_per_block", c->transformer_depth, c->n_levels, NULL);
  c->middle_depth = c->transformer_depth[c->n_levels - 1];
  /* diffusers' attention_head_dim is, for SD, the number of heads (a historical misnomer); a
   * num_attention_heads entry, when set, takes precedence. */
  int heads[SD_UNET_MAX_LEVELS] = {0};
  json_t *nah = json_object_get(u, "num_attention_heads");
  if (nah && !json_is_null(nah)) get_int_list(u, "num_attention_heads", heads, c->n_levels, NULL);
  else if (get_int_list(u, "attention_head_dim", heads, c->n_levels, NULL) != 0) for (int l = 0; l < c->n_levels; l++) heads[l] = 8;
  for (int l = 0; l < c->n_levels; l++) c->heads_per_level[l] = heads[l];
  c->middle_heads = heads[c->n_levels - 1];
  if ((v = json_object_get(u, "cross_attention_dim"))) c->context_dim = (int)json_integer_value(v);
  if ((v = json_object_get(u, "use_linear_projection"))) c->linear_proj = json_is_true(v);
  if ((v = json_object_get(u, "norm_num_groups")) && json_is_integer(v)) c->norm_groups = (int)json_integer_value(v);
  if ((v = json_object_get(u, "norm_eps")) && json_is_number(v)) c->norm_eps = (float)json_number_value(v);
  return check_config(c, err);
}

int sd_unet_config_from_json(const char *json_text, sd_unet_config *cfg, sd_error *err) {
  json_error_t jerr;
  json_t *root = json_loads(json_text, 0, &jerr);
  if (!root || !json_is_object(root)) {
    json_decref(root);
    return sd_fail(err, "unet config is not a JSON object (%s)", jerr.text);
  }
  json_t *u = root;
  if (json_is_object(json_object_get(root, "unet"))) u = json_object_get(root, "unet");
  else if (json_is_object(json_object_get(root, "unet_config"))) u = json_object_get(root, "unet_config");
  if (json_is_object(json_object_get(u, "params"))) u = json_object_get(u, "params");
  int rc;
  if (json_object_get(u, "block_out_channels")) rc = from_diffusers(u, cfg, err);
  else if (json_object_get(u, "model_channels")) rc = from_ldm(u, cfg, err);
  else rc = sd_fail(err, "unet config has neither model_channels (ldm) nor block_out_channels (diffusers)");
  json_decref(root);
  return rc;
}

static int has(sd_tensor_store *v, const char *fmt, int a, int b) {
  char name[256];
  snprintf(name, sizeof name, fmt, a, b);
  return sd_store_find(v, name) != NULL;
}

static sd_tensor *find(sd_tensor_store *v, const char *fmt, int a, int b) {
  char name[256];
  snprintf(name, sizeof name, fmt, a, b);
  return sd_store_find(v, name);
}

int sd_unet_config_infer(sd_tensor_store *view, sd_unet_config *c, sd_error *err) {
  config_defaults(c);
  sd_tensor *conv_in = sd_store_find(view, "input_blocks.0.0.weight");
  sd_tensor *conv_out = sd_store_find(view, "out.2.weight");
  if (!conv_in || conv_in->ndim != 4 || !conv_out || conv_out->ndim != 4)
    return sd_fail(err, "%s: cannot infer the UNet architecture: input_blocks.0.0.weight or out.2.weight missing", view->path);
  c->model_channels = (int)conv_in->shape[0];
  c->in_channels = (int)conv_in->shape[1];
  c->out_channels = (int)conv_out->shape[0];
  /* Walk input_blocks: res blocks (with optional transformer) until a downsampler closes a level. */
  int level = 0, nres = 0;
  for (int i = 1; i < 1000; i++) {
    if (has(view, "input_blocks.%d.0.op.weight", i, 0)) {
      c->num_res_blocks[level] = nres;
      nres = 0;
      level++;
      if (level >= SD_UNET_MAX_LEVELS) return sd_fail(err, "%s: more than %d UNet levels", view->path, SD_UNET_MAX_LEVELS);
      continue;
    }
    sd_tensor *w = find(view, "input_blocks.%d.0.in_layers.2.weight", i, 0);
    if (!w) break;
    c->channel_mult[level] = (int)w->shape[0] / c->model_channels;
    nres++;
    if (has(view, "input_blocks.%d.1.proj_in.weight", i, 0)) {
      c->attention[level] = 1;
      int depth = 0;
      char name[256];
      for (;; depth++) {
        snprintf(name, sizeof name, "input_blocks.%d.1.transformer_blocks.%d.attn1.to_q.weight", i, depth);
        if (!sd_store_find(view, name)) break;
      }
      c->transformer_depth[level] = depth;
      sd_tensor *k = find(view, "input_blocks.%d.1.transformer_blocks.0.attn2.to_k.weight", i, 0);
      if (k && k->ndim == 2) c->context_dim = (int)k->shape[1];
      sd_tensor *p = find(view, "input_blocks.%d.1.proj_in.weight", i, 0);
      c->linear_proj = p->ndim == 2;
    }
  }
  if (nres == 0) return sd_fail(err, "%s: cannot infer the UNet architecture: no res blocks found in input_blocks", view->path);
  c->num_res_blocks[level] = nres;
  c->n_levels = level + 1;
  for (int l = 0; l < c->n_levels; l++)
    if (!c->attention[l]) c->transformer_depth[l] = 1;
  c->middle_depth = 0;
  for (char name[256];; c->middle_depth++) {
    snprintf(name, sizeof name, "middle_block.1.transformer_blocks.%d.attn1.to_q.weight", c->middle_depth);
    if (!sd_store_find(view, name)) break;
  }
  if (c->middle_depth == 0) c->middle_depth = 1;
  sd_tensor *mk = sd_store_find(view, "middle_block.1.transformer_blocks.0.attn2.to_k.weight");
  if (c->context_dim == 0 && mk && mk->ndim == 2) c->context_dim = (int)mk->shape[1];
  /* Heads are not visible in shapes: SD 1.x uses 8 heads, SD 2.x 64 channels per head. */
  if (c->context_dim >= 1024 || c->linear_proj) {
    c->head_channels = 64;
  } else {
    for (int l = 0; l < c->n_levels; l++) c->heads_per_level[l] = 8;
    c->middle_heads = 8;
  }
  return check_config(c, err);
}

void sd_unet_config_describe(const sd_unet_config *c, char *buf, size_t size) {
  size_t n = (size_t)snprintf(buf, size, "unet: in %d out %d ch %d mult", c->in_channels, c->out_channels, c->model_channels);
  for (int l = 0; l < c->n_levels && n < size; l++) n += (size_t)snprintf(buf + n, size - n, "%s%d", l ? "," : " ", c->channel_mult[l]);
  if (n < size) n += (size_t)snprintf(buf + n, size - n, " res");
  for (int l = 0; l < c->n_levels && n < size; l++) n += (size_t)snprintf(buf + n, size - n, "%s%d", l ? "," : " ", c->num_res_blocks[l]);
  if (n < size) n += (size_t)snprintf(buf + n, size - n, " attn");
  for (int l = 0; l < c->n_levels && n < size; l++) n += (size_t)snprintf(buf + n, size - n, "%s%d", l ? "," : " ", c->attention[l]);
  if (n < size) {
    if (c->head_channels > 0 && c->heads_per_level[0] <= 0)
      n += (size_t)snprintf(buf + n, size - n, " head_ch %d", c->head_channels);
    else
      n += (size_t)snprintf(buf + n, size - n, " heads %d", c->heads_per_level[0]);
  }
  if (n < size) snprintf(buf + n, size - n, " context %d proj %s", c->context_dim, c->linear_proj ? "linear" : "conv");
}
