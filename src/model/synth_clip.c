/* Synthetic CLIPModels (see synth_clip.h): the tiny-clip preset, the key walker over transformers'
 * CLIPModel (CLIPVisionTransformer, CLIPTextTransformer, the two projections), the CLIPConfig metadata
 * and the synth: cache entry. The values and the file writing are model/synth.c's; nothing here runs
 * a model (eval/clip_model.c does). */
#include "model/synth_clip.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/files.h"

/* openai CLIP's normalisation, as tiny-clip's config.json and every CLIPImageProcessor carry it */
static const double IMAGE_MEAN[3] = {0.48145466, 0.4578275, 0.40821073};
static const double IMAGE_STD[3] = {0.26862954, 0.26130258, 0.27577711};

int sd_synth_clip_arch_get(const char *name, sd_synth_clip_arch *a, sd_error *err) {
  memset(a, 0, sizeof *a);
  if (strcmp(name, "tiny-clip") != 0)
    return sd_fail(err, "unknown CLIP architecture '%s' (expected %s)", name, sd_synth_clip_arch_names());
  /* shared/reference/tiny-clip/config.json; the real vocabulary, since prompts go through the bundled
   * SD-1 tokenizer (ids up to 49407) */
  a->kind = "tiny-clip";
  a->projection_dim = 16;
  a->vision.image_size = 32;
  a->vision.patch_size = 8;
  a->vision.hidden = 32;
  a->vision.layers = 2;
  a->vision.heads = 2;
  a->vision.intermediate = 128;
  a->text.vocab_size = 49408;
  a->text.max_positions = 77;
  a->text.hidden = 32;
  a->text.layers = 2;
  a->text.heads = 2;
  a->text.intermediate = 128;
  a->hidden_act = "quick_gelu";
  return 0;
}

const char *sd_synth_clip_arch_names(void) {
  return "tiny-clip";
}

/* ---- key list ---- */

#define SHAPE(...) ((const int64_t[]){__VA_ARGS__})
#define NDIM(...) ((int)(sizeof((const int64_t[]){__VA_ARGS__}) / sizeof(int64_t)))
/* Weight-dtype tensor "<prefix>.<leaf>" with the given init and shape. */
#define ADD(l, init, prefix, leaf, ...)                                                                                \
  sd_synth_add((l), (init), (l)->dtype, NDIM(__VA_ARGS__), SHAPE(__VA_ARGS__), err, "%s." leaf, (prefix))

/* nn.Linear(in, out): weight [out, in], bias [out] (when bias). */
static int linear(sd_synth_list *l, const char *p, int64_t out, int64_t in, int bias, sd_error *err) {
  if (ADD(l, SD_SYNTH_FAN_IN, p, "weight", out, in) != 0)
    return -1;
  return bias ? ADD(l, SD_SYNTH_BIAS, p, "bias", out) : 0;
}

/* nn.LayerNorm(c): weight (gamma) [c], bias (beta) [c]. */
static int norm(sd_synth_list *l, const char *p, int64_t c, sd_error *err) {
  if (ADD(l, SD_SYNTH_ONES, p, "weight", c) != 0)
    return -1;
  return ADD(l, SD_SYNTH_ZEROS, p, "bias", c);
}

/* CLIPEncoder under prefix: layers.{i} = CLIPEncoderLayer (self_attn q/k/v/out_proj with biases,
 * layer_norm1, mlp.fc1 [f, d], mlp.fc2 [d, f], layer_norm2). */
static int encoder(sd_synth_list *l, const char *prefix, int layers, int64_t d, int64_t f, sd_error *err) {
  static const char *const proj[] = {"q_proj", "k_proj", "v_proj", "out_proj"};
  char name[192];
  for (int i = 0; i < layers; i++) {
    for (int k = 0; k < 4; k++) {
      snprintf(name, sizeof name, "%s.encoder.layers.%d.self_attn.%s", prefix, i, proj[k]);
      if (linear(l, name, d, d, 1, err))
        return -1;
    }
    snprintf(name, sizeof name, "%s.encoder.layers.%d.layer_norm1", prefix, i);
    if (norm(l, name, d, err))
      return -1;
    snprintf(name, sizeof name, "%s.encoder.layers.%d.mlp.fc1", prefix, i);
    if (linear(l, name, f, d, 1, err))
      return -1;
    snprintf(name, sizeof name, "%s.encoder.layers.%d.mlp.fc2", prefix, i);
    if (linear(l, name, d, f, 1, err))
      return -1;
    snprintf(name, sizeof name, "%s.encoder.layers.%d.layer_norm2", prefix, i);
    if (norm(l, name, d, err))
      return -1;
  }
  return 0;
}

