/* Prompt-set reader (see prompt_csv.h for the accepted formats). The CSV state machine follows RFC 4180 and,
 * where files bend it (text after a closing quote), Python's csv module in its default non-strict mode. */
#include "io/prompt_csv.h"
#include "core/utf8.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/sha256.h"

typedef struct {
  int line;        /* physical line where the record starts */
  int first_field; /* index into field offsets */
  int n_fields;
} csv_record;

typedef struct {
  size_t *field_off; /* offsets of NUL-terminated fields in the output buffer */
  int n_fields, cap_fields;
  csv_record *records;
  int n_records, cap_records;
} csv_parse;

static int push_field(csv_parse *p, size_t off, sd_error *err) {
  if (p->n_fields == p->cap_fields) {
    int cap = p->cap_fields ? 2 * p->cap_fields : 1024;
    size_t *grown = realloc(p->field_off, sizeof *grown * (size_t)cap);
    if (!grown) return sd_fail(err, "out of memory");
    p->field_off = grown;
    p->cap_fields = cap;
  }
  p->field_off[p->n_fields++] = off;
  return 0;
}

static int push_record(csv_parse *p, int line, int first_field, sd_error *err) {
  if (p->n_records == p->cap_records) {
    int cap = p->cap_records ? 2 * p->cap_records : 256;
    csv_record *grown = realloc(p->records, sizeof *grown * (size_t)cap);
    if (!grown) return sd_fail(err, "out of memory");
    p->records = grown;
    p->cap_records = cap;
  }
  p->records[p->n_records++] = (csv_record){line, first_field, p->n_fields - first_field};
  return 0;
}

/* Splits data[0, len) into records and unquoted fields written to out (capacity >= len + fields + 1; offset 0
 * holds an empty string used for padding). */
static int parse_csv(const char *path, const char *data, size_t len, char *out, csv_parse *p, sd_error *err) {
  size_t pos = 0, o = 1;
  int line = 1;
  out[0] = '\0';
  while (pos < len) {
    if (data[pos] == '\n' || data[pos] == '\r') { /* blank line */
      pos += (data[pos] == '\r' && pos + 1 < len && data[pos + 1] == '\n') ? 2 : 1;
      line++;
      continue;
    }
    int record_line = line, first_field = p->n_fields;
    for (;;) {
      size_t field_start = o;
      if (pos < len && data[pos] == '"') {
        pos++;
        for (;;) {
          if (pos >= len)
            return sd_fail(err, "%s:%d: unterminated quoted field (end of file inside quotes)", path, record_line);
          char c = data[pos];
          if (c == '"') {
            if (pos + 1 < len && data[pos + 1] == '"') {
              out[o++] = '"';
              pos += 2;
              continue;
            }
            pos++;
            break;
          }
          if (c == '\n' || (c == '\r' && !(pos + 1 < len && data[pos + 1] == '\n'))) line++;
          out[o++] = c;
          pos++;
        }
      }
      /* Unquoted text, or text after a closing quote (kept, as Python's csv does). */
      while (pos < len && data[pos] != ',' && data[pos] != '\n' && data[pos] != '\r') out[o++] = data[pos++];
      out[o++] = '\0';
      if (push_field(p, field_start, err)) return -1;
      if (pos < len && data[pos] == ',') {
        pos++;
        continue;
      }
      if (pos < len) { /* line end */
        pos += (data[pos] == '\r' && pos + 1 < len && data[pos + 1] == '\n') ? 2 : 1;
        line++;
      }
      break;
    }
    if (push_record(p, record_line, first_field, err)) return -1;
  }
  return 0;
}

/* Returns 0 if s is valid UTF-8 without NUL bytes (checked up to its terminator). */
static int check_utf8(const char *s) {
  const unsigned char *q = (const unsigned char *)s;
  while (*q) {
    unsigned cp;
    int n = sd_utf8_next(q, &cp);
    if (n < 0) return -1;
    q += n;
  }
  return 0;
}

