/* sdprune grid: contact sheets of an attack run, one PNG per model x set (RUN/grids/<model>/<set>.png),
 * tiles in (row, seed) order with frames for the judgement. Reads RUN/metrics.h5 and the images; judges
 * nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/files.h"
#include "eval/grid.h"
#include "eval/run_table.h"
#include "io/h5.h"

static void usage(FILE *out) {
  fprintf(out, "usage: sdprune grid RUN [--columns C] [--tile PX] [--filter box|nearest] [--success COLUMN] "
               "[--quiet]\n\n"
               "Writes one contact sheet per model x set of an attack run, RUN/grids/<model>/<set>.png: the images\n"
               "of RUN/metrics.h5 /items in (row, seed) order, each scaled into a square tile (aspect kept), framed\n"
               "red (attack success), green (no success) or grey (not judged; an empty tile when generation\n"
               "failed). The tile order is in the PNG's 'items' text chunk, one item id per line.\n\n"
               "  --columns C       tiles per row (default 10)\n"
               "  --tile PX         tile side in pixels (default 128)\n"
               "  --filter F        box (area average, default) or nearest\n"
               "  --success COLUMN  the /items column for the frames (default: the one /metrics was computed\n"
               "                    from, its success_column attribute, else success)\n"
               "  --quiet           no line per sheet\n"
               "Exit status: 0 written, 1 failure (an unreadable image is named), 2 usage.\n");
}

typedef struct {
  sd_grid_options options;
  const char *success_column; /* NULL: from /metrics */
  int quiet;
} grid_args;

/* The column /metrics was computed from (its success_column attribute), else "success"; malloc'ed. */
static char *metrics_success_column(const char *run) {
  char path[4096];
  snprintf(path, sizeof path, "%s/metrics.h5", run);
  sd_h5 *f;
  sd_error err;
  char *column = NULL;
  if (sd_h5_open(path, &f, &err) == 0) {
    if (sd_h5_attr_exists(f, "/metrics", "success_column") &&
        sd_h5_attr_get_str(f, "/metrics", "success_column", &column, &err) != 0)
      column = NULL;
    sd_h5_close(f);
  }
  return column ? column : sd_strdup("success");
}

/* A model or set name used as a path component. */
static int safe_component(const char *s) {
  return s[0] && strcmp(s, ".") && strcmp(s, "..") && !strchr(s, '/');
}

typedef struct {
  int64_t row;
  uint64_t seed;
  int64_t item;
} tile_key;

static int by_row_seed(const void *a, const void *b) {
  const tile_key *x = a, *y = b;
  if (x->row != y->row)
    return x->row < y->row ? -1 : 1;
  if (x->seed != y->seed)
    return x->seed < y->seed ? -1 : 1;
  return x->item < y->item ? -1 : x->item > y->item;
}

/* Puts order[0..n) in (row, seed) order, item order breaking ties. */
static int sort_by_row_seed(const sd_run_table *t, int64_t *order, int64_t n) {
  tile_key *keys = malloc(sizeof *keys * (size_t)(n > 0 ? n : 1));
  if (!keys)
    return -1;
  for (int64_t k = 0; k < n; k++)
    keys[k] = (tile_key){t->items[order[k]].row, t->items[order[k]].seed, order[k]};
  qsort(keys, (size_t)n, sizeof *keys, by_row_seed);
  for (int64_t k = 0; k < n; k++)
    order[k] = keys[k].item;
  free(keys);
  return 0;
}

/* Writes the sheet of the items in order[0..n) (one model x set). */
static int write_sheet(const sd_run_table *t, const char *model, const char *set, int64_t *order, int64_t n,
                       const grid_args *args) {
  if (sort_by_row_seed(t, order, n) != 0) {
    fprintf(stderr, "sdprune grid: out of memory\n");
    return -1;
  }
  char dir[4096], path[4200];
  snprintf(dir, sizeof dir, "%s/grids/%s", t->run_dir, model);
  snprintf(path, sizeof path, "%s/%s.png", dir, set);
  if (sd_mkdir_p(dir) != 0) {
    fprintf(stderr, "sdprune grid: cannot create %s\n", dir);
    return -1;
  }
  sd_grid_tile *tiles = calloc((size_t)n, sizeof *tiles);
  char **image_paths = calloc((size_t)n, sizeof *image_paths);
  size_t ids_len = 1;
  for (int64_t k = 0; k < n; k++)
    ids_len += strlen(t->item_ids[order[k]]) + 1;
  char *ids = malloc(ids_len);
  int rc = -1;
  int64_t counts[3] = {0, 0, 0}; /* not judged, no success, success */
  if (!tiles || !image_paths || !ids) {
    fprintf(stderr, "sdprune grid: out of memory\n");
    goto done;
  }
  ids[0] = '\0';
  size_t ids_at = 0;
  for (int64_t k = 0; k < n; k++) {
    const sd_metric_item *it = &t->items[order[k]];
    const char *image = t->images[order[k]];
    if (!it->failed && image) {
      size_t len = strlen(t->run_dir) + strlen(image) + 2;
      if (!(image_paths[k] = malloc(len))) {
        fprintf(stderr, "sdprune grid: out of memory\n");
        goto done;
      }
      snprintf(image_paths[k], len, "%s/%s", t->run_dir, image);
    }
    int judged = it->failed ? -1 : it->success;
    tiles[k] = (sd_grid_tile){image_paths[k], judged};
    counts[judged + 1]++;
    ids_at += (size_t)sprintf(ids + ids_at, "%s%s", t->item_ids[order[k]], k + 1 < n ? "\n" : "");
  }
  char title[1024], description[1024];
  snprintf(title, sizeof title, "%s / %s", model, set);
  snprintf(description, sizeof description,
           "sdprune grid: tiles in (row, seed) order, frames by /items column %s: red = success, green = no success, "
           "grey = not judged or failed",
           t->success_column);
  sd_png_text texts[] = {{"Title", title}, {"Description", description}, {"items", ids}};
  sd_error err;
  if (sd_grid_write(path, tiles, (int)n, &args->options, texts, 3, &err) != 0) {
    fprintf(stderr, "sdprune grid: %s\n", err.msg);
    goto done;
  }
  if (!args->quiet)
    fprintf(stderr, "sdprune grid: %s: %lld tiles (%lld success, %lld no success, %lld not judged)\n", path,
            (long long)n, (long long)counts[2], (long long)counts[1], (long long)counts[0]);
  rc = 0;
done:
  if (image_paths)
    for (int64_t k = 0; k < n; k++)
      free(image_paths[k]);
  free(image_paths);
  free(tiles);
  free(ids);
  return rc;
}

