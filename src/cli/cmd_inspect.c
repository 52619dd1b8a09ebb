/* sdprune inspect FILE|DIR: what a checkpoint holds — format, naming convention, parts, tensor and
 * dtype counts, parameter bytes, __metadata__ config, and the architecture figures readable from
 * shapes. Works on safetensors files, torch zips (.ckpt/.pt), diffusers folders (model_index.json)
 * and plain folders of checkpoint files. It only reads names and shapes; it does not check that a
 * checkpoint is complete or loadable by the engine. Output is "key: value" lines, one block per file. */
#include <dirent.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/commands.h"
#include "model/model.h"
#include "io/tensor_store.h"

typedef enum { P_UNET, P_TEXT, P_VAE_DEC, P_VAE_ENC, P_EMA, P_SCHED, P_VISION, P_CLIP_HEAD, P_OTHER, P_COUNT } part;
static const char *const part_names[P_COUNT] = {"unet",         "text encoder", "vae decoder",     "vae encoder", "ema",
                                                "schedule buffers", "clip vision", "clip projections", "other"};

enum {
  N_ORIGINAL = 1,      /* model.diffusion_model.* / cond_stage_model.* / first_stage_model.* */
  N_ORIGINAL_BARE = 2, /* input_blocks.* without the model.diffusion_model. prefix */
  N_DIFFUSERS_UNET = 4,
  N_DIFFUSERS_VAE = 8,
  N_ORIGINAL_VAE = 16, /* encoder.down.* / decoder.up.* */
  N_HF_CLIP = 32,      /* text_model.* (possibly under cond_stage_model.transformer.) */
  N_OPENCLIP = 64,     /* cond_stage_model.model.* (SD 2.x) */
  N_HF_CLIP_VISION = 128,
  N_ORIG_UNET = 256, /* which original prefixes were seen */
  N_ORIG_TEXT = 512,
  N_ORIG_VAE = 1024,
  N_ORIG_EMA = 2048,
  N_HF_CLIP_IN_ORIG = 4096, /* cond_stage_model.transformer.text_model.* */
};

static int starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

static int is_schedule(const char *n) {
  static const char *const names[] = {"betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
                                      "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod",
                                      "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod", "posterior_variance",
                                      "posterior_log_variance_clipped", "posterior_mean_coef1", "posterior_mean_coef2",
                                      "logvar"};
  for (size_t i = 0; i < sizeof names / sizeof *names; i++)
    if (strcmp(n, names[i]) == 0) return 1;
  return 0;
}

static int is_diffusers_block(const char *n) {
  return strstr(n, "down_blocks.") || strstr(n, "up_blocks.") || strstr(n, "mid_block.");
}

