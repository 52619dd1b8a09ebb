/* Job files (see job.h; every key in README.md, "Job files"): the libcyaml schema of the YAML layout, loading
 * (yaml_check first for messages with lines, then libcyaml onto the structs below), command-line
 * overrides merged key by key, and the job's validation. Checks names, ranges and consistency, not whether
 * the files exist: that is for the stage that opens them. */
#include "io/job.h"

#include <cyaml/cyaml.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/yaml_check.h"

#define JOB_MAX_BYTES (1 << 20)
#define JOB_MAX_SETS 64
#define JOB_MAX_SEEDS 4096
#define JOB_MAX_OVERRIDES 256
#define JOB_MAX_STRING 4096

/* ---------------------------------------------------------------- the YAML layout */

/* One struct per section; every leaf is a pointer, NULL when the key is absent or null, so a layer (the
 * file, then each override) says exactly what it sets and layers merge field by field. */
typedef struct {
  char *path, *unet, *text_encoder, *config, *tokenizer, *prediction;
} y_model;
typedef struct {
  char *name, *role, *file, *template_str;
} y_set;
typedef struct {
  uint64_t *default_seed;
  uint64_t *list;
  unsigned list_count;
  uint64_t *range;
  unsigned range_count;
} y_seeds;
typedef struct {
  char *name;
  int *steps, *max_steps;
  double *guidance, *eta;
  char *size;
  int *limit;
} y_sampler;
typedef struct {
  char *hooks;
  bool *per_item;
} y_stats;
typedef struct {
  char *method;
  double *ratio;
  int *tau;
  double *select_ratio;
  char *branch, *scope;
  char **adversarial;
  unsigned adversarial_count;
  bool *with_wanda;
  double *wanda_ratio;
  int *wanda_tau;
  double *wanda_select_ratio;
} y_mask;
typedef struct {
  char *name, *path, *unet, *text_encoder, *mask;
} y_attack_model;
typedef struct {
  char *name, *file, *template_str, *counterpart;
} y_attack_set;
typedef struct {
  char *clip;
  char **concept;
  unsigned concept_count;
  char **neutral;
  unsigned neutral_count;
  double *threshold;
} y_detector;
typedef struct {
  y_attack_model *models;
  unsigned models_count;
  y_attack_set *sets;
  unsigned sets_count;
  y_detector *detector;
  char *reference, *reactivation_mask;
} y_attack;
typedef struct {
  char *description;
  y_model *model;
  y_set *sets;
  unsigned sets_count;
  y_seeds *seeds;
  y_sampler *sampler;
  y_stats *stats;
  y_mask *mask;
  y_attack *attack;
  char *out;
  int *threads;
} y_job;

#define OPT (CYAML_FLAG_OPTIONAL | CYAML_FLAG_POINTER_NULL_STR)
#define STR(key, type, member) CYAML_FIELD_STRING_PTR(key, OPT, type, member, 0, JOB_MAX_STRING)

static const cyaml_schema_field_t model_fields[] = {STR("path", y_model, path),
                                                    STR("unet", y_model, unet),
                                                    STR("text_encoder", y_model, text_encoder),
                                                    STR("config", y_model, config),
                                                    STR("tokenizer", y_model, tokenizer),
                                                    STR("prediction", y_model, prediction),
                                                    CYAML_FIELD_END};
static const cyaml_schema_field_t set_fields[] = {STR("name", y_set, name), STR("role", y_set, role),
                                                  STR("file", y_set, file), STR("template", y_set, template_str),
                                                  CYAML_FIELD_END};
static const cyaml_schema_value_t set_entry = {CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, y_set, set_fields)};
static const cyaml_schema_value_t seed_entry = {CYAML_VALUE_UINT(CYAML_FLAG_DEFAULT, uint64_t)};
static const cyaml_schema_value_t name_entry = {CYAML_VALUE_STRING(CYAML_FLAG_POINTER, char, 0, JOB_MAX_STRING)};
static const cyaml_schema_field_t seeds_fields[] = {
    CYAML_FIELD_UINT_PTR("default", OPT, y_seeds, default_seed),
    CYAML_FIELD_SEQUENCE("list", OPT, y_seeds, list, &seed_entry, 1, JOB_MAX_SEEDS),
    CYAML_FIELD_SEQUENCE("range", OPT, y_seeds, range, &seed_entry, 2, 2), CYAML_FIELD_END};
static const cyaml_schema_field_t sampler_fields[] = {STR("name", y_sampler, name),
                                                      CYAML_FIELD_INT_PTR("steps", OPT, y_sampler, steps),
                                                      CYAML_FIELD_INT_PTR("max_steps", OPT, y_sampler, max_steps),
                                                      CYAML_FIELD_FLOAT_PTR("guidance", OPT, y_sampler, guidance),
                                                      CYAML_FIELD_FLOAT_PTR("eta", OPT, y_sampler, eta),
                                                      STR("size", y_sampler, size),
                                                      CYAML_FIELD_INT_PTR("limit", OPT, y_sampler, limit),
                                                      CYAML_FIELD_END};
static const cyaml_schema_field_t stats_fields[] = {
    STR("hooks", y_stats, hooks), CYAML_FIELD_BOOL_PTR("per_item", OPT, y_stats, per_item), CYAML_FIELD_END};
