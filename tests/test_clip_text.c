/* CLIP text encoder against the reference hidden states of tiny-sd1 (openai CLIP model.py run on the
 * same F16-rounded weights): single-file SD1 layout, diffusers text_encoder/ layout, and a synthesised
 * SD 2.x OpenCLIP layout (stacked in_proj). Plus configs, clip skip and the loader's error messages. */
#include <stdint.h>

#include "io/names_text.h"
#include "io/store_view.h"
#include "model/clip_text.h"
#include "model/model.h"
#include "test_util.h"

/* Whole small text file, or NULL. */
static char *read_text_file(const char *path) { return sd_read_text_file(path, 1 << 20, NULL); }

#define T SD_CLIP_TEXT_TOKENS
#define MAXD 64


typedef struct {
  int32_t ids[3][T];
  const float *hidden[3]; /* [T, 32] */
} text_cases;

static int load_cases(sd_tensor_store *vec, text_cases *tc) {
  char name[64];
  for (int k = 0; k < 3; k++) {
    snprintf(name, sizeof name, "text.case%d.ids", k);
    sd_tensor *ids = sd_store_find(vec, name);
    snprintf(name, sizeof name, "text.case%d.hidden", k);
    sd_tensor *hid = sd_store_find(vec, name);
    if (!ids || ids->dtype != SD_DTYPE_I32 || sd_tensor_numel(ids) != T || !hid) return -1;
    memcpy(tc->ids[k], ids->data, sizeof tc->ids[k]);
    sd_error err;
    tc->hidden[k] = sd_tensor_f32(hid, &err);
    if (!tc->hidden[k] || sd_tensor_numel(hid) != (int64_t)T * 32) return -1;
  }
  return 0;
}

/* Runs the three cases through a model built from view + cfg and compares with the reference. */
static void check_reference(const char *what, sd_tensor_store *view, const sd_clip_text_config *cfg,
                            const text_cases *tc, float out[3][T * MAXD]) {
  sd_clip_text m;
  sd_error err = {{0}};
  int rc = sd_clip_text_init(&m, cfg, view, &err);
  CHECK(rc == 0, "%s: init: %s", what, err.msg);
  if (rc != 0) return;
  for (int k = 0; k < 3; k++) {
    rc = sd_clip_text_forward(&m, tc->ids[k], out[k], &err);
    CHECK(rc == 0, "%s: forward: %s", what, err.msg);
    double max_abs, rel = test_rel_l2(out[k], tc->hidden[k], (long)T * 32, &max_abs);
    printf("%-28s case%d: rel-L2 %.3g, max-abs %.3g\n", what, k, rel, max_abs);
    CHECK(rel <= 1e-5, "%s case%d: rel-L2 %.3g > 1e-5 (tolerance of reference/README.md)", what, k, rel);
  }
  sd_clip_text_free(&m);
}

/* Forward of case 0 into out; returns 0 on success. */
static int run_case0(sd_tensor_store *view, const sd_clip_text_config *cfg, const text_cases *tc, float *out) {
  sd_clip_text m;
  sd_error err = {{0}};
  if (sd_clip_text_init(&m, cfg, view, &err) != 0) {
    fprintf(stderr, "init: %s\n", err.msg);
    return -1;
  }
  int rc = sd_clip_text_forward(&m, tc->ids[0], out, &err);
  if (rc) fprintf(stderr, "forward: %s\n", err.msg);
  sd_clip_text_free(&m);
  return rc;
}

/* Rebuilds the HF-named tensors of hf as an SD 2.x single file would store them (open_clip names under
 * cond_stage_model.model., q/k/v stacked into in_proj), raw bytes in the source dtype or as F32. */