/* Which part a tensor belongs to; sets naming flags. */
static part classify(const char *n, unsigned *naming) {
  if (starts(n, "model.diffusion_model.")) return *naming |= N_ORIGINAL | N_ORIG_UNET, P_UNET;
  if (starts(n, "model_ema.")) return *naming |= N_ORIGINAL | N_ORIG_EMA, P_EMA;
  if (starts(n, "cond_stage_model.model.")) return *naming |= N_ORIGINAL | N_ORIG_TEXT | N_OPENCLIP, P_TEXT;
  if (starts(n, "cond_stage_model.transformer.text_model."))
    return *naming |= N_ORIGINAL | N_ORIG_TEXT | N_HF_CLIP_IN_ORIG, P_TEXT;
  if (starts(n, "cond_stage_model.")) return *naming |= N_ORIGINAL | N_ORIG_TEXT, P_TEXT;
  if (starts(n, "first_stage_model.")) {
    *naming |= N_ORIGINAL | N_ORIG_VAE;
    n += strlen("first_stage_model.");
    return starts(n, "decoder.") || starts(n, "post_quant_conv.") ? P_VAE_DEC
           : starts(n, "encoder.") || starts(n, "quant_conv.")    ? P_VAE_ENC
                                                                  : P_OTHER;
  }
  if (is_schedule(n)) return P_SCHED;
  if (starts(n, "decoder.") || starts(n, "post_quant_conv.") || starts(n, "encoder.") || starts(n, "quant_conv.")) {
    if (starts(n, "decoder.") || starts(n, "encoder.")) *naming |= is_diffusers_block(n) ? N_DIFFUSERS_VAE : 0;
    if (starts(n, "decoder.up.") || starts(n, "encoder.down.") || starts(n, "decoder.mid.")) *naming |= N_ORIGINAL_VAE;
    return starts(n, "decoder.") || starts(n, "post_quant_conv.") ? P_VAE_DEC : P_VAE_ENC;
  }
  static const char *const unet_diffusers[] = {"conv_in.", "conv_out.", "conv_norm_out.", "time_embedding.",
                                               "down_blocks.", "up_blocks.", "mid_block.", "add_embedding.",
                                               "class_embedding."};
  for (size_t i = 0; i < sizeof unet_diffusers / sizeof *unet_diffusers; i++)
    if (starts(n, unet_diffusers[i])) return *naming |= N_DIFFUSERS_UNET, P_UNET;
  static const char *const unet_bare[] = {"input_blocks.", "middle_block.", "output_blocks.", "time_embed.", "out."};
  for (size_t i = 0; i < sizeof unet_bare / sizeof *unet_bare; i++)
    if (starts(n, unet_bare[i])) return *naming |= N_ORIGINAL_BARE, P_UNET;
  if (starts(n, "text_model.")) return *naming |= N_HF_CLIP, P_TEXT;
  if (starts(n, "vision_model.")) return *naming |= N_HF_CLIP_VISION, P_VISION;
  if (starts(n, "visual_projection.") || starts(n, "text_projection.") || strcmp(n, "logit_scale") == 0)
    return P_CLIP_HEAD;
  return P_OTHER;
}

static int ends(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* 1 + the largest N in "<marker>N." over the names of part p, or 0. */
static int max_index(const sd_tensor_store *s, const part *parts, part p, const char *marker) {
  int best = 0;
  for (int i = 0; i < s->count; i++) {
    if (parts[i] != p) continue;
    const char *m = strstr(s->tensors[i].name, marker);
    if (!m) continue;
    char *e;
    long v = strtol(m + strlen(marker), &e, 10);
    if (e != m + strlen(marker) && *e == '.' && v + 1 > best && v < 100000) best = (int)v + 1;
  }
  return best;
}

/* The first tensor of part p whose name ends with (or, with contains set, contains) `pat`. */
static const sd_tensor *find_part(const sd_tensor_store *s, const part *parts, part p, const char *pat, int contains,
                                  int *count) {
  const sd_tensor *first = NULL;
  if (count) *count = 0;
  for (int i = 0; i < s->count; i++) {
    if (parts[i] != p) continue;
    const char *n = s->tensors[i].name;
    if (contains ? strstr(n, pat) != NULL : ends(n, pat)) {
      if (!first) first = &s->tensors[i];
      if (count) (*count)++;
    }
  }
  return first;
}

static void appendf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void appendf(char *buf, size_t size, const char *fmt, ...) {
  size_t used = strlen(buf);
  if (used + 1 >= size) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf + used, size - used, fmt, ap);
  va_end(ap);
}

