/* `sdprune verify` group clip.*: the CLIP detector (eval/clip_model.h) against a reference folder in
 * tiny-clip's layout (model.safetensors + config.json + vectors.safetensors, reference/README.md). Not
 * the SD model's text encoder: that is the text.* group. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/verify.h"
#include "eval/clip_model.h"

/* Pixel values are judged by mean-abs (reference/README.md: bicubic resizing differs slightly between
 * libraries); our resize is PIL's own arithmetic, so 0 is expected. */
#define CLIP_PIXELS_MEAN_ABS 1e-2
/* Logits from our own preprocessing: the pixel tolerance allows more than rounding downstream. */
#define CLIP_OWN_PIXELS_TOL 1e-3

static void pixels_row(verify_ctx *v, const char *name, const float *got, const float *ref, int64_t n, int counted,
                       const char *note) {
  double num = 0, den = 0, mx = 0, sum = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)got[i] - ref[i]);
    num += d * d;
    den += (double)ref[i] * ref[i];
    sum += d;
    mx = d > mx || d != d ? d : mx;
  }
  double mae = sum / (double)n;
  int ok = mae < CLIP_PIXELS_MEAN_ABS;
  printf("%-8s %-58s %11.3e %11.3e  %s (mean-abs %.3g%s%s)\n", "clip", name, den > 0 ? sqrt(num / den) : sqrt(num), mx,
         !counted ? "info"
         : ok     ? "PASS"
                  : "FAIL",
         mae, ok ? " < 1e-2" : " >= 1e-2", note);
  if (!counted)
    return;
  if (ok)
    v->passed++;
  else
    v->failed++;
}

static void text_rows(verify_ctx *v, sd_clip_model *m, float *text_embeds, int *have_text) {
  sd_tensor *ids_t = verify_tensor(v, "clip.text.ids"), *emb_t = verify_tensor(v, "clip.text.embeds");
  const int D = m->projection_dim;
  *have_text = 0;
  if (!ids_t || !emb_t || ids_t->ndim != 2 || ids_t->shape[1] != SD_CLIP_TEXT_TOKENS || emb_t->ndim != 2 ||
      emb_t->shape[0] != ids_t->shape[0] || emb_t->shape[1] != D || ids_t->shape[0] > 64) {
    verify_fail(v, "clip", "text", "clip.text.ids [K,77] / clip.text.embeds [K,proj] missing or misshapen");
    return;
  }
  const int K = (int)ids_t->shape[0];
  const float *idsf = verify_f32(v, ids_t), *ref = verify_f32(v, emb_t);
  char *prompts_text = verify_metadata(v, "clip.text.prompts");
  json_t *prompts = prompts_text ? json_loads(prompts_text, 0, NULL) : NULL;
  free(prompts_text);
  sd_error err;
  char name[96];
  float tok_embed[SD_CLIP_MAX_PROJ];
  int ok = 1;
  for (int k = 0; k < K; k++) {
    int32_t ids[SD_CLIP_TEXT_TOKENS];
    for (int i = 0; i < SD_CLIP_TEXT_TOKENS; i++)
      ids[i] = (int32_t)idsf[k * SD_CLIP_TEXT_TOKENS + i];
    snprintf(name, sizeof name, "text.case%d.embeds (file ids)", k);
    if (sd_clip_encode_ids(m, ids, text_embeds + (size_t)k * D, &err) != 0) {
      verify_fail(v, "clip", name, err.msg);
      ok = 0;
      continue;
    }
    verify_row(v, "clip", name, text_embeds + (size_t)k * D, ref + (size_t)k * D, D, v->tol);
    const char *prompt = json_string_value(json_array_get(prompts, (size_t)k));
    if (!prompt || !m->tokenizer)
      continue;
    int32_t got[SD_CLIP_TEXT_TOKENS];
    float gotf[SD_CLIP_TEXT_TOKENS];
    snprintf(name, sizeof name, "text.case%d.ids (tokenizer)", k);
    if (sd_tokenizer_encode(m->tokenizer, prompt, got, NULL, &err) != 0) {
      verify_fail(v, "clip", name, err.msg);
      continue;
    }
    for (int i = 0; i < SD_CLIP_TEXT_TOKENS; i++)
      gotf[i] = (float)got[i];
    verify_row(v, "clip", name, gotf, idsf + k * SD_CLIP_TEXT_TOKENS, SD_CLIP_TEXT_TOKENS, 0.0);
    snprintf(name, sizeof name, "text.case%d.embeds (tokenizer)", k);
    if (sd_clip_encode_text(m, prompt, tok_embed, &err) != 0)
      verify_fail(v, "clip", name, err.msg);
    else
      verify_row(v, "clip", name, tok_embed, ref + (size_t)k * D, D, v->tol);
  }
  if (!json_is_array(prompts))
    verify_skip(v, "clip tokenizer", "no clip.text.prompts in the metadata");
  else if (!m->tokenizer)
    verify_skip(v, "clip tokenizer", "no tokenizer");
  json_decref(prompts);
  *have_text = ok ? K : 0;
}

