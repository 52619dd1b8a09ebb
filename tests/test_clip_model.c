/* The CLIP detector against tiny-clip (reference/README.md "tiny-clip", computed by openai CLIP's
 * VisionTransformer and Transformer): text embeds from the file's ids and from our tokenizer, PIL-exact
 * preprocessing, image embeds and logits from the reference pixel values and from our own, both load
 * paths (folder, single file), configs, zero-shot probabilities, the CLIP score and the loader's errors.
 * Tolerances: rel-L2 1e-5 after the pixels (reference/README.md), pixel values mean-abs 1e-2. */
#include <stdint.h>
#include <unistd.h>

#include <jansson.h>

#include "eval/clip_model.h"
#include "io/safetensors.h"
#include "test_util.h"

#define D 16 /* tiny-clip projection_dim */
#define S 32 /* tiny-clip image_size */

static const float *f32(sd_tensor_store *v, const char *name) {
  sd_error err;
  sd_tensor *t = sd_store_find(v, name);
  return t ? sd_tensor_f32(t, &err) : NULL;
}

static void check_rel(const char *what, const float *got, const float *ref, long n, double tol) {
  double max_abs, rel = test_rel_l2(got, ref, n, &max_abs);
  printf("%-44s rel-L2 %.3g, max-abs %.3g\n", what, rel, max_abs);
  CHECK(rel <= tol, "%s: rel-L2 %.3g > %g", what, rel, tol);
}

static double mean_abs(const float *a, const float *b, long n) {
  double s = 0;
  for (long i = 0; i < n; i++)
    s += fabs((double)a[i] - b[i]);
  return s / n;
}