static const cyaml_schema_field_t mask_fields[] = {
    STR("method", y_mask, method),
    CYAML_FIELD_FLOAT_PTR("ratio", OPT, y_mask, ratio),
    CYAML_FIELD_INT_PTR("tau", OPT, y_mask, tau),
    CYAML_FIELD_FLOAT_PTR("select_ratio", OPT, y_mask, select_ratio),
    STR("branch", y_mask, branch),
    STR("scope", y_mask, scope),
    CYAML_FIELD_SEQUENCE("adversarial", OPT, y_mask, adversarial, &name_entry, 0, JOB_MAX_SETS),
    CYAML_FIELD_BOOL_PTR("with_wanda", OPT, y_mask, with_wanda),
    CYAML_FIELD_FLOAT_PTR("wanda_ratio", OPT, y_mask, wanda_ratio),
    CYAML_FIELD_INT_PTR("wanda_tau", OPT, y_mask, wanda_tau),
    CYAML_FIELD_FLOAT_PTR("wanda_select_ratio", OPT, y_mask, wanda_select_ratio),
    CYAML_FIELD_END};
static const cyaml_schema_field_t attack_model_fields[] = {
    STR("name", y_attack_model, name),         STR("path", y_attack_model, path),
    STR("unet", y_attack_model, unet),         STR("text_encoder", y_attack_model, text_encoder),
    STR("mask", y_attack_model, mask),         CYAML_FIELD_END};
static const cyaml_schema_value_t attack_model_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, y_attack_model, attack_model_fields)};
static const cyaml_schema_field_t attack_set_fields[] = {
    STR("name", y_attack_set, name), STR("file", y_attack_set, file), STR("template", y_attack_set, template_str),
    STR("counterpart", y_attack_set, counterpart), CYAML_FIELD_END};
static const cyaml_schema_value_t attack_set_entry = {
    CYAML_VALUE_MAPPING(CYAML_FLAG_DEFAULT, y_attack_set, attack_set_fields)};
static const cyaml_schema_field_t detector_fields[] = {
    STR("clip", y_detector, clip),
    CYAML_FIELD_SEQUENCE("concept", OPT, y_detector, concept, &name_entry, 1, JOB_MAX_SETS),
    CYAML_FIELD_SEQUENCE("neutral", OPT, y_detector, neutral, &name_entry, 1, JOB_MAX_SETS),
    CYAML_FIELD_FLOAT_PTR("threshold", OPT, y_detector, threshold), CYAML_FIELD_END};
static const cyaml_schema_field_t attack_fields[] = {
    CYAML_FIELD_SEQUENCE("models", OPT, y_attack, models, &attack_model_entry, 1, JOB_MAX_SETS),
    CYAML_FIELD_SEQUENCE("sets", OPT, y_attack, sets, &attack_set_entry, 1, JOB_MAX_SETS),
    CYAML_FIELD_MAPPING_PTR("detector", OPT, y_attack, detector, detector_fields),
    STR("reference", y_attack, reference),
    STR("reactivation_mask", y_attack, reactivation_mask),
    CYAML_FIELD_END};
static const cyaml_schema_field_t job_fields[] = {
    STR("description", y_job, description),
    CYAML_FIELD_MAPPING_PTR("model", OPT, y_job, model, model_fields),
    CYAML_FIELD_SEQUENCE("sets", OPT, y_job, sets, &set_entry, 1, JOB_MAX_SETS),
    CYAML_FIELD_MAPPING_PTR("seeds", OPT, y_job, seeds, seeds_fields),
    CYAML_FIELD_MAPPING_PTR("sampler", OPT, y_job, sampler, sampler_fields),
    CYAML_FIELD_MAPPING_PTR("stats", OPT, y_job, stats, stats_fields),
    CYAML_FIELD_MAPPING_PTR("mask", OPT, y_job, mask, mask_fields),
    CYAML_FIELD_MAPPING_PTR("attack", OPT, y_job, attack, attack_fields),
    STR("out", y_job, out),
    CYAML_FIELD_INT_PTR("threads", OPT, y_job, threads),
    CYAML_FIELD_END};
static const cyaml_schema_value_t job_schema = {CYAML_VALUE_MAPPING(CYAML_FLAG_POINTER, y_job, job_fields)};

/* ---------------------------------------------------------------- loading one layer */

struct sd_job_source {
  char *text; /* the job file as read */
  size_t len;
  char *dir; /* its folder, or NULL when it is the current one */
  char **overrides;
  int n_overrides;
};

/* libcyaml allocates with the configuration's function; this one is malloc's, so our strings mix freely. */
static void *job_mem(void *ctx, void *ptr, size_t size) {
  (void)ctx;
  if (!size) {
    free(ptr);
    return NULL;
  }
  return realloc(ptr, size);
}

/* Keeps libcyaml's first error line (it never reaches stderr). */
static void job_log(cyaml_log_t level, void *ctx, const char *fmt, va_list args) {
  char *first = ctx;
  if (level < CYAML_LOG_ERROR || first[0])
    return;
  vsnprintf(first, 256, fmt, args);
  first[strcspn(first, "\n")] = 0;
}

static cyaml_config_t job_config(char *log_first) {
  log_first[0] = 0;
  return (cyaml_config_t){.log_fn = job_log,
                          .log_ctx = log_first,
                          .mem_fn = job_mem,
                          .log_level = CYAML_LOG_ERROR,
                          .flags = CYAML_CFG_NO_ALIAS};
}

static void free_layer(y_job *y) {
  char log_first[256];
  cyaml_config_t cfg = job_config(log_first);
  if (y)
    cyaml_free(&cfg, &job_schema, y, 0);
}

