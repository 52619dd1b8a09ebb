/* RUN/metrics.h5 for the evaluation commands (see run_table.h): /items read generically so that the runner's
 * columns survive a rewrite, the known columns picked out and typed, /sets, and the atomic rewrite. */
#include "eval/run_table.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval/scores_import.h"

int sd_run_table_column(const sd_run_table *t, const char *name) {
  for (int i = 0; i < t->n_fields; i++)
    if (strcmp(t->fields[i].name, name) == 0)
      return i;
  return -1;
}

static const void *cell(const sd_run_table *t, int64_t r, int c) {
  return t->rows + (size_t)r * t->row_size + t->fields[c].offset;
}

/* Numeric cell as int64 / double (the generic read keeps each member's own width). */
static int64_t cell_i64(const sd_run_table *t, int64_t r, int c) {
  const void *p = cell(t, r, c);
  switch (t->fields[c].type) {
  case SD_H5_I64:
    return *(const int64_t *)p;
  case SD_H5_I32:
    return *(const int32_t *)p;
  case SD_H5_U8:
    return *(const uint8_t *)p;
  case SD_H5_F32:
    return (int64_t) * (const float *)p;
  case SD_H5_F64:
    return (int64_t) * (const double *)p;
  default:
    return 0;
  }
}

static double cell_f64(const sd_run_table *t, int64_t r, int c) {
  const void *p = cell(t, r, c);
  switch (t->fields[c].type) {
  case SD_H5_F32:
    return *(const float *)p;
  case SD_H5_F64:
    return *(const double *)p;
  default:
    return (double)cell_i64(t, r, c);
  }
}

static const char *cell_str(const sd_run_table *t, int64_t r, int c) {
  return *(char *const *)cell(t, r, c);
}

typedef enum { COLUMN_STR, COLUMN_INT, COLUMN_NUMBER } column_kind;

/* Index of a column of the wanted kind; -1 when absent and optional; -2 (with the message) otherwise. */
static int find_column(const sd_run_table *t, const char *name, column_kind kind, int required, sd_error *err) {
  int c = sd_run_table_column(t, name);
  if (c < 0) {
    if (!required)
      return -1;
    sd_fail(err, "%s: /items has no column '%s'", t->path, name);
    return -2;
  }
  sd_h5_type type = t->fields[c].type;
  int ok = kind == COLUMN_STR   ? type == SD_H5_STR
           : kind == COLUMN_INT ? (type == SD_H5_I64 || type == SD_H5_I32 || type == SD_H5_U8)
                                : type != SD_H5_STR;
  if (!ok) {
    sd_fail(err, "%s: /items column '%s' is not %s", t->path, name,
            kind == COLUMN_STR   ? "a string"
            : kind == COLUMN_INT ? "an integer"
                                 : "a number");
    return -2;
  }
  return c;
}

static int read_sets(sd_h5 *f, sd_run_table *t, sd_error *err) {
  typedef struct {
    char *name, *counterpart;
  } set_row;
  static const sd_h5_field set_fields[] = {{"name", SD_H5_STR, offsetof(set_row, name)},
                                           {"counterpart", SD_H5_STR, offsetof(set_row, counterpart)}};
  set_row *rows = NULL;
  int64_t n = 0;
  if (sd_h5_read_table(f, "/sets", set_fields, 2, sizeof *rows, (void **)&rows, &n, err) != 0)
    return -1;
  t->sets = sd_calloc((size_t)(n > 0 ? n : 1), sizeof *t->sets, err);
  t->set_strings = sd_calloc((size_t)(n > 0 ? 2 * n : 1), sizeof *t->set_strings, err);
  if (!t->sets || !t->set_strings) {
    sd_h5_free_table(set_fields, 2, sizeof *rows, rows, n);
    return sd_fail_prefix(err, "%s", t->path);
  }
  /* The strings move into the table; the rows array goes. */
  for (int64_t i = 0; i < n; i++) {
    t->set_strings[2 * i] = rows[i].name;
    t->set_strings[2 * i + 1] = rows[i].counterpart;
    t->sets[i] = (sd_metric_set){rows[i].name, rows[i].counterpart[0] ? rows[i].counterpart : NULL};
  }
  free(rows);
  t->n_sets = (int)n;
  return 0;
}

