/* ldm inference YAML -> the --config JSON (see ldm_yaml.h). The YAML is typed as ldm reads it (OmegaConf
 * over PyYAML, YAML 1.1): plain true/yes/on are booleans, 1.e-6 and 1e-5 are numbers, quoted scalars stay
 * strings. The text encoder is not in these files beyond its class: the two CLIPs of SD 1.x/2.x are built
 * in, an HF folder named by `version` is read, and `text_config` (an sdprune extension) gives it inline. */
#include "io/ldm_yaml.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <yaml.h>

#define LDM_MAX_BYTES (1 << 20)
#define LDM_MAX_DEPTH 64

/* ldm's FrozenCLIPEmbedder default (openai/clip-vit-large-patch14) and FrozenOpenCLIPEmbedder's ViT-H-14
 * text tower (open_clip's ViT-H-14.json: width 1024, 16 heads, 24 layers, nn.GELU). */
static const char CLIP_L14_TEXT[] =
    "{\"vocab_size\": 49408, \"max_position_embeddings\": 77, \"hidden_size\": 768, "
    "\"num_hidden_layers\": 12, \"num_attention_heads\": 12, \"intermediate_size\": 3072, "
    "\"hidden_act\": \"quick_gelu\", \"layer_norm_eps\": 1e-05}";
static const char OPENCLIP_H14_TEXT[] =
    "{\"vocab_size\": 49408, \"max_position_embeddings\": 77, \"hidden_size\": 1024, "
    "\"num_hidden_layers\": 24, \"num_attention_heads\": 16, \"intermediate_size\": 4096, "
    "\"hidden_act\": \"gelu\", \"layer_norm_eps\": 1e-05}";

typedef struct {
  json_t *node;
  int is_map;
  char *key; /* mapping: the key whose value comes next, or NULL */
  int key_line;
  char path[512];
} frame;

typedef struct {
  const char *where;
  sd_error *err;
  json_t *lines; /* path -> line of the key */
} reader;