static int load_layer(const char *text, size_t len, const char *where, int with_lines, sd_yaml_lines *lines,
                      y_job **out, sd_error *err) {
  *out = NULL;
  if (sd_yaml_check(text, len, &job_schema, where, with_lines, lines, err) != 0)
    return -1;
  char log_first[256];
  cyaml_config_t cfg = job_config(log_first);
  cyaml_err_t e = cyaml_load_data((const uint8_t *)text, len, &cfg, &job_schema, (cyaml_data_t **)out, NULL);
  if (e != CYAML_OK)
    return sd_fail(err, "%s: %s%s%s", where, cyaml_strerror(e), log_first[0] ? ": " : "", log_first);
  if (!*out && !(*out = calloc(1, sizeof **out)))
    return sd_fail(err, "%s: out of memory", where);
  return 0;
}

static int join_dir(char **p, const char *dir) {
  /* absolute paths, and synth:ARCH (a model sdprune synthesises, no file), stay as written */
  if (!*p || !**p || **p == '/' || !dir || !strncmp(*p, "synth:", 6))
    return 0;
  size_t n = strlen(dir) + strlen(*p) + 2;
  char *joined = malloc(n);
  if (!joined)
    return -1;
  snprintf(joined, n, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", *p);
  free(*p);
  *p = joined;
  return 0;
}

/* The file's relative paths name files beside it (a job folder moves as a whole). */
static int resolve_paths(y_job *y, const char *dir, sd_error *err) {
  int rc = 0;
  if (y->model) {
    y_model *m = y->model;
    rc |= join_dir(&m->path, dir) | join_dir(&m->unet, dir) | join_dir(&m->text_encoder, dir);
    rc |= join_dir(&m->config, dir) | join_dir(&m->tokenizer, dir);
  }
  for (unsigned i = 0; i < y->sets_count; i++)
    rc |= join_dir(&y->sets[i].file, dir);
  if (y->attack) {
    y_attack *a = y->attack;
    for (unsigned i = 0; i < a->models_count; i++) {
      y_attack_model *m = &a->models[i];
      rc |= join_dir(&m->path, dir) | join_dir(&m->unet, dir) | join_dir(&m->text_encoder, dir);
      if (m->mask && strcmp(m->mask, "run"))
        rc |= join_dir(&m->mask, dir);
    }
    for (unsigned i = 0; i < a->sets_count; i++)
      rc |= join_dir(&a->sets[i].file, dir);
    if (a->detector)
      rc |= join_dir(&a->detector->clip, dir);
    rc |= join_dir(&a->reference, dir) | join_dir(&a->reactivation_mask, dir);
  }
  return rc ? sd_fail(err, "out of memory") : 0;
}

/* ---------------------------------------------------------------- merging layers */

static unsigned *count_of(const cyaml_schema_field_t *f, uint8_t *base) {
  return f->value.type == CYAML_SEQUENCE ? (unsigned *)(base + f->count_offset) : NULL;
}

static void clear_field(const cyaml_schema_field_t *f, uint8_t *base) {
  char log_first[256];
  cyaml_config_t cfg = job_config(log_first);
  void **slot = (void **)(base + f->data_offset);
  unsigned *count = count_of(f, base);
  cyaml_free(&cfg, &f->value, *slot, count ? *count : 0);
  *slot = NULL;
  if (count)
    *count = 0;
}

/* Moves every field src sets into dst: mappings merge key by key, leaves and lists replace. */
static void merge_fields(const cyaml_schema_field_t *f, uint8_t *dst, uint8_t *src) {
  for (; f->key; f++) {
    void **d = (void **)(dst + f->data_offset), **s = (void **)(src + f->data_offset);
    if (!*s)
      continue;
    if (f->value.type == CYAML_MAPPING && *d) {
      merge_fields(f->value.mapping.fields, *d, *s);
      continue;
    }
    clear_field(f, dst);
    *d = *s;
    *s = NULL;
    unsigned *dc = count_of(f, dst), *sc = count_of(f, src);
    if (dc) {
      *dc = *sc;
      *sc = 0;
    }
  }
}

static const cyaml_schema_field_t *find_field(const cyaml_schema_field_t *f, const char *key, size_t n) {
  for (; f->key; f++)
    if (strlen(f->key) == n && !strncmp(f->key, key, n))
      return f;
  return NULL;
}

/* The slot of key ("mask.ratio") in y, or NULL when a section above it is absent. */
static void **slot_of(y_job *y, const char *key, const cyaml_schema_field_t **field, uint8_t **owner) {
  const cyaml_schema_field_t *fields = job_fields;
  uint8_t *base = (uint8_t *)y;
  for (;;) {
    size_t n = strcspn(key, ".");
    const cyaml_schema_field_t *f = find_field(fields, key, n);
    if (!f)
      return NULL;
    if (!key[n]) {
      *field = f;
      *owner = base;
      return (void **)(base + f->data_offset);
    }
    base = *(uint8_t **)(base + f->data_offset);
    if (!base || f->value.type != CYAML_MAPPING)
      return NULL;
    fields = f->value.mapping.fields;
    key += n + 1;
  }
}

/* A key given as null (or as an empty list, which libcyaml leaves NULL too) returns to its default. */
static void clear_path(y_job *y, const char *key) {
  const cyaml_schema_field_t *f;
  uint8_t *owner;
  if (slot_of(y, key, &f, &owner))
    clear_field(f, owner);
}

/* "a.b=v" as the document "a:\n  b:\n    v" (every line of v indented below b, so it cannot reach
 * another key). Returns the key length, or -1. */
static int override_doc(const char *assignment, char **doc, sd_error *err) {
  const char *eq = strchr(assignment, '=');
  int klen = eq ? (int)(eq - assignment) : 0;
  int ok = klen > 0 && assignment[0] != '.' && assignment[klen - 1] != '.';
  for (int i = 0; ok && i < klen; i++) {
    char ch = assignment[i];
    ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
         (ch == '.' && assignment[i + 1] != '.');
  }
  if (!ok && klen > 0 && memchr(assignment, '[', (size_t)klen))
    return sd_fail(err, "override '%.100s': list entries cannot be set one by one: give the whole list (%.*s=[...])",
                   assignment, (int)strcspn(assignment, "["), assignment);
  if (!ok)
    return sd_fail(err, "override '%.100s': expected KEY=VALUE with KEY like sampler.steps (see the job-file keys)",
                   assignment);
  int depth = 1;
  for (int i = 0; i < klen; i++)
    depth += assignment[i] == '.';
  const char *value = eq + 1;
  size_t lines = 1;
  for (const char *p = value; *p; p++)
    lines += *p == '\n';
  size_t cap =
      (size_t)klen + (size_t)depth * (2 * (size_t)depth + 3) + strlen(value) + lines * (2 * (size_t)depth + 1) + 8;
  char *d = malloc(cap), *w = d;
  if (!d)
    return sd_fail(err, "out of memory");
  const char *k = assignment;
  for (int level = 0; level < depth; level++) {
    size_t n = strcspn(k, ".=");
    w += sprintf(w, "%*s%.*s:\n", 2 * level, "", (int)n, k);
    k += n + 1;
  }
  for (const char *p = value;;) {
    size_t n = strcspn(p, "\n");
    w += sprintf(w, "%*s%.*s\n", 2 * depth, "", (int)n, p);
    if (!p[n])
      break;
    p += n + 1;
  }
  *doc = d;
  return klen;
}

static int apply_override(y_job *acc, const char *assignment, sd_error *err) {
  char *doc = NULL;
  int klen = override_doc(assignment, &doc, err);
  if (klen < 0)
    return -1;
  char where[200];
  snprintf(where, sizeof where, "override '%.160s%s'", assignment, strlen(assignment) > 160 ? "..." : "");
  y_job *o = NULL;
  sd_yaml_lines given = {0};
  int rc = load_layer(doc, strlen(doc), where, 0, &given, &o, err);
  free(doc);
  if (rc != 0) {
    sd_yaml_lines_free(&given);
    return -1;
  }
  /* Keys the override names but leaves NULL were given as null: back to the default. */
  for (int i = 0; i < given.n; i++) {
    const char *key = given.keys[i].path;
    const cyaml_schema_field_t *f;
    uint8_t *owner;
    void **slot = key[0] && !strchr(key, '[') ? slot_of(o, key, &f, &owner) : NULL;
    if (slot && !*slot)
      clear_path(acc, key);
  }
  sd_yaml_lines_free(&given);
  /* seeds.list and seeds.range exclude each other: the later layer's choice wins. */
  if (o->seeds && acc->seeds && o->seeds->list)
    clear_path(acc, "seeds.range");
  if (o->seeds && acc->seeds && o->seeds->range)
    clear_path(acc, "seeds.list");
  merge_fields(job_fields, (uint8_t *)acc, (uint8_t *)o);
  free_layer(o);
  return 0;
}

/* ---------------------------------------------------------------- validation into sd_job */

typedef struct {
  const char *file;
  const sd_yaml_lines *lines;
  const struct sd_job_source *src;
  sd_error *err;
} checker;

static int has_path_prefix(const char *path, const char *prefix, size_t n) {
  return !strncmp(path, prefix, n) && (!path[n] || path[n] == '.' || path[n] == '[');
}

/* "FILE:LINE: message", or "override 'KEY=VALUE': message" when the last layer to set path was one. */
static int bad(const checker *c, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int bad(const checker *c, const char *path, const char *fmt, ...) {
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  for (int k = c->src->n_overrides - 1; k >= 0; k--) {
    const char *o = c->src->overrides[k];
    size_t n = strcspn(o, "=");
    if (has_path_prefix(path, o, n))
      return sd_fail(c->err, "override '%.160s%s': %s", o, strlen(o) > 160 ? "..." : "", msg);
  }
  int line = sd_yaml_line_of(c->lines, path);
  if (line > 0)
    return sd_fail(c->err, "%s:%d: %s", c->file, line, msg);
  return sd_fail(c->err, "%s: %s", c->file, msg);
}

static int copy_str(const checker *c, char **dst, const char *src) {
  if (!src)
    return 0;
  if (!(*dst = sd_strdup(src)))
    return sd_fail(c->err, "out of memory");
  return 0;
}

static int one_of(const char *v, const char *const *words) {
  for (int i = 0; words[i]; i++)
    if (!strcmp(v, words[i]))
      return 1;
  return 0;
}

static int check_word(const checker *c, const char *path, const char *v, const char *const *words, const char *list) {
  if (one_of(v, words))
    return 0;
  return bad(c, path, "%s: expected %s, got '%.60s'", path, list, v);
}

static int valid_set_name(const char *name) {
  if (!name[0] || name[0] == '.' || strlen(name) > 64)
    return 0;
  return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == strlen(name);
}

static int convert_model(const checker *c, const y_model *m, sd_job *j) {
  if (!m || !m->path || !m->path[0])
    return bad(c, "model.path", "key 'model.path': required key missing");
  static const char *const predictions[] = {"eps", "v", NULL};
  if (m->prediction && check_word(c, "model.prediction", m->prediction, predictions, "eps or v"))
    return -1;
  return copy_str(c, &j->model, m->path) || copy_str(c, &j->unet, m->unet) ||
         copy_str(c, &j->text_encoder, m->text_encoder) || copy_str(c, &j->config, m->config) ||
         copy_str(c, &j->tokenizer, m->tokenizer) || copy_str(c, &j->prediction, m->prediction);
}

static int convert_sets(const checker *c, const y_job *y, sd_job *j) {
  if ((!y->sets || !y->sets_count) && y->attack)
    return 0; /* an attack-only job */
  if (!y->sets || !y->sets_count)
    return bad(c, "sets", "key 'sets': required key missing");
  if (!(j->sets = sd_calloc(y->sets_count, sizeof *j->sets, c->err)))
    return -1;
  j->n_sets = (int)y->sets_count;
  static const char *const roles[] = {"target", "anchor", "adversarial", NULL};
  int first_of_role[2] = {-1, -1};
  for (int i = 0; i < j->n_sets; i++) {
    const y_set *s = &y->sets[i];
    char p[64], pk[80];
    snprintf(p, sizeof p, "sets[%d]", i);
    if (!s->role)
      return bad(c, p, "key '%s.role': required key missing (target, anchor or adversarial)", p);
    snprintf(pk, sizeof pk, "%s.role", p);
    if (check_word(c, pk, s->role, roles, "target, anchor or adversarial"))
      return -1;
    int r = !strcmp(s->role, "target") ? 0 : !strcmp(s->role, "anchor") ? 1 : -1;
    if (r >= 0 && first_of_role[r] >= 0)
      return bad(c, pk, "%s: a second %s set (sets[%d] is one); at most one target and one anchor", pk, s->role,
                 first_of_role[r]);
    if (r >= 0)
      first_of_role[r] = i;
    if (!s->file || !s->file[0])
      return bad(c, p, "key '%s.file': required key missing", p);
    const char *name = s->name ? s->name : r >= 0 ? s->role : NULL;
    snprintf(pk, sizeof pk, "%s.name", p);
    if (!name)
      return bad(c, p, "key '%s': required key missing (adversarial sets need a name)", pk);
    if (!valid_set_name(name))
      return bad(c, pk, "%s: '%.60s' must be 1-64 characters of A-Z a-z 0-9 _ . - and not start with '.'", pk, name);
    for (int k = 0; k < i; k++)
      if (!strcmp(j->sets[k].name, name))
        return bad(c, pk, "%s: '%s' is used twice (also sets[%d])", pk, name, k);
    if (copy_str(c, &j->sets[i].name, name) || copy_str(c, &j->sets[i].role, s->role) ||
        copy_str(c, &j->sets[i].file, s->file) || copy_str(c, &j->sets[i].template_str, s->template_str))
      return -1;
  }
  return 0;
}

static int convert_seeds(const checker *c, const y_seeds *s, sd_job *j) {
  j->seed = 0;
  if (!s)
    return 0;
  if (s->default_seed)
    j->seed = *s->default_seed;
  if (s->list && s->range)
    return bad(c, "seeds.range", "seeds: give list or range, not both");
  uint64_t n = 0;
  if (s->list)
    n = s->list_count;
  if (s->range) {
    uint64_t a = s->range[0], b = s->range[1];
    if (b < a || b - a >= JOB_MAX_SEEDS)
      return bad(c, "seeds.range",
                 "seeds.range: [first, last] with first <= last and at most %d seeds, got [%llu, %llu]", JOB_MAX_SEEDS,
                 (unsigned long long)a, (unsigned long long)b);
    n = b - a + 1;
  }
  if (!n)
    return 0;
  if (!(j->seeds = sd_calloc((size_t)n, sizeof *j->seeds, c->err)))
    return -1;
  for (uint64_t i = 0; i < n; i++)
    j->seeds[i] = s->list ? s->list[i] : s->range[0] + i;
  j->n_seeds = (int)n;
  return 0;
}

static int int_at_least(const checker *c, const char *path, const int *v, int min, int max, int *out) {
  if (!v)
    return 0;
  if (*v < min || *v > max) {
    if (max == 1 << 30)
      return bad(c, path, "%s: must be at least %d, got %d", path, min, *v);
    return bad(c, path, "%s: must be %d to %d, got %d", path, min, max, *v);
  }
  *out = *v;
  return 0;
}

/* lo_open/hi_open: whether the bounds are excluded; hi = INFINITY for none. */
static int number_in(const checker *c, const char *path, const double *v, double lo, int lo_open, double hi,
                     int hi_open, double *out) {
  if (!v)
    return 0;
  double x = *v;
  int ok = (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
  if (!ok) {
    if (isinf(hi))
      return bad(c, path, "%s: must be %s %g, got %g", path, lo_open ? "above" : "at least", lo, x);
    return bad(c, path, "%s: must be in %c%g, %g%c, got %g", path, lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']', x);
  }
  *out = x;
  return 0;
}

static int convert_sampler(const checker *c, const y_sampler *s, sd_job *j) {
  const char *name = s && s->name ? s->name : "ddim";
  static const char *const samplers[] = {"ddim", "pndm", "lms", "euler", NULL};
  if (check_word(c, "sampler.name", name, samplers, "ddim, pndm, lms or euler") || copy_str(c, &j->sampler, name))
    return -1;
  j->steps = 50;
  j->guidance = 7.5;
  j->width = j->height = 512;
  if (!s)
    return 0;
  if (int_at_least(c, "sampler.steps", s->steps, 1, 1000, &j->steps) ||
      int_at_least(c, "sampler.max_steps", s->max_steps, 1, 1 << 30, &j->max_steps) ||
      int_at_least(c, "sampler.limit", s->limit, 1, 1 << 30, &j->limit) ||
      number_in(c, "sampler.guidance", s->guidance, 0, 0, INFINITY, 0, &j->guidance) ||
      number_in(c, "sampler.eta", s->eta, 0, 0, INFINITY, 0, &j->eta))
    return -1;
  j->guidance_given = s->guidance != NULL;
  if (s->size) {
    char *end;
    errno = 0;
    long w = strtol(s->size, &end, 10), h = 0;
    int ok = end != s->size && s->size[0] >= '0' && s->size[0] <= '9' && (*end == 'x' || *end == 'X');
    if (ok) {
      const char *hp = end + 1;
      h = strtol(hp, &end, 10);
      ok = end != hp && hp[0] >= '0' && hp[0] <= '9' && !*end && !errno;
    }
    if (!ok || w < 1 || h < 1 || w > 16384 || h > 16384)
      return bad(c, "sampler.size", "sampler.size: expected WIDTHxHEIGHT like 512x512 (1 to 16384), got '%.60s'",
                 s->size);
    j->width = (int)w;
    j->height = (int)h;
    j->size_given = 1;
  }
  return 0;
}

static int convert_stats(const checker *c, const y_stats *s, sd_job *j) {
  const char *hooks = s && s->hooks ? s->hooks : "ff";
  static const char *const allowed[] = {"ff", "attn2", "ff,attn2", "attn2,ff", NULL};
  if (check_word(c, "stats.hooks", hooks, allowed, "ff, attn2 or ff,attn2") || copy_str(c, &j->hooks, hooks))
    return -1;
  j->per_item = s && s->per_item && *s->per_item;
  return 0;
}

static int convert_mask(const checker *c, const y_mask *m, sd_job *j) {
  static const char *const methods[] = {"wanda", "actdiff", "sensitivity", NULL};
  static const char *const branches[] = {"cond", "uncond", "both", NULL};
  static const char *const scopes[] = {"layer", "global", NULL};
  j->ratio = 0.01;
  j->wanda_ratio = 0.01;
  j->wanda_tau = 10;
  const char *branch = m && m->branch ? m->branch : "cond", *scope = m && m->scope ? m->scope : "layer";
  if ((m && m->method && check_word(c, "mask.method", m->method, methods, "wanda, actdiff or sensitivity")) ||
      check_word(c, "mask.branch", branch, branches, "cond, uncond or both") ||
      check_word(c, "mask.scope", scope, scopes, "layer or global") || copy_str(c, &j->branch, branch) ||
      copy_str(c, &j->scope, scope))
    return -1;
  if (!m)
    return 0;
  if (copy_str(c, &j->mask_method, m->method) || number_in(c, "mask.ratio", m->ratio, 0, 1, 1, 0, &j->ratio) ||
      int_at_least(c, "mask.tau", m->tau, 1, 1 << 30, &j->tau) ||
      number_in(c, "mask.select_ratio", m->select_ratio, 0, 0, 1, 1, &j->select_ratio) ||
      number_in(c, "mask.wanda_ratio", m->wanda_ratio, 0, 1, 1, 0, &j->wanda_ratio) ||
      int_at_least(c, "mask.wanda_tau", m->wanda_tau, 1, 1 << 30, &j->wanda_tau) ||
      number_in(c, "mask.wanda_select_ratio", m->wanda_select_ratio, 0, 0, 1, 1, &j->wanda_select_ratio))
    return -1;
  j->with_wanda = m->with_wanda && *m->with_wanda;
  if (m->adversarial_count) {
    if (!(j->adversarial = sd_calloc(m->adversarial_count, sizeof *j->adversarial, c->err)))
      return -1;
    j->n_adversarial = (int)m->adversarial_count;
  }
  for (int i = 0; i < j->n_adversarial; i++) {
    char p[64];
    snprintf(p, sizeof p, "mask.adversarial[%d]", i);
    int found = 0;
    for (int k = 0; k < j->n_sets && !found; k++)
      found = !strcmp(j->sets[k].role, "adversarial") && !strcmp(j->sets[k].name, m->adversarial[i]);
    if (!found)
      return bad(c, p, "%s: no adversarial set named '%.60s' in sets", p, m->adversarial[i]);
    if (copy_str(c, &j->adversarial[i], m->adversarial[i]))
      return -1;
  }
  return 0;
}

/* Model names become folder names under OUT/images and labels in metrics.h5: the set-name alphabet and '+'. */
static int valid_model_name(const char *name) {
  if (!name[0] || name[0] == '.' || strlen(name) > 64)
    return 0;
  return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-") == strlen(name);
}

static int copy_labels(const checker *c, char **src, unsigned n, char ***dst, int *n_dst) {
  if (!n)
    return 0;
  if (!(*dst = sd_calloc(n, sizeof **dst, c->err)))
    return -1;
  *n_dst = (int)n;
  for (unsigned i = 0; i < n; i++)
    if (copy_str(c, &(*dst)[i], src[i]))
      return -1;
  return 0;
}

static int convert_attack_models(const checker *c, const y_attack *a, sd_job *j) {
  if (!a->models_count)
    return bad(c, "attack", "key 'attack.models': required key missing (the models to attack)");
  if (!(j->attack_models = sd_calloc(a->models_count, sizeof *j->attack_models, c->err)))
    return -1;
  j->n_attack_models = (int)a->models_count;
  for (int i = 0; i < j->n_attack_models; i++) {
    const y_attack_model *m = &a->models[i];
    char p[64], pk[80];
    snprintf(p, sizeof p, "attack.models[%d]", i);
    snprintf(pk, sizeof pk, "%s.name", p);
    if (!m->name)
      return bad(c, p, "key '%s': required key missing", pk);
    if (!valid_model_name(m->name))
      return bad(c, pk, "%s: '%.60s' must be 1-64 characters of A-Z a-z 0-9 _ . + - and not start with '.'", pk,
                 m->name);
    for (int k = 0; k < i; k++)
      if (!strcmp(j->attack_models[k].name, m->name))
        return bad(c, pk, "%s: '%s' is used twice (also attack.models[%d])", pk, m->name, k);
    sd_job_attack_model *d = &j->attack_models[i];
    if (copy_str(c, &d->name, m->name) || copy_str(c, &d->path, m->path) || copy_str(c, &d->unet, m->unet) ||
        copy_str(c, &d->text_encoder, m->text_encoder) || copy_str(c, &d->mask, m->mask))
      return -1;
  }
  return 0;
}

static int convert_attack_sets(const checker *c, const y_attack *a, sd_job *j) {
  if (!a->sets_count)
    return bad(c, "attack", "key 'attack.sets': required key missing (the attack prompt sets)");
  if (!(j->attack_sets = sd_calloc(a->sets_count, sizeof *j->attack_sets, c->err)))
    return -1;
  j->n_attack_sets = (int)a->sets_count;
  for (int i = 0; i < j->n_attack_sets; i++) {
    const y_attack_set *s = &a->sets[i];
    char p[64], pk[80];
    snprintf(p, sizeof p, "attack.sets[%d]", i);
    snprintf(pk, sizeof pk, "%s.name", p);
    if (!s->name)
      return bad(c, p, "key '%s': required key missing", pk);
    if (!valid_set_name(s->name))
      return bad(c, pk, "%s: '%.60s' must be 1-64 characters of A-Z a-z 0-9 _ . - and not start with '.'", pk,
                 s->name);
    for (int k = 0; k < i; k++)
      if (!strcmp(j->attack_sets[k].name, s->name))
        return bad(c, pk, "%s: '%s' is used twice (also attack.sets[%d])", pk, s->name, k);
    if (!s->file || !s->file[0])
      return bad(c, p, "key '%s.file': required key missing", p);
    sd_job_attack_set *d = &j->attack_sets[i];
    if (copy_str(c, &d->name, s->name) || copy_str(c, &d->file, s->file) ||
        copy_str(c, &d->template_str, s->template_str) || copy_str(c, &d->counterpart, s->counterpart))
      return -1;
  }
  for (int i = 0; i < j->n_attack_sets; i++) { /* counterparts name another set of the list */
    const char *cp = j->attack_sets[i].counterpart;
    if (!cp)
      continue;
    char pk[80];
    snprintf(pk, sizeof pk, "attack.sets[%d].counterpart", i);
    int found = 0;
    for (int k = 0; k < j->n_attack_sets && !found; k++)
      found = k != i && !strcmp(j->attack_sets[k].name, cp);
    if (!found)
      return bad(c, pk, "%s: no other attack set named '%.60s'", pk, cp);
  }
  return 0;
}

static int convert_attack(const checker *c, const y_attack *a, sd_job *j) {
  j->threshold = 0.5;
  if (!a)
    return 0;
  if (convert_attack_models(c, a, j) || convert_attack_sets(c, a, j) ||
      copy_str(c, &j->reference_stats, a->reference) || copy_str(c, &j->reactivation_mask, a->reactivation_mask))
    return -1;
  const y_detector *d = a->detector;
  if (!d)
    return 0;
  if (!d->clip || !d->clip[0])
    return bad(c, "attack.detector", "key 'attack.detector.clip': required key missing (a CLIPModel checkpoint)");
  if (!d->concept_count)
    return bad(c, "attack.detector", "key 'attack.detector.concept': required key missing (the concept's labels)");
  if (!d->neutral_count)
    return bad(c, "attack.detector", "key 'attack.detector.neutral': required key missing (neutral labels)");
  return copy_str(c, &j->clip, d->clip) || copy_labels(c, d->concept, d->concept_count, &j->concept_labels, &j->n_concept) ||
         copy_labels(c, d->neutral, d->neutral_count, &j->neutral_labels, &j->n_neutral) ||
         number_in(c, "attack.detector.threshold", d->threshold, 0, 0, 1, 1, &j->threshold);
}

static int convert(const checker *c, const y_job *y, sd_job *j) {
  if (copy_str(c, &j->description, y->description) || convert_model(c, y->model, j) || convert_sets(c, y, j) ||
      convert_seeds(c, y->seeds, j) || convert_sampler(c, y->sampler, j) || convert_stats(c, y->stats, j) ||
      convert_mask(c, y->mask, j) || convert_attack(c, y->attack, j))
    return -1;
  if (!y->out || !y->out[0])
    return bad(c, "out", "key 'out': required key missing (the output folder)");
  if (copy_str(c, &j->out, y->out))
    return -1;
  int threads = 0;
  if (y->threads && *y->threads != 0 && int_at_least(c, "threads", y->threads, 1, 4096, &threads))
    return -1;
  j->threads = threads;
  return 0;
}

/* ---------------------------------------------------------------- the job */

static void free_fields(sd_job *j) {
  char **owned[] = {&j->path,        &j->description, &j->model,      &j->unet,    &j->text_encoder,
                   &j->config,      &j->tokenizer,   &j->prediction, &j->sampler, &j->hooks,
                   &j->mask_method, &j->branch,      &j->scope,      &j->out,
                   &j->clip,        &j->reference_stats, &j->reactivation_mask};
  for (size_t i = 0; i < sizeof owned / sizeof *owned; i++)
    free(*owned[i]);
  for (int i = 0; i < j->n_sets; i++) {
    free(j->sets[i].name);
    free(j->sets[i].role);
    free(j->sets[i].file);
    free(j->sets[i].template_str);
  }
  free(j->sets);
  for (int i = 0; i < j->n_adversarial; i++)
    free(j->adversarial[i]);
  free(j->adversarial);
  free(j->seeds);
  for (int i = 0; i < j->n_attack_models; i++) {
    sd_job_attack_model *m = &j->attack_models[i];
    free(m->name), free(m->path), free(m->unet), free(m->text_encoder), free(m->mask);
  }
  free(j->attack_models);
  for (int i = 0; i < j->n_attack_sets; i++) {
    sd_job_attack_set *a = &j->attack_sets[i];
    free(a->name), free(a->file), free(a->template_str), free(a->counterpart);
  }
  free(j->attack_sets);
  for (int i = 0; i < j->n_concept; i++)
    free(j->concept_labels[i]);
  free(j->concept_labels);
  for (int i = 0; i < j->n_neutral; i++)
    free(j->neutral_labels[i]);
  free(j->neutral_labels);
}

/* The job from its file and every override so far, validated; *out untouched on error. */
static int build(const char *path, const struct sd_job_source *src, sd_job *out, sd_error *err) {
  sd_job j = {0};
  sd_yaml_lines lines = {0};
  y_job *acc = NULL;
  int rc = load_layer(src->text, src->len, path, 1, &lines, &acc, err);
  if (rc == 0)
    rc = resolve_paths(acc, src->dir, err);
  for (int k = 0; rc == 0 && k < src->n_overrides; k++)
    rc = apply_override(acc, src->overrides[k], err);
  checker c = {.file = path, .lines = &lines, .src = src, .err = err};
  if (rc == 0)
    rc = convert(&c, acc, &j);
  if (rc == 0 && !(j.path = sd_strdup(path)))
    rc = sd_fail(err, "out of memory");
  free_layer(acc);
  sd_yaml_lines_free(&lines);
  if (rc != 0) {
    free_fields(&j);
    return -1;
  }
  j.source = (struct sd_job_source *)src;
  *out = j;
  return 0;
}

static void free_source(struct sd_job_source *s) {
  if (!s)
    return;
  free(s->text);
  free(s->dir);
  for (int i = 0; i < s->n_overrides; i++)
    free(s->overrides[i]);
  free(s->overrides);
  free(s);
}

static int read_job_file(const char *path, struct sd_job_source *s, sd_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return sd_fail(err, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
    fclose(f);
    return sd_fail(err, "%s: is a folder, not a job file", path);
  }
  if (!(s->text = malloc(JOB_MAX_BYTES + 1))) {
    fclose(f);
    return sd_fail(err, "out of memory");
  }
  s->len = fread(s->text, 1, JOB_MAX_BYTES + 1, f);
  int bad_read = ferror(f);
  fclose(f);
  if (bad_read)
    return sd_fail(err, "%s: read error", path);
  if (s->len > JOB_MAX_BYTES)
    return sd_fail(err, "%s: larger than 1 MiB: not a job file", path);
  s->text[s->len] = 0;
  const char *slash = strrchr(path, '/');
  if (slash && !(s->dir = malloc((size_t)(slash - path) + 2)))
    return sd_fail(err, "out of memory");
  if (slash)
    snprintf(s->dir, (size_t)(slash - path) + 2, "%.*s", slash == path ? 1 : (int)(slash - path), path);
  return 0;
}

int sd_job_load(const char *path, sd_job *job, sd_error *err) {
  memset(job, 0, sizeof *job);
  struct sd_job_source *s = sd_calloc(1, sizeof *s, err);
  if (!s)
    return -1;
  if (read_job_file(path, s, err) != 0 || build(path, s, job, err) != 0) {
    free_source(s);
    return -1;
  }
  return 0;
}

int sd_job_set_override(sd_job *job, const char *assignment, sd_error *err) {
  struct sd_job_source *s = job->source;
  if (!s)
    return sd_fail(err, "override '%.100s': no job file loaded", assignment);
  if (s->n_overrides == JOB_MAX_OVERRIDES)
    return sd_fail(err, "at most %d overrides", JOB_MAX_OVERRIDES);
  char **grown = realloc(s->overrides, (size_t)(s->n_overrides + 1) * sizeof *grown);
  if (!grown)
    return sd_fail(err, "out of memory");
  s->overrides = grown;
  if (!(s->overrides[s->n_overrides] = sd_strdup(assignment)))
    return sd_fail(err, "out of memory");
  s->n_overrides++;
  char *path = sd_strdup(job->path);
  sd_job rebuilt;
  if (!path || build(path, s, &rebuilt, err) != 0) {
    if (!path)
      sd_fail(err, "out of memory");
    char own[200];
    snprintf(own, sizeof own, "override '%.160s%s'", assignment, strlen(assignment) > 160 ? "..." : "");
    if (path && strncmp(err->msg, own, strlen(own)) != 0) {
      /* A conflict with a key set elsewhere (e.g. sets without the mask's adversarial set): say both. */
      char elsewhere[sizeof err->msg];
      snprintf(elsewhere, sizeof elsewhere, "%s", err->msg);
      sd_fail(err, "%s: %s", own, elsewhere);
    }
    free(path);
    free(s->overrides[--s->n_overrides]);
    return -1;
  }
  free(path);
  free_fields(job);
  *job = rebuilt;
  return 0;
}

void sd_job_free(sd_job *job) {
  if (!job)
    return;
  free_fields(job);
  free_source(job->source);
  memset(job, 0, sizeof *job);
}