/* Fills items[], images[] and item_ids[] from the generic rows. */
static int pick_columns(sd_run_table *t, const char *success_column, sd_error *err) {
  enum { MODEL, SET, ROW, SEED, IMAGE, SUCCESS, FAILED, CASE_ID, CATEGORIES, CLIP, REACTIVATION, N_COLUMNS };
  static const struct {
    const char *name;
    column_kind kind;
    int required;
  } wanted[N_COLUMNS] = {
      {"model", COLUMN_STR, 1},
      {"set", COLUMN_STR, 1},
      {"row", COLUMN_INT, 1},
      {"seed", COLUMN_INT, 1},
      {"image", COLUMN_STR, 1},
      {NULL, COLUMN_INT, 1}, /* success_column */
      {"failed", COLUMN_INT, 1},
      {"case_id", COLUMN_STR, 0},
      {"categories", COLUMN_STR, 0},
      {"clip_score", COLUMN_NUMBER, 0},
      {"reactivation", COLUMN_NUMBER, 0},
  };
  int c[N_COLUMNS];
  for (int i = 0; i < N_COLUMNS; i++)
    if ((c[i] = find_column(t, wanted[i].name ? wanted[i].name : success_column, wanted[i].kind, wanted[i].required,
                            err)) == -2)
      return -1;
  int c_model = c[MODEL], c_set = c[SET], c_row = c[ROW], c_seed = c[SEED], c_image = c[IMAGE];
  int c_success = c[SUCCESS], c_failed = c[FAILED], c_case = c[CASE_ID], c_cat = c[CATEGORIES], c_clip = c[CLIP];
  int c_react = c[REACTIVATION];
  size_t n = (size_t)(t->n_items > 0 ? t->n_items : 1);
  if (!(t->items = sd_calloc(n, sizeof *t->items, err)) || !(t->images = sd_calloc(n, sizeof *t->images, err)) ||
      !(t->item_ids = sd_calloc(n, sizeof *t->item_ids, err)))
    return sd_fail_prefix(err, "%s", t->path);
  for (int64_t r = 0; r < t->n_items; r++) {
    sd_metric_item *it = &t->items[r];
    it->model = cell_str(t, r, c_model);
    it->set = cell_str(t, r, c_set);
    it->row = cell_i64(t, r, c_row);
    it->seed = (uint64_t)cell_i64(t, r, c_seed);
    it->success = (int)cell_i64(t, r, c_success);
    it->success = it->success > 0 ? 1 : it->success == 0 ? 0 : -1;
    it->failed = cell_i64(t, r, c_failed) != 0;
    it->case_id = c_case >= 0 ? cell_str(t, r, c_case) : "";
    it->categories = c_cat >= 0 ? cell_str(t, r, c_cat) : "";
    it->clip_score = c_clip >= 0 ? cell_f64(t, r, c_clip) : NAN;
    it->reactivation = c_react >= 0 ? cell_f64(t, r, c_react) : NAN;
    const char *image = cell_str(t, r, c_image);
    t->images[r] = image[0] ? image : NULL;
    char id[1024];
    if (sd_item_id(it->model, it->set, it->row, it->seed, id, sizeof id) != 0 || !(t->item_ids[r] = sd_strdup(id)))
      return sd_fail(err, "%s: item %lld: id too long or out of memory", t->path, (long long)r);
  }
  return 0;
}