static sd_tensor_store *make_openclip(sd_tensor_store *hf, int layers, int stack_f32, sd_error *err) {
  sd_tensor_store *s = sd_store_new("synthetic-openclip", "memory", err);
  static const char *const P = "cond_stage_model.model.";
  static const struct {
    const char *hf, *oc;
  } whole[] = {
      {"text_model.embeddings.token_embedding.weight", "token_embedding.weight"},
      {"text_model.embeddings.position_embedding.weight", "positional_embedding"},
      {"text_model.final_layer_norm.weight", "ln_final.weight"},
      {"text_model.final_layer_norm.bias", "ln_final.bias"},
  };
  static const struct {
    const char *hf, *oc;
  } block[] = {
      {"layer_norm1", "ln_1"}, {"layer_norm2", "ln_2"},   {"self_attn.out_proj", "attn.out_proj"},
      {"mlp.fc1", "mlp.c_fc"}, {"mlp.fc2", "mlp.c_proj"},
  };
  char a[256], b[256];
  for (size_t i = 0; i < sizeof whole / sizeof whole[0]; i++) {
    sd_tensor *t = sd_store_find(hf, whole[i].hf);
    snprintf(b, sizeof b, "%s%s", P, whole[i].oc);
    if (!t || sd_store_add(s, b, t->dtype, t->ndim, t->shape, t->data, t->nbytes, err)) goto fail;
  }
  for (int l = 0; l < layers; l++) {
    for (size_t i = 0; i < sizeof block / sizeof block[0]; i++)
      for (int p = 0; p < 2; p++) {
        const char *param = p ? "bias" : "weight";
        snprintf(a, sizeof a, "text_model.encoder.layers.%d.%s.%s", l, block[i].hf, param);
        snprintf(b, sizeof b, "%stransformer.resblocks.%d.%s.%s", P, l, block[i].oc, param);
        sd_tensor *t = sd_store_find(hf, a);
        if (!t || sd_store_add(s, b, t->dtype, t->ndim, t->shape, t->data, t->nbytes, err)) goto fail;
      }
    for (int p = 0; p < 2; p++) {
      sd_tensor *qkv[3];
      static const char *const names[3] = {"q_proj", "k_proj", "v_proj"};
      for (int j = 0; j < 3; j++) {
        snprintf(a, sizeof a, "text_model.encoder.layers.%d.self_attn.%s.%s", l, names[j], p ? "bias" : "weight");
        if (!(qkv[j] = sd_store_find(hf, a))) goto fail;
      }
      size_t part = stack_f32 ? sizeof(float) * (size_t)sd_tensor_numel(qkv[0]) : qkv[0]->nbytes;
      unsigned char *buf = malloc(3 * part);
      if (!buf || sd_store_own(s, buf, err)) goto fail;
      for (int j = 0; j < 3; j++) {
        const void *src = stack_f32 ? (const void *)sd_tensor_f32(qkv[j], err) : qkv[j]->data;
        if (!src) goto fail;
        memcpy(buf + j * part, src, part);
      }
      int64_t shape[2] = {3 * qkv[0]->shape[0], p ? 0 : qkv[0]->shape[1]};
      snprintf(b, sizeof b, "%stransformer.resblocks.%d.attn.in_proj_%s", P, l, p ? "bias" : "weight");
      if (sd_store_add(s, b, stack_f32 ? SD_DTYPE_F32 : qkv[0]->dtype, p ? 1 : 2, shape, buf, 3 * part, err)) goto fail;
    }
  }
  /* Extras of an open_clip state dict that CLIPTextModel has no place for: must be ignored. */
  static float extra[32 * 32];
  int64_t proj_shape[2] = {32, 32};
  snprintf(b, sizeof b, "%stext_projection", P);
  if (sd_store_add(s, b, SD_DTYPE_F32, 2, proj_shape, extra, sizeof extra, err)) goto fail;
  snprintf(b, sizeof b, "%slogit_scale", P);
  if (sd_store_add(s, b, SD_DTYPE_F32, 0, NULL, extra, sizeof(float), err)) goto fail;
  return s;
fail:
  if (!err->msg[0]) sd_fail(err, "synthesising the OpenCLIP store failed");
  sd_store_close(s);
  return NULL;
}

/* Drops two tensors, to exercise the missing-tensor report. */
static int drop_two(void *ctx, const char *key, char *out, size_t n) {
  (void)ctx;
  if (strcmp(key, "text_model.encoder.layers.1.mlp.fc1.weight") == 0 ||
      strcmp(key, "text_model.final_layer_norm.bias") == 0)
    return 0;
  snprintf(out, n, "%s", key);
  return 1;
}

