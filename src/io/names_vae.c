/* diffusers AutoencoderKL key -> ldm first_stage_model name (see names_vae.h). Only string work;
 * the layouts follow diffusers' convert_from_ckpt.py (vae_diffusers_conversion in reverse). */
#include "io/names_vae.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/store_view.h"

/* Returns the rest of s after the literal prefix lit, or NULL. */
static const char *after(const char *s, const char *lit) {
  size_t n = strlen(lit);
  return strncmp(s, lit, n) == 0 ? s + n : NULL;
}

/* Reads "<digits>." from *p; returns the number or -1. */
static int index_dot(const char **p) {
  const char *s = *p;
  if (*s < '0' || *s > '9') return -1;
  char *end;
  long v = strtol(s, &end, 10);
  if (*end != '.' || v > 1000) return -1;
  *p = end + 1;
  return (int)v;
}

/* "weight" or "bias" exactly. */
static int is_param(const char *s) { return strcmp(s, "weight") == 0 || strcmp(s, "bias") == 0; }

/* Sub-module renames inside a ResnetBlock and an AttnBlock; "<module>.<param>" in, same out. */
static const char *const RESNET_NAMES[][2] = {
    {"norm1", "norm1"}, {"conv1", "conv1"}, {"norm2", "norm2"}, {"conv2", "conv2"}, {"conv_shortcut", "nin_shortcut"},
};
static const char *const ATTN_NAMES[][2] = {
    {"group_norm", "norm"}, {"to_q", "q"},     {"to_k", "k"},        {"to_v", "v"},
    {"to_out.0", "proj_out"}, {"query", "q"}, {"key", "k"},         {"value", "v"}, {"proj_attn", "proj_out"},
};

static const char *rename_sub(const char *s, const char *const (*table)[2], size_t count, const char **param) {
  for (size_t i = 0; i < count; i++) {
    const char *rest = after(s, table[i][0]);
    if (rest && rest[0] == '.' && is_param(rest + 1)) {
      *param = rest + 1;
      return table[i][1];
    }
  }
  return NULL;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static int emit(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int emit(char *out, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(out, n, fmt, ap);
  va_end(ap);
  return w >= 0 && (size_t)w < n;
}

/* Maps the key below "encoder."/"decoder." (rest) for part; n_levels < 0 when unknown. */
static int map_part(const char *part, const char *rest, int n_levels, char *out, size_t n) {
  const char *p, *param, *sub;
  if ((p = after(rest, "conv_in.")) || (p = after(rest, "conv_out."))) {
    return is_param(p) && emit(out, n, "%s.%s", part, rest);
  }
  if ((p = after(rest, "conv_norm_out.")) && is_param(p)) return emit(out, n, "%s.norm_out.%s", part, p);
  if ((p = after(rest, "mid_block.resnets."))) {
    int j = index_dot(&p);
    if (j < 0 || j > 1 || !(sub = rename_sub(p, RESNET_NAMES, COUNT(RESNET_NAMES), &param))) return 0;
    return emit(out, n, "%s.mid.block_%d.%s.%s", part, j + 1, sub, param);
  }
  if ((p = after(rest, "mid_block.attentions.0."))) {
    if (!(sub = rename_sub(p, ATTN_NAMES, COUNT(ATTN_NAMES), &param))) return 0;
    return emit(out, n, "%s.mid.attn_1.%s.%s", part, sub, param);
  }
  int is_enc = strcmp(part, "encoder") == 0;
  p = after(rest, is_enc ? "down_blocks." : "up_blocks.");
  if (!p) return 0;
  int i = index_dot(&p);
  if (i < 0) return 0;
  int level = i;
  if (!is_enc) {
    if (n_levels <= 0 || i >= n_levels) return 0;
    level = n_levels - 1 - i; /* diffusers up_blocks run from the lowest resolution */
  }
  const char *levels = is_enc ? "down" : "up";
  const char *q;
  if ((q = after(p, "resnets."))) {
    int j = index_dot(&q);
    if (j < 0 || !(sub = rename_sub(q, RESNET_NAMES, COUNT(RESNET_NAMES), &param))) return 0;
    return emit(out, n, "%s.%s.%d.block.%d.%s.%s", part, levels, level, j, sub, param);
  }
  if ((q = after(p, "attentions."))) {
    int j = index_dot(&q);
    if (j < 0 || !(sub = rename_sub(q, ATTN_NAMES, COUNT(ATTN_NAMES), &param))) return 0;
    return emit(out, n, "%s.%s.%d.attn.%d.%s.%s", part, levels, level, j, sub, param);
  }
  if ((q = after(p, is_enc ? "downsamplers.0.conv." : "upsamplers.0.conv.")) && is_param(q))
    return emit(out, n, "%s.%s.%d.%s.conv.%s", part, levels, level, is_enc ? "downsample" : "upsample", q);
  return 0;
}

int sd_vae_name_from_diffusers(void *ctx, const char *key, char *out, size_t n) {
  const char *p;
  if (((p = after(key, "quant_conv.")) || (p = after(key, "post_quant_conv."))) && is_param(p))
    return emit(out, n, "%s", key);
  int n_levels = ctx ? *(const int *)ctx : -1;
  if ((p = after(key, "encoder."))) return map_part("encoder", p, n_levels, out, n);
  if ((p = after(key, "decoder."))) return map_part("decoder", p, n_levels, out, n);
  return 0;
}

sd_tensor_store *sd_vae_view_from_diffusers(const sd_tensor_store *src, int n_levels, sd_error *err) {
  sd_tensor_store *view = sd_store_new(src->path, "view", err);
  if (!view) return NULL;
  if (sd_view_add(view, src, NULL, sd_vae_name_from_diffusers, &n_levels, 0, err) < 0) {
    sd_store_close(view);
    return NULL;
  }
  return view;
}