int sd_run_table_read(const char *run_dir, const char *success_column, sd_run_table *t, sd_error *err) {
  memset(t, 0, sizeof *t);
  err->msg[0] = '\0'; /* to tell an allocation failure (no message) from the others below */
  sd_h5 *f = NULL;
  const char *column = success_column ? success_column : "success";
  size_t len = strlen(run_dir) + sizeof "/metrics.h5";
  if (!(t->run_dir = sd_strdup(run_dir)) || !(t->path = sd_malloc(len, err)) ||
      !(t->success_column = sd_strdup(column)))
    goto fail;
  snprintf(t->path, len, "%s/metrics.h5", run_dir);
  if (sd_h5_open(t->path, &f, err) != 0 || sd_h5_table_fields(f, "/items", &t->fields, &t->n_fields, err) != 0)
    goto fail;
  t->row_size = (size_t)(t->n_fields > 0 ? t->n_fields : 1) * SD_H5_FIELD_SLOT;
  if (sd_h5_read_table(f, "/items", t->fields, t->n_fields, t->row_size, (void **)&t->rows, &t->n_items, err) != 0 ||
      read_sets(f, t, err) != 0 || pick_columns(t, column, err) != 0)
    goto fail;
  sd_h5_close(f);
  return 0;
fail:
  if (!err->msg[0])
    sd_fail(err, "%s: out of memory", run_dir);
  sd_h5_close(f);
  sd_run_table_free(t);
  return -1;
}

void sd_run_table_free(sd_run_table *t) {
  if (t->rows)
    sd_h5_free_table(t->fields, t->n_fields, t->row_size, t->rows, t->n_items);
  sd_h5_free_fields(t->fields, t->n_fields);
  if (t->item_ids)
    sd_h5_free_strings(t->item_ids, t->n_items);
  if (t->set_strings)
    sd_h5_free_strings(t->set_strings, 2 * (int64_t)t->n_sets);
  free(t->items);
  free(t->images);
  free(t->sets);
  free(t->success_column);
  free(t->path);
  free(t->run_dir);
  memset(t, 0, sizeof *t);
}

/* ---- rewrite ------------------------------------------------------------------------------------------- */

static int is_rewritten(const char *root_child) {
  return !strcmp(root_child, "items") || !strcmp(root_child, "metrics") || !strcmp(root_child, "metrics_by_category");
}

/* Copies what the rewrite keeps from src: file attributes and every other root object. */
static int copy_kept(sd_h5 *src, sd_h5 *dst, sd_error *err) {
  char **names = NULL;
  int n = 0, rc = 0;
  if (sd_h5_copy_attrs(src, "/", dst, "/", err) != 0 || sd_h5_list(src, "/", &names, &n, err) != 0)
    return -1;
  for (int i = 0; i < n && rc == 0; i++) {
    if (is_rewritten(names[i]))
      continue;
    char path[1024];
    snprintf(path, sizeof path, "/%s", names[i]);
    rc = sd_h5_copy(src, path, dst, path, err);
  }
  sd_h5_free_strings(names, n);
  return rc;
}