/* CLIPVisionTransformer (vision_model.*) + visual_projection. The patch embedding is a Conv2d(3, d, p,
 * stride p, bias=False); T = (S/p)^2 + 1 positions, the class token first. */
static int vision_keys(const sd_synth_clip_arch *a, sd_synth_list *l, sd_error *err) {
  const char *v = "vision_model";
  if (a->vision.patch_size <= 0 || a->vision.image_size % a->vision.patch_size != 0)
    return sd_fail(err, "%s: image_size %d is not a multiple of patch_size %d", a->kind, a->vision.image_size,
                   a->vision.patch_size);
  int64_t d = a->vision.hidden, p = a->vision.patch_size, g = a->vision.image_size / a->vision.patch_size;
  if (ADD(l, SD_SYNTH_EMBEDDING, v, "embeddings.class_embedding", d) ||
      ADD(l, SD_SYNTH_FAN_IN, v, "embeddings.patch_embedding.weight", d, 3, p, p) ||
      ADD(l, SD_SYNTH_EMBEDDING, v, "embeddings.position_embedding.weight", g * g + 1, d) ||
      sd_synth_add(l, SD_SYNTH_POSITION_IDS, SD_DTYPE_I64, 2, SHAPE(1, g * g + 1), err, "%s.embeddings.position_ids",
                   v) ||
      norm(l, "vision_model.pre_layrnorm", d, err) || /* sic: transformers' spelling */
      encoder(l, v, a->vision.layers, d, a->vision.intermediate, err) || norm(l, "vision_model.post_layernorm", d, err))
    return -1;
  return linear(l, "visual_projection", a->projection_dim, d, 0, err);
}

/* CLIPTextTransformer (text_model.*) + text_projection. */
static int text_keys(const sd_synth_clip_arch *a, sd_synth_list *l, sd_error *err) {
  const char *t = "text_model";
  int64_t d = a->text.hidden;
  if (ADD(l, SD_SYNTH_UNIT_NORMAL, t, "embeddings.token_embedding.weight", a->text.vocab_size, d) ||
      ADD(l, SD_SYNTH_EMBEDDING, t, "embeddings.position_embedding.weight", a->text.max_positions, d) ||
      sd_synth_add(l, SD_SYNTH_POSITION_IDS, SD_DTYPE_I64, 2, SHAPE(1, a->text.max_positions), err,
                   "%s.embeddings.position_ids", t) ||
      encoder(l, t, a->text.layers, d, a->text.intermediate, err) || norm(l, "text_model.final_layer_norm", d, err))
    return -1;
  return linear(l, "text_projection", a->projection_dim, d, 0, err);
}

static int compare_names(const void *x, const void *y) {
  return strcmp(((const sd_synth_tensor *)x)->name, ((const sd_synth_tensor *)y)->name);
}

int sd_synth_clip_keys(const sd_synth_clip_arch *a, sd_dtype dtype, sd_synth_list *l, sd_error *err) {
  memset(l, 0, sizeof *l);
  l->dtype = dtype;
  if (vision_keys(a, l, err) || text_keys(a, l, err) ||
      sd_synth_add(l, SD_SYNTH_LOGIT_SCALE, SD_DTYPE_F32, 0, SHAPE(0), err, "logit_scale")) {
    sd_synth_list_free(l);
    return -1;
  }
  qsort(l->items, (size_t)l->count, sizeof *l->items, compare_names);
  return 0;
}

/* ---- metadata ---- */

/* The CLIPVisionConfig / CLIPTextConfig keys both towers share, appended to o. */
static void tower_config(json_t *o, int hidden, int layers, int heads, int intermediate, const char *act) {
  json_object_set_new(o, "hidden_size", json_integer(hidden));
  json_object_set_new(o, "num_hidden_layers", json_integer(layers));
  json_object_set_new(o, "num_attention_heads", json_integer(heads));
  json_object_set_new(o, "intermediate_size", json_integer(intermediate));
  json_object_set_new(o, "hidden_act", json_string(act));
  json_object_set_new(o, "layer_norm_eps", json_real(1e-5));
}