/* ---- numbers --------------------------------------------------------------------------------------------- */

static const char *skip_space(const char *s) {
  while (*s == ' ' || *s == '\t') s++;
  return s;
}

/* Non-negative integer, optionally written as a float with a zero fraction ("1234.0", as pandas writes
 * integer columns that had missing values). */
static int parse_u64(const char *s, uint64_t *v) {
  s = skip_space(s);
  if (*s < '0' || *s > '9') return -1;
  uint64_t x = 0;
  for (; *s >= '0' && *s <= '9'; s++) {
    unsigned d = (unsigned)(*s - '0');
    if (x > (UINT64_MAX - d) / 10) return -1;
    x = x * 10 + d;
  }
  if (*s == '.')
    for (s++; *s == '0'; s++) {
    }
  if (*skip_space(s)) return -1;
  *v = x;
  return 0;
}

static int parse_i64(const char *s, int64_t *v) {
  s = skip_space(s);
  int neg = *s == '-';
  uint64_t x;
  if (parse_u64(s + neg, &x) || x > (uint64_t)INT64_MAX) return -1;
  *v = neg ? -(int64_t)x : (int64_t)x;
  return 0;
}

static int parse_double(const char *s, double *v) {
  s = skip_space(s);
  if (!*s || strpbrk(s, "xX")) return -1;
  char *end;
  errno = 0;
  double x = strtod(s, &end);
  if (end == s || errno == ERANGE || !isfinite(x) || *skip_space(end)) return -1;
  *v = x;
  return 0;
}

/* ---- templates ------------------------------------------------------------------------------------------- */

/* Expands template for one row; returns malloc'd text or NULL with err (unknown column, bad braces). */
static char *expand_template(const sd_prompt_set *set, int row, const char *tmpl, sd_error *err) {
  /* Each {column} may appear several times: size the output by a first pass instead of guessing. */
  size_t need = 1;
  for (int pass = 0; pass < 2; pass++) {
    char *out = pass ? sd_malloc(need, err) : NULL;
    if (pass && !out) return NULL;
    size_t o = 0;
    for (const char *t = tmpl; *t;) {
      if (t[0] == '{' && t[1] == '{') {
        if (pass) out[o] = '{';
        o++, t += 2;
      } else if (t[0] == '}' && t[1] == '}') {
        if (pass) out[o] = '}';
        o++, t += 2;
      } else if (t[0] == '{') {
        const char *close = strchr(t, '}');
        if (!close) {
          free(out);
          sd_fail(err, "prompt template \"%s\": unterminated '{'", tmpl);
          return NULL;
        }
        char name[256];
        size_t n = (size_t)(close - t - 1);
        if (n >= sizeof name) n = sizeof name - 1;
        memcpy(name, t + 1, n);
        name[n] = '\0';
        int col = sd_prompt_set_column(set, name);
        if (col < 0) {
          free(out);
          sd_fail(err, "prompt template \"%s\": no column \"%s\" in the file", tmpl, name);
          return NULL;
        }
        const char *value = set->cells[(size_t)row * set->n_columns + col];
        size_t vl = strlen(value);
        if (pass) memcpy(out + o, value, vl);
        o += vl;
        t = close + 1;
      } else if (t[0] == '}') {
        free(out);
        sd_fail(err, "prompt template \"%s\": single '}' (write '}}' for a literal brace)", tmpl);
        return NULL;
      } else {
        if (pass) out[o] = *t;
        o++, t++;
      }
    }
    if (pass) {
      out[o] = '\0';
      return out;
    }
    need = o + 1;
  }
  return NULL;
}

/* ---- loading --------------------------------------------------------------------------------------------- */

static int has_suffix(const char *path, const char *suffix) {
  size_t n = strlen(path), m = strlen(suffix);
  return n >= m && strcasecmp(path + n - m, suffix) == 0;
}

