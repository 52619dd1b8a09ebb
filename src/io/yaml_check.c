/* YAML against a libcyaml schema, event by event with libyaml, with the line of every problem (see
 * yaml_check.h). libcyaml's own errors name no line for an unknown key and read "12abc" as 12 and "-1" as
 * a huge unsigned value; the rules here are stricter, and whatever passes them libcyaml reads the same. */
#include "io/yaml_check.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

typedef struct {
  const cyaml_schema_value_t *schema;
  int is_map;
  char path[512];
  const cyaml_schema_field_t *pending; /* mapping: the field whose value comes next; NULL: a key comes next */
  uint64_t seen;                       /* mapping: fields given so far (bit = index in the schema) */
  unsigned count;                      /* list: entries so far */
  int line;
} frame;

typedef struct {
  const char *where;
  int with_lines;
  sd_yaml_lines *lines;
  sd_error *err;
  frame stack[SD_YAML_MAX_DEPTH];
  int depth;
  int have_root;
} checker;

static int fail_at(checker *c, size_t line0, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail_at(checker *c, size_t line0, const char *fmt, ...) {
  char msg[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (c->with_lines)
    return sd_fail(c->err, "%s:%zu: %s", c->where, line0 + 1, msg);
  return sd_fail(c->err, "%s: %s", c->where, msg);
}

int sd_yaml_is_null(const char *v) {
  return !v[0] || !strcmp(v, "~") || !strcmp(v, "null") || !strcmp(v, "Null") || !strcmp(v, "NULL");
}

static int record(checker *c, const char *path, size_t line0) {
  sd_yaml_lines *l = c->lines;
  if (!l)
    return 0;
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 64;
    sd_yaml_key_line *k = realloc(l->keys, (size_t)cap * sizeof *k);
    if (!k)
      return sd_fail(c->err, "%s: out of memory", c->where);
    l->keys = k;
    l->cap = cap;
  }
  if (!(l->keys[l->n].path = sd_strdup(path)))
    return sd_fail(c->err, "%s: out of memory", c->where);
  l->keys[l->n++].line = (int)line0 + 1;
  return 0;
}

int sd_yaml_line_of(const sd_yaml_lines *l, const char *path) {
  if (!l)
    return 0;
  char p[512];
  snprintf(p, sizeof p, "%.500s", path);
  for (;;) {
    for (int i = l->n - 1; i >= 0; i--)
      if (!strcmp(l->keys[i].path, p))
        return l->keys[i].line;
    if (!p[0])
      return 0;
    char *dot = strrchr(p, '.'), *br = strrchr(p, '[');
    char *cut = dot > br ? dot : br;
    if (cut)
      *cut = 0;
    else
      p[0] = 0;
  }
}

void sd_yaml_lines_free(sd_yaml_lines *l) {
  if (!l)
    return;
  for (int i = 0; i < l->n; i++)
    free(l->keys[i].path);
  free(l->keys);
  memset(l, 0, sizeof *l);
}

static const char *type_name(const cyaml_schema_value_t *s) {
  switch (s->type) {
  case CYAML_INT:
    return "an integer";
  case CYAML_UINT:
    return "a non-negative integer";
  case CYAML_BOOL:
    return "true or false";
  case CYAML_FLOAT:
    return "a number";
  case CYAML_STRING:
    return "a string";
  case CYAML_MAPPING:
    return "a mapping";
  case CYAML_SEQUENCE:
  case CYAML_SEQUENCE_FIXED:
    return "a list";
  default:
    return "a value";
  }
}

/* Decimal digits with an optional sign; no leading zeros (YAML 1.1 reads 010 as octal, libcyaml too). */
static int plain_integer(const char *v, int allow_minus) {
  const char *p = v;
  if (*p == '+' || (allow_minus && *p == '-'))
    p++;
  if (!*p)
    return 0;
  if (p[0] == '0' && p[1])
    return 0;
  for (; *p; p++)
    if (*p < '0' || *p > '9')
      return 0;
  return 1;
}

static int check_scalar(checker *c, const cyaml_schema_value_t *s, const char *path, const char *v, size_t line0) {
  if ((s->flags & CYAML_FLAG_POINTER_NULL) == CYAML_FLAG_POINTER_NULL && !v[0])
    return 0;
  if ((s->flags & CYAML_FLAG_POINTER_NULL_STR) == CYAML_FLAG_POINTER_NULL_STR && sd_yaml_is_null(v))
    return 0;
  switch (s->type) {
  case CYAML_INT: {
    if (!plain_integer(v, 1))
      break;
    errno = 0;
    long long x = strtoll(v, NULL, 10);
    int64_t max = s->data_size >= 8 ? INT64_MAX : (int64_t)((UINT64_C(1) << (8 * s->data_size - 1)) - 1);
    if (errno == ERANGE || x > max || x < -max - 1)
      return fail_at(c, line0, "%s: integer out of range, got '%.60s'", path, v);
    return 0;
  }
  case CYAML_UINT: {
    if (!plain_integer(v, 0))
      break;
    errno = 0;
    unsigned long long x = strtoull(v, NULL, 10);
    uint64_t max = s->data_size >= 8 ? UINT64_MAX : (UINT64_C(1) << (8 * s->data_size)) - 1;
    if (errno == ERANGE || x > max)
      return fail_at(c, line0, "%s: integer out of range, got '%.60s'", path, v);
    return 0;
  }
  case CYAML_FLOAT: {
    /* Digits, sign, point and exponent only: strtod would also take "inf", "nan" and hex floats. */
    if (!*v || strspn(v, "0123456789+-.eE") != strlen(v))
      break;
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (*end || end == v)
      break;
    if (errno == ERANGE || !isfinite(x))
      return fail_at(c, line0, "%s: number out of range, got '%.60s'", path, v);
    return 0;
  }
  case CYAML_BOOL: {
    static const char *const words[] = {"true", "false", "yes", "no", "on", "off"};
    for (size_t i = 0; i < sizeof words / sizeof *words; i++)
      if (!strcasecmp(v, words[i]))
        return 0;
    break;
  }
  case CYAML_STRING:
    if (s->string.min && strlen(v) < s->string.min)
      return fail_at(c, line0, "%s: expected at least %u characters, got '%.60s'", path, s->string.min, v);
    if (s->string.max != CYAML_UNLIMITED && strlen(v) > s->string.max)
      return fail_at(c, line0, "%s: expected at most %u characters, got %zu", path, s->string.max, strlen(v));
    return 0;
  default:
    break;
  }
  if (sd_yaml_is_null(v))
    return fail_at(c, line0, "%s: expected %s, got null", path, type_name(s));
  return fail_at(c, line0, "%s: expected %s, got '%.60s%s'", path, type_name(s), v, strlen(v) > 60 ? "..." : "");
}

/* The schema of the value that the next node is, and its path; NULL schema: the node is a mapping key. */
static const cyaml_schema_value_t *next_value(checker *c, const cyaml_schema_value_t *top, char *path, size_t n) {
  if (c->depth == 0) {
    snprintf(path, n, "%s", "");
    return top;
  }
  frame *f = &c->stack[c->depth - 1];
  if (f->is_map) {
    if (!f->pending)
      return NULL;
    snprintf(path, n, "%.300s%s%.100s", f->path, f->path[0] ? "." : "", f->pending->key);
    return &f->pending->value;
  }
  snprintf(path, n, "%.300s[%u]", f->path, f->count);
  return f->schema->sequence.entry;
}

/* A node (scalar or collection) has been read as a value: advance the parent. */
static void value_done(checker *c) {
  if (c->depth == 0)
    return;
  frame *f = &c->stack[c->depth - 1];
  if (f->is_map)
    f->pending = NULL;
  else
    f->count++;
}

static int map_key(checker *c, frame *f, const char *key, size_t line0) {
  const cyaml_schema_field_t *fields = f->schema->mapping.fields;
  char path[512];
  snprintf(path, sizeof path, "%.300s%s%.100s", f->path, f->path[0] ? "." : "", key);
  for (int i = 0; fields[i].key; i++) {
    if (strcmp(fields[i].key, key) != 0)
      continue;
    if (i < 64 && (f->seen >> i & 1))
      return fail_at(c, line0, "key '%s': given twice", path);
    if (i < 64)
      f->seen |= UINT64_C(1) << i;
    f->pending = &fields[i];
    return record(c, path, line0);
  }
  return fail_at(c, line0, "key '%s': unknown key", path);
}

static int push(checker *c, const cyaml_schema_value_t *s, const char *path, int is_map, size_t line0) {
  if (c->depth == SD_YAML_MAX_DEPTH)
    return fail_at(c, line0, "%s: nested deeper than %d levels", path, SD_YAML_MAX_DEPTH);
  frame *f = &c->stack[c->depth++];
  memset(f, 0, sizeof *f);
  f->schema = s;
  f->is_map = is_map;
  f->line = (int)line0;
  snprintf(f->path, sizeof f->path, "%.400s", path);
  return 0;
}

static int end_sequence(checker *c, size_t line0) {
  frame *f = &c->stack[c->depth - 1];
  unsigned min = f->schema->sequence.min, max = f->schema->sequence.max;
  const char *p = f->path[0] ? f->path : "(top)";
  if (min == max && f->count != min)
    return fail_at(c, (size_t)f->line, "%s: expected %u entries, got %u", p, min, f->count);
  if (f->count < min)
    return fail_at(c, (size_t)f->line, "%s: expected at least %u entr%s, got %u", p, min, min == 1 ? "y" : "ies",
                   f->count);
  c->depth--;
  value_done(c);
  (void)line0;
  return 0;
}

static int on_event(checker *c, const cyaml_schema_value_t *top, const yaml_event_t *ev) {
  size_t line0 = ev->start_mark.line;
  char path[512];
  switch (ev->type) {
  case YAML_ALIAS_EVENT:
    return fail_at(c, line0, "aliases (*%.60s) are not supported", (const char *)ev->data.alias.anchor);
  case YAML_MAPPING_END_EVENT:
    c->depth--;
    value_done(c);
    return 0;
  case YAML_SEQUENCE_END_EVENT:
    return end_sequence(c, line0);
  case YAML_DOCUMENT_START_EVENT:
    if (c->have_root)
      return fail_at(c, line0, "only one YAML document is allowed");
    return 0;
  case YAML_SCALAR_EVENT:
  case YAML_MAPPING_START_EVENT:
  case YAML_SEQUENCE_START_EVENT:
    break;
  default:
    return 0;
  }
  const cyaml_schema_value_t *s = next_value(c, top, path, sizeof path);
  if (!s) { /* a mapping key */
    frame *f = &c->stack[c->depth - 1];
    if (ev->type != YAML_SCALAR_EVENT)
      return fail_at(c, line0, "%s: keys must be plain names, not %s", f->path[0] ? f->path : "(top)",
                     ev->type == YAML_MAPPING_START_EVENT ? "mappings" : "lists");
    return map_key(c, f, (const char *)ev->data.scalar.value, line0);
  }
  const char *shown = path[0] ? path : "(top)";
  if (c->depth == 0) {
    c->have_root = 1;
    if (record(c, "", line0) != 0)
      return -1;
  } else if (!c->stack[c->depth - 1].is_map) {
    frame *f = &c->stack[c->depth - 1];
    if (f->schema->sequence.max != CYAML_UNLIMITED && f->count >= f->schema->sequence.max)
      return fail_at(c, line0, "%s: at most %u entr%s", f->path, f->schema->sequence.max,
                     f->schema->sequence.max == 1 ? "y" : "ies");
    if (record(c, path, line0) != 0)
      return -1;
  }
  int is_seq = s->type == CYAML_SEQUENCE || s->type == CYAML_SEQUENCE_FIXED;
  if (ev->type == YAML_SCALAR_EVENT) {
    const char *v = (const char *)ev->data.scalar.value;
    if (s->type == CYAML_MAPPING || is_seq) {
      if ((s->flags & CYAML_FLAG_POINTER_NULL_STR) == CYAML_FLAG_POINTER_NULL_STR && sd_yaml_is_null(v)) {
        value_done(c);
        return 0;
      }
      return fail_at(c, line0, "%s: expected %s, got '%.60s%s'", shown, type_name(s), v, strlen(v) > 60 ? "..." : "");
    }
    if (check_scalar(c, s, shown, v, line0) != 0)
      return -1;
    value_done(c);
    return 0;
  }
  int want_map = ev->type == YAML_MAPPING_START_EVENT;
  if (want_map ? s->type != CYAML_MAPPING : !is_seq)
    return fail_at(c, line0, "%s: expected %s, got %s", shown, type_name(s), want_map ? "a mapping" : "a list");
  return push(c, s, path, want_map, line0);
}

int sd_yaml_check(const char *text, size_t len, const cyaml_schema_value_t *top, const char *where, int with_lines,
                  sd_yaml_lines *lines, sd_error *err) {
  checker c = {.where = where, .with_lines = with_lines, .lines = lines, .err = err};
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser))
    return sd_fail(err, "%s: cannot initialise the YAML parser", where);
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  int rc = 0, done = 0;
  while (!done && rc == 0) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      const char *ctx = parser.context;
      rc = fail_at(&c, parser.problem_mark.line, "YAML syntax error: %s%s%s%s",
                   parser.problem ? parser.problem : "unknown", ctx ? " (" : "", ctx ? ctx : "", ctx ? ")" : "");
      break;
    }
    done = ev.type == YAML_STREAM_END_EVENT;
    rc = on_event(&c, top, &ev);
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&parser);
  if (rc == 0 && !c.have_root)
    rc = sd_fail(err, "%s: empty document: expected a mapping", where);
  return rc;
}