/* Everything the reference holds, through one loaded model; text embeds returned for the logits. */
static void check_reference(const char *what, sd_clip_model *m, sd_tensor_store *vec) {
  char name[128];
  sd_error err = {{0}};
  sd_tensor *ids_t = sd_store_find(vec, "clip.text.ids");
  const float *ref_text = f32(vec, "clip.text.embeds");
  CHECK(ids_t && ids_t->dtype == SD_DTYPE_I32 && sd_tensor_numel(ids_t) == 4 * 77 && ref_text, "clip.text tensors");
  if (!ids_t || !ref_text)
    return;
  const int32_t *ids = ids_t->data;
  float text[4][D], tok_text[D];
  json_t *md = json_loads(vec->metadata_json, 0, NULL);
  json_t *prompts = json_loads(json_string_value(json_object_get(md, "clip.text.prompts")), 0, NULL);
  CHECK(json_array_size(prompts) == 4, "%s: 4 prompts in the metadata", what);
  for (int k = 0; k < 4; k++) {
    int rc = sd_clip_encode_ids(m, ids + 77 * k, text[k], &err);
    CHECK(rc == 0, "%s: encode_ids: %s", what, err.msg);
    snprintf(name, sizeof name, "%s text%d (file ids)", what, k);
    check_rel(name, text[k], ref_text + D * k, D, 1e-5);
    /* the prompt through our tokenizer: the same ids, the same embed */
    const char *prompt = json_string_value(json_array_get(prompts, (size_t)k));
    int32_t got[77];
    rc = prompt ? sd_tokenizer_encode(m->tokenizer, prompt, got, NULL, &err) : -1;
    CHECK(rc == 0 && memcmp(got, ids + 77 * k, sizeof got) == 0, "%s: tokenizer ids of prompt %d differ", what, k);
    rc = prompt ? sd_clip_encode_text(m, prompt, tok_text, &err) : -1;
    CHECK(rc == 0, "%s: encode_text: %s", what, err.msg);
    snprintf(name, sizeof name, "%s text%d (tokenizer)", what, k);
    check_rel(name, tok_text, ref_text + D * k, D, 1e-5);
  }
  json_decref(prompts);
  json_decref(md);

  for (int c = 0; c < 2; c++) {
    snprintf(name, sizeof name, "clip.image.case%d.rgb8", c);
    sd_tensor *rgb = sd_store_find(vec, name);
    snprintf(name, sizeof name, "clip.image.case%d.pixel_values", c);
    const float *ref_pixels = f32(vec, name);
    snprintf(name, sizeof name, "clip.image.case%d.embeds", c);
    const float *ref_embed = f32(vec, name);
    snprintf(name, sizeof name, "clip.image.case%d.logits", c);
    const float *ref_logits = f32(vec, name);
    CHECK(rgb && rgb->dtype == SD_DTYPE_U8 && rgb->ndim == 3 && ref_pixels && ref_embed && ref_logits, "case%d tensors",
          c);
    if (!rgb || !ref_pixels || !ref_embed || !ref_logits)
      continue;
    const int h = (int)rgb->shape[0], w = (int)rgb->shape[1];
    static float pixels[3 * S * S];
    float embed[D], logits[4], probs[4];

    /* the reference resized the long side by round() (see eval/clip_preprocess.h) */
    m->preprocess.resize_rule = SD_CLIP_RESIZE_ROUND;
    int rc = sd_clip_preprocess_image(m, rgb->data, w, h, pixels, &err);
    CHECK(rc == 0, "preprocess: %s", err.msg);
    double mae = mean_abs(pixels, ref_pixels, 3 * S * S);
    snprintf(name, sizeof name, "%s case%d pixel_values (%dx%d)", what, c, w, h);
    printf("%-44s mean-abs %.3g\n", name, mae);
    CHECK(mae < 1e-2, "%s case%d: pixel_values mean-abs %.3g >= 1e-2", what, c, mae);
    CHECK(mae == 0, "%s case%d: PIL emulation not bit-exact (mean-abs %.3g)", what, c, mae);

    rc = sd_clip_encode_pixels(m, ref_pixels, embed, &err);
    CHECK(rc == 0, "encode_pixels: %s", err.msg);
    snprintf(name, sizeof name, "%s case%d embeds (ref pixels)", what, c);
    check_rel(name, embed, ref_embed, D, 1e-5);
    sd_clip_logits(m, embed, text[0], D, 4, logits);
    snprintf(name, sizeof name, "%s case%d logits (ref pixels)", what, c);
    check_rel(name, logits, ref_logits, 4, 1e-5);

    rc = sd_clip_encode_image_rgb8(m, rgb->data, w, h, embed, &err);
    CHECK(rc == 0, "encode_image_rgb8: %s", err.msg);
    sd_clip_logits(m, embed, text[0], D, 4, logits);
    snprintf(name, sizeof name, "%s case%d logits (own pixels)", what, c);
    check_rel(name, logits, ref_logits, 4, 1e-4);

    /* zero-shot: the softmax of the reference logits */
    sd_clip_zero_shot(m, embed, text[0], D, 4, probs);
    double mx = ref_logits[0], sum = 0, psum = 0;
    for (int j = 1; j < 4; j++)
      mx = ref_logits[j] > mx ? ref_logits[j] : mx;
    for (int j = 0; j < 4; j++)
      sum += exp(ref_logits[j] - mx);
    for (int j = 0; j < 4; j++) {
      CHECK_NEAR(probs[j], exp(ref_logits[j] - mx) / sum, 1e-5, "zero-shot probability");
      psum += probs[j];
    }
    CHECK_NEAR(psum, 1.0, 1e-6, "probabilities sum to 1");
    /* CLIP score: 100 · max(cos, 0) = 100 · max(logit / exp(logit_scale), 0) */
    for (int j = 0; j < 4; j++) {
      double cosv = ref_logits[j] / exp(m->logit_scale);
      CHECK_NEAR(sd_clip_score(embed, text[j], D), 100 * (cosv > 0 ? cosv : 0), 1e-3, "CLIP score");
    }

    /* transformers' rule makes 56×40 into 44×32 (one column fewer than the reference): a real difference */
    m->preprocess.resize_rule = SD_CLIP_RESIZE_TRUNCATE;
    rc = sd_clip_preprocess_image(m, rgb->data, w, h, pixels, &err);
    mae = mean_abs(pixels, ref_pixels, 3 * S * S);
    snprintf(name, sizeof name, "%s case%d pixel_values (transformers' size)", what, c);
    printf("%-44s mean-abs %.3g\n", name, mae);
    CHECK(rc == 0 && (w == h ? mae == 0 : mae > 1e-2), "case%d: the truncating rule should %s", c,
          w == h ? "agree on a square image" : "differ on a 56x40 image");
  }
}