static int read_file(const char *path, char **data, size_t *len, sd_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return sd_fail(err, "%s: cannot open: %s", path, strerror(errno));
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  while (buf) {
    n += fread(buf + n, 1, cap - n, f);
    if (n < cap) break;
    char *grown = realloc(buf, cap * 2);
    if (!grown) {
      free(buf);
      buf = NULL;
      break;
    }
    buf = grown;
    cap *= 2;
  }
  int bad = ferror(f);
  fclose(f);
  if (!buf) return sd_fail(err, "%s: out of memory reading the file", path);
  if (bad) {
    free(buf);
    return sd_fail(err, "%s: read error", path);
  }
  *data = buf;
  *len = n;
  return 0;
}

static int load_plain_text(sd_prompt_set *set, const char *text, size_t len, sd_error *err) {
  set->field_buf = sd_malloc(len + 1, err);
  int cap = 64;
  set->rows = sd_calloc((size_t)cap, sizeof *set->rows, err);
  if (!set->field_buf || !set->rows) return -1;
  memcpy(set->field_buf, text, len);
  set->field_buf[len] = '\0';
  char *s = set->field_buf;
  size_t pos = 0;
  int line = 0;
  while (pos < len) {
    line++;
    size_t start = pos;
    while (pos < len && s[pos] != '\n' && s[pos] != '\r') pos++;
    size_t end = pos;
    if (pos < len) pos += (s[pos] == '\r' && pos + 1 < len && s[pos + 1] == '\n') ? 2 : 1;
    s[end] = '\0';
    if (memchr(s + start, '\0', end - start)) return sd_fail(err, "%s:%d: NUL byte in the text", set->path, line);
    if (check_utf8(s + start)) return sd_fail(err, "%s:%d: invalid UTF-8", set->path, line);
    if (!*skip_space(s + start)) continue;
    if (set->n_rows == cap) {
      sd_prompt *grown = realloc(set->rows, sizeof *grown * (size_t)cap * 2);
      if (!grown) return sd_fail(err, "out of memory");
      set->rows = grown;
      cap *= 2;
    }
    int i = set->n_rows++;
    set->rows[i] = (sd_prompt){.index = i, .line = line, .case_number = i, .prompt = s + start};
  }
  return 0;
}

static int find_first(const sd_prompt_set *set, const char *const *names) {
  for (; *names; names++) {
    int c = sd_prompt_set_column(set, *names);
    if (c >= 0) return c;
  }
  return -1;
}

