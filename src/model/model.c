/* Model loading: layouts, canonical views, overrides, configuration sources (see model.h). */
#include "core/files.h"
#include "model/model.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/ldm_yaml.h"
#include "io/names_text.h"
#include "io/names_unet.h"
#include "io/store_view.h"
#include "model/synth.h"

char *sd_read_text_file(const char *path, size_t max_bytes, sd_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    sd_fail(err, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  char *buf = sd_malloc(max_bytes + 1, err);
  if (!buf) {
    fclose(f);
    return NULL;
  }
  size_t n = fread(buf, 1, max_bytes + 1, f);
  int bad = ferror(f);
  fclose(f);
  if (bad || n > max_bytes) {
    free(buf);
    sd_fail(err, "%s: %s", path, bad ? "read error" : "file too large");
    return NULL;
  }
  buf[n] = 0;
  return buf;
}



static int has_prefix(const sd_tensor_store *s, const char *prefix) {
  size_t n = strlen(prefix);
  for (int i = 0; i < s->count; i++)
    if (strncmp(s->tensors[i].name, prefix, n) == 0) return 1;
  return 0;
}

static int open_file(sd_model *m, const char *path, sd_tensor_store **out, sd_error *err) {
  if (m->n_files == SD_MODEL_MAX_FILES) return sd_fail(err, "%s: too many checkpoint files", path);
  if (sd_store_open(path, out, err) != 0) return -1;
  m->files[m->n_files++] = *out;
  return 0;
}

static sd_tensor_store *new_view(const char *path, sd_error *err) { return sd_store_new(path, "view", err); }

/* Adds the UNet tensors of src, in whichever naming they come: original single file
 * (`model.diffusion_model.`), ldm without prefix, or diffusers. Returns the count added or -1. */
static int add_unet_tensors(sd_tensor_store *view, const sd_tensor_store *src, int skip_existing, sd_error *err) {
  if (has_prefix(src, "model.diffusion_model."))
    return sd_view_add(view, src, "model.diffusion_model.", NULL, NULL, skip_existing, err);
  if (has_prefix(src, "input_blocks.")) return sd_view_add(view, src, "", NULL, NULL, skip_existing, err);
  const char *prefix = has_prefix(src, "unet.down_blocks.") ? "unet." : "";
  if (has_prefix(src, prefix[0] ? "unet.down_blocks." : "down_blocks.")) {
    sd_unet_names names;
    sd_unet_names_scan(&names, src, prefix);
    return sd_view_add(view, src, prefix, sd_unet_name_from_diffusers, &names, skip_existing, err);
  }
  return 0;
}

/* The text encoder of src under HF names (any layout names_text.c knows), or NULL when src has none. */
static sd_tensor_store *open_text_view(sd_model *m, const sd_tensor_store *src, sd_error *err, int *failed) {
  sd_text_layout layout;
  if (sd_text_layout_detect(src, NULL) == SD_TEXT_LAYOUT_NONE) return NULL;
  sd_tensor_store *v = sd_text_view_open(src, &layout, err);
  if (!v) *failed = 1;
  if (layout == SD_TEXT_LAYOUT_OPENCLIP) m->text_layout = "openclip";
  return v;
}

/* Every key of the override must exist in the base part with the same shape, and vice versa. */
static int check_override(const sd_tensor_store *override_view, const sd_tensor_store *base_view, const char *what,
                          const char *path, sd_error *err) {
  char missing[700] = "", unexpected[700] = "";
  int n_missing = 0, n_unexpected = 0;
  for (int i = 0; i < base_view->count; i++) {
    const sd_tensor *b = &base_view->tensors[i];
    const sd_tensor *o = sd_store_find(override_view, b->name);
    if (!o) {
      if (n_missing++ < 6) snprintf(missing + strlen(missing), sizeof missing - strlen(missing), "%s%s", n_missing > 1 ? ", " : "", b->name);
      continue;
    }
    int same = o->ndim == b->ndim;
    for (int d = 0; same && d < b->ndim; d++) same = o->shape[d] == b->shape[d];
    if (!same) {
      char gs[96], ws[96];
      return sd_fail(err, "%s: %s tensor '%s' has shape %s, the base model has %s", path, what, b->name,
                     sd_shape_str(o->shape, o->ndim, gs, sizeof gs), sd_shape_str(b->shape, b->ndim, ws, sizeof ws));
    }
  }
  for (int i = 0; i < override_view->count; i++) {
    const sd_tensor *o = &override_view->tensors[i];
    if (!sd_store_find(base_view, o->name) && n_unexpected++ < 6)
      snprintf(unexpected + strlen(unexpected), sizeof unexpected - strlen(unexpected), "%s%s", n_unexpected > 1 ? ", " : "", o->name);
  }
  if (n_missing || n_unexpected)
    return sd_fail(err, "%s: %s override does not match the base model: %d missing key%s%s%s%s, %d unexpected key%s%s%s%s", path,
                   what, n_missing, n_missing == 1 ? "" : "s", n_missing ? " (" : "", missing, n_missing ? (n_missing > 6 ? ", ...)" : ")") : "",
                   n_unexpected, n_unexpected == 1 ? "" : "s", n_unexpected ? " (" : "", unexpected,
                   n_unexpected ? (n_unexpected > 6 ? ", ...)" : ")") : "");
  return 0;
}

/* Replaces a part's view by override (file) + base, after checking they match key for key. */
static int apply_override(sd_model *m, sd_tensor_store **part, const char *path, int is_unet, sd_error *err) {
  sd_tensor_store *src;
  if (open_file(m, path, &src, err) != 0) return -1;
  sd_tensor_store *ov;
  int n, failed = 0;
  if (is_unet) {
    if (!(ov = new_view(path, err))) return -1;
    n = add_unet_tensors(ov, src, 0, err);
  } else {
    ov = open_text_view(m, src, err, &failed);
    if (failed) return -1;
    if (!ov && !(ov = new_view(path, err))) return -1;
    n = ov->count;
  }
  if (n < 0) {
    sd_store_close(ov);
    return -1;
  }
  if (n == 0) {
    sd_store_close(ov);
    return sd_fail(err, "%s: no %s tensors found (expected %s)", path, is_unet ? "UNet" : "text encoder",
                   is_unet ? "model.diffusion_model.*, input_blocks.* or diffusers down_blocks.* keys"
                           : "text_model.* or cond_stage_model.* keys");
  }
  if (*part && check_override(ov, *part, is_unet ? "UNet" : "text encoder", path, err) != 0) {
    sd_store_close(ov);
    return -1;
  }
  sd_store_close(*part);
  *part = ov;
  return 0;
}

/* First existing file among candidates inside dir/sub. */
static int find_part_file(const char *dir, const char *sub, const char *const *names, char *out, size_t n) {
  for (int i = 0; names[i]; i++) {
    snprintf(out, n, "%s/%s/%s", dir, sub, names[i]);
    if (sd_is_file(out)) return 1;
  }
  return 0;
}

static char *read_optional(const char *dir, const char *rel, sd_error *err, int *failed) {
  char p[4200];
  snprintf(p, sizeof p, "%s/%s", dir, rel);
  if (!sd_is_file(p)) return NULL;
  char *t = sd_read_text_file(p, 1 << 20, err);
  if (!t) *failed = 1;
  return t;
}

static int open_diffusers(sd_model *m, const char *dir, sd_error *err) {
  static const char *const unet_names[] = {"diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.fp16.safetensors",
                                           "diffusion_pytorch_model.bin", NULL};
  static const char *const text_names[] = {"model.safetensors", "model.fp16.safetensors", "pytorch_model.bin", NULL};
  char path[4200];
  sd_tensor_store *src;
  if (!find_part_file(dir, "unet", unet_names, path, sizeof path))
    return sd_fail(err, "%s: diffusers folder without unet/diffusion_pytorch_model.safetensors", dir);
  if (open_file(m, path, &src, err) != 0) return -1;
  if (!(m->unet_view = new_view(path, err)) || add_unet_tensors(m->unet_view, src, 0, err) < 0) return -1;
  if (find_part_file(dir, "text_encoder", text_names, path, sizeof path)) {
    int failed = 0;
    if (open_file(m, path, &src, err) != 0) return -1;
    m->text_view = open_text_view(m, src, err, &failed);
    if (failed) return -1;
  }
  if (find_part_file(dir, "vae", unet_names, path, sizeof path)) {
    if (open_file(m, path, &src, err) != 0) return -1;
    /* diffusers VAE names are mapped by the VAE itself (names_vae.c); keep them as they are. */
    if (!(m->vae_view = sd_view_of_prefix(src, "", err))) return -1;
  }
  int failed = 0;
  m->text_config_json = read_optional(dir, "text_encoder/config.json", err, &failed);
  m->vae_config_json = failed ? NULL : read_optional(dir, "vae/config.json", err, &failed);
  m->scheduler_config_json = failed ? NULL : read_optional(dir, "scheduler/scheduler_config.json", err, &failed);
  char *unet_json = failed ? NULL : read_optional(dir, "unet/config.json", err, &failed);
  if (failed) return -1;
  if (unet_json) {
    int rc = sd_unet_config_from_json(unet_json, &m->unet_cfg, err);
    free(unet_json);
    if (rc != 0) return sd_fail_prefix(err, "%s/unet/config.json", dir);
    m->unet_cfg_source = "diffusers config";
  }
  snprintf(path, sizeof path, "%s/tokenizer", dir);
  if (sd_is_file(strcat(strcpy(path, dir), "/tokenizer/vocab.json"))) snprintf(m->tokenizer_dir, sizeof m->tokenizer_dir, "%s/tokenizer", dir);
  return 0;
}

/* The single-file `__metadata__["config"]` (our synth files and the reference carry one). */
static int read_metadata_config(sd_model *m, const sd_tensor_store *src, sd_error *err) {
  if (!src->metadata_json) return 0;
  json_t *md = json_loads(src->metadata_json, 0, NULL);
  json_t *cfg_str = json_object_get(md, "config");
  int rc = 0;
  if (json_is_string(cfg_str)) {
    json_t *cfg = json_loads(json_string_value(cfg_str), 0, NULL);
    json_t *unet = json_object_get(cfg, "unet"), *text = json_object_get(cfg, "text"), *vae = json_object_get(cfg, "vae");
    if (json_is_object(unet)) {
      char *u = json_dumps(unet, JSON_COMPACT);
      rc = sd_unet_config_from_json(u, &m->unet_cfg, err);
      free(u);
      if (rc != 0) sd_fail_prefix(err, "%s: __metadata__ config", src->path);
      else m->unet_cfg_source = "checkpoint metadata";
    }
    json_t *param = json_object_get(cfg, "parameterization");
    if (!json_is_string(param) && json_is_object(unet)) param = json_object_get(unet, "parameterization");
    if (json_is_string(param)) {
      m->v_prediction = strcmp(json_string_value(param), "v") == 0;
      m->prediction_source = "checkpoint metadata";
    }
    if (json_is_object(text)) m->text_config_json = json_dumps(text, JSON_COMPACT);
    if (json_is_object(vae)) m->vae_config_json = json_dumps(vae, JSON_COMPACT);
    json_decref(cfg);
  }
  json_decref(md);
  return rc;
}

static int open_single_file(sd_model *m, const char *path, sd_error *err) {
  sd_tensor_store *src;
  if (open_file(m, path, &src, err) != 0) return -1;
  if (!(m->unet_view = new_view(path, err)) || add_unet_tensors(m->unet_view, src, 0, err) < 0) return -1;
  if (m->unet_view->count == 0) {
    sd_store_close(m->unet_view);
    m->unet_view = NULL;
  }
  int failed = 0;
  m->text_view = open_text_view(m, src, err, &failed);
  if (failed) return -1;
  if (has_prefix(src, "first_stage_model.") && !(m->vae_view = sd_view_of_prefix(src, "first_stage_model.", err)))
    return -1;
  return read_metadata_config(m, src, err);
}

/* A 64-bit digest of every byte of a tensor: 4 lanes of multiply-xorshift over 8-byte words (about
 * memory speed), then the tail. Every byte counts: a pruned checkpoint differs from its base in a few
 * columns, and the weight cache is keyed by this hash. */
static uint64_t mix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  x *= 0xc4ceb9fe1a85ec53ull;
  return x ^ (x >> 33);
}