static int fail_line(const reader *r, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail_line(const reader *r, int line, const char *fmt, ...) {
  char msg[800];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (line > 0)
    return sd_fail(r->err, "%s:%d: %s", r->where, line, msg);
  return sd_fail(r->err, "%s: %s", r->where, msg);
}

static int line_of(const reader *r, const char *path) {
  return (int)json_integer_value(json_object_get(r->lines, path));
}

/* A plain scalar typed as YAML 1.1 with OmegaConf's float rule; quoted scalars are strings. */
static json_t *typed_scalar(const char *v, size_t len, int plain) {
  if (!plain)
    return json_stringn(v, len);
  static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
  static const char *const trues[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON"};
  static const char *const falses[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF"};
  for (size_t i = 0; i < sizeof nulls / sizeof *nulls; i++)
    if (!strcmp(v, nulls[i]))
      return json_null();
  for (size_t i = 0; i < sizeof trues / sizeof *trues; i++)
    if (!strcmp(v, trues[i]))
      return json_true();
  for (size_t i = 0; i < sizeof falses / sizeof *falses; i++)
    if (!strcmp(v, falses[i]))
      return json_false();
  char digits[64];
  size_t n = 0;
  int has_digit = 0;
  for (const char *p = v; *p && n + 1 < sizeof digits; p++) {
    if (*p == '_')
      continue;
    has_digit |= *p >= '0' && *p <= '9';
    digits[n++] = *p;
  }
  digits[n] = 0;
  if (!has_digit || len >= sizeof digits)
    return json_stringn(v, len);
  char *end;
  errno = 0;
  if (strspn(digits, "+-0123456789") == n) {
    long long x = strtoll(digits, &end, 10);
    if (!*end && !errno)
      return json_integer(x);
  }
  if (!strncmp(digits, "0x", 2) && n > 2 && strspn(digits + 2, "0123456789abcdefABCDEF") == n - 2) {
    long long x = strtoll(digits, &end, 16);
    if (!*end && !errno)
      return json_integer(x);
  }
  if (strspn(digits, "+-0123456789.eE") == n) {
    errno = 0;
    double x = strtod(digits, &end);
    if (!*end && !errno)
      return json_real(x);
  }
  return json_stringn(v, len);
}

static int attach(reader *r, frame *stack, int depth, json_t **root, json_t *value, int line, char *child_path,
                  size_t cap) {
  if (depth == 0) {
    *root = value;
    snprintf(child_path, cap, "%s", "");
    return 0;
  }
  frame *f = &stack[depth - 1];
  if (f->is_map) {
    snprintf(child_path, cap, "%.300s%s%.200s", f->path, f->path[0] ? "." : "", f->key);
    json_object_set_new(f->node, f->key, value);
    free(f->key);
    f->key = NULL;
    line = f->key_line;
  } else {
    snprintf(child_path, cap, "%.300s[%zu]", f->path, json_array_size(f->node));
    json_array_append_new(f->node, value);
  }
  json_object_set_new(r->lines, child_path, json_integer(line));
  return 0;
}

/* The whole document as a jansson value, or NULL with err set. */
static json_t *read_tree(reader *r, const char *text, size_t len) {
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) {
    sd_fail(r->err, "%s: cannot initialise the YAML parser", r->where);
    return NULL;
  }
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  frame stack[LDM_MAX_DEPTH];
  int depth = 0, rc = 0, done = 0, docs = 0;
  json_t *root = NULL;
  while (!done && rc == 0) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      rc = fail_line(r, (int)parser.problem_mark.line + 1, "YAML syntax error: %s%s%s%s",
                     parser.problem ? parser.problem : "unknown", parser.context ? " (" : "",
                     parser.context ? parser.context : "", parser.context ? ")" : "");
      break;
    }
    int line = (int)ev.start_mark.line + 1;
    char path[512];
    switch (ev.type) {
    case YAML_STREAM_END_EVENT:
      done = 1;
      break;
    case YAML_DOCUMENT_START_EVENT:
      if (docs++)
        rc = fail_line(r, line, "only one YAML document is allowed");
      break;
    case YAML_ALIAS_EVENT:
      rc = fail_line(r, line, "aliases (*%.60s) are not supported", (char *)ev.data.alias.anchor);
      break;
    case YAML_SCALAR_EVENT: {
      const char *v = (const char *)ev.data.scalar.value;
      if (depth > 0 && stack[depth - 1].is_map && !stack[depth - 1].key) {
        if (json_object_get(stack[depth - 1].node, v)) {
          rc = fail_line(r, line, "key '%.300s%s%.100s' given twice", stack[depth - 1].path,
                         stack[depth - 1].path[0] ? "." : "", v);
        } else if (!(stack[depth - 1].key = strdup(v))) {
          rc = sd_fail(r->err, "out of memory");
        }
        stack[depth - 1].key_line = line;
        break;
      }
      json_t *value = typed_scalar(v, ev.data.scalar.length, ev.data.scalar.style == YAML_PLAIN_SCALAR_STYLE);
      if (!value)
        rc = sd_fail(r->err, "%s:%d: not valid UTF-8 text", r->where, line);
      else
        rc = attach(r, stack, depth, &root, value, line, path, sizeof path);
      break;
    }
    case YAML_MAPPING_START_EVENT:
    case YAML_SEQUENCE_START_EVENT: {
      if (depth > 0 && stack[depth - 1].is_map && !stack[depth - 1].key) {
        rc = fail_line(r, line, "%s: keys must be plain scalars",
                       stack[depth - 1].path[0] ? stack[depth - 1].path : "(top)");
        break;
      }
      if (depth == LDM_MAX_DEPTH) {
        rc = fail_line(r, line, "nested deeper than %d levels", LDM_MAX_DEPTH);
        break;
      }
      int is_map = ev.type == YAML_MAPPING_START_EVENT;
      json_t *node = is_map ? json_object() : json_array();
      if (!node || attach(r, stack, depth, &root, node, line, path, sizeof path) != 0) {
        rc = sd_fail(r->err, "out of memory");
        break;
      }
      frame *f = &stack[depth++];
      f->node = node;
      f->is_map = is_map;
      f->key = NULL;
      snprintf(f->path, sizeof f->path, "%.500s", path);
      break;
    }
    case YAML_MAPPING_END_EVENT:
    case YAML_SEQUENCE_END_EVENT:
      depth--;
      break;
    default:
      break;
    }
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  for (int i = 0; i < depth; i++)
    free(stack[i].key);
  if (rc != 0) {
    json_decref(root);
    return NULL;
  }
  if (!json_is_object(root)) {
    json_decref(root);
    sd_fail(r->err, "%s: not an ldm config: expected a mapping with a 'model' key", r->where);
    return NULL;
  }
  return root;
}

static json_t *get_path(json_t *root, const char *path) {
  char key[128];
  json_t *node = root;
  while (node && *path) {
    size_t n = strcspn(path, ".");
    snprintf(key, sizeof key, "%.*s", (int)n, path);
    node = json_object_get(node, key);
    path += n + (path[n] == '.');
  }
  return node;
}

static const char *last_component(const char *target) {
  const char *dot = strrchr(target, '.');
  return dot ? dot + 1 : target;
}

static json_t *load_text_config_file(const reader *r, const char *version, const char *base_dir, int line) {
  char path[4200];
  if (version[0] == '/' || !base_dir)
    snprintf(path, sizeof path, "%s", version);
  else
    snprintf(path, sizeof path, "%s/%s", base_dir, version);
  struct stat st;
  if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
    strncat(path, "/config.json", sizeof path - strlen(path) - 1);
  json_error_t jerr;
  json_t *cfg = json_load_file(path, 0, &jerr);
  if (!cfg) {
    fail_line(r, line,
              "model.params.cond_stage_config.params.version: '%.200s' is neither openai/clip-vit-large-patch14 nor a "
              "folder with an HF config.json (%.200s: %s)",
              version, path, jerr.text);
    return NULL;
  }
  json_t *text = json_object_get(cfg, "text_config"); /* a CLIPModel config holds the text tower inside */
  json_t *out = json_is_object(text) ? json_incref(text) : json_incref(cfg);
  json_decref(cfg);
  if (!json_object_get(out, "hidden_size")) {
    json_decref(out);
    fail_line(r, line, "model.params.cond_stage_config.params.version: %.200s is not a CLIPTextConfig (no hidden_size)",
              path);
    return NULL;
  }
  return out;
}

/* The text encoder's HF config from cond_stage_config, or NULL with err set. */
static json_t *text_config(const reader *r, json_t *cond, const char *base_dir) {
  const char *P = "model.params.cond_stage_config";
  json_t *target = json_object_get(cond, "target"), *params = json_object_get(cond, "params");
  json_t *inline_cfg = json_object_get(params, "text_config");
  if (json_is_object(inline_cfg))
    return json_deep_copy(inline_cfg);
  if (!json_is_string(target)) {
    fail_line(r, line_of(r, P), "%s.target: missing (the text encoder class)", P);
    return NULL;
  }
  const char *cls = last_component(json_string_value(target));
  int line = line_of(r, "model.params.cond_stage_config.target");
  if (!strcmp(cls, "FrozenOpenCLIPEmbedder")) {
    json_t *arch = json_object_get(params, "arch");
    if (arch && (!json_is_string(arch) || strcmp(json_string_value(arch), "ViT-H-14") != 0)) {
      fail_line(r, line_of(r, "model.params.cond_stage_config.params.arch"),
                "%s.params.arch: only ViT-H-14 (SD 2.x) is known, got '%.60s'", P,
                json_is_string(arch) ? json_string_value(arch) : "(not a string)");
      return NULL;
    }
    return json_loads(OPENCLIP_H14_TEXT, 0, NULL);
  }
  if (!strcmp(cls, "FrozenCLIPEmbedder")) {
    json_t *version = json_object_get(params, "version");
    if (!version || (json_is_string(version) && !strcmp(json_string_value(version), "openai/clip-vit-large-patch14")))
      return json_loads(CLIP_L14_TEXT, 0, NULL);
    int vline = line_of(r, "model.params.cond_stage_config.params.version");
    if (!json_is_string(version)) {
      fail_line(r, vline, "%s.params.version: expected a model name or folder", P);
      return NULL;
    }
    return load_text_config_file(r, json_string_value(version), base_dir, vline);
  }
  fail_line(r, line,
            "%s.target: '%.200s' is not a text encoder sdprune runs (FrozenCLIPEmbedder, FrozenOpenCLIPEmbedder)", P,
            json_string_value(target));
  return NULL;
}

static int convert(const reader *r, json_t *root, const char *base_dir, json_t *out) {
  json_t *model = json_object_get(root, "model"), *params = json_object_get(model, "params");
  if (!json_is_object(model))
    return fail_line(r, 0, "not an ldm config: no 'model' mapping");
  if (!json_is_object(params))
    return fail_line(r, line_of(r, "model"), "model.params: missing (not an ldm config?)");
  json_t *unet = get_path(params, "unet_config.params");
  if (!json_is_object(unet))
    return fail_line(r,
                     line_of(r, json_object_get(params, "unet_config") ? "model.params.unet_config" : "model.params"),
                     "model.params.unet_config.params: missing (the UNet's architecture)");
  json_object_set_new(out, "unet", json_deep_copy(unet));

  json_t *param = json_object_get(params, "parameterization");
  const char *p = json_is_string(param) ? json_string_value(param) : param ? "" : "eps";
  if (strcmp(p, "eps") != 0 && strcmp(p, "v") != 0)
    return fail_line(r, line_of(r, "model.params.parameterization"),
                     "model.params.parameterization: expected \"eps\" or \"v\", got %s%.60s%s",
                     json_is_string(param) ? "'" : "", json_is_string(param) ? p : "a non-string",
                     json_is_string(param) ? "'" : "");
  json_object_set_new(out, "parameterization", json_string(p));

  json_t *first = json_object_get(params, "first_stage_config");
  if (first) {
    json_t *dd = get_path(first, "params.ddconfig");
    if (!json_is_object(dd))
      return fail_line(r, line_of(r, "model.params.first_stage_config"),
                       "model.params.first_stage_config.params.ddconfig: missing (the VAE's architecture)");
    json_t *vae = json_deep_copy(dd);
    json_t *embed = get_path(first, "params.embed_dim"), *scale = json_object_get(params, "scale_factor");
    if (json_is_integer(embed))
      json_object_set(vae, "embed_dim", embed);
    if (json_is_number(scale))
      json_object_set(vae, "scale_factor", scale);
    json_object_set_new(out, "vae", vae);
  }
  json_t *cond = json_object_get(params, "cond_stage_config");
  if (cond) {
    if (!json_is_object(cond))
      return fail_line(r, line_of(r, "model.params.cond_stage_config"),
                       "model.params.cond_stage_config: expected a mapping with target and params");
    json_t *text = text_config(r, cond, base_dir);
    if (!text)
      return -1;
    json_object_set_new(out, "text", text);
  }
  return 0;
}

char *sd_ldm_yaml_text_to_json(const char *text, size_t len, const char *where, const char *base_dir, sd_error *err) {
  reader r = {.where = where, .err = err, .lines = json_object()};
  if (!r.lines) {
    sd_fail(err, "out of memory");
    return NULL;
  }
  json_t *root = read_tree(&r, text, len);
  json_t *out = root ? json_object() : NULL;
  char *json = NULL;
  if (out && convert(&r, root, base_dir, out) == 0 && !(json = json_dumps(out, JSON_COMPACT)))
    sd_fail(err, "%s: out of memory", where);
  json_decref(out);
  json_decref(root);
  json_decref(r.lines);
  return json;
}

int sd_ldm_yaml_is_yaml(const char *path) {
  size_t n = strlen(path);
  return (n > 5 && !strcasecmp(path + n - 5, ".yaml")) || (n > 4 && !strcasecmp(path + n - 4, ".yml"));
}

char *sd_ldm_yaml_to_json(const char *path, sd_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    sd_fail(err, "%s: cannot open: %s", path, strerror(errno));
    return NULL;
  }
  char *text = malloc(LDM_MAX_BYTES + 1);
  size_t n = text ? fread(text, 1, LDM_MAX_BYTES + 1, f) : 0;
  int bad = !text || ferror(f);
  fclose(f);
  if (bad || n > LDM_MAX_BYTES) {
    free(text);
    sd_fail(err, "%s: %s", path,
            !text ? "out of memory"
            : bad ? "read error (a folder?)"
                  : "larger than 1 MiB: not an ldm config");
    return NULL;
  }
  const char *slash = strrchr(path, '/');
  char dir[4200];
  snprintf(dir, sizeof dir, "%.*s", slash ? (slash == path ? 1 : (int)(slash - path)) : 0, path);
  char *json = sd_ldm_yaml_text_to_json(text, n, path, slash ? dir : NULL, err);
  free(text);
  return json;
}
