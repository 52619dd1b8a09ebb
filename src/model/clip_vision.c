/* CLIP vision transformer (see clip_vision.h): configuration, weight binding and the forward pass.
 * Image preprocessing is in eval/clip_preprocess.c, not here. */
#include "model/clip_vision.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- configuration ---------------------------------------------------------------------- */

/* transformers CLIPVisionConfig defaults (ViT-B/32), used for keys a saved config omits. */
static void config_defaults(sd_clip_vision_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->image_size = 224;
  cfg->patch_size = 32;
  cfg->channels = 3;
  cfg->hidden = 768;
  cfg->layers = 12;
  cfg->heads = 12;
  cfg->intermediate = 3072;
  cfg->act_quick_gelu = 1;
  cfg->ln_eps = 1e-5f;
  cfg->projection_dim = 512;
}

static int json_int(json_t *obj, const char *key, int *out, sd_error *err) {
  json_t *v = json_object_get(obj, key);
  if (!v)
    return 0;
  if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 30))
    return sd_fail(err, "vision config: '%s' must be a positive integer", key);
  *out = (int)json_integer_value(v);
  return 0;
}

static int config_from_object(json_t *o, sd_clip_vision_config *cfg, sd_error *err) {
  if (json_int(o, "image_size", &cfg->image_size, err) || json_int(o, "patch_size", &cfg->patch_size, err) ||
      json_int(o, "num_channels", &cfg->channels, err) || json_int(o, "hidden_size", &cfg->hidden, err) ||
      json_int(o, "num_hidden_layers", &cfg->layers, err) || json_int(o, "num_attention_heads", &cfg->heads, err) ||
      json_int(o, "intermediate_size", &cfg->intermediate, err))
    return -1;
  json_t *act = json_object_get(o, "hidden_act");
  if (act) {
    const char *s = json_string_value(act);
    if (s && strcmp(s, "quick_gelu") == 0)
      cfg->act_quick_gelu = 1;
    else if (s && strcmp(s, "gelu") == 0)
      cfg->act_quick_gelu = 0;
    else
      return sd_fail(err, "vision config: hidden_act %s is not supported (quick_gelu or gelu)",
                     s ? s : "(not a string)");
  }
  json_t *eps = json_object_get(o, "layer_norm_eps");
  if (eps) {
    if (!json_is_number(eps) || json_number_value(eps) <= 0)
      return sd_fail(err, "vision config: layer_norm_eps must be a positive number");
    cfg->ln_eps = (float)json_number_value(eps);
  }
  return 0;
}

int sd_clip_vision_config_from_json(const char *text, sd_clip_vision_config *cfg, sd_error *err) {
  json_error_t jerr;
  json_t *root = json_loads(text, 0, &jerr);
  if (!root)
    return sd_fail(err, "vision config: invalid JSON at line %d: %s", jerr.line, jerr.text);
  int rc = -1;
  json_t *inner_root = NULL, *o = root;
  /* safetensors __metadata__: {"config": "<json text>", ...} */
  json_t *conf = json_object_get(o, "config");
  if (json_is_string(conf)) {
    inner_root = json_loads(json_string_value(conf), 0, &jerr);
    if (!inner_root) {
      sd_fail(err, "vision config: __metadata__ \"config\" is not valid JSON (line %d: %s)", jerr.line, jerr.text);
      goto free_root;
    }
    o = inner_root;
  }
  if (!json_is_object(o)) {
    sd_fail(err, "vision config: not a JSON object");
    goto free_inner;
  }
  config_defaults(cfg);
  json_t *vision = json_object_get(o, "vision_config");
  if (vision || json_object_get(o, "text_config")) {
    /* CLIPConfig: the vision tower's keys in "vision_config" (all defaults when absent, as transformers),
     * the projection width at the top level (CLIPModel ignores vision_config.projection_dim). */
    if (vision && !json_is_object(vision)) {
      sd_fail(err, "vision config: \"vision_config\" is not an object");
      goto free_inner;
    }
    if ((vision && config_from_object(vision, cfg, err)) || json_int(o, "projection_dim", &cfg->projection_dim, err))
      goto free_inner;
  } else if (config_from_object(o, cfg, err) || json_int(o, "projection_dim", &cfg->projection_dim, err)) {
    goto free_inner; /* a CLIPVisionConfig */
  }
  if (cfg->hidden % cfg->heads != 0) {
    sd_fail(err, "vision config: hidden_size %d is not a multiple of num_attention_heads %d", cfg->hidden, cfg->heads);
    goto free_inner;
  }
  rc = 0;
free_inner:
  json_decref(inner_root);
free_root:
  json_decref(root);
  return rc;
}

