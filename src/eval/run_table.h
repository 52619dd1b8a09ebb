/* The attack run's tables in RUN/metrics.h5 as the evaluation commands read them: /items (one row per
 * generated image, every column kept, known ones picked out by name) and /sets; and the rewrite of the file
 * with new per-item columns and recomputed /metrics. Not the runner that writes the file first, and not the
 * metrics themselves (metrics.h).
 *
 * /items columns used (others are carried along untouched): model, set (str), row, seed (integers), image
 * (str, relative to RUN), success (integer: 1, 0, -1 not judged), failed (integer) -- required; case_id,
 * categories (str), clip_score, reactivation (float) -- "" or NaN when absent; any success_<NAME> column can
 * stand in for success. /sets columns: name, counterpart (str, "" when none). */
#ifndef SD_RUN_TABLE_H
#define SD_RUN_TABLE_H

#include <stdint.h>

#include "core/error.h"
#include "eval/metrics.h"
#include "io/h5.h"

typedef struct {
  char *run_dir;
  char *path; /* RUN/metrics.h5 */
  /* /items, generically: field i of row r is at rows + r * row_size + fields[i].offset */
  sd_h5_field *fields;
  int n_fields;
  size_t row_size;
  char *rows;
  int64_t n_items;
  /* the known columns, per item (strings borrowed from rows) */
  sd_metric_item *items;
  const char **images; /* relative to run_dir; NULL when empty */
  char **item_ids;     /* sd_item_id form */
  /* /sets */
  sd_metric_set *sets;
  char **set_strings; /* [2 * n_sets]: name, counterpart */
  int n_sets;
  char *success_column; /* the column items[].success came from */
} sd_run_table;

/* Reads RUN/metrics.h5; items[].success from success_column (NULL: "success"). Errors name the file and the
 * missing or mistyped column. */
int sd_run_table_read(const char *run_dir, const char *success_column, sd_run_table *t, sd_error *err);
void sd_run_table_free(sd_run_table *t);

/* Index of a column of /items, or -1. */
int sd_run_table_column(const sd_run_table *t, const char *name);

/* The attributes of a rewritten /metrics that say where its success came from. */
typedef struct {
  const char *success_column; /* "success_<NAME>" */
  const char *rule;           /* canonical rule text */
  const char *scores_csv;     /* as given */
  const char *scores_sha256;
} sd_run_provenance;

/* Rewrites RUN/metrics.h5 atomically (sd_h5_create / commit): the file's attributes and every object but
 * /items, /metrics and /metrics_by_category copied; /items with its attributes and columns, minus any old
 * success_<name> / score_<name>, plus those two from success[] (int32) and score[] (float64); /metrics and
 * /metrics_by_category from m, with p's fields as attributes. On failure the old file is untouched. */
int sd_run_table_rewrite(const sd_run_table *t, const char *name, const int *success, const double *score,
                         const sd_metrics *m, const sd_run_provenance *p, sd_error *err);

#endif