/* /items with the old columns (less success_<name>/score_<name>) and the two new ones. */
static int write_items(const sd_run_table *t, sd_h5 *src, sd_h5 *dst, const char *name, const int *success,
                       const double *score, const sd_run_provenance *p, sd_error *err) {
  char success_name[300], score_name[300];
  snprintf(success_name, sizeof success_name, "success_%s", name);
  snprintf(score_name, sizeof score_name, "score_%s", name);
  sd_h5_field *fields = sd_calloc((size_t)t->n_fields + 2, sizeof *fields, err);
  int n = 0, rc = -1;
  char *rows = NULL;
  if (!fields)
    return sd_fail_prefix(err, "%s", t->path);
  int *kept = sd_calloc((size_t)t->n_fields + 1, sizeof *kept, err);
  if (!kept)
    goto done;
  for (int i = 0; i < t->n_fields; i++)
    if (strcmp(t->fields[i].name, success_name) != 0 && strcmp(t->fields[i].name, score_name) != 0) {
      kept[n] = i;
      fields[n] = t->fields[i];
      fields[n].offset = (size_t)n * SD_H5_FIELD_SLOT;
      n++;
    }
  fields[n] = (sd_h5_field){success_name, SD_H5_I32, (size_t)n * SD_H5_FIELD_SLOT};
  fields[n + 1] = (sd_h5_field){score_name, SD_H5_F64, (size_t)(n + 1) * SD_H5_FIELD_SLOT};
  size_t row_size = (size_t)(n + 2) * SD_H5_FIELD_SLOT;
  if (!(rows = sd_calloc((size_t)(t->n_items > 0 ? t->n_items : 1), row_size, err)))
    goto done;
  /* Slots are copied as bytes: string pointers stay owned by t. */
  for (int64_t r = 0; r < t->n_items; r++) {
    char *out = rows + (size_t)r * row_size;
    for (int k = 0; k < n; k++)
      memcpy(out + (size_t)k * SD_H5_FIELD_SLOT, cell(t, r, kept[k]), SD_H5_FIELD_SLOT);
    int32_t s = success[r];
    memcpy(out + (size_t)n * SD_H5_FIELD_SLOT, &s, sizeof s);
    memcpy(out + (size_t)(n + 1) * SD_H5_FIELD_SLOT, &score[r], sizeof score[r]);
  }
  char attr[320];
  snprintf(attr, sizeof attr, "rule_%s", name);
  if (sd_h5_write_table(dst, "/items", fields, n + 2, row_size, rows, t->n_items, err) != 0 ||
      sd_h5_copy_attrs(src, "/items", dst, "/items", err) != 0 ||
      sd_h5_attr_set_str(dst, "/items", attr, p->rule, err) != 0)
    goto done;
  snprintf(attr, sizeof attr, "scores_csv_%s", name);
  if (sd_h5_attr_set_str(dst, "/items", attr, p->scores_csv, err) != 0)
    goto done;
  snprintf(attr, sizeof attr, "scores_sha256_%s", name);
  if (sd_h5_attr_set_str(dst, "/items", attr, p->scores_sha256, err) != 0)
    goto done;
  rc = 0;
done:
  free(rows);
  free(kept);
  free(fields);
  return rc;
}

static int write_metrics(sd_h5 *dst, const sd_metrics *m, const sd_run_provenance *p, sd_error *err) {
  static const char *const tables[] = {"/metrics", "/metrics_by_category"};
  if (sd_metrics_write_h5(dst, m, err) != 0)
    return -1;
  for (int i = 0; i < 2; i++)
    if (sd_h5_attr_set_str(dst, tables[i], "success_column", p->success_column, err) != 0 ||
        sd_h5_attr_set_str(dst, tables[i], "rule", p->rule, err) != 0 ||
        sd_h5_attr_set_str(dst, tables[i], "scores_csv", p->scores_csv, err) != 0 ||
        sd_h5_attr_set_str(dst, tables[i], "scores_sha256", p->scores_sha256, err) != 0)
      return -1;
  return 0;
}

int sd_run_table_rewrite(const sd_run_table *t, const char *name, const int *success, const double *score,
                         const sd_metrics *m, const sd_run_provenance *p, sd_error *err) {
  sd_h5 *src = NULL, *dst = NULL;
  if (sd_h5_open(t->path, &src, err) != 0)
    return -1;
  if (sd_h5_create(t->path, &dst, err) != 0) {
    sd_h5_close(src);
    return -1;
  }
  if (copy_kept(src, dst, err) != 0 || write_items(t, src, dst, name, success, score, p, err) != 0 ||
      write_metrics(dst, m, p, err) != 0) {
    sd_h5_abort(dst);
    sd_h5_close(src);
    return -1;
  }
  sd_h5_close(src);
  return sd_h5_commit(dst, err);
}