int sd_clip_vision_config_infer(sd_tensor_store *view, sd_clip_vision_config *cfg, sd_error *err) {
  config_defaults(cfg);
  static const char *const needed[] = {"vision_model.embeddings.patch_embedding.weight",
                                       "vision_model.embeddings.position_embedding.weight",
                                       "vision_model.encoder.layers.0.mlp.fc1.weight", "visual_projection.weight"};
  const sd_tensor *t[4];
  for (int i = 0; i < 4; i++)
    if (!(t[i] = sd_store_find(view, needed[i])))
      return sd_fail(err, "%s: cannot infer the vision tower: missing tensor '%s'", view->path, needed[i]);
  const sd_tensor *patch = t[0], *pos = t[1], *fc1 = t[2], *proj = t[3];
  if (patch->ndim != 4 || patch->shape[2] != patch->shape[3] || pos->ndim != 2 || fc1->ndim != 2 || proj->ndim != 2)
    return sd_fail(err, "%s: cannot infer the vision tower: patch embedding must be [d, C, p, p], the others 2-D",
                   view->path);
  cfg->hidden = (int)patch->shape[0];
  cfg->channels = (int)patch->shape[1];
  cfg->patch_size = (int)patch->shape[2];
  int64_t n = pos->shape[0] - 1, g = (int64_t)llround(sqrt((double)n));
  if (n < 1 || g * g != n)
    return sd_fail(err, "%s: cannot infer the image size: %lld position embeddings is not 1 + a square", view->path,
                   (long long)pos->shape[0]);
  cfg->image_size = (int)g * cfg->patch_size;
  cfg->intermediate = (int)fc1->shape[0];
  cfg->projection_dim = (int)proj->shape[0];
  char name[160];
  int layers = 0;
  for (;; layers++) {
    snprintf(name, sizeof name, "vision_model.encoder.layers.%d.self_attn.q_proj.weight", layers);
    if (!sd_store_find(view, name))
      break;
  }
  cfg->layers = layers;
  if (cfg->hidden == 1280)
    cfg->heads = 16; /* OpenCLIP ViT-H/14: head size 80 */
  else if (cfg->hidden % 64 == 0)
    cfg->heads = cfg->hidden / 64;
  else
    return sd_fail(err,
                   "%s: cannot infer the attention heads of a %d-wide vision tower (head size 64 assumed): pass a "
                   "config.json",
                   view->path, cfg->hidden);
  return 0;
}

/* ---- weights ---------------------------------------------------------------------------- */

static int check_config(const sd_clip_vision_config *c, sd_error *err) {
  if (c->image_size <= 0 || c->patch_size <= 0 || c->channels <= 0 || c->hidden <= 0 || c->layers <= 0 ||
      c->heads <= 0 || c->intermediate <= 0 || c->projection_dim <= 0 || !(c->ln_eps > 0))
    return sd_fail(err,
                   "vision config: sizes must be positive (image %d, patch %d, channels %d, hidden %d, layers %d, "
                   "heads %d, intermediate %d, projection %d)",
                   c->image_size, c->patch_size, c->channels, c->hidden, c->layers, c->heads, c->intermediate,
                   c->projection_dim);
  if (c->hidden % c->heads != 0)
    return sd_fail(err, "vision config: hidden %d is not a multiple of heads %d", c->hidden, c->heads);
  if (c->image_size % c->patch_size != 0)
    return sd_fail(err, "vision config: image_size %d is not a multiple of patch_size %d", c->image_size,
                   c->patch_size);
  return 0;
}

int sd_clip_vision_init(sd_clip_vision *m, const sd_clip_vision_config *cfg, sd_tensor_store *view, sd_error *err) {
  memset(m, 0, sizeof *m);
  if (check_config(cfg, err) != 0)
    return -1;
  m->cfg = *cfg;
  m->layers = sd_calloc((size_t)cfg->layers, sizeof *m->layers, err);
  if (!m->layers)
    return -1;
  const int d = cfg->hidden, p = cfg->patch_size, g = cfg->image_size / p;
  sd_weight_binder b = {.view = view};
  m->patch_embedding.out = d;
  m->patch_embedding.in = cfg->channels * p * p;
  m->patch_embedding.w =
      sd_bind_tensor(&b, 4, (int64_t[]){d, cfg->channels, p, p}, "vision_model.embeddings.patch_embedding.weight");
  m->patch_embedding.b = NULL;
  m->class_embedding = sd_bind_tensor(&b, 1, (int64_t[]){d}, "vision_model.embeddings.class_embedding");
  m->position_embedding =
      sd_bind_tensor(&b, 2, (int64_t[]){g * g + 1, d}, "vision_model.embeddings.position_embedding.weight");
  sd_bind_norm(&b, &m->pre_layrnorm, d, "vision_model.pre_layrnorm");
  char prefix[96];
  for (int i = 0; i < cfg->layers; i++) {
    snprintf(prefix, sizeof prefix, "vision_model.encoder.layers.%d", i);
    sd_bind_clip_encoder_layer(&b, &m->layers[i], d, cfg->intermediate, prefix);
  }
  sd_bind_norm(&b, &m->post_layernorm, d, "vision_model.post_layernorm");
  sd_bind_linear(&b, &m->visual_projection, cfg->projection_dim, d, 0, "visual_projection");
  if (sd_bind_finish(&b, "vision tower", err) != 0) {
    sd_clip_vision_free(m);
    return -1;
  }
  return 0;
}