static void print_architecture(const sd_tensor_store *s, const part *parts, const char *indent) {
  char line[1024] = "";
  const sd_tensor *t;
  int n;
  /* UNet: conv_in / input_blocks.0.0 is [model_channels, in_channels, 3, 3] */
  t = find_part(s, parts, P_UNET, "input_blocks.0.0.weight", 0, NULL);
  if (!t) t = find_part(s, parts, P_UNET, "conv_in.weight", 0, NULL);
  if (t && t->ndim == 4) appendf(line, sizeof line, "unet model_channels %lld, in_channels %lld", (long long)t->shape[0], (long long)t->shape[1]);
  t = find_part(s, parts, P_UNET, "out.2.weight", 0, NULL);
  if (!t) t = find_part(s, parts, P_UNET, "conv_out.weight", 0, NULL);
  if (t && t->ndim == 4) appendf(line, sizeof line, ", out_channels %lld", (long long)t->shape[0]);
  int downs = 0;
  find_part(s, parts, P_UNET, ".0.op.weight", 0, &downs);
  if (!downs) find_part(s, parts, P_UNET, "downsamplers.0.conv.weight", 0, &downs);
  if (line[0]) appendf(line, sizeof line, ", levels %d", downs + 1);
  t = find_part(s, parts, P_UNET, "attn2.to_k.weight", 1, &n);
  if (t && t->ndim == 2) appendf(line, sizeof line, ", context_dim %lld, cross-attention blocks %d", (long long)t->shape[1], n);
  t = find_part(s, parts, P_UNET, "proj_in.weight", 1, NULL);
  if (t) appendf(line, sizeof line, ", proj_in %s (%d-D weight)", t->ndim == 2 ? "linear" : "conv", t->ndim);
  if (line[0]) printf("%sarchitecture: %s\n", indent, line);

  /* Text encoder: token embedding [vocab, width]; layers from the block indices */
  line[0] = 0;
  t = find_part(s, parts, P_TEXT, "token_embedding.weight", 0, NULL);
  if (t && t->ndim == 2) {
    int layers = max_index(s, parts, P_TEXT, "encoder.layers.");
    if (!layers) layers = max_index(s, parts, P_TEXT, "transformer.resblocks.");
    appendf(line, sizeof line, "text width %lld, layers %d, vocab %lld", (long long)t->shape[1], layers, (long long)t->shape[0]);
    const sd_tensor *fc = find_part(s, parts, P_TEXT, "mlp.fc1.weight", 0, NULL);
    if (!fc) fc = find_part(s, parts, P_TEXT, "mlp.c_fc.weight", 0, NULL);
    if (fc && fc->ndim == 2) appendf(line, sizeof line, ", mlp %lld", (long long)fc->shape[0]);
    const sd_tensor *pos = find_part(s, parts, P_TEXT, "position_embedding.weight", 0, NULL);
    if (!pos) pos = find_part(s, parts, P_TEXT, "positional_embedding", 0, NULL);
    if (pos && pos->ndim == 2) appendf(line, sizeof line, ", positions %lld", (long long)pos->shape[0]);
    printf("%sarchitecture: %s\n", indent, line);
  }

  /* VAE decoder: decoder.conv_in [top channels, z, 3, 3], decoder.conv_out [3, ch, 3, 3] */
  line[0] = 0;
  t = find_part(s, parts, P_VAE_DEC, "decoder.conv_in.weight", 0, NULL);
  if (t && t->ndim == 4) {
    appendf(line, sizeof line, "vae z_channels %lld", (long long)t->shape[1]);
    const sd_tensor *o = find_part(s, parts, P_VAE_DEC, "decoder.conv_out.weight", 0, NULL);
    if (o && o->ndim == 4) appendf(line, sizeof line, ", ch %lld, out_channels %lld", (long long)o->shape[1], (long long)o->shape[0]);
    int levels = max_index(s, parts, P_VAE_DEC, "decoder.up.");
    if (!levels) levels = max_index(s, parts, P_VAE_DEC, "decoder.up_blocks.");
    appendf(line, sizeof line, ", levels %d", levels);
    printf("%sarchitecture: %s\n", indent, line);
  }

  /* CLIP vision tower: patch embedding [width, 3, patch, patch] */
  t = find_part(s, parts, P_VISION, "patch_embedding.weight", 0, NULL);
  if (t && t->ndim == 4)
    printf("%sarchitecture: vision width %lld, patch %lld, layers %d\n", indent, (long long)t->shape[0],
           (long long)t->shape[2], max_index(s, parts, P_VISION, "encoder.layers."));
}