/* Writes the tensors of src not starting with drop_prefix (or not named drop_name) to path. */
static int write_without(sd_tensor_store *src, const char *path, const char *drop_prefix, const char *drop_name) {
  sd_st_entry *e = calloc((size_t)src->count, sizeof *e);
  int n = 0;
  for (int i = 0; i < src->count; i++) {
    const sd_tensor *t = &src->tensors[i];
    if (drop_prefix && strncmp(t->name, drop_prefix, strlen(drop_prefix)) == 0)
      continue;
    if (drop_name && strcmp(t->name, drop_name) == 0)
      continue;
    e[n].name = t->name;
    e[n].dtype = t->dtype;
    e[n].ndim = t->ndim;
    memcpy(e[n].shape, t->shape, sizeof t->shape);
    e[n].data = t->data;
    n++;
  }
  sd_error err;
  int rc = sd_safetensors_write(path, e, n, src->metadata_json, &err);
  if (rc)
    fprintf(stderr, "write %s: %s\n", path, err.msg);
  free(e);
  return rc;
}

static void check_errors(const char *ref_file) {
  sd_tensor_store *src;
  sd_error err = {{0}};
  if (sd_store_open(ref_file, &src, &err) != 0) {
    CHECK(0, "open %s: %s", ref_file, err.msg);
    return;
  }
  char dir[] = "/tmp/sdprune-clip-XXXXXX", path[128];
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  sd_clip_model *m = NULL;

  snprintf(path, sizeof path, "%s/text-only.safetensors", dir);
  CHECK(write_without(src, path, "vision_model.", NULL) == 0, "write text-only");
  int rc = sd_clip_model_load(path, &m, &err);
  printf("text-only checkpoint: %s\n", err.msg);
  CHECK(rc != 0 && !m, "a checkpoint without a vision tower loads");
  CHECK(strstr(err.msg, path) && strstr(err.msg, "vision_model.") && !strchr(err.msg, '\n'),
        "error should be one line naming the file and 'vision_model.': %s", err.msg);
  unlink(path);

  snprintf(path, sizeof path, "%s/no-post-ln.safetensors", dir);
  CHECK(write_without(src, path, NULL, "vision_model.post_layernorm.weight") == 0, "write no-post-ln");
  rc = sd_clip_model_load(path, &m, &err);
  printf("missing tensor: %s\n", err.msg);
  CHECK(rc != 0 && strstr(err.msg, path) && strstr(err.msg, "vision_model.post_layernorm.weight"),
        "a missing vision tensor should be named: %s", err.msg);
  unlink(path);

  snprintf(path, sizeof path, "%s/no-scale.safetensors", dir);
  CHECK(write_without(src, path, NULL, "logit_scale") == 0, "write no-scale");
  rc = sd_clip_model_load(path, &m, &err);
  CHECK(rc != 0 && strstr(err.msg, "logit_scale"), "a missing logit_scale should be named: %s", err.msg);
  unlink(path);

  rc = sd_clip_model_load(dir, &m, &err); /* a folder without weights */
  CHECK(rc != 0 && strstr(err.msg, dir) && strstr(err.msg, "model.safetensors"), "empty folder: %s", err.msg);
  rmdir(dir);
  sd_store_close(src);
}