static json_t *real_array(const double *v, int n) {
  json_t *arr = json_array();
  for (int i = 0; i < n; i++)
    json_array_append_new(arr, json_real(v[i]));
  return arr;
}

/* transformers CLIPConfig, in the order and with the keys of tiny-clip's config.json */
static json_t *config_object(const sd_synth_clip_arch *a) {
  json_t *cfg = json_object();
  json_object_set_new(cfg, "projection_dim", json_integer(a->projection_dim));
  json_object_set_new(cfg, "logit_scale_init", json_real(log(1.0 / 0.07)));
  json_t *v = json_object();
  json_object_set_new(v, "image_size", json_integer(a->vision.image_size));
  json_object_set_new(v, "patch_size", json_integer(a->vision.patch_size));
  tower_config(v, a->vision.hidden, a->vision.layers, a->vision.heads, a->vision.intermediate, a->hidden_act);
  json_object_set_new(cfg, "vision_config", v);
  json_t *t = json_object();
  json_object_set_new(t, "vocab_size", json_integer(a->text.vocab_size));
  json_object_set_new(t, "max_position_embeddings", json_integer(a->text.max_positions));
  tower_config(t, a->text.hidden, a->text.layers, a->text.heads, a->text.intermediate, a->hidden_act);
  json_object_set_new(cfg, "text_config", t);
  json_object_set_new(cfg, "image_mean", real_array(IMAGE_MEAN, 3));
  json_object_set_new(cfg, "image_std", real_array(IMAGE_STD, 3));
  json_t *arch = json_array();
  json_array_append_new(arch, json_string("CLIPModel"));
  json_object_set_new(cfg, "architectures", arch);
  json_object_set_new(cfg, "model_type", json_string("clip"));
  json_object_set_new(cfg, "generator", json_string("sdprune synth (random weights)"));
  return cfg;
}

char *sd_synth_clip_metadata_json(const sd_synth_clip_arch *a, uint64_t seed, sd_error *err) {
  /* 9 significant digits print the mean/std and 1e-05 as written */
  const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9);
  json_t *cfg = config_object(a);
  char *cfg_text = json_dumps(cfg, flags);
  json_decref(cfg);
  if (!cfg_text) {
    sd_fail(err, "cannot encode the synth CLIP config");
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
  if (!out)
    sd_fail(err, "cannot encode the synth CLIP metadata");
  return out;
}

/* ---- writer and cache ---- */

int sd_synth_clip_write(const char *path, const sd_synth_clip_arch *a, sd_dtype dtype, uint64_t seed,
                        sd_synth_progress progress, void *progress_ctx, int *count_out, uint64_t *bytes_out,
                        sd_error *err) {
  if (dtype != SD_DTYPE_F32 && dtype != SD_DTYPE_F16 && dtype != SD_DTYPE_BF16)
    return sd_fail(err, "%s: synth writes F32, F16 or BF16 weights, not %s", path, sd_dtype_name(dtype));
  sd_synth_list list;
  if (sd_synth_clip_keys(a, dtype, &list, err) != 0)
    return -1;
  char *metadata = sd_synth_clip_metadata_json(a, seed, err);
  int rc = metadata
               ? sd_synth_write_list(path, &list, metadata, seed, progress, progress_ctx, count_out, bytes_out, err)
               : -1;
  free(metadata);
  sd_synth_list_free(&list);
  return rc;
}

int sd_synth_clip_file(const char *spec, char *out, size_t n, sd_error *err) {
  char name[64];
  uint64_t seed;
  sd_synth_clip_arch arch;
  sd_synth_arch sd_arch;
  sd_error ignored = {{0}};
  if (sd_synth_spec_parse(spec, name, sizeof name, &seed, sd_synth_clip_arch_names(), err) != 0)
    return -1;
  if (sd_synth_arch_get(name, &sd_arch, &ignored) == 0)
    return sd_fail(err, "synth:%s: %s is a Stable Diffusion checkpoint, not a CLIP image-text model (expected %s)",
                   spec, name, sd_synth_clip_arch_names());
  if (sd_synth_clip_arch_get(name, &arch, err) != 0)
    return sd_fail_prefix(err, "synth:%s", spec);
  int have = sd_synth_cache_file(arch.kind, seed, out, n, err);
  if (have != 0)
    return have < 0 ? -1 : 0;
  return sd_synth_clip_write(out, &arch, SD_DTYPE_F16, seed, NULL, NULL, NULL, NULL, err);
}