static void print_naming(unsigned naming, const char *indent) {
  char line[1024] = "";
  if (naming & N_ORIGINAL) {
    appendf(line, sizeof line, "; original single-file (");
    const char *sep = "";
    if (naming & N_ORIG_UNET) appendf(line, sizeof line, "%smodel.diffusion_model.*", sep), sep = ", ";
    if (naming & N_ORIG_TEXT) appendf(line, sizeof line, "%scond_stage_model.*", sep), sep = ", ";
    if (naming & N_ORIG_VAE) appendf(line, sizeof line, "%sfirst_stage_model.*", sep), sep = ", ";
    if (naming & N_ORIG_EMA) appendf(line, sizeof line, "%smodel_ema.*", sep);
    appendf(line, sizeof line, ")");
  }
  if (naming & N_ORIGINAL_BARE) appendf(line, sizeof line, "; original UNet without prefix (input_blocks.*, middle_block.*)");
  if (naming & N_DIFFUSERS_UNET) appendf(line, sizeof line, "; diffusers UNet (down_blocks.*, conv_in.*)");
  if (naming & N_DIFFUSERS_VAE) appendf(line, sizeof line, "; diffusers VAE (decoder.up_blocks.*)");
  if (naming & N_ORIGINAL_VAE) appendf(line, sizeof line, "; original VAE (decoder.up.*, encoder.down.*)");
  if (naming & N_HF_CLIP_IN_ORIG)
    appendf(line, sizeof line, "; HF CLIPTextModel text encoder (cond_stage_model.transformer.text_model.*, SD 1.x)");
  if (naming & N_HF_CLIP) appendf(line, sizeof line, "; HF CLIPTextModel (text_model.*)");
  if (naming & N_OPENCLIP) appendf(line, sizeof line, "; OpenCLIP (cond_stage_model.model.*, SD 2.x)");
  if (naming & N_HF_CLIP_VISION) appendf(line, sizeof line, "; HF CLIP vision (vision_model.*)");
  printf("%snaming: %s\n", indent, line[0] ? line + 2 : "unrecognised (no Stable Diffusion or CLIP key pattern)");
}