static void check_configs(void) {
  sd_clip_vision_config c;
  sd_error err = {{0}};
  /* CLIPVisionConfig defaults (ViT-B/32) for an empty CLIPConfig */
  CHECK(sd_clip_vision_config_from_json("{\"text_config\": {}}", &c, &err) == 0, "%s", err.msg);
  CHECK(c.image_size == 224 && c.patch_size == 32 && c.hidden == 768 && c.layers == 12 && c.heads == 12 &&
            c.intermediate == 3072 && c.act_quick_gelu && c.projection_dim == 512 && c.channels == 3,
        "CLIPVisionConfig defaults");
  /* openai/clip-vit-large-patch14: projection_dim at the top level of the CLIPConfig wins */
  const char *vitl = "{\"projection_dim\": 768, \"vision_config\": {\"hidden_size\": 1024, \"patch_size\": 14, "
                     "\"num_hidden_layers\": 24, \"num_attention_heads\": 16, \"intermediate_size\": 4096, "
                     "\"projection_dim\": 512, \"hidden_act\": \"quick_gelu\"}}";
  CHECK(sd_clip_vision_config_from_json(vitl, &c, &err) == 0, "%s", err.msg);
  CHECK(c.hidden == 1024 && c.patch_size == 14 && c.layers == 24 && c.heads == 16 && c.projection_dim == 768 &&
            c.image_size == 224,
        "ViT-L/14 config");
  /* a CLIPVisionConfig itself (CLIPVisionModelWithProjection), gelu, as safetensors metadata */
  const char *md = "{\"config\": \"{\\\"hidden_size\\\": 64, \\\"num_attention_heads\\\": 4, \\\"projection_dim\\\": "
                   "8, \\\"hidden_act\\\": \\\"gelu\\\", \\\"image_size\\\": 16, \\\"patch_size\\\": 4}\"}";
  CHECK(sd_clip_vision_config_from_json(md, &c, &err) == 0, "%s", err.msg);
  CHECK(c.hidden == 64 && c.heads == 4 && c.projection_dim == 8 && !c.act_quick_gelu && c.image_size == 16,
        "vision config in metadata");
  CHECK(sd_clip_vision_config_from_json("{\"vision_config\": {\"hidden_act\": \"relu\"}}", &c, &err) != 0 &&
            strstr(err.msg, "relu"),
        "unsupported activation: %s", err.msg);
  CHECK(sd_clip_vision_config_from_json("{\"vision_config\": {\"hidden_size\": 100, \"num_attention_heads\": 3}}", &c,
                                        &err) != 0,
        "hidden not a multiple of heads");

  /* resize sizes: transformers truncates, round() goes half to even */
  int w, h;
  sd_clip_resize_size(56, 40, 32, SD_CLIP_RESIZE_TRUNCATE, &w, &h);
  CHECK(w == 44 && h == 32, "truncate 56x40 -> %dx%d", w, h);
  sd_clip_resize_size(56, 40, 32, SD_CLIP_RESIZE_ROUND, &w, &h);
  CHECK(w == 45 && h == 32, "round 56x40 -> %dx%d", w, h);
  sd_clip_resize_size(2, 5, 3, SD_CLIP_RESIZE_ROUND, &w, &h); /* 7.5 -> 8 */
  CHECK(w == 3 && h == 8, "round half to even 7.5 -> %d", h);
  sd_clip_resize_size(2, 3, 3, SD_CLIP_RESIZE_ROUND, &w, &h); /* 4.5 -> 4 */
  CHECK(w == 3 && h == 4, "round half to even 4.5 -> %d", h);
  sd_clip_resize_size(512, 768, 224, SD_CLIP_RESIZE_TRUNCATE, &w, &h);
  CHECK(w == 224 && h == 336, "SD 512x768 -> %dx%d", w, h);
}

