/* VAE decoder/encoder against the ldm reference vectors of tiny-sd1, from the single-file
 * checkpoint (BF16 weights) and from the diffusers folder through the name mapping; plus the
 * loader's error messages for missing and mis-shaped tensors. */
#include "io/names_vae.h"
#include "io/store_view.h"
#include "io/tensor_store.h"
#include "model/vae.h"
#include "model/model.h"
#include "test_util.h"

/* Whole small text file, or NULL. */
static char *read_text_file(const char *path) { return sd_read_text_file(path, 1 << 20, NULL); }

#include <jansson.h>

#define TOL_REL_L2 1e-5 /* reference README: float32 with another summation order stays below 1e-5 */

static sd_tensor_store *vectors;

static const float *vec(const char *name, int64_t *numel) {
  sd_error err = {{0}};
  sd_tensor *t = sd_store_find(vectors, name);
  CHECK(t != NULL, "vector %s present", name);
  if (!t) return NULL;
  if (numel) *numel = sd_tensor_numel(t);
  const float *v = sd_tensor_f32(t, &err);
  CHECK(v != NULL, "vector %s: %s", name, err.msg);
  return v;
}

static void compare(const char *what, const float *got, const float *want, int64_t n) {
  double max_abs = 0, rel = test_rel_l2(got, want, n, &max_abs);
  printf("%-40s rel-L2 %.3e  max-abs %.3e\n", what, rel, max_abs);
  CHECK(rel <= TOL_REL_L2, "%s: rel-L2 %.3e > %g (max abs %.3e)", what, rel, TOL_REL_L2, max_abs);
}

/* Decodes vae.case{k}.latent (and a batch of two copies of case 0) and encodes vae_enc.case0. */
static void run_cases(sd_vae *vae, const char *label) {
  char name[128], what[160];
  sd_error err = {{0}};
  for (int k = 0; k < 2; k++) {
    snprintf(name, sizeof name, "vae.case%d.latent", k);
    sd_tensor *lt = sd_store_find(vectors, name);
    int64_t n_img = 0;
    const float *latent = vec(name, NULL);
    snprintf(name, sizeof name, "vae.case%d.image", k);
    const float *want = vec(name, &n_img);
    if (!latent || !want || !lt) continue;
    int h = (int)lt->shape[2], w = (int)lt->shape[3];
    float *image = calloc((size_t)n_img, sizeof(float));
    int rc = sd_vae_decode(vae, latent, 1, h, w, image, &err);
    CHECK(rc == 0, "decode: %s", err.msg);
    snprintf(what, sizeof what, "%s decode case%d (%dx%d)", label, k, h, w);
    if (rc == 0) compare(what, image, want, n_img);
    free(image);
  }
  /* Batch of two: each image decoded independently. */
  int64_t n_lat = 0, n_img = 0;
  const float *latent = vec("vae.case0.latent", &n_lat), *want = vec("vae.case0.image", &n_img);
  if (latent && want) {
    float *batch = malloc(sizeof(float) * (size_t)(2 * n_lat)), *image = calloc((size_t)(2 * n_img), sizeof(float));
    memcpy(batch, latent, sizeof(float) * (size_t)n_lat);
    memcpy(batch + n_lat, latent, sizeof(float) * (size_t)n_lat);
    int rc = sd_vae_decode(vae, batch, 2, 8, 8, image, &err);
    CHECK(rc == 0, "decode batch: %s", err.msg);
    snprintf(what, sizeof what, "%s decode batch[1]", label);
    if (rc == 0) compare(what, image + n_img, want, n_img);
    free(batch);
    free(image);
  }
  sd_tensor *it = sd_store_find(vectors, "vae_enc.case0.image");
  int64_t n_mom = 0;
  const float *img = vec("vae_enc.case0.image", NULL), *moments = vec("vae_enc.case0.moments", &n_mom);
  if (it && img && moments) {
    int H = (int)it->shape[2], W = (int)it->shape[3], ho, wo;
    sd_vae_encoded_size(&vae->cfg, H, W, &ho, &wo);
    CHECK(2 * vae->cfg.embed_dim * ho * wo == n_mom, "encoded size %dx%d", ho, wo);
    float *out = calloc((size_t)n_mom, sizeof(float));
    int rc = sd_vae_encode(vae, img, 1, H, W, out, &err);
    CHECK(rc == 0, "encode: %s", err.msg);
    snprintf(what, sizeof what, "%s encode case0 (%dx%d)", label, H, W);
    if (rc == 0) compare(what, out, moments, n_mom);
    free(out);
  }
}