/* Prints one checkpoint file's block; returns 0 or 1 after printing a one-line error. */
static int inspect_file(const char *path, const char *indent) {
  sd_error err = {{0}};
  sd_tensor_store *s = NULL;
  if (sd_store_open(path, &s, &err)) {
    fprintf(stderr, "sdprune inspect: %s\n", err.msg);
    return 1;
  }
  part *parts = malloc(sizeof *parts * (size_t)(s->count ? s->count : 1));
  if (!parts) {
    fprintf(stderr, "sdprune inspect: out of memory\n");
    sd_store_close(s);
    return 1;
  }
  unsigned naming = 0;
  int part_count[P_COUNT] = {0}, dtype_count[SD_DTYPE_BOOL + 1] = {0};
  size_t part_bytes[P_COUNT] = {0}, total = 0;
  for (int i = 0; i < s->count; i++) {
    const sd_tensor *t = &s->tensors[i];
    parts[i] = classify(t->name, &naming);
    part_count[parts[i]]++;
    part_bytes[parts[i]] += t->nbytes;
    if ((unsigned)t->dtype <= SD_DTYPE_BOOL) dtype_count[t->dtype]++;
    total += t->nbytes;
  }
  printf("%sfile: %s\n", indent, path);
  printf("%sformat: %s\n", indent, strcmp(s->format, "torch") == 0 ? "torch zip (torch.save)" : s->format);
  print_naming(naming, indent);
  printf("%stensors: %d\n", indent, s->count);
  printf("%sdtypes:", indent);
  for (int d = 0, first = 1; d <= SD_DTYPE_BOOL; d++)
    if (dtype_count[d]) printf("%s %s %d", first ? "" : ",", sd_dtype_name((sd_dtype)d), dtype_count[d]), first = 0;
  printf("\n%sparameter bytes: %zu (%.2f MiB)\n", indent, total, (double)total / (1024.0 * 1024.0));
  printf("%sparts:", indent);
  for (int p = 0, first = 1; p < P_COUNT; p++)
    if (part_count[p])
      printf("%s %s %d (%.2f MiB)", first ? "" : ",", part_names[p], part_count[p], (double)part_bytes[p] / 1048576.0), first = 0;
  printf("\n");
  print_architecture(s, parts, indent);
  if (s->metadata_json) {
    json_error_t jerr;
    json_t *md = json_loads(s->metadata_json, 0, &jerr);
    const char *key;
    json_t *v;
    if (json_is_object(md)) {
      printf("%s%s:", indent, strcmp(s->format, "torch") == 0 ? "other entries" : "metadata keys");
      int first = 1;
      json_object_foreach(md, key, v) {
        if (strcmp(s->format, "torch") == 0) {
          char *txt = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
          printf("%s %s=%s", first ? "" : ",", key, txt ? txt : "?");
          free(txt);
        } else {
          printf("%s %s", first ? "" : ",", key);
        }
        first = 0;
      }
      printf("\n");
      json_t *cfg = json_object_get(md, "config");
      if (json_is_string(cfg)) printf("%sconfig: %s\n", indent, json_string_value(cfg));
    }
    json_decref(md);
  }
  free(parts);
  sd_store_close(s);
  return 0;
}

static int is_checkpoint_name(const char *n) {
  return ends(n, ".safetensors") || ends(n, ".ckpt") || ends(n, ".pt") || ends(n, ".pth") || ends(n, ".bin");
}

static int compare_strings(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Inspects every checkpoint file directly inside dir (sorted); *found counts them. */
static int inspect_files_in(const char *dir, const char *indent, int *found) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  char *names[256];
  int n = 0, rc = 0;
  struct dirent *e;
  while ((e = readdir(d)) && n < 256)
    if (e->d_name[0] != '.' && is_checkpoint_name(e->d_name)) names[n++] = strdup(e->d_name);
  closedir(d);
  qsort(names, (size_t)n, sizeof *names, compare_strings);
  for (int i = 0; i < n; i++) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, names[i]);
    if (*found) printf("\n");
    rc |= inspect_file(path, indent);
    (*found)++;
    free(names[i]);
  }
  return rc;
}

