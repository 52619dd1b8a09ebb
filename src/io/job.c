/* Job files (see job.h; every key in README.md, "Job files"): the libcyaml schema of the YAML layout, loading
 * (yaml_check first for messages with lines, then libcyaml onto the structs below), command-line
 * overrides merged key by key, and building the job (validated by job_check.c). */
#include "io/job.h"

#include <cyaml/cyaml.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/job_layout.h"
#include "io/yaml_check.h"

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
    STR("name", y_attack_model, name), STR("path", y_attack_model, path),
    STR("unet", y_attack_model, unet), STR("text_encoder", y_attack_model, text_encoder),
    STR("mask", y_attack_model, mask), CYAML_FIELD_END};
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

/* ---------------------------------------------------------------- the job */

static void free_fields(sd_job *j) {
  char **owned[] = {&j->path,
                    &j->description,
                    &j->model,
                    &j->unet,
                    &j->text_encoder,
                    &j->config,
                    &j->tokenizer,
                    &j->prediction,
                    &j->sampler,
                    &j->hooks,
                    &j->mask_method,
                    &j->branch,
                    &j->scope,
                    &j->out,
                    &j->clip,
                    &j->reference_stats,
                    &j->reactivation_mask};
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
  job_checker c = {.file = path, .lines = &lines, .src = src, .err = err};
  if (rc == 0)
    rc = job_convert(&c, acc, &j);
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