/* Fills set->rows from the parsed CSV (record 0 is the header). */
static int load_csv_rows(sd_prompt_set *set, const char *template_or_null, sd_error *err) {
  static const char *const seed_names[] = {"evaluation_seed", "seed", NULL};
  static const char *const guidance_names[] = {"evaluation_guidance", "guidance_scale", "guidance", NULL};
  static const char *const case_names[] = {"case_number", NULL};
  static const char *const width_names[] = {"sd_image_width", NULL};
  static const char *const height_names[] = {"sd_image_height", NULL};
  int c_prompt = sd_prompt_set_column(set, "prompt"), c_seed = find_first(set, seed_names);
  int c_guidance = find_first(set, guidance_names), c_case = find_first(set, case_names);
  int c_width = find_first(set, width_names), c_height = find_first(set, height_names);
  const char *tmpl = template_or_null;
  if (!tmpl && c_prompt < 0 && sd_prompt_set_column(set, "nudity") >= 0 && sd_prompt_set_column(set, "people") >= 0 &&
      sd_prompt_set_column(set, "location") >= 0)
    tmpl = SD_PROMPT_TEMPLATE_CONCEPT_PAIRS;
  if (tmpl) {
    set->template_used = sd_strdup(tmpl);
    set->built_prompts = sd_calloc((size_t)(set->n_rows ? set->n_rows : 1), sizeof *set->built_prompts, err);
    if (!set->template_used || !set->built_prompts) return sd_fail(err, "out of memory");
  }
  for (int i = 0; i < set->n_rows; i++) {
    sd_prompt *r = &set->rows[i];
    char **cells = set->cells + (size_t)i * set->n_columns;
    r->index = i;
    r->case_number = i;
    if (tmpl) {
      set->built_prompts[i] = expand_template(set, i, tmpl, err);
      if (!set->built_prompts[i]) return sd_fail_prefix(err, "%s", set->path);
      r->prompt = set->built_prompts[i];
    } else {
      r->prompt = cells[c_prompt];
    }
    const char *v;
    if (c_seed >= 0 && *skip_space(v = cells[c_seed])) {
      if (parse_u64(v, &r->seed))
        return sd_fail(err, "%s:%d: record %d, column %s: \"%s\" is not a non-negative integer seed", set->path,
                       r->line, i, set->columns[c_seed], v);
      r->has_seed = 1;
    }
    if (c_guidance >= 0 && *skip_space(v = cells[c_guidance])) {
      if (parse_double(v, &r->guidance))
        return sd_fail(err, "%s:%d: record %d, column %s: \"%s\" is not a number", set->path, r->line, i,
                       set->columns[c_guidance], v);
      r->has_guidance = 1;
    }
    if (c_case >= 0 && *skip_space(v = cells[c_case]) && parse_i64(v, &r->case_number))
      return sd_fail(err, "%s:%d: record %d, column %s: \"%s\" is not an integer", set->path, r->line, i,
                     set->columns[c_case], v);
    int c_size[2] = {c_width, c_height};
    int *size_out[2] = {&r->width, &r->height};
    for (int k = 0; k < 2; k++) {
      uint64_t px;
      if (c_size[k] < 0 || !*skip_space(v = cells[c_size[k]])) continue;
      if (parse_u64(v, &px) || px > 1 << 20)
        return sd_fail(err, "%s:%d: record %d, column %s: \"%s\" is not an image size", set->path, r->line, i,
                       set->columns[c_size[k]], v);
      *size_out[k] = (int)px;
    }
  }
  return 0;
}

/* Tries the file as CSV. Returns 0 (loaded), 1 (not a prompt CSV: caller may fall back to text), -1 (error). */
static int load_csv(sd_prompt_set *set, const char *text, size_t len, const char *template_or_null, sd_error *err) {
  csv_parse p = {0};
  int rc = -1;
  set->field_buf = sd_malloc(2 * len + 2, err);
  if (!set->field_buf) return -1;
  if (parse_csv(set->path, text, len, set->field_buf, &p, err)) goto done;
  if (p.n_records == 0) {
    rc = 1;
    sd_fail(err, "%s: empty file (no header and no prompts)", set->path);
    goto done;
  }
  const csv_record *header = &p.records[0];
  set->n_columns = header->n_fields;
  set->columns = sd_calloc((size_t)set->n_columns, sizeof *set->columns, err);
  if (!set->columns) goto done;
  for (int c = 0; c < set->n_columns; c++) {
    set->columns[c] = set->field_buf + p.field_off[header->first_field + c];
    if (check_utf8(set->columns[c])) {
      sd_fail(err, "%s:%d: invalid UTF-8 in the header", set->path, header->line);
      goto done;
    }
  }
  if (!template_or_null && sd_prompt_set_column(set, "prompt") < 0 &&
      !(sd_prompt_set_column(set, "nudity") >= 0 && sd_prompt_set_column(set, "people") >= 0 &&
        sd_prompt_set_column(set, "location") >= 0)) {
    char cols[512] = "";
    for (int c = 0; c < set->n_columns && strlen(cols) < 400; c++)
      snprintf(cols + strlen(cols), sizeof cols - strlen(cols), "%s\"%s\"", c ? ", " : "", set->columns[c]);
    sd_fail(err, "%s:%d: no \"prompt\" column (columns: %s); give a prompt template to build prompts", set->path,
            header->line, cols);
    rc = 1;
    goto done;
  }
  set->is_csv = 1;
  set->n_rows = p.n_records - 1;
  set->rows = sd_calloc((size_t)(set->n_rows ? set->n_rows : 1), sizeof *set->rows, err);
  set->cells = sd_calloc((size_t)(set->n_rows ? set->n_rows : 1) * (size_t)set->n_columns, sizeof *set->cells, err);
  if (!set->rows || !set->cells) goto done;
  for (int i = 0; i < set->n_rows; i++) {
    const csv_record *rec = &p.records[i + 1];
    set->rows[i].line = rec->line;
    if (rec->n_fields > set->n_columns) {
      sd_fail(err, "%s:%d: record %d has %d fields, the header has %d", set->path, rec->line, i, rec->n_fields,
              set->n_columns);
      goto done;
    }
    for (int c = 0; c < set->n_columns; c++) {
      char *cell = set->field_buf + (c < rec->n_fields ? p.field_off[rec->first_field + c] : 0);
      if (check_utf8(cell)) {
        sd_fail(err, "%s:%d: record %d, column \"%s\": invalid UTF-8", set->path, rec->line, i, set->columns[c]);
        goto done;
      }
      set->cells[(size_t)i * set->n_columns + c] = cell;
    }
  }
  rc = load_csv_rows(set, template_or_null, err);
done:
  free(p.field_off);
  free(p.records);
  return rc;
}