/* PIL 9.4 Image.resize(..., Image.BICUBIC) of the pattern (37x + 91y + 17c + 5xy) mod 256. */
static void check_pil_resize(void) {
  static const struct {
    int w, h, ow, oh;
    const char *hex;
  } cases[] = {
      {13, 9, 5, 4,
       "6475737486997c846d7f7387918588798a6e768b6b8d78888f8772839369697c7d898c719b6d7c9069786f7d7776879a7288768f796c76"
       "7287778b9f"},
      {9, 6, 9, 4,
       "1c2d3e43546f7485969aabbc5c6d808495a6abbc252945565a6b7c90a1b2bdce414c5d798495a652635e6a7b8c97a8c3cf4b5c68798a374"
       "8"
       "5976878296a7586c7d8eacbd2f435d6e8293a4b75364778899abbccd4051647e8f3b56677893a4bfda43546e7f90ab596a8596a7"},
      {7, 5, 16, 11,
       "000516000d1e0a1b2c1d2e3f2d3e4f3e4f604d5e6f5c6d7e7182938d9eafa5b6c8b7c8ebc5d6ebd8e986e7f80eefff000a17280e1f311e2"
       "f"
       "42314256435467556678687989798a9a8091a27e8fa08293a592a3c3a5b6cab8c97dc7d821cfe00e31415038495c4758755d6e917788a4"
       "91a2b4acbdccc1d2e0a7b8c95a6b7c2e3d4e3a4b6256677a6a7b667b8c4b8394486071846879897c8d938fa0a29cadb4a6b7c7c0d1e3db"
       "ecfab2c3d4435465010f210c1d2d2e3f504354695566805d6e899aabcba4b5b4c0d179c9da4c96a7575d6e7560718d8091a278899d4859"
       "783342644b5c756e7f908697ad98a9c7a0b1d0b2c3ecbdcec2e0f15ae2f30585960c1f303111224634455b4d5e6f6273847687988b9cad"
       "a0b1c2b8c9daccddeed4e5f6697a9a74858492a34b9eaf216b7c3435465b394a775f709081928aa7b866b0c256899a6965768574859e90"
       "a1b39aabbc1223361c2d3d33444a4d5e5f5b6c786a7b958293b79fb0d4bdceafe1f243d7e8057586151c2d3921325446576a5263742132"
       "412b3c504152755f7091839480a2b36b9cad7e8394a088998dacbd46afc020708133364755435471647588708192596a7b6374887c8daf"
       "99aabac0d170d6e71da2b31a45563f293a534a5b596778666e7f7e77889891a2b5acbdceb6c7d86f8091798a9f93a4c7b0c1ccdaeb6aed"
       "fe00a5b6002c3d1802133b223361495a826e7f9c91a2b4b1c2d1c8d9ead2e3f4"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const int w = cases[i].w, h = cases[i].h, ow = cases[i].ow, oh = cases[i].oh;
    uint8_t src[16 * 16 * 3], dst[16 * 16 * 3];
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        for (int c = 0; c < 3; c++)
          src[(y * w + x) * 3 + c] = (uint8_t)((x * 37 + y * 91 + c * 17 + x * y * 5) % 256);
    sd_error err;
    CHECK(sd_resize_bicubic_rgb8(src, w, h, dst, ow, oh, &err) == 0, "%s", err.msg);
    int diff = 0;
    for (int j = 0; j < ow * oh * 3; j++) {
      unsigned v;
      sscanf(cases[i].hex + 2 * j, "%2x", &v);
      diff += dst[j] != v;
    }
    CHECK(diff == 0, "PIL resize %dx%d -> %dx%d: %d bytes differ", w, h, ow, oh, diff);
  }
  /* crop offsets of a 47-wide image (no resize: its short side is the crop): margin 15 */
  static uint8_t img[32 * 47 * 3];
  for (int j = 0; j < 32 * 47; j++)
    img[3 * j] = img[3 * j + 1] = img[3 * j + 2] = (uint8_t)(j % 47);
  sd_clip_preprocess p;
  sd_clip_preprocess_defaults(&p, 32);
  static float px[3 * 32 * 32];
  sd_error err;
  CHECK(sd_clip_preprocess_rgb8(&p, img, 47, 32, px, &err) == 0, "%s", err.msg);
  CHECK_NEAR(px[0], (7 / 255.0f - p.mean[0]) / p.std[0], 1e-6, "HF crop: left = 15 // 2 = 7");
  p.crop_rule = SD_CLIP_CROP_TORCHVISION;
  CHECK(sd_clip_preprocess_rgb8(&p, img, 47, 32, px, &err) == 0, "%s", err.msg);
  CHECK_NEAR(px[0], (8 / 255.0f - p.mean[0]) / p.std[0], 1e-6, "torchvision crop: left = round(7.5) = 8");
}

int main(void) {
  check_configs();
  check_pil_resize();
  const char *ref = test_reference_dir();
  char dir[4096], file[4200], vectors[4200];
  snprintf(dir, sizeof dir, "%s/tiny-clip", ref);
  snprintf(file, sizeof file, "%s/model.safetensors", dir);
  snprintf(vectors, sizeof vectors, "%s/vectors.safetensors", dir);
  if (access(vectors, R_OK) != 0) {
    fprintf(stderr, "SKIP: %s not found\n", vectors);
    return getenv("CI") && strcmp(getenv("CI"), "true") == 0 ? 1 : 77;
  }
  sd_tensor_store *vec;
  sd_error err = {{0}};
  int rc = sd_store_open(vectors, &vec, &err);
  CHECK(rc == 0, "%s", err.msg);
  if (rc)
    return test_finish();
  const char *paths[2] = {dir, file}, *names[2] = {"folder", "file"};
  for (int i = 0; i < 2; i++) {
    sd_clip_model *m;
    rc = sd_clip_model_load(paths[i], &m, &err);
    CHECK(rc == 0, "load %s: %s", paths[i], err.msg);
    if (rc)
      continue;
    printf("%s: config from %s, tokenizer %s, logit_scale %.6f\n", names[i], m->config_source, m->tokenizer_dir,
           m->logit_scale);
    CHECK(m->projection_dim == D && m->vision.cfg.image_size == S && m->vision.cfg.patch_size == 8 &&
              m->vision.cfg.layers == 2 && m->vision.cfg.heads == 2 && m->text.cfg.hidden == 32 && m->tokenizer,
          "%s: tiny-clip configuration", names[i]);
    check_reference(names[i], m, vec);
    sd_clip_model_free(m);
  }
  check_errors(file);
  sd_store_close(vec);
  return test_finish();
}