static void test_configs(const char *ref, sd_tensor_store *single) {
  char path[1024];
  snprintf(path, sizeof path, "%s/tiny-sd1-diffusers/text_encoder/config.json", ref);
  char *json = read_text_file(path);
  CHECK(json != NULL, "cannot read %s", path);
  sd_clip_text_config a, b;
  sd_error err = {{0}};
  CHECK(json && sd_clip_text_config_from_json(json, &a, &err) == 0, "config.json: %s", err.msg);
  CHECK(single->metadata_json && sd_clip_text_config_from_json(single->metadata_json, &b, &err) == 0, "metadata: %s",
        err.msg);
  CHECK(memcmp(&a, &b, sizeof a) == 0, "config.json and __metadata__ configs differ");
  CHECK(a.hidden == 32 && a.layers == 2 && a.heads == 2 && a.intermediate == 64 && a.act_quick_gelu == 1 &&
            a.max_positions == 77 && a.vocab_size == 49408 && a.skip_last_layers == 0,
        "config.json values (hidden %d layers %d heads %d intermediate %d)", a.hidden, a.layers, a.heads,
        a.intermediate);
  free(json);

  CHECK(sd_clip_text_config_from_json("{\"hidden_size\": 64, \"hidden_act\": \"relu\"}", &a, &err) != 0 &&
            strstr(err.msg, "relu") != NULL,
        "unsupported hidden_act: %s", err.msg);
  CHECK(sd_clip_text_config_from_json("{\"unet\": {}}", &a, &err) != 0 && strstr(err.msg, "hidden_size") != NULL,
        "no text config: %s", err.msg);
  CHECK(sd_clip_text_config_from_json("{\"hidden_size\": 1024, \"hidden_act\": \"gelu\", \"num_attention_heads\": 16}",
                                      &a, &err) == 0 &&
            a.hidden == 1024 && a.act_quick_gelu == 0 && a.layers == 12 && a.intermediate == 2048,
        "defaults for absent keys (CLIPTextConfig): %s", err.msg);

  /* Inference from shapes: tiny width 32 cannot give heads (head size 64 rule). */
  sd_tensor_store *view = sd_text_view_open(single, NULL, &err);
  CHECK(view && sd_clip_text_config_infer(view, &a, &err) != 0 && strstr(err.msg, "heads") != NULL,
        "infer on width 32 must ask for a config: %s", err.msg);
  CHECK(a.hidden == 32 && a.layers == 2 && a.intermediate == 64 && a.max_positions == 77 && a.vocab_size == 49408,
        "inferred shapes (hidden %d layers %d intermediate %d)", a.hidden, a.layers, a.intermediate);
  sd_store_close(view);

  /* A shape-only store of SD2 widths: 1024 -> 16 heads, gelu; 768 -> 12 heads, quick_gelu. */
  for (int w = 0; w < 2; w++) {
    int d = w ? 1024 : 768;
    sd_tensor_store *s = sd_store_new("shapes-only", "memory", &err);
    static float dummy[1];
    int64_t tok[2] = {49408, d}, pos[2] = {77, d}, fc1[2] = {4 * d, d}, q[2] = {d, d};
    sd_store_add(s, "text_model.embeddings.token_embedding.weight", SD_DTYPE_F32, 2, tok, dummy, 0, &err);
    sd_store_add(s, "text_model.embeddings.position_embedding.weight", SD_DTYPE_F32, 2, pos, dummy, 0, &err);
    sd_store_add(s, "text_model.encoder.layers.0.mlp.fc1.weight", SD_DTYPE_F32, 2, fc1, dummy, 0, &err);
    for (int l = 0; l < 23; l++) {
      char name[128];
      snprintf(name, sizeof name, "text_model.encoder.layers.%d.self_attn.q_proj.weight", l);
      sd_store_add(s, name, SD_DTYPE_F32, 2, q, dummy, 0, &err);
    }
    CHECK(sd_clip_text_config_infer(s, &a, &err) == 0, "infer width %d: %s", d, err.msg);
    CHECK(a.hidden == d && a.heads == d / 64 && a.layers == 23 && a.intermediate == 4 * d &&
              a.act_quick_gelu == (d != 1024),
          "inferred width %d: heads %d layers %d act_quick_gelu %d", d, a.heads, a.layers, a.act_quick_gelu);
    sd_store_close(s);
  }
}

