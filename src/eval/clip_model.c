/* CLIP model for image scoring (see clip_model.h): loading an HF CLIPModel, the two towers' pooled and
 * projected outputs, zero-shot probabilities and the CLIP score. The towers are model/clip_vision.c and
 * model/clip_text.c; the preprocessing is eval/clip_preprocess.c. */
#include "eval/clip_model.h"

#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/files.h"
#include "model/clip_encoder.h"
#include "model/model.h"
#include "model/synth_clip.h"

static int has_prefix(const sd_tensor_store *s, const char *prefix) {
  size_t n = strlen(prefix);
  for (int i = 0; i < s->count; i++)
    if (strncmp(s->tensors[i].name, prefix, n) == 0)
      return 1;
  return 0;
}

/* The CLIPConfig object: the safetensors __metadata__["config"] string, else config.json in dir when it
 * describes a CLIP (a stray config.json of another model beside a file is ignored). NULL: none. */
static json_t *load_clip_config(const sd_clip_model *m, const char *dir, int is_folder, const char **source,
                                sd_error *err, int *failed) {
  *failed = 0;
  if (m->store->metadata_json && !is_folder) {
    json_t *md = json_loads(m->store->metadata_json, 0, NULL);
    json_t *conf = json_object_get(md, "config");
    json_t *cfg = json_is_string(conf) ? json_loads(json_string_value(conf), 0, NULL) : NULL;
    json_decref(md);
    if (json_is_object(cfg)) {
      *source = "safetensors metadata";
      return cfg;
    }
    json_decref(cfg);
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/config.json", dir);
  if (!sd_is_file(path))
    return NULL;
  json_error_t jerr;
  json_t *cfg = json_load_file(path, 0, &jerr);
  if (!json_is_object(cfg)) {
    json_decref(cfg);
    *failed = 1;
    sd_fail(err, "%s: invalid JSON at line %d: %s", path, jerr.line, jerr.text);
    return NULL;
  }
  const char *type = json_string_value(json_object_get(cfg, "model_type"));
  if (is_folder || json_object_get(cfg, "vision_config") || (type && strcmp(type, "clip") == 0)) {
    *source = "config.json";
    return cfg;
  }
  json_decref(cfg);
  return NULL;
}

static int configure_towers(sd_clip_model *m, json_t *clip_cfg, sd_clip_vision_config *vc, sd_clip_text_config *tc,
                            sd_error *err) {
  if (!clip_cfg) {
    m->config_source = "inferred from shapes";
    if (sd_clip_vision_config_infer(m->store, vc, err) != 0 || sd_clip_text_config_infer(m->store, tc, err) != 0)
      return -1;
    return 0;
  }
  char *text = json_dumps(clip_cfg, JSON_COMPACT);
  int rc = text ? sd_clip_vision_config_from_json(text, vc, err) : sd_fail(err, "config: cannot serialise");
  free(text);
  if (rc != 0)
    return -1;
  /* text_config as a CLIPTextConfig object; transformers' defaults for what it omits (hidden_size too) */
  json_t *t = json_object_get(clip_cfg, "text_config");
  json_t *tcopy = json_is_object(t) ? json_deep_copy(t) : json_object();
  if (!json_object_get(tcopy, "hidden_size"))
    json_object_set_new(tcopy, "hidden_size", json_integer(512));
  text = json_dumps(tcopy, JSON_COMPACT);
  json_decref(tcopy);
  rc = text ? sd_clip_text_config_from_json(text, tc, err) : sd_fail(err, "config: cannot serialise");
  free(text);
  return rc;
}

static int configure_preprocess(sd_clip_model *m, json_t *clip_cfg, const char *dir, sd_error *err) {
  sd_clip_preprocess_defaults(&m->preprocess, m->vision.cfg.image_size);
  if (clip_cfg) {
    char *text = json_dumps(clip_cfg, JSON_COMPACT);
    int rc = text ? sd_clip_preprocess_from_json(text, &m->preprocess, err) : sd_fail(err, "config: cannot serialise");
    free(text);
    if (rc != 0)
      return -1;
    /* a CLIPConfig's own keys: only mean/std (size/crop_size there would be someone else's) */
    m->preprocess.resize_shortest = m->preprocess.crop = m->vision.cfg.image_size;
  }
  char path[4200];
  snprintf(path, sizeof path, "%s/preprocessor_config.json", dir);
  if (sd_is_file(path)) {
    char *text = sd_read_text_file(path, 1 << 20, err);
    if (!text || sd_clip_preprocess_from_json(text, &m->preprocess, err) != 0) {
      free(text);
      return sd_fail_prefix(err, "%s", path);
    }
    free(text);
  }
  if (m->preprocess.crop != m->vision.cfg.image_size)
    return sd_fail(err, "%s: crop_size %d differs from the vision tower's image_size %d", dir, m->preprocess.crop,
                   m->vision.cfg.image_size);
  return 0;
}

static int load_tokenizer(sd_clip_model *m, const char *dir, sd_error *err) {
  char vocab[4200], merges[4200];
  snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
  snprintf(merges, sizeof merges, "%s/merges.txt", dir);
  if (sd_is_file(vocab) && sd_is_file(merges))
    snprintf(m->tokenizer_dir, sizeof m->tokenizer_dir, "%s", dir);
  else if (!sd_default_tokenizer_dir(m->tokenizer_dir, sizeof m->tokenizer_dir))
    return 0; /* none at hand: encode_ids still works, encode_text reports it */
  return sd_tokenizer_load(m->tokenizer_dir, &m->tokenizer, err);
}

int sd_clip_model_load(const char *path, sd_clip_model **out, sd_error *err) {
  *out = NULL;
  char synth_path[4096];
  const char *given = path;
  if (strncmp(path, "synth:", 6) == 0) {
    if (sd_synth_clip_file(path + 6, synth_path, sizeof synth_path, err) != 0)
      return -1;
    path = synth_path;
  }
  sd_clip_model *m = sd_calloc(1, sizeof *m, err);
  if (!m)
    return -1;
  m->path = sd_strdup(given);
  char dir[4096], weights[4200];
  const int is_folder = sd_is_dir(path);
  json_t *clip_cfg = NULL;
  if (is_folder) {
    snprintf(dir, sizeof dir, "%s", path);
    snprintf(weights, sizeof weights, "%s/model.safetensors", path);
    if (!sd_is_file(weights))
      snprintf(weights, sizeof weights, "%s/pytorch_model.bin", path);
    if (!sd_is_file(weights)) {
      sd_fail(err, "%s: CLIP folder without model.safetensors or pytorch_model.bin", path);
      goto fail;
    }
  } else {
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    snprintf(dir, sizeof dir, "%s", dirname(copy));
    snprintf(weights, sizeof weights, "%s", path);
  }
  m->weights_path = sd_strdup(weights);
  if (sd_store_open(weights, &m->store, err) != 0)
    goto fail;
  if (!has_prefix(m->store, "vision_model.")) {
    sd_fail(err,
            "%s: CLIP checkpoint without a vision tower: no 'vision_model.*' tensors (a text-only CLIP cannot "
            "score images)",
            weights);
    goto fail;
  }
  if (!has_prefix(m->store, "text_model.")) {
    sd_fail(err, "%s: CLIP checkpoint without a text tower: no 'text_model.*' tensors", weights);
    goto fail;
  }

  int cfg_failed;
  clip_cfg = load_clip_config(m, dir, is_folder, &m->config_source, err, &cfg_failed);
  if (cfg_failed)
    goto fail;
  sd_clip_vision_config vc;
  sd_clip_text_config tc;
  if (configure_towers(m, clip_cfg, &vc, &tc, err) != 0) {
    sd_fail_prefix(err, "%s (config %s)", weights, m->config_source);
    goto fail;
  }
  if (sd_clip_vision_init(&m->vision, &vc, m->store, err) != 0 || sd_clip_text_init(&m->text, &tc, m->store, err) != 0)
    goto fail;
  m->projection_dim = vc.projection_dim;
  if (m->projection_dim > SD_CLIP_MAX_PROJ) {
    sd_fail(err, "%s: projection_dim %d exceeds SD_CLIP_MAX_PROJ %d", weights, m->projection_dim, SD_CLIP_MAX_PROJ);
    goto fail;
  }

  /* CLIPModel's own tensors: text_projection [proj, d_text] (no bias) and the scalar logit_scale. */
  sd_weight_binder b = {.view = m->store};
  sd_bind_linear(&b, &m->text_projection, m->projection_dim, tc.hidden, 0, "text_projection");
  if (sd_bind_finish(&b, "CLIP projections", err) != 0)
    goto fail;
  sd_tensor *scale = sd_store_find(m->store, "logit_scale");
  const float *scale_value = scale && sd_tensor_numel(scale) == 1 ? sd_tensor_f32(scale, err) : NULL;
  if (!scale_value) {
    sd_fail(err, "%s: %s tensor 'logit_scale' (a CLIPModel's scalar temperature)", weights,
            scale ? "unreadable or non-scalar" : "missing");
    goto fail;
  }
  m->logit_scale = scale_value[0];

  if (configure_preprocess(m, clip_cfg, dir, err) != 0 || load_tokenizer(m, dir, err) != 0)
    goto fail;
  m->text_hidden = sd_malloc(sizeof(float) * SD_CLIP_TEXT_TOKENS * (size_t)tc.hidden, err);
  m->pixel_values = sd_malloc(sizeof(float) * 3 * (size_t)vc.image_size * vc.image_size, err);
  if (!m->text_hidden || !m->pixel_values)
    goto fail;
  if (vc.channels != 3) {
    sd_fail(err, "%s: the vision tower takes %d channels; CLIP preprocessing makes RGB", weights, vc.channels);
    goto fail;
  }
  json_decref(clip_cfg);
  *out = m;
  return 0;
fail:
  json_decref(clip_cfg);
  sd_clip_model_free(m);
  return -1;
}

void sd_clip_model_free(sd_clip_model *m) {
  if (!m)
    return;
  sd_clip_vision_free(&m->vision);
  sd_clip_text_free(&m->text);
  sd_tokenizer_free(m->tokenizer);
  sd_store_close(m->store);
  free(m->text_hidden);
  free(m->pixel_values);
  free(m->weights_path);
  free(m->path);
  free(m);
}

/* ---- encoders --------------------------------------------------------------------------- */

int sd_clip_encode_ids(sd_clip_model *m, const int32_t ids[SD_CLIP_TEXT_TOKENS], float *embed, sd_error *err) {
  if (sd_clip_text_forward(&m->text, ids, m->text_hidden, err) != 0)
    return -1;
  int eos = 0; /* first position of the largest id, as torch.argmax */
  for (int t = 1; t < SD_CLIP_TEXT_TOKENS; t++)
    if (ids[t] > ids[eos])
      eos = t;
  sd_linear_forward(embed, m->text_hidden + (size_t)eos * m->text.cfg.hidden, 1, &m->text_projection);
  return 0;
}

int sd_clip_encode_text(sd_clip_model *m, const char *prompt, float *embed, sd_error *err) {
  if (!m->tokenizer)
    return sd_fail(err, "%s: no tokenizer (no vocab.json/merges.txt beside the model and none bundled)", m->path);
  int32_t ids[SD_CLIP_TEXT_TOKENS];
  if (sd_tokenizer_encode(m->tokenizer, prompt, ids, NULL, err) != 0)
    return -1;
  return sd_clip_encode_ids(m, ids, embed, err);
}

int sd_clip_preprocess_image(const sd_clip_model *m, const uint8_t *rgb, int w, int h, float *pixel_values,
                             sd_error *err) {
  return sd_clip_preprocess_rgb8(&m->preprocess, rgb, w, h, pixel_values, err);
}

int sd_clip_encode_pixels(sd_clip_model *m, const float *pixel_values, float *embed, sd_error *err) {
  return sd_clip_vision_forward(&m->vision, pixel_values, embed, NULL, err);
}

int sd_clip_encode_image_rgb8(sd_clip_model *m, const uint8_t *rgb, int w, int h, float *embed, sd_error *err) {
  if (sd_clip_preprocess_image(m, rgb, w, h, m->pixel_values, err) != 0)
    return -1;
  return sd_clip_encode_pixels(m, m->pixel_values, embed, err);
}

/* ---- scores ----------------------------------------------------------------------------- */

double sd_clip_cosine(const float *a, const float *b, int n) {
  double ab = 0, aa = 0, bb = 0;
  for (int i = 0; i < n; i++) {
    ab += (double)a[i] * b[i];
    aa += (double)a[i] * a[i];
    bb += (double)b[i] * b[i];
  }
  return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : 0.0;
}

void sd_clip_logits(const sd_clip_model *m, const float *image_embed, const float *text_embeds, int stride, int k,
                    float *logits) {
  const double scale = exp((double)m->logit_scale);
  for (int j = 0; j < k; j++)
    logits[j] = (float)(scale * sd_clip_cosine(image_embed, text_embeds + (size_t)j * stride, m->projection_dim));
}

void sd_clip_zero_shot(const sd_clip_model *m, const float *image_embed, const float *text_embeds, int stride, int k,
                       float *probs) {
  if (k <= 0)
    return;
  sd_clip_logits(m, image_embed, text_embeds, stride, k, probs);
  double mx = probs[0], sum = 0;
  for (int j = 1; j < k; j++)
    mx = probs[j] > mx ? probs[j] : mx;
  for (int j = 0; j < k; j++)
    sum += exp((double)probs[j] - mx);
  for (int j = 0; j < k; j++)
    probs[j] = (float)(exp((double)probs[j] - mx) / sum);
}

double sd_clip_score(const float *image_embed, const float *text_embed, int n) {
  double c = sd_clip_cosine(image_embed, text_embed, n);
  return 100.0 * (c > 0 ? c : 0);
}