static void check_mapping(void) {
  int L = 4;
  char out[256];
  struct {
    const char *from, *to;
  } cases[] = {
      {"decoder.up_blocks.0.resnets.1.conv1.weight", "decoder.up.3.block.1.conv1.weight"},
      {"decoder.up_blocks.3.resnets.0.conv_shortcut.bias", "decoder.up.0.block.0.nin_shortcut.bias"},
      {"decoder.up_blocks.1.upsamplers.0.conv.weight", "decoder.up.2.upsample.conv.weight"},
      {"encoder.down_blocks.2.downsamplers.0.conv.bias", "encoder.down.2.downsample.conv.bias"},
      {"encoder.down_blocks.1.resnets.0.norm2.weight", "encoder.down.1.block.0.norm2.weight"},
      {"decoder.mid_block.attentions.0.to_q.weight", "decoder.mid.attn_1.q.weight"},
      {"decoder.mid_block.attentions.0.query.bias", "decoder.mid.attn_1.q.bias"},
      {"encoder.mid_block.attentions.0.to_out.0.weight", "encoder.mid.attn_1.proj_out.weight"},
      {"encoder.mid_block.attentions.0.proj_attn.weight", "encoder.mid.attn_1.proj_out.weight"},
      {"encoder.mid_block.attentions.0.group_norm.bias", "encoder.mid.attn_1.norm.bias"},
      {"decoder.mid_block.resnets.1.conv2.weight", "decoder.mid.block_2.conv2.weight"},
      {"decoder.conv_norm_out.weight", "decoder.norm_out.weight"},
      {"encoder.conv_in.bias", "encoder.conv_in.bias"},
      {"post_quant_conv.weight", "post_quant_conv.weight"},
      {"quant_conv.bias", "quant_conv.bias"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int ok = sd_vae_name_from_diffusers(&L, cases[i].from, out, sizeof out);
    CHECK(ok && strcmp(out, cases[i].to) == 0, "map %s: got %s, want %s", cases[i].from, ok ? out : "(unmapped)",
          cases[i].to);
  }
  const char *skipped[] = {"decoder.up_blocks.4.resnets.0.conv1.weight", "unet.conv_in.weight",
                           "decoder.mid_block.resnets.0.time_emb_proj.weight", "decoder.conv_in.weight.extra"};
  for (size_t i = 0; i < sizeof skipped / sizeof skipped[0]; i++)
    CHECK(!sd_vae_name_from_diffusers(&L, skipped[i], out, sizeof out), "not mapped: %s (got %s)", skipped[i], out);
}

/* A copy of view without the tensors named in drop; the tensor `resize` (if any) gets its first
 * dimension reduced by one. */
static sd_tensor_store *edited_view(sd_tensor_store *view, const char *const *drop, int n_drop, const char *resize) {
  sd_error err = {{0}};
  sd_tensor_store *v = sd_store_new(view->path, "view", &err);
  for (int i = 0; i < view->count; i++) {
    sd_tensor *t = &view->tensors[i];
    int skip = 0;
    for (int d = 0; d < n_drop; d++) skip |= strcmp(t->name, drop[d]) == 0;
    if (skip) continue;
    int64_t shape[SD_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    size_t nbytes = t->nbytes;
    if (resize && strcmp(t->name, resize) == 0) {
      nbytes = nbytes / (size_t)shape[0] * (size_t)(shape[0] - 1);
      shape[0]--;
    }
    sd_store_add(v, t->name, t->dtype, t->ndim, shape, t->data, nbytes, &err);
  }
  return v;
}

static void check_errors(sd_tensor_store *view, const sd_vae_config *cfg) {
  sd_vae vae;
  sd_error err = {{0}};
  const char *drop[] = {"decoder.mid.attn_1.q.weight", "decoder.up.1.upsample.conv.bias", "quant_conv.weight"};
  sd_tensor_store *v = edited_view(view, drop, 3, NULL);
  CHECK(sd_vae_init(&vae, cfg, v, &err) != 0, "init without 3 tensors fails");
  printf("missing: %s\n", err.msg);
  CHECK(strstr(err.msg, "3 missing tensors") != NULL, "count in message: %s", err.msg);
  for (int i = 0; i < 3; i++) CHECK(strstr(err.msg, drop[i]) != NULL, "message names %s: %s", drop[i], err.msg);
  CHECK(strstr(err.msg, view->path) != NULL, "message names the file: %s", err.msg);
  sd_store_close(v);

  v = edited_view(view, drop + 1, 1, "decoder.conv_in.weight");
  CHECK(sd_vae_init(&vae, cfg, v, &err) != 0, "init with a mis-shaped tensor fails");
  printf("shape: %s\n", err.msg);
  CHECK(strstr(err.msg, "decoder.up.1.upsample.conv.bias") != NULL, "missing one still listed: %s", err.msg);
  CHECK(strstr(err.msg, "'decoder.conv_in.weight' has shape [63, 4, 3, 3], expected [64, 4, 3, 3]") != NULL,
        "got/expected shapes: %s", err.msg);
  sd_store_close(v);

  sd_vae_config dec_only = *cfg;
  dec_only.has_encoder = 0;
  CHECK(sd_vae_init(&vae, &dec_only, view, &err) == 0, "decoder-only init: %s", err.msg);
  float img[3 * 16 * 16] = {0}, mom[8 * 8 * 8];
  CHECK(sd_vae_encode(&vae, img, 1, 16, 16, mom, &err) != 0 && strstr(err.msg, "no encoder"),
        "encode without encoder fails: %s", err.msg);
  sd_vae_free(&vae);
}

/* sd_vae_load as the model loader calls it: a view in either naming, config JSON or none. */
static void check_load(sd_tensor_store *ldm_view, sd_tensor_store *ckpt, sd_tensor_store *dstore, const char *dir_json,
                       const sd_vae_config *want) {
  sd_error err = {{0}};
  /* The checkpoint's __metadata__ config carries the ldm "vae" object. */
  json_t *md = json_loads(ckpt->metadata_json ? ckpt->metadata_json : "{}", 0, NULL);
  const char *cfg_text = json_string_value(json_object_get(md, "config"));
  json_t *cfg = json_loads(cfg_text ? cfg_text : "{}", 0, NULL);
  char *ldm_json = json_object_get(cfg, "vae") ? json_dumps(json_object_get(cfg, "vae"), JSON_COMPACT) : NULL;
  json_decref(cfg);
  json_decref(md);
  CHECK(ldm_json != NULL, "checkpoint metadata has a vae config");
  sd_vae_config c;
  if (ldm_json) {
    CHECK(sd_vae_config_from_json(ldm_json, &c, &err) == 0, "ldm json: %s", err.msg);
    CHECK(memcmp(&c, want, sizeof c) == 0, "ldm json config agrees with the inferred one");
  }
  const char *configs[3] = {ldm_json, NULL, dir_json};
  sd_tensor_store *dview = sd_view_of_prefix(dstore, "", &err); /* diffusers names, as model.c keeps them */
  sd_tensor_store *views[3] = {ldm_view, dview, dview};
  const char *labels[3] = {"load ldm+json", "load diffusers", "load diffusers+json"};
  int64_t n_img = 0;
  const float *latent = vec("vae.case1.latent", NULL), *want_img = vec("vae.case1.image", &n_img);
  for (int k = 0; k < 3 && latent && want_img && dview; k++) {
    sd_vae vae;
    int rc = sd_vae_load(&vae, views[k], configs[k], &err);
    CHECK(rc == 0, "%s: %s", labels[k], err.msg);
    if (rc != 0) continue;
    CHECK(vae.cfg.has_encoder && memcmp(&vae.cfg, want, sizeof *want) == 0, "%s: config", labels[k]);
    float *image = calloc((size_t)n_img, sizeof(float));
    rc = sd_vae_decode(&vae, latent, 1, 8, 12, image, &err);
    CHECK(rc == 0, "%s decode: %s", labels[k], err.msg);
    if (rc == 0) compare(labels[k], image, want_img, n_img);
    free(image);
    sd_vae_free(&vae);
  }
  sd_store_close(dview);
  free(ldm_json);
}

int main(void) {
  const char *ref = test_reference_dir();
  char path[1024];
  sd_error err = {{0}};
  snprintf(path, sizeof path, "%s/tiny-sd1/vectors.safetensors", ref);
  CHECK(sd_store_open(path, &vectors, &err) == 0, "open vectors: %s", err.msg);
  if (!vectors) return test_finish();
  check_mapping();

  /* Single-file checkpoint, ldm names. */
  sd_tensor_store *ckpt = NULL, *view = NULL;
  snprintf(path, sizeof path, "%s/tiny-sd1/model.safetensors", ref);
  CHECK(sd_store_open(path, &ckpt, &err) == 0, "open checkpoint: %s", err.msg);
  sd_vae_config cfg = {0};
  if (ckpt) view = sd_view_of_prefix(ckpt, "first_stage_model.", &err);
  CHECK(view != NULL, "view: %s", err.msg);
  if (view) {
    CHECK(sd_vae_config_infer(view, &cfg, &err) == 0, "infer: %s", err.msg);
    /* tiny-sd1/README.md: ch 32, ch_mult (1,2), 1 res block, z 4, scale 0.18215. */
    CHECK(cfg.ch == 32 && cfg.n_levels == 2 && cfg.ch_mult[0] == 1 && cfg.ch_mult[1] == 2 && cfg.num_res_blocks == 1 &&
              cfg.z_channels == 4 && cfg.embed_dim == 4 && cfg.out_ch == 3 && cfg.in_channels == 3 && cfg.has_encoder,
          "inferred config ch=%d L=%d mult=%d,%d nrb=%d z=%d e=%d", cfg.ch, cfg.n_levels, cfg.ch_mult[0],
          cfg.ch_mult[1], cfg.num_res_blocks, cfg.z_channels, cfg.embed_dim);
    CHECK_NEAR(cfg.scale_factor, 0.18215f, 0, "scale factor");
    sd_vae vae;
    int rc = sd_vae_init(&vae, &cfg, view, &err);
    CHECK(rc == 0, "init: %s", err.msg);
    if (rc == 0) {
      run_cases(&vae, "ldm");
      sd_vae_free(&vae);
    }
    check_errors(view, &cfg);
  }

  /* Diffusers folder: config.json + mapped names. */
  snprintf(path, sizeof path, "%s/tiny-sd1-diffusers/vae/config.json", ref);
  char *json = read_text_file(path);
  CHECK(json != NULL, "read %s", path);
  sd_vae_config dcfg = {0};
  if (json) {
    CHECK(sd_vae_config_from_diffusers_json(json, &dcfg, &err) == 0, "config.json: %s", err.msg);
    CHECK(memcmp(&dcfg, &cfg, sizeof cfg) == 0, "config.json agrees with the inferred config");
  }
  CHECK(sd_vae_config_from_diffusers_json("{\"block_out_channels\": [32, 48]}", &dcfg, &err) != 0 &&
            strstr(err.msg, "not a multiple"),
        "bad block_out_channels rejected: %s", err.msg);
  CHECK(sd_vae_config_from_diffusers_json("{\"up_block_types\": [\"AttnUpDecoderBlock2D\"]}", &dcfg, &err) != 0,
        "attention up blocks rejected: %s", err.msg);
  sd_vae_config_from_diffusers_json("{\"block_out_channels\": [32, 64], \"layers_per_block\": 1}", &dcfg, &err);
  snprintf(path, sizeof path, "%s/tiny-sd1-diffusers/vae/diffusion_pytorch_model.safetensors", ref);
  sd_tensor_store *dstore = NULL, *dview = NULL;
  CHECK(sd_store_open(path, &dstore, &err) == 0, "open diffusers vae: %s", err.msg);
  if (dstore) {
    dview = sd_store_new(path, "view", &err);
    int L = cfg.n_levels;
    int added = sd_view_add(dview, dstore, NULL, sd_vae_name_from_diffusers, &L, 0, &err);
    CHECK(added == dstore->count, "all %d diffusers tensors mapped (%d): %s", dstore->count, added, err.msg);
    /* Every mapped name exists in the ldm checkpoint with the same number of elements. */
    for (int i = 0; view && i < dview->count; i++) {
      sd_tensor *t = &dview->tensors[i], *o = sd_store_find(view, t->name);
      CHECK(o && sd_tensor_numel(o) == sd_tensor_numel(t), "mapped %s matches the ldm tensor", t->name);
    }
    sd_vae vae;
    int rc = sd_vae_init(&vae, &cfg, dview, &err);
    CHECK(rc == 0, "init diffusers: %s", err.msg);
    if (rc == 0) {
      run_cases(&vae, "diffusers");
      sd_vae_free(&vae);
    }
    sd_tensor_store *v2 = sd_vae_view_from_diffusers(dstore, L, &err);
    CHECK(v2 && v2->count == dview->count, "sd_vae_view_from_diffusers: %s", err.msg);
    sd_store_close(v2);
    if (view && ckpt) check_load(view, ckpt, dstore, json, &cfg);
  }
  free(json);
  sd_store_close(dview);
  sd_store_close(dstore);
  sd_store_close(view);
  sd_store_close(ckpt);
  sd_store_close(vectors);
  return test_finish();
}