int main(void) {
  const char *ref = test_reference_dir();
  char path[1024];
  sd_error err = {{0}};
  sd_tensor_store *single = NULL, *diffusers = NULL, *vec = NULL;
  snprintf(path, sizeof path, "%s/tiny-sd1/model.safetensors", ref);
  CHECK(sd_store_open(path, &single, &err) == 0, "%s", err.msg);
  snprintf(path, sizeof path, "%s/tiny-sd1-diffusers/text_encoder/model.safetensors", ref);
  CHECK(sd_store_open(path, &diffusers, &err) == 0, "%s", err.msg);
  snprintf(path, sizeof path, "%s/tiny-sd1/vectors.safetensors", ref);
  CHECK(sd_store_open(path, &vec, &err) == 0, "%s", err.msg);
  text_cases tc = {{{0}}, {0}};
  if (!single || !diffusers || !vec || load_cases(vec, &tc) != 0) {
    fprintf(stderr, "cannot load the reference files\n");
    return 1;
  }
  static float out_sd1[3][T * MAXD], out_hf[3][T * MAXD], out_oc[3][T * MAXD], out_oc32[3][T * MAXD];

  test_configs(ref, single);

  /* 1. single-file SD1: cond_stage_model.transformer.text_model.* (F16), config from __metadata__. */
  sd_clip_text_config cfg;
  sd_text_layout layout;
  sd_tensor_store *v_sd1 = sd_text_view_open(single, &layout, &err);
  CHECK(v_sd1 && layout == SD_TEXT_LAYOUT_SD1, "SD1 view: layout %s, %s", sd_text_layout_name(layout), err.msg);
  CHECK(sd_clip_text_config_from_json(single->metadata_json, &cfg, &err) == 0, "%s", err.msg);
  check_reference("single-file SD1", v_sd1, &cfg, &tc, out_sd1);

  /* 2. diffusers text_encoder/: text_model.* directly, its config.json. */
  snprintf(path, sizeof path, "%s/tiny-sd1-diffusers/text_encoder/config.json", ref);
  char *json = read_text_file(path);
  sd_clip_text_config cfg_hf;
  CHECK(json && sd_clip_text_config_from_json(json, &cfg_hf, &err) == 0, "%s", err.msg);
  free(json);
  sd_tensor_store *v_hf = sd_text_view_open(diffusers, &layout, &err);
  CHECK(v_hf && layout == SD_TEXT_LAYOUT_HF, "HF view: layout %s, %s", sd_text_layout_name(layout), err.msg);
  check_reference("diffusers text_encoder", v_hf, &cfg_hf, &tc, out_hf);

  /* 3. SD 2.x OpenCLIP layout synthesised from the same weights (stacked F16 in_proj, then F32):
   * with skip_last_layers 0 it must reproduce the reference; the views alias rows of in_proj. */
  sd_tensor_store *oc = make_openclip(v_sd1, cfg.layers, 0, &err);
  CHECK(oc != NULL, "%s", err.msg);
  sd_tensor_store *v_oc = oc ? sd_text_view_open(oc, &layout, &err) : NULL;
  CHECK(v_oc && layout == SD_TEXT_LAYOUT_OPENCLIP, "OpenCLIP view: layout %s, %s", sd_text_layout_name(layout),
        err.msg);
  if (v_oc) {
    CHECK(!sd_store_find(v_oc, "text_projection") && !sd_store_find(v_oc, "logit_scale"), "extras must not be mapped");
    sd_tensor *k1 = sd_store_find(v_oc, "text_model.encoder.layers.1.self_attn.k_proj.weight");
    sd_tensor *in1 = sd_store_find(oc, "cond_stage_model.model.transformer.resblocks.1.attn.in_proj_weight");
    CHECK(k1 && in1 && k1->data == (const unsigned char *)in1->data + 32 * 32 * 2 && k1->shape[0] == 32 &&
              k1->shape[1] == 32,
          "k_proj must alias rows [d, 2d) of in_proj (F16: byte offset d*d*2)");
    check_reference("OpenCLIP (F16 in_proj)", v_oc, &cfg, &tc, out_oc);
    CHECK(memcmp(out_oc, out_sd1, sizeof out_oc) == 0, "OpenCLIP and SD1 layouts must agree bit for bit");
  }
  sd_tensor_store *oc32 = make_openclip(v_sd1, cfg.layers, 1, &err);
  sd_tensor_store *v_oc32 = oc32 ? sd_text_view_open(oc32, &layout, &err) : NULL;
  CHECK(v_oc32 != NULL, "%s", err.msg);
  if (v_oc32) check_reference("OpenCLIP (F32 in_proj)", v_oc32, &cfg, &tc, out_oc32);

  /* 4. clip skip: 2 layers with skip 1 == a 1-layer config; same on the OpenCLIP view; differs from full. */
  static float skip_hf[T * MAXD], skip_oc[T * MAXD], one_layer[T * MAXD];
  sd_clip_text_config c_skip = cfg, c_one = cfg;
  c_skip.skip_last_layers = 1;
  c_one.layers = 1;
  CHECK(run_case0(v_sd1, &c_skip, &tc, skip_hf) == 0, "skip 1 on SD1 view");
  CHECK(run_case0(v_sd1, &c_one, &tc, one_layer) == 0, "1-layer config");
  CHECK(v_oc && run_case0(v_oc, &c_skip, &tc, skip_oc) == 0, "skip 1 on OpenCLIP view");
  CHECK(memcmp(skip_hf, one_layer, sizeof skip_hf) == 0, "skip_last_layers 1 must equal running 1 of 2 layers");
  CHECK(memcmp(skip_hf, skip_oc, sizeof skip_hf) == 0, "skip 1: OpenCLIP and SD1 views must agree");
  double skip_diff = test_rel_l2(skip_hf, tc.hidden[0], (long)T * 32, NULL);
  printf("penultimate vs last layer (case0): rel-L2 %.3g\n", skip_diff);
  CHECK(skip_diff > 1e-2, "the penultimate output must differ from the last (rel-L2 %.3g)", skip_diff);
  c_skip.skip_last_layers = 2;
  sd_clip_text m;
  CHECK(sd_clip_text_init(&m, &c_skip, v_sd1, &err) != 0 && strstr(err.msg, "skip_last_layers") != NULL,
        "skip = layers: %s", err.msg);

  /* 5. missing tensors: every one named in one error. */
  sd_tensor_store *v_missing = sd_store_new(single->path, "view", &err);
  CHECK(sd_view_add(v_missing, single, SD_TEXT_PREFIX_SD1, drop_two, NULL, 0, &err) > 0, "%s", err.msg);
  int rc = sd_clip_text_init(&m, &cfg, v_missing, &err);
  printf("missing: %s\n", err.msg);
  CHECK(rc != 0 && strstr(err.msg, "2 missing tensors") &&
            strstr(err.msg, "text_model.encoder.layers.1.mlp.fc1.weight") &&
            strstr(err.msg, "text_model.final_layer_norm.bias") && strstr(err.msg, "tiny-sd1/model.safetensors"),
        "missing-tensor error: %s", err.msg);
  sd_store_close(v_missing);

  /* 6. shape mismatch: a config that says intermediate 128 against fc1 [64, 32]. */
  sd_clip_text_config c_bad = cfg;
  c_bad.intermediate = 128;
  rc = sd_clip_text_init(&m, &c_bad, v_sd1, &err);
  printf("shape: %s\n", err.msg);
  CHECK(rc != 0 && strstr(err.msg, "mlp.fc1.weight") && strstr(err.msg, "[64, 32]") && strstr(err.msg, "[128, 32]"),
        "shape-mismatch error: %s", err.msg);

  /* 7. an id outside the vocabulary; a malformed in_proj. */
  CHECK(sd_clip_text_init(&m, &cfg, v_sd1, &err) == 0, "%s", err.msg);
  int32_t bad_ids[T];
  memcpy(bad_ids, tc.ids[0], sizeof bad_ids);
  bad_ids[5] = 49408;
  CHECK(sd_clip_text_forward(&m, bad_ids, out_sd1[0], &err) != 0 && strstr(err.msg, "49408"), "bad id: %s", err.msg);
  sd_clip_text_free(&m);
  sd_tensor_store *bad = sd_store_new("bad-openclip", "memory", &err);
  static uint16_t raw[8 * 4];
  int64_t sh[2] = {8, 4};
  sd_store_add(bad, "m.token_embedding.weight", SD_DTYPE_F16, 2, sh, raw, sizeof raw, &err);
  sd_store_add(bad, "m.transformer.resblocks.0.attn.in_proj_weight", SD_DTYPE_F16, 2, sh, raw, sizeof raw, &err);
  sd_tensor_store *v_bad = sd_store_new("bad-openclip", "view", &err);
  CHECK(sd_text_view_from_openclip(v_bad, bad, "m.", &err) < 0 && strstr(err.msg, "in_proj_weight") &&
            strstr(err.msg, "[8, 4]"),
        "in_proj [8, 4]: %s", err.msg);
  sd_store_close(v_bad);
  sd_store_close(bad);
  CHECK(sd_text_view_open(vec, &layout, &err) == NULL && layout == SD_TEXT_LAYOUT_NONE &&
            strstr(err.msg, "no text encoder"),
        "no text encoder: %s", err.msg);

  sd_store_close(v_oc32);
  sd_store_close(oc32);
  sd_store_close(v_oc);
  sd_store_close(oc);
  sd_store_close(v_hf);
  sd_store_close(v_sd1);
  sd_store_close(vec);
  sd_store_close(diffusers);
  sd_store_close(single);
  return test_finish();
}