static uint64_t tensor_digest(const sd_tensor *t) {
  const unsigned char *d = t->data;
  size_t words = t->nbytes / 8, i = 0;
  uint64_t lane[4] = {1, 2, 3, 4};
  for (; i + 4 <= words; i += 4)
    for (int k = 0; k < 4; k++) {
      uint64_t w;
      memcpy(&w, d + 8 * (i + k), 8);
      lane[k] = (lane[k] ^ w) * 0x9e3779b97f4a7c15ull;
      lane[k] ^= lane[k] >> 29;
    }
  uint64_t h = mix64(lane[0]) ^ mix64(lane[1] + 1) ^ mix64(lane[2] + 2) ^ mix64(lane[3] + 3);
  for (size_t b = 8 * i; b < t->nbytes; b++) h = (h ^ d[b]) * 1099511628211ull;
  h ^= (uint64_t)t->dtype * 0x100000001b3ull;
  for (int k = 0; k < t->ndim; k++) h = mix64(h ^ (uint64_t)t->shape[k]);
  return mix64(h ^ t->nbytes);
}

/* Identifies the weights: names, dtypes, shapes and all bytes of each part's tensors, in view order.
 * Stable across runs; tensors are digested in parallel. */
static void compute_hash(sd_model *m) {
  uint64_t h = 1469598103934665603ull;
  sd_tensor_store *views[3] = {m->unet_view, m->text_view, m->vae_view};
  for (int v = 0; v < 3; v++) {
    if (!views[v]) continue;
    int n = views[v]->count;
    uint64_t *digest = calloc((size_t)n + 1, sizeof *digest);
    if (!digest) continue;
#pragma omp parallel for schedule(dynamic, 4)
    for (int i = 0; i < n; i++) digest[i] = tensor_digest(&views[v]->tensors[i]);
    for (int i = 0; i < n; i++) {
      for (const char *c = views[v]->tensors[i].name; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
      h = mix64(h ^ digest[i]);
    }
    free(digest);
  }
  snprintf(m->hash, sizeof m->hash, "%016llx", (unsigned long long)h);
}

/* --config: a diffusers folder (its unet/text_encoder/vae configs), a JSON file with "unet"/"text"/"vae"
 * objects (the layout of our checkpoints' __metadata__ config), a UNet config alone (ldm or diffusers), or
 * an ldm inference YAML (v1-inference.yaml ...; io/ldm_yaml.c turns it into the first JSON layout, with
 * "parameterization", which then decides eps or v unless --prediction is given). */
static int apply_config_override(sd_model *m, const char *path, sd_error *err) {
  if (sd_is_dir(path)) {
    int failed = 0;
    char *unet = read_optional(path, "unet/config.json", err, &failed);
    char *text = failed ? NULL : read_optional(path, "text_encoder/config.json", err, &failed);
    char *vae = failed ? NULL : read_optional(path, "vae/config.json", err, &failed);
    int rc = failed ? -1 : 0;
    if (rc == 0 && !unet && !text && !vae) rc = sd_fail(err, "%s: folder has no unet/, text_encoder/ or vae/ config.json", path);
    if (rc == 0 && unet && sd_unet_config_from_json(unet, &m->unet_cfg, err) != 0) rc = sd_fail_prefix(err, "%s/unet/config.json", path);
    if (rc == 0 && unet) m->unet_cfg_source = "--config";
    if (rc == 0 && text) {
      free(m->text_config_json);
      m->text_config_json = text;
      text = NULL;
    }
    if (rc == 0 && vae) {
      free(m->vae_config_json);
      m->vae_config_json = vae;
      vae = NULL;
    }
    char tok[4200];
    snprintf(tok, sizeof tok, "%s/tokenizer/vocab.json", path);
    if (rc == 0 && !m->tokenizer_dir[0] && sd_is_file(tok)) snprintf(m->tokenizer_dir, sizeof m->tokenizer_dir, "%s/tokenizer", path);
    free(unet);
    free(text);
    free(vae);
    return rc;
  }
  char *text = sd_ldm_yaml_is_yaml(path) ? sd_ldm_yaml_to_json(path, err) : sd_read_text_file(path, 1 << 20, err);
  if (!text) return -1;
  json_error_t jerr;
  json_t *root = json_loads(text, 0, &jerr);
  free(text);
  if (!root || !json_is_object(root)) {
    json_decref(root);
    return sd_fail(err, "%s: not a JSON object (%s, line %d)", path, jerr.text, jerr.line);
  }
  json_t *t = json_object_get(root, "text"), *v = json_object_get(root, "vae");
  json_t *param = json_object_get(root, "parameterization");
  if (json_is_string(param)) {
    m->v_prediction = strcmp(json_string_value(param), "v") == 0;
    m->prediction_source = "--config";
  }
  if (json_is_object(t)) {
    free(m->text_config_json);
    m->text_config_json = json_dumps(t, JSON_COMPACT);
  }
  if (json_is_object(v)) {
    free(m->vae_config_json);
    m->vae_config_json = json_dumps(v, JSON_COMPACT);
  }
  int rc = 0;
  if ((!json_is_object(t) && !json_is_object(v)) || json_is_object(json_object_get(root, "unet"))) {
    char *u = json_dumps(root, JSON_COMPACT);
    rc = sd_unet_config_from_json(u, &m->unet_cfg, err);
    free(u);
    if (rc != 0) sd_fail_prefix(err, "%s", path);
    else m->unet_cfg_source = "--config";
  }
  json_decref(root);
  return rc;
}

/* What the UNet predicts: --prediction, else the parameterization of --config, else the diffusers scheduler's
 * prediction_type, else the checkpoint metadata's ldm parameterization, else eps. Nothing in the weights
 * tells eps and v models apart. */
static int resolve_prediction(sd_model *m, const char *option, sd_error *err) {
  if (option) {
    if (strcmp(option, "eps") != 0 && strcmp(option, "v") != 0)
      return sd_fail(err, "--prediction must be 'eps' or 'v', got '%s'", option);
    m->v_prediction = strcmp(option, "v") == 0;
    m->prediction_source = "--prediction";
    return 0;
  }
  int from_config = m->prediction_source && strcmp(m->prediction_source, "--config") == 0;
  if (m->scheduler_config_json && !from_config) {
    json_t *root = json_loads(m->scheduler_config_json, 0, NULL);
    json_t *p = json_object_get(root, "prediction_type");
    if (json_is_string(p)) {
      const char *v = json_string_value(p);
      if (strcmp(v, "epsilon") != 0 && strcmp(v, "v_prediction") != 0) {
        json_decref(root);
        return sd_fail(err, "%s/scheduler: prediction_type '%s' is not supported (epsilon or v_prediction)", m->path, v);
      }
      m->v_prediction = strcmp(v, "v_prediction") == 0;
      m->prediction_source = "scheduler config";
    }
    json_decref(root);
  }
  if (!m->prediction_source) m->prediction_source = "default";
  return 0;
}

int sd_default_tokenizer_dir(char *out, size_t n) {
  const char *env = getenv("SDPRUNE_TOKENIZER");
  char probe[4200];
  if (env && *env) {
    snprintf(out, n, "%s", env);
    return 1;
  }
  snprintf(probe, sizeof probe, "%s/clip-tokenizer/vocab.json", SDPRUNE_DATA_DIR);
  if (sd_is_file(probe)) {
    snprintf(out, n, "%s/clip-tokenizer", SDPRUNE_DATA_DIR);
    return 1;
  }
  out[0] = 0;
  return 0;
}

/* `synth:ARCH[:SEED]` as a model path: the synthesised checkpoint (model/synth.h, f16), written once to
 * ${SDPRUNE_SYNTH_CACHE:-${TMPDIR:-/tmp}/sdprune-synth}/ARCH-seedN-f16.safetensors and opened from there.
 * The writer renames a complete temporary file into place and the bytes depend only on (ARCH, SEED), so
 * ranks racing to create it all end with the same file. */
static int synth_model_file(const char *spec, char *out, size_t n, sd_error *err) {
  char arch_name[64];
  uint64_t seed;
  sd_synth_arch arch;
  if (sd_synth_spec_parse(spec, arch_name, sizeof arch_name, &seed, sd_synth_arch_names(), err) != 0) return -1;
  if (strcmp(arch_name, "tiny-clip") == 0)
    return sd_fail(err,
                   "synth:%s: tiny-clip is a CLIP image-text model (for attack.detector.clip), "
                   "not a Stable Diffusion checkpoint; expected ARCH one of %s",
                   spec, sd_synth_arch_names());
  if (sd_synth_arch_get(arch_name, &arch, err) != 0) return -1;
  int have = sd_synth_cache_file(arch.kind, seed, out, n, err);
  if (have != 0) return have < 0 ? -1 : 0;
  return sd_synth_write(out, &arch, SD_DTYPE_F16, seed, NULL, NULL, NULL, NULL, err);
}

int sd_model_open(const sd_model_options *opt, sd_model **out, sd_error *err) {
  *out = NULL;
  char synth_path[4096];
  const char *path = opt->path;
  if (path && strncmp(path, "synth:", 6) == 0) {
    if (synth_model_file(path + 6, synth_path, sizeof synth_path, err) != 0) return -1;
    path = synth_path;
  }
  sd_model *m = sd_calloc(1, sizeof *m, err);
  if (!m) return -1;
  m->path = sd_strdup(path);
  m->text_layout = "hf";
  int rc;
  if (sd_is_dir(path)) {
    m->layout = "diffusers";
    rc = open_diffusers(m, path, err);
  } else {
    m->layout = "single-file";
    rc = open_single_file(m, path, err);
  }
  if (rc == 0 && opt->unet_path) rc = apply_override(m, &m->unet_view, opt->unet_path, 1, err);
  if (rc == 0 && opt->text_encoder_path) rc = apply_override(m, &m->text_view, opt->text_encoder_path, 0, err);
  if (rc == 0 && !m->unet_view) rc = sd_fail(err, "%s: no UNet tensors found (not a Stable Diffusion checkpoint?)", path);
  if (rc == 0 && opt->config_path) rc = apply_config_override(m, opt->config_path, err);
  if (rc == 0 && !m->unet_cfg_source) {
    rc = sd_unet_config_infer(m->unet_view, &m->unet_cfg, err);
    m->unet_cfg_source = "inferred";
  }
  if (rc == 0) rc = resolve_prediction(m, opt->prediction, err);
  if (rc == 0 && opt->tokenizer_dir) snprintf(m->tokenizer_dir, sizeof m->tokenizer_dir, "%s", opt->tokenizer_dir);
  if (rc == 0 && !m->tokenizer_dir[0]) sd_default_tokenizer_dir(m->tokenizer_dir, sizeof m->tokenizer_dir);
  if (rc != 0) {
    sd_model_close(m);
    return -1;
  }
  compute_hash(m);
  *out = m;
  return 0;
}

void sd_model_close(sd_model *m) {
  if (!m) return;
  sd_store_close(m->unet_view);
  sd_store_close(m->text_view);
  sd_store_close(m->vae_view);
  for (int i = 0; i < m->n_files; i++) sd_store_close(m->files[i]);
  free(m->text_config_json);
  free(m->vae_config_json);
  free(m->scheduler_config_json);
  free(m->path);
  free(m);
}