static void reset_set(sd_prompt_set *set) {
  free(set->template_used);
  if (set->built_prompts)
    for (int i = 0; i < set->n_rows; i++) free(set->built_prompts[i]);
  free(set->built_prompts);
  free(set->rows);
  free(set->columns);
  free(set->cells);
  free(set->field_buf);
  char *path = set->path;
  char hex[65];
  memcpy(hex, set->sha256_hex, sizeof hex);
  memset(set, 0, sizeof *set);
  set->path = path;
  memcpy(set->sha256_hex, hex, sizeof hex);
}

int sd_prompt_set_load(const char *path, const char *template_or_null, sd_prompt_set **out, sd_error *err) {
  *out = NULL;
  char *data = NULL;
  size_t len = 0;
  if (read_file(path, &data, &len, err)) return -1;
  sd_prompt_set *set = sd_calloc(1, sizeof *set, err);
  if (!set || !(set->path = sd_strdup(path))) {
    free(data);
    free(set);
    return sd_fail(err, "out of memory");
  }
  uint8_t digest[32];
  sd_sha256(data, len, digest);
  sd_sha256_hex(digest, set->sha256_hex);
  const char *text = data;
  size_t text_len = len;
  if (text_len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) text += 3, text_len -= 3;
  int rc;
  if (has_suffix(path, ".txt")) {
    rc = template_or_null ? sd_fail(err, "%s: a prompt template needs a CSV file with named columns", path)
                          : load_plain_text(set, text, text_len, err);
  } else {
    rc = load_csv(set, text, text_len, template_or_null, err);
    if (rc == 1 && !has_suffix(path, ".csv") && !template_or_null) {
      reset_set(set);
      rc = load_plain_text(set, text, text_len, err);
    }
  }
  if (rc == 0 && set->n_rows == 0) rc = sd_fail(err, "%s: no prompts in the file", path);
  free(data);
  if (rc != 0) {
    sd_prompt_set_free(set);
    return -1;
  }
  *out = set;
  return 0;
}

int sd_prompt_set_column(const sd_prompt_set *set, const char *column) {
  for (int c = 0; c < set->n_columns; c++)
    if (strcmp(set->columns[c], column) == 0) return c;
  return -1;
}

const char *sd_prompt_set_field(const sd_prompt_set *set, int row, const char *column) {
  if (!set || row < 0 || row >= set->n_rows) return NULL;
  if (!set->is_csv) return strcmp(column, "prompt") == 0 ? set->rows[row].prompt : NULL;
  int c = sd_prompt_set_column(set, column);
  return c < 0 ? NULL : set->cells[(size_t)row * set->n_columns + c];
}

void sd_prompt_set_free(sd_prompt_set *set) {
  if (!set) return;
  reset_set(set);
  free(set->path);
  free(set);
}