/* One sheet per model (first appearance) x set (the /sets order) that has items. */
static int write_sheets(const sd_run_table *t, const grid_args *args) {
  int64_t *order = malloc(sizeof *order * (size_t)(t->n_items > 0 ? t->n_items : 1));
  char *model_done = calloc((size_t)(t->n_items > 0 ? t->n_items : 1), 1);
  int rc = 0, sheets = 0;
  if (!order || !model_done) {
    fprintf(stderr, "sdprune grid: out of memory\n");
    free(order);
    free(model_done);
    return 1;
  }
  for (int64_t first = 0; first < t->n_items && rc == 0; first++) {
    const char *model = t->items[first].model;
    if (model_done[first])
      continue;
    for (int64_t i = first; i < t->n_items; i++)
      if (!strcmp(t->items[i].model, model))
        model_done[i] = 1;
    for (int s = 0; s < t->n_sets && rc == 0; s++) {
      int64_t n = 0;
      for (int64_t i = first; i < t->n_items; i++)
        if (!strcmp(t->items[i].model, model) && !strcmp(t->items[i].set, t->sets[s].name))
          order[n++] = i;
      if (n == 0)
        continue;
      if (!safe_component(model) || !safe_component(t->sets[s].name)) {
        fprintf(stderr, "sdprune grid: %s: model '%s' / set '%s' cannot name a file under grids/\n", t->path, model,
                t->sets[s].name);
        rc = -1;
        break;
      }
      rc = write_sheet(t, model, t->sets[s].name, order, n, args);
      sheets += rc == 0;
    }
  }
  free(order);
  free(model_done);
  if (rc == 0 && sheets == 0)
    fprintf(stderr, "sdprune grid: %s: no items\n", t->path);
  return rc == 0 ? 0 : 1;
}

int cmd_grid(int argc, char **argv) {
  grid_args args = {SD_GRID_DEFAULTS, NULL, 0};
  const char *run = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    long v;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--quiet")) {
      args.quiet = 1;
    } else if (!strcmp(a, "--columns") || !strcmp(a, "--tile")) {
      const char *value = sd_cli_value("grid", argc, argv, &i);
      int is_columns = !strcmp(a, "--columns");
      if (!value || sd_cli_int("grid", a, value, 1, is_columns ? 1000 : 4096, &v))
        return 2;
      *(is_columns ? &args.options.columns : &args.options.tile) = (int)v;
    } else if (!strcmp(a, "--filter")) {
      const char *value = sd_cli_value("grid", argc, argv, &i);
      if (!value)
        return 2;
      if (!strcmp(value, "box") || !strcmp(value, "nearest")) {
        args.options.filter = !strcmp(value, "box") ? SD_GRID_BOX : SD_GRID_NEAREST;
      } else {
        fprintf(stderr, "sdprune grid: --filter must be box or nearest, got '%s'\n", value);
        return 2;
      }
    } else if (!strcmp(a, "--success")) {
      if (!(args.success_column = sd_cli_value("grid", argc, argv, &i)))
        return 2;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "sdprune grid: unknown option '%s' (see --help)\n", a);
      return 2;
    } else if (!run) {
      run = a;
    } else {
      fprintf(stderr, "sdprune grid: one RUN folder only (see --help)\n");
      return 2;
    }
  }
  if (!run) {
    fprintf(stderr, "sdprune grid: RUN is required (see --help)\n");
    return 2;
  }
  /* Frames in proportion to the tile: 4 px at the default 128. */
  args.options.frame = args.options.tile >= 32 ? args.options.tile / 32 : 1;
  char *column = args.success_column ? sd_strdup(args.success_column) : metrics_success_column(run);
  sd_run_table t;
  sd_error err;
  int status = 1;
  if (!column)
    fprintf(stderr, "sdprune grid: out of memory\n");
  else if (sd_run_table_read(run, column, &t, &err) != 0)
    fprintf(stderr, "sdprune grid: %s\n", err.msg);
  else {
    status = write_sheets(&t, &args);
    sd_run_table_free(&t);
  }
  free(column);
  return status;
}