static int inspect_diffusers(const char *dir, json_t *index) {
  const char *key;
  json_t *v;
  json_t *cls = json_object_get(index, "_class_name");
  printf("folder: %s\nformat: diffusers folder\npipeline: %s\n", dir, json_is_string(cls) ? json_string_value(cls) : "?");
  int rc = 0, found = 0;
  json_object_foreach(index, key, v) {
    if (key[0] == '_' || !json_is_array(v) || json_array_size(v) != 2) continue;
    json_t *lib = json_array_get(v, 0), *c = json_array_get(v, 1);
    if (!json_is_string(lib) || !json_is_string(c)) {
      printf("\npart %s: none\n", key);
      continue;
    }
    printf("\npart %s: %s.%s\n", key, json_string_value(lib), json_string_value(c));
    char sub[4096];
    snprintf(sub, sizeof sub, "%s/%s", dir, key);
    char cfg_path[4200];
    const char *cfg_names[] = {"config.json", "scheduler_config.json", "tokenizer_config.json"};
    for (int i = 0; i < 3; i++) {
      snprintf(cfg_path, sizeof cfg_path, "%s/%s", sub, cfg_names[i]);
      json_error_t jerr;
      json_t *cfg = json_load_file(cfg_path, 0, &jerr);
      if (!cfg) continue;
      json_object_del(cfg, "_diffusers_version");
      json_object_del(cfg, "_name_or_path");
      char *txt = json_dumps(cfg, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
      printf("  %s: %s\n", cfg_names[i], txt ? txt : "?");
      free(txt);
      json_decref(cfg);
    }
    int files = 0;
    rc |= inspect_files_in(sub, "  ", &files);
    found += files;
  }
  printf("\nweight files: %d\n", found);
  return rc;
}

static void usage(FILE *out) {
  fprintf(out, "usage: sdprune inspect FILE|DIR\n\n"
               "Lists what a checkpoint holds: format (safetensors, torch zip, diffusers folder), naming convention\n"
               "(original single-file, diffusers, HF CLIPTextModel, OpenCLIP), parts (unet, text encoder, vae\n"
               "decoder/encoder, ema, schedule buffers), tensor and dtype counts, parameter bytes, __metadata__\n"
               "config, and the architecture readable from shapes (model_channels, in_channels, context_dim,\n"
               "proj_in linear or conv, text width and layers, vae z_channels).\n"
               "DIR: a diffusers folder (model_index.json) is shown part by part; any other folder shows each\n"
               "*.safetensors/.ckpt/.pt/.pth/.bin file in it. Torch files are read without executing pickles.\n");
}

/* What the engine itself would run: its UNet configuration and where it came from (metadata, configs,
 * or shape inference with the SD heads convention), for files and folders that hold a UNet. */
static void print_engine_view(const char *path) {
  sd_model_options o = {.path = path};
  sd_model *m;
  sd_error err;
  if (sd_model_open(&o, &m, &err) != 0) return;
  char desc[512];
  sd_unet_config_describe(&m->unet_cfg, desc, sizeof desc);
  printf("engine: %s (from %s%s); predicts %s (%s); text encoder %s; vae %s\n", desc, m->unet_cfg_source,
         strcmp(m->unet_cfg_source, "inferred") == 0 ? ": heads are not in the shapes, pass --config if not SD's" : "",
         m->v_prediction ? "v" : "eps", m->prediction_source, m->text_view ? m->text_layout : "absent",
         m->vae_view ? "present" : "absent");
  sd_model_close(m);
}

int cmd_inspect(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    usage(stdout);
    return 0;
  }
  if (argc != 2 || argv[1][0] == '-') {
    fprintf(stderr, "sdprune inspect: expected one FILE or DIR argument (see sdprune inspect --help)\n");
    return 2;
  }
  const char *path = argv[1];
  struct stat st;
  if (stat(path, &st) != 0) {
    fprintf(stderr, "sdprune inspect: %s: no such file or directory\n", path);
    return 1;
  }
  if (!S_ISDIR(st.st_mode)) {
    int rc = inspect_file(path, "");
    if (rc == 0) print_engine_view(path);
    return rc;
  }
  char index_path[4096];
  snprintf(index_path, sizeof index_path, "%s/model_index.json", path);
  json_error_t jerr;
  json_t *index = json_load_file(index_path, 0, &jerr);
  if (index) {
    int rc = json_is_object(index) ? inspect_diffusers(path, index) : 1;
    if (rc == 0) print_engine_view(path);
    if (!json_is_object(index)) fprintf(stderr, "sdprune inspect: %s: not a JSON object\n", index_path);
    json_decref(index);
    return rc;
  }
  if (stat(index_path, &st) == 0) {
    fprintf(stderr, "sdprune inspect: %s: invalid JSON (%s, line %d)\n", index_path, jerr.text, jerr.line);
    return 1;
  }
  int found = 0, rc = inspect_files_in(path, "", &found);
  if (!found) {
    fprintf(stderr, "sdprune inspect: %s: no model_index.json and no checkpoint files (*.safetensors, *.ckpt, *.pt, *.pth, *.bin)\n", path);
    return 1;
  }
  return rc;
}