void sd_clip_vision_free(sd_clip_vision *m) {
  if (!m)
    return;
  free(m->layers);
  sd_arena_free(&m->arena);
  memset(m, 0, sizeof *m);
}

/* ---- forward ---------------------------------------------------------------------------- */

/* patches[gy·g + gx, (c·p + ky)·p + kx] = pixels[c, gy·p + ky, gx·p + kx]: the column order of the conv
 * weight [d, C, p, p] flattened, so a stride-p convolution is patches · Wᵀ. */
static void extract_patches(float *patches, const float *pixels, int channels, int size, int p) {
  const int g = size / p, cols = channels * p * p;
  for (int gy = 0; gy < g; gy++)
    for (int gx = 0; gx < g; gx++) {
      float *row = patches + (int64_t)(gy * g + gx) * cols;
      for (int c = 0; c < channels; c++)
        for (int ky = 0; ky < p; ky++)
          memcpy(row + (c * p + ky) * p, pixels + ((int64_t)c * size + gy * p + ky) * size + gx * p,
                 sizeof(float) * (size_t)p);
    }
}

int sd_clip_vision_forward(sd_clip_vision *m, const float *pixel_values, float *image_embeds, float *pooled,
                           sd_error *err) {
  const sd_clip_vision_config *c = &m->cfg;
  const int d = c->hidden, p = c->patch_size, g = c->image_size / p, N = g * g, T = N + 1;
  sd_arena_reset(&m->arena);
  float *x = sd_arena_floats(&m->arena, (size_t)T * d, err);                           /* [T, d] residual stream */
  float *patches = sd_arena_floats(&m->arena, (size_t)N * m->patch_embedding.in, err); /* [N, C·p·p] */
  float *cls = sd_arena_floats(&m->arena, (size_t)d, err);                             /* [d] */
  const sd_clip_encoder_dims dims = {.hidden = d,
                                     .heads = c->heads,
                                     .intermediate = c->intermediate,
                                     .act_quick_gelu = c->act_quick_gelu,
                                     .ln_eps = c->ln_eps,
                                     .causal = 0};
  sd_clip_encoder_scratch s;
  if (!x || !patches || !cls || sd_clip_encoder_scratch_alloc(&s, T, &dims, &m->arena, err) != 0)
    return sd_fail_prefix(err, "vision tower");

  /* CLIPVisionEmbeddings: [class_embedding, conv(pixels) flattened to N tokens] + position embedding. */
  extract_patches(patches, pixel_values, c->channels, c->image_size, p);
  sd_linear_forward(x + d, patches, N, &m->patch_embedding); /* [N, d] into tokens 1..N */
  memcpy(x, m->class_embedding, sizeof(float) * (size_t)d);
  for (int64_t i = 0; i < (int64_t)T * d; i++)
    x[i] += m->position_embedding[i];
  sd_layer_norm(x, x, T, d, c->ln_eps, &m->pre_layrnorm);

  /* Pre-LN blocks, every token sees every token. */
  for (int i = 0; i < c->layers; i++)
    if (sd_clip_encoder_layer_forward(&m->layers[i], &dims, x, T, &s, &m->arena, err) != 0)
      return sd_fail_prefix(err, "vision tower layer %d", i);

  /* pooler_output = post_layernorm(last_hidden_state[:, 0]); image_embeds = visual_projection(pooled). */
  sd_layer_norm(cls, x, 1, d, c->ln_eps, &m->post_layernorm);
  if (pooled)
    memcpy(pooled, cls, sizeof(float) * (size_t)d);
  sd_linear_forward(image_embeds, cls, 1, &m->visual_projection);
  return 0;
}
