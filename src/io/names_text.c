/* Text-encoder layouts and the open_clip -> HF CLIPTextModel name mapping (see names_text.h).
 * Knows key strings only; shapes are checked by the model when it binds its weights. */
#include "io/names_text.h"

#include <stdio.h>
#include <string.h>

#include "io/store_view.h"

static const char *const HF_TOKEN = "text_model.embeddings.token_embedding.weight";

sd_text_layout sd_text_layout_detect(const sd_tensor_store *src, const char **prefix) {
  static const struct {
    sd_text_layout layout;
    const char *prefix, *token_key;
  } probes[] = {
      {SD_TEXT_LAYOUT_HF, "", "text_model.embeddings.token_embedding.weight"},
      {SD_TEXT_LAYOUT_SD1, SD_TEXT_PREFIX_SD1, SD_TEXT_PREFIX_SD1 "text_model.embeddings.token_embedding.weight"},
      {SD_TEXT_LAYOUT_OPENCLIP, SD_TEXT_PREFIX_OPENCLIP, SD_TEXT_PREFIX_OPENCLIP "token_embedding.weight"},
  };
  for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++) {
    if (sd_store_find(src, probes[i].token_key)) {
      if (prefix) *prefix = probes[i].prefix;
      return probes[i].layout;
    }
  }
  if (prefix) *prefix = NULL;
  return SD_TEXT_LAYOUT_NONE;
}

const char *sd_text_layout_name(sd_text_layout layout) {
  switch (layout) {
  case SD_TEXT_LAYOUT_HF: return "hf";
  case SD_TEXT_LAYOUT_SD1: return "sd1";
  case SD_TEXT_LAYOUT_OPENCLIP: return "openclip";
  default: return "none";
  }
}

/* open_clip key (prefix stripped) -> HF name; 0 for keys that are not renamed one to one
 * (in_proj, handled apart) or not part of CLIPTextModel (text_projection, logit_scale, ...). */
static int openclip_name(void *ctx, const char *key, char *out, size_t n) {
  (void)ctx;
  static const struct {
    const char *from, *to;
  } whole[] = {
      {"token_embedding.weight", "text_model.embeddings.token_embedding.weight"},
      {"positional_embedding", "text_model.embeddings.position_embedding.weight"},
      {"ln_final.weight", "text_model.final_layer_norm.weight"},
      {"ln_final.bias", "text_model.final_layer_norm.bias"},
  };
  for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++)
    if (strcmp(key, whole[i].from) == 0) return snprintf(out, n, "%s", whole[i].to) < (int)n;

  static const struct {
    const char *from, *to;
  } block[] = {
      {"ln_1.", "layer_norm1."}, {"ln_2.", "layer_norm2."},   {"attn.out_proj.", "self_attn.out_proj."},
      {"mlp.c_fc.", "mlp.fc1."}, {"mlp.c_proj.", "mlp.fc2."},
  };
  int layer, used = 0;
  if (sscanf(key, "transformer.resblocks.%d.%n", &layer, &used) != 1 || used == 0 || layer < 0) return 0;
  const char *rest = key + used;
  for (size_t i = 0; i < sizeof block / sizeof block[0]; i++) {
    size_t len = strlen(block[i].from);
    if (strncmp(rest, block[i].from, len) != 0) continue;
    const char *param = rest + len;
    if (strcmp(param, "weight") != 0 && strcmp(param, "bias") != 0) return 0;
    return snprintf(out, n, "text_model.encoder.layers.%d.%s%s", layer, block[i].to, param) < (int)n;
  }
  return 0;
}

/* Adds the q/k/v thirds of one stacked in_proj tensor: rows [j·d, (j+1)·d) of [3d, d] or [3d]. */
static int add_in_proj(sd_tensor_store *view, const sd_tensor_store *src, const sd_tensor *t, int layer, int is_bias,
                       sd_error *err) {
  static const char *const qkv[3] = {"q_proj", "k_proj", "v_proj"};
  int ok = is_bias ? t->ndim == 1 : t->ndim == 2;
  if (ok && (t->shape[0] % 3 != 0 || (!is_bias && t->shape[0] != 3 * t->shape[1]))) ok = 0;
  if (!ok) {
    char shape_buf[96];
    return sd_fail(err, "%s: tensor '%s' has shape %s, expected %s", src->path, t->name,
                   sd_shape_str(t->shape, t->ndim, shape_buf, sizeof shape_buf), is_bias ? "[3d]" : "[3d, d]");
  }
  int64_t d = t->shape[0] / 3;
  int64_t shape[2] = {d, is_bias ? 1 : t->shape[1]};
  size_t part_bytes = (size_t)(d * shape[1]) * sd_dtype_size(t->dtype);
  if (t->nbytes != 3 * part_bytes)
    return sd_fail(err, "%s: tensor '%s' holds %zu bytes, expected %zu", src->path, t->name, t->nbytes, 3 * part_bytes);
  char name[192];
  for (int j = 0; j < 3; j++) {
    snprintf(name, sizeof name, "text_model.encoder.layers.%d.self_attn.%s.%s", layer, qkv[j],
             is_bias ? "bias" : "weight");
    if (sd_store_find(view, name))
      return sd_fail(err, "%s: tensor '%s' maps to '%s', which is already present", src->path, t->name, name);
    const unsigned char *part = (const unsigned char *)t->data + (size_t)j * part_bytes;
    if (sd_store_add(view, name, t->dtype, is_bias ? 1 : 2, shape, part, part_bytes, err) != 0) return -1;
  }
  return 3;
}

int sd_text_view_from_openclip(sd_tensor_store *view, const sd_tensor_store *src, const char *prefix, sd_error *err) {
  int added = sd_view_add(view, src, prefix, openclip_name, NULL, 0, err);
  if (added < 0) return -1;
  size_t plen = prefix ? strlen(prefix) : 0;
  for (int i = 0; i < src->count; i++) {
    const sd_tensor *t = &src->tensors[i];
    if (plen && strncmp(t->name, prefix, plen) != 0) continue;
    int layer, used = 0;
    if (sscanf(t->name + plen, "transformer.resblocks.%d.attn.%n", &layer, &used) != 1 || used == 0) continue;
    const char *param = t->name + plen + used;
    int is_bias;
    if (strcmp(param, "in_proj_weight") == 0)
      is_bias = 0;
    else if (strcmp(param, "in_proj_bias") == 0)
      is_bias = 1;
    else
      continue;
    int n = add_in_proj(view, src, t, layer, is_bias, err);
    if (n < 0) return -1;
    added += n;
  }
  return added;
}

sd_tensor_store *sd_text_view_open(const sd_tensor_store *src, sd_text_layout *layout_out, sd_error *err) {
  const char *prefix = NULL;
  sd_text_layout layout = sd_text_layout_detect(src, &prefix);
  if (layout_out) *layout_out = layout;
  if (layout == SD_TEXT_LAYOUT_NONE) {
    sd_fail(err, "%s: no text encoder found (looked for '%s', '%s%s', '%stoken_embedding.weight')", src->path, HF_TOKEN,
            SD_TEXT_PREFIX_SD1, HF_TOKEN, SD_TEXT_PREFIX_OPENCLIP);
    return NULL;
  }
  if (layout != SD_TEXT_LAYOUT_OPENCLIP) return sd_view_of_prefix(src, prefix, err);
  sd_tensor_store *view = sd_store_new(src->path, "view", err);
  if (!view) return NULL;
  if (sd_text_view_from_openclip(view, src, prefix, err) < 0) {
    sd_store_close(view);
    return NULL;
  }
  return view;
}