static void image_rows(verify_ctx *v, sd_clip_model *m, const float *text_embeds, int K, int k) {
  sd_tensor *rgb = verify_tensor(v, "clip.image.case%d.rgb8", k);
  sd_tensor *pix_t = verify_tensor(v, "clip.image.case%d.pixel_values", k);
  sd_tensor *emb_t = verify_tensor(v, "clip.image.case%d.embeds", k);
  sd_tensor *log_t = verify_tensor(v, "clip.image.case%d.logits", k);
  const int D = m->projection_dim, S = m->vision.cfg.image_size;
  char name[96];
  snprintf(name, sizeof name, "image.case%d", k);
  if (!pix_t || !emb_t || sd_tensor_numel(pix_t) != 3 * (int64_t)S * S || sd_tensor_numel(emb_t) != D ||
      (log_t && sd_tensor_numel(log_t) != K) ||
      (rgb && (rgb->dtype != SD_DTYPE_U8 || rgb->ndim != 3 || rgb->shape[2] != 3))) {
    verify_fail(v, "clip", name, "pixel_values [1,3,S,S] / embeds [1,proj] / logits [1,K] / rgb8 [H,W,3] misshapen");
    return;
  }
  const float *ref_pixels = verify_f32(v, pix_t), *ref_embed = verify_f32(v, emb_t);
  const float *ref_logits = log_t ? verify_f32(v, log_t) : NULL;
  float *pixels = malloc(sizeof(float) * 3 * (size_t)S * S);
  float embed[SD_CLIP_MAX_PROJ], logits[64];
  sd_error err;

  snprintf(name, sizeof name, "image.case%d.embeds (ref pixels)", k);
  if (sd_clip_encode_pixels(m, ref_pixels, embed, &err) != 0) {
    verify_fail(v, "clip", name, err.msg);
  } else {
    verify_row(v, "clip", name, embed, ref_embed, D, v->tol);
    if (ref_logits && K) {
      sd_clip_logits(m, embed, text_embeds, D, K, logits);
      snprintf(name, sizeof name, "image.case%d.logits (ref pixels)", k);
      verify_row(v, "clip", name, logits, ref_logits, K, v->tol);
    }
  }
  if (rgb) {
    /* tiny-clip's reference resized the long side by round() (56×40 -> 45×32); transformers and torchvision
     * truncate (44×32). The counted row uses the reference's rule, the info row shows the default's. */
    const int w = (int)rgb->shape[1], h = (int)rgb->shape[0];
    sd_clip_resize_rule saved = m->preprocess.resize_rule;
    const sd_clip_resize_rule rules[2] = {SD_CLIP_RESIZE_ROUND, SD_CLIP_RESIZE_TRUNCATE};
    int rw[2], rh[2];
    for (int r = 0; r < 2; r++)
      sd_clip_resize_size(w, h, m->preprocess.resize_shortest, rules[r], &rw[r], &rh[r]);
    for (int r = 0; r < (rw[0] != rw[1] || rh[0] != rh[1] ? 2 : 1); r++) {
      m->preprocess.resize_rule = rules[r];
      snprintf(name, sizeof name, "image.case%d.pixel_values (%dx%d -> %dx%d%s)", k, w, h, rw[r], rh[r],
               r == 0 ? "" : ", transformers");
      if (sd_clip_preprocess_image(m, rgb->data, w, h, pixels, &err) != 0)
        verify_fail(v, "clip", name, err.msg);
      else
        pixels_row(v, name, pixels, ref_pixels, 3 * (int64_t)S * S, r == 0, r == 0 ? "" : ", not counted");
    }
    m->preprocess.resize_rule = SD_CLIP_RESIZE_ROUND;
    snprintf(name, sizeof name, "image.case%d.logits (own pixels, tol %.0e)", k, CLIP_OWN_PIXELS_TOL);
    if (ref_logits && K) {
      if (sd_clip_encode_image_rgb8(m, rgb->data, w, h, embed, &err) != 0) {
        verify_fail(v, "clip", name, err.msg);
      } else {
        sd_clip_logits(m, embed, text_embeds, D, K, logits);
        verify_row(v, "clip", name, logits, ref_logits, K, CLIP_OWN_PIXELS_TOL);
      }
    }
    m->preprocess.resize_rule = saved;
  }

  free(pixels);
}

void verify_clip(verify_ctx *v, const char *model_path, const char *vectors_path) {
  sd_error err;
  verify_ctx c = *v; /* the same counters and helpers over the CLIP vectors */
  sd_clip_model *m = NULL;
  if (sd_clip_model_load(model_path, &m, &err) != 0) {
    verify_fail(v, "clip", "load", err.msg);
    return;
  }
  if (sd_store_open(vectors_path, &c.vectors, &err) != 0) {
    verify_fail(v, "clip", "vectors", err.msg);
    sd_clip_model_free(m);
    return;
  }
  printf("clip: model %s (config: %s, vision %dpx/%d, %d layers, proj %d; tokenizer %s), vectors %s\n", m->path,
         m->config_source, m->vision.cfg.image_size, m->vision.cfg.patch_size, m->vision.cfg.layers, m->projection_dim,
         m->tokenizer ? m->tokenizer_dir : "none", vectors_path);
  float *text_embeds = calloc(64 * (size_t)m->projection_dim, sizeof(float)); /* [K <= 64, proj] */
  int K = 0;
  text_rows(&c, m, text_embeds, &K);
  if (K > 64)
    K = 0;
  for (int k = 0;; k++) {
    if (!verify_tensor(&c, "clip.image.case%d.pixel_values", k))
      break;
    image_rows(&c, m, text_embeds, K, k);
  }
  free(text_embeds);
  sd_clip_model_free(m);
  sd_store_close(c.vectors);
  c.vectors = v->vectors;
  *v = c;
}
