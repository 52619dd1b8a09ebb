/* stats.h5 reading, writing and merging (schema in stats_io.h), through io/h5.h only. */
#include "stats/stats_io.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5.h"

#define STATS_FORMAT "sdprune-stats"
#define STATS_FORMAT_VERSION 1

static const char *const status_names[] = {"pending", "done", "failed"};

typedef struct {
  int64_t item;
  char *set;
  int64_t row, case_number;
  char *prompt;
  int64_t seed;
  double guidance;
  int64_t width, height;
  char *status;
  double seconds;
  char *error;
  char *per_item_file;
} item_row;

static const sd_h5_field item_fields[] = {
    {"item", SD_H5_I64, offsetof(item_row, item)},
    {"set", SD_H5_STR, offsetof(item_row, set)},
    {"row", SD_H5_I64, offsetof(item_row, row)},
    {"case_number", SD_H5_I64, offsetof(item_row, case_number)},
    {"prompt", SD_H5_STR, offsetof(item_row, prompt)},
    {"seed", SD_H5_I64, offsetof(item_row, seed)},
    {"guidance", SD_H5_F64, offsetof(item_row, guidance)},
    {"width", SD_H5_I64, offsetof(item_row, width)},
    {"height", SD_H5_I64, offsetof(item_row, height)},
    {"status", SD_H5_STR, offsetof(item_row, status)},
    {"seconds", SD_H5_F64, offsetof(item_row, seconds)},
    {"error", SD_H5_STR, offsetof(item_row, error)},
    {"per_item_file", SD_H5_STR, offsetof(item_row, per_item_file)},
};
#define N_ITEM_FIELDS ((int)(sizeof item_fields / sizeof *item_fields))

typedef struct {
  int64_t index;
  char *name, *block, *diffusers, *kind;
  int64_t width, site_index;
} layer_row;

static const sd_h5_field layer_fields[] = {
    {"index", SD_H5_I64, offsetof(layer_row, index)},
    {"name", SD_H5_STR, offsetof(layer_row, name)},
    {"block", SD_H5_STR, offsetof(layer_row, block)},
    {"diffusers", SD_H5_STR, offsetof(layer_row, diffusers)},
    {"kind", SD_H5_STR, offsetof(layer_row, kind)},
    {"width", SD_H5_I64, offsetof(layer_row, width)},
    {"site_index", SD_H5_I64, offsetof(layer_row, site_index)},
};
#define N_LAYER_FIELDS ((int)(sizeof layer_fields / sizeof *layer_fields))

/* ---- writing --------------------------------------------------------------------------------- */

static int write_settings(sd_h5 *f, const sd_stats *s, sd_error *err) {
  const sd_stats_settings *st = &s->settings;
  struct {
    const char *name, *value;
  } strs[] = {{"format", STATS_FORMAT},
              {"sdprune_version", st->sdprune_version},
              {"git_revision", st->git_revision},
              {"command_line", st->command_line},
              {"created_utc", st->created_utc},
              {"model", st->model},
              {"model_hash", st->model_hash},
              {"unet_override", st->unet_override},
              {"text_encoder_override", st->text_encoder_override},
              {"sampler", st->sampler},
              {"hooks", st->hooks}};
  for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
    if (sd_h5_attr_set_str(f, "/", strs[i].name, strs[i].value ? strs[i].value : "", err)) return -1;
  struct {
    const char *name;
    int64_t value;
  } ints[] = {{"format_version", STATS_FORMAT_VERSION}, {"steps", st->steps},   {"max_steps", st->max_steps},
              {"per_item", st->per_item},                {"n_steps", s->n_steps}, {"fixed_point_bits", SD_STATS_FIX_BITS},
              {"n_items", s->n_items}};
  for (size_t i = 0; i < sizeof ints / sizeof *ints; i++)
    if (sd_h5_attr_set_i64(f, "/", ints[i].name, ints[i].value, err)) return -1;
  if (sd_h5_attr_set_f64(f, "/", "eta", st->eta, err)) return -1;
  return sd_h5_attr_set_f64(f, "/", "fixed_point_scale", 1.0 / (double)(1 << SD_STATS_FIX_BITS), err);
}

static int write_layers(sd_h5 *f, const sd_stats *s, sd_error *err) {
  layer_row *rows = sd_calloc((size_t)(s->n_layers ? s->n_layers : 1), sizeof *rows, err);
  if (!rows) return -1;
  for (int l = 0; l < s->n_layers; l++) {
    const sd_stats_layer *L = &s->layers[l];
    rows[l] = (layer_row){l, L->name, L->block, L->diffusers, L->kind == SD_HOOK_FF_NEURONS ? "ff" : "attn2",
                          L->width, L->site_index};
  }
  int rc = sd_h5_write_table(f, "/layers", layer_fields, N_LAYER_FIELDS, sizeof *rows, rows, s->n_layers, err);
  free(rows);
  return rc;
}

static int write_items(sd_h5 *f, const sd_stats *s, sd_error *err) {
  item_row *rows = sd_calloc((size_t)(s->n_items ? s->n_items : 1), sizeof *rows, err);
  if (!rows) return -1;
  for (int64_t i = 0; i < s->n_items; i++) {
    const sd_stats_item *it = &s->items[i];
    int st = it->status >= 0 && it->status <= 2 ? it->status : 0;
    rows[i] = (item_row){i,          s->sets[it->set].name, it->row,        it->case_number,
                         it->prompt, (int64_t)it->seed,     it->guidance,   it->width,
                         it->height, (char *)status_names[st], it->seconds, it->error,
                         it->per_item_file};
  }
  int rc = sd_h5_write_table(f, "/items", item_fields, N_ITEM_FIELDS, sizeof *rows, rows, s->n_items, err);
  free(rows);
  return rc;
}

static int write_acc(sd_h5 *f, const char *group, const sd_stats_acc *a, int n_steps, int width, int compress,
                     sd_error *err) {
  char path[1400];
  int64_t shape2[2] = {n_steps, SD_STATS_BRANCHES}, shape3[3] = {n_steps, SD_STATS_BRANCHES, width};
  snprintf(path, sizeof path, "%s/count", group);
  if (sd_h5_write(f, path, SD_H5_I64, 2, shape2, a->count, 0, err)) return -1;
  for (int q = 0; q < SD_STATS_NQ; q++) {
    snprintf(path, sizeof path, "%s/%s", group, sd_stats_quantity_names[q]);
    if (sd_h5_write(f, path, SD_H5_I64, 3, shape3, a->q[q], compress, err)) return -1;
  }
  snprintf(path, sizeof path, "%s/max", group);
  return sd_h5_write(f, path, SD_H5_F32, 3, shape3, a->max, compress, err);
}

static int write_sets(sd_h5 *f, const sd_stats *s, int compress, sd_error *err) {
  char group[1024];
  for (int k = 0; k < s->n_sets; k++) {
    const sd_stats_set *set = &s->sets[k];
    snprintf(group, sizeof group, "/sets/%s", set->name);
    if (sd_h5_group(f, group, err) || sd_h5_attr_set_str(f, group, "role", set->role, err) ||
        sd_h5_attr_set_str(f, group, "file", set->file ? set->file : "", err) ||
        sd_h5_attr_set_str(f, group, "file_sha256", set->file_sha256 ? set->file_sha256 : "", err) ||
        sd_h5_attr_set_str(f, group, "template", set->template_used ? set->template_used : "", err) ||
        sd_h5_attr_set_i64(f, group, "n_rows", set->n_rows, err) ||
        sd_h5_attr_set_i64(f, group, "items_done", set->items_done, err))
      return -1;
    for (int l = 0; set->layers && l < s->n_layers; l++) {
      char lg[1200];
      snprintf(lg, sizeof lg, "%s/%s", group, s->layers[l].name);
      if (write_acc(f, lg, &set->layers[l], s->n_steps, s->layers[l].width, compress, err)) return -1;
    }
  }
  return 0;
}

/* /per_item/<set>/<file stem> -> the record file, relative to the stats file's folder. */
static int write_item_links(sd_h5 *f, const sd_stats *s, sd_error *err) {
  for (int64_t i = 0; i < s->n_items; i++) {
    const sd_stats_item *it = &s->items[i];
    if (it->status != SD_ITEM_DONE || !it->per_item_file || !*it->per_item_file) continue;
    const char *base = strrchr(it->per_item_file, '/');
    base = base ? base + 1 : it->per_item_file;
    char link[1024];
    snprintf(link, sizeof link, "/per_item/%s/%.*s", s->sets[it->set].name,
             (int)(strlen(base) > 3 && !strcmp(base + strlen(base) - 3, ".h5") ? strlen(base) - 3 : strlen(base)), base);
    if (sd_h5_link_external(f, link, it->per_item_file, "/", err)) return -1;
  }
  return 0;
}

int sd_stats_write(const char *path, const sd_stats *s, sd_error *err) { return sd_stats_write_ex(path, s, 1, err); }

int sd_stats_write_ex(const char *path, const sd_stats *s, int compress, sd_error *err) {
  sd_h5 *f = NULL;
  if (sd_h5_create(path, &f, err)) return -1;
  int64_t n = s->n_steps;
  if (write_settings(f, s, err) || write_layers(f, s, err) ||
      sd_h5_write(f, "/timesteps", SD_H5_F32, 1, &n, s->timesteps, 0, err) || write_items(f, s, err) ||
      write_sets(f, s, compress, err) || write_item_links(f, s, err)) {
    sd_h5_abort(f);
    return -1;
  }
  return sd_h5_commit(f, err);
}

int sd_stats_write_item_record(const char *path, const sd_stats *s, const sd_stats_item *item, const float *const *mean,
                               const float *const *max, sd_error *err) {
  sd_h5 *f = NULL;
  if (sd_h5_create(path, &f, err)) return -1;
  char seed[32];
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)item->seed);
  if (sd_h5_attr_set_str(f, "/", "format", "sdprune-item", err) ||
      sd_h5_attr_set_str(f, "/", "set", s->sets[item->set].name, err) ||
      sd_h5_attr_set_i64(f, "/", "row", item->row, err) ||
      sd_h5_attr_set_i64(f, "/", "case_number", item->case_number, err) ||
      sd_h5_attr_set_str(f, "/", "seed", seed, err) || sd_h5_attr_set_str(f, "/", "prompt", item->prompt, err) ||
      sd_h5_attr_set_str(f, "/", "model_hash", s->settings.model_hash, err) ||
      sd_h5_attr_set_str(f, "/", "branch", "cond", err))
    goto fail;
  for (int l = 0; l < s->n_layers; l++) {
    char p[1024];
    int64_t shape[2] = {s->n_steps, s->layers[l].width};
    snprintf(p, sizeof p, "/%s/mean", s->layers[l].name);
    if (sd_h5_write(f, p, SD_H5_F32, 2, shape, mean[l], 1, err)) goto fail;
    snprintf(p, sizeof p, "/%s/max", s->layers[l].name);
    if (sd_h5_write(f, p, SD_H5_F32, 2, shape, max[l], 1, err)) goto fail;
  }
  return sd_h5_commit(f, err);
fail:
  sd_h5_abort(f);
  return -1;
}

/* ---- reading --------------------------------------------------------------------------------- */

static int get_str(sd_h5 *f, const char *name, char **out, sd_error *err) {
  if (sd_h5_attr_get_str(f, "/", name, out, err)) return -1;
  if (!**out) { /* empty strings stand for "absent" */
    free(*out);
    *out = NULL;
  }
  return 0;
}

static int get_int(sd_h5 *f, const char *name, int *out, sd_error *err) {
  int64_t v;
  if (sd_h5_attr_get_i64(f, "/", name, &v, err)) return -1;
  *out = (int)v;
  return 0;
}

static int read_settings(sd_h5 *f, sd_stats *s, sd_error *err) {
  sd_stats_settings *st = &s->settings;
  char *format = NULL;
  if (sd_h5_attr_get_str(f, "/", "format", &format, err)) return -1;
  int ok = !strcmp(format, STATS_FORMAT);
  free(format);
  if (!ok) return sd_fail(err, "%s: not an sdprune statistics file (format attribute)", sd_h5_path(f));
  int version = 0;
  if (get_int(f, "format_version", &version, err)) return -1;
  if (version != STATS_FORMAT_VERSION)
    return sd_fail(err, "%s: statistics format version %d, this sdprune reads %d", sd_h5_path(f), version,
                   STATS_FORMAT_VERSION);
  int bits = 0;
  if (get_int(f, "fixed_point_bits", &bits, err)) return -1;
  if (bits != SD_STATS_FIX_BITS)
    return sd_fail(err, "%s: fixed_point_bits %d, expected %d", sd_h5_path(f), bits, SD_STATS_FIX_BITS);
  struct {
    const char *name;
    char **dst;
  } strs[] = {{"sdprune_version", &st->sdprune_version},
              {"git_revision", &st->git_revision},
              {"command_line", &st->command_line},
              {"created_utc", &st->created_utc},
              {"model", &st->model},
              {"model_hash", &st->model_hash},
              {"unet_override", &st->unet_override},
              {"text_encoder_override", &st->text_encoder_override},
              {"sampler", &st->sampler},
              {"hooks", &st->hooks}};
  for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
    if (get_str(f, strs[i].name, strs[i].dst, err)) return -1;
  if (get_int(f, "steps", &st->steps, err) || get_int(f, "max_steps", &st->max_steps, err) ||
      get_int(f, "per_item", &st->per_item, err) || get_int(f, "n_steps", &s->n_steps, err) ||
      sd_h5_attr_get_f64(f, "/", "eta", &st->eta, err))
    return -1;
  if (!st->model_hash || !st->sampler || s->n_steps < 1)
    return sd_fail(err, "%s: incomplete settings (model_hash, sampler or n_steps)", sd_h5_path(f));
  return 0;
}

static int read_layers(sd_h5 *f, sd_stats *s, sd_error *err) {
  layer_row *rows = NULL;
  int64_t n = 0;
  if (sd_h5_read_table(f, "/layers", layer_fields, N_LAYER_FIELDS, sizeof *rows, (void **)&rows, &n, err)) return -1;
  int rc = -1;
  if (!(s->layers = sd_calloc((size_t)(n ? n : 1), sizeof *s->layers, err))) goto done;
  for (int64_t l = 0; l < n; l++) {
    sd_stats_layer *L = &s->layers[l];
    s->n_layers = (int)l + 1;
    L->name = sd_strdup(rows[l].name ? rows[l].name : "");
    L->block = sd_strdup(rows[l].block ? rows[l].block : "");
    L->diffusers = sd_strdup(rows[l].diffusers ? rows[l].diffusers : "");
    L->kind = rows[l].kind && !strcmp(rows[l].kind, "attn2") ? SD_HOOK_ATTN2_OUT : SD_HOOK_FF_NEURONS;
    L->width = (int)rows[l].width;
    L->site_index = (int)rows[l].site_index;
    if (!L->name || !L->block || !L->diffusers) {
      sd_fail(err, "out of memory");
      goto done;
    }
    if (L->width < 1 || !*L->name || strchr(L->name, '/')) {
      sd_fail(err, "%s: /layers row %lld: bad layer (name '%s', width %d)", sd_h5_path(f), (long long)l, L->name,
              L->width);
      goto done;
    }
  }
  rc = 0;
done:
  sd_h5_free_table(layer_fields, N_LAYER_FIELDS, sizeof *rows, rows, n);
  return rc;
}

static int set_index(const sd_stats *s, const char *name) {
  for (int k = 0; k < s->n_sets; k++)
    if (!strcmp(s->sets[k].name, name)) return k;
  return -1;
}

/* A dataset must hold exactly `want` elements before anything is allocated from the settings or /layers
 * (an n_steps or width edited to 10^9 in an otherwise valid file must be refused, not allocated). */
static int expect_numel(sd_h5 *f, const char *path, int64_t want, const char *from, sd_error *err) {
  int ndim = 0;
  int64_t shape[SD_H5_MAX_DIMS], got = 1;
  if (sd_h5_shape(f, path, &ndim, shape, err)) return -1;
  for (int d = 0; d < ndim; d++) got *= shape[d];
  if (got != want)
    return sd_fail(err, "%s: %s: has %lld elements, %s says %lld", sd_h5_path(f), path, (long long)got, from,
                   (long long)want);
  return 0;
}

static int read_acc_open(sd_h5 *f, const char *set, const char *layer, sd_stats_acc *a, int n_steps, int width,
                         sd_error *err) {
  char p[1200];
  int64_t cells = (int64_t)n_steps * SD_STATS_BRANCHES * width;
  snprintf(p, sizeof p, "/sets/%s/%s/count", set, layer);
  if (sd_h5_read_into(f, p, SD_H5_I64, a->count, (int64_t)n_steps * SD_STATS_BRANCHES, err)) return -1;
  for (int q = 0; q < SD_STATS_NQ; q++) {
    snprintf(p, sizeof p, "/sets/%s/%s/%s", set, layer, sd_stats_quantity_names[q]);
    if (sd_h5_read_into(f, p, SD_H5_I64, a->q[q], cells, err)) return -1;
  }
  snprintf(p, sizeof p, "/sets/%s/%s/max", set, layer);
  return sd_h5_read_into(f, p, SD_H5_F32, a->max, cells, err);
}

static int read_sets(sd_h5 *f, sd_stats *s, int with_totals, sd_error *err) {
  char **names = NULL;
  int n = 0;
  if (sd_h5_list(f, "/sets", &names, &n, err)) return -1;
  int rc = -1;
  if (!(s->sets = sd_calloc((size_t)(n ? n : 1), sizeof *s->sets, err))) goto done;
  for (int k = 0; k < n; k++) {
    sd_stats_set *set = &s->sets[k];
    s->n_sets = k + 1;
    char g[1024];
    int64_t v = 0;
    snprintf(g, sizeof g, "/sets/%s", names[k]);
    set->name = sd_strdup(names[k]);
    if (!set->name || sd_h5_attr_get_str(f, g, "role", &set->role, err) ||
        sd_h5_attr_get_str(f, g, "file", &set->file, err) ||
        sd_h5_attr_get_str(f, g, "file_sha256", &set->file_sha256, err) ||
        sd_h5_attr_get_str(f, g, "template", &set->template_used, err) ||
        sd_h5_attr_get_i64(f, g, "n_rows", &v, err))
      goto done;
    set->n_rows = (int)v;
    if (sd_h5_attr_get_i64(f, g, "items_done", &set->items_done, err)) goto done;
    if (!*set->template_used) {
      free(set->template_used);
      set->template_used = NULL;
    }
  }
  if (with_totals) {
    for (int k = 0; k < s->n_sets; k++)
      for (int l = 0; l < s->n_layers; l++) {
        char p[1200];
        snprintf(p, sizeof p, "/sets/%s/%s/max", s->sets[k].name, s->layers[l].name);
        if (expect_numel(f, p, (int64_t)s->n_steps * SD_STATS_BRANCHES * s->layers[l].width, "n_steps x branches x width",
                         err))
          goto done;
      }
    if (sd_stats_alloc_totals(s, err)) goto done;
    for (int k = 0; k < s->n_sets; k++)
      for (int l = 0; l < s->n_layers; l++)
        if (read_acc_open(f, s->sets[k].name, s->layers[l].name, &s->sets[k].layers[l], s->n_steps,
                          s->layers[l].width, err))
          goto done;
  }
  rc = 0;
done:
  sd_h5_free_strings(names, n);
  return rc;
}

static int read_items(sd_h5 *f, sd_stats *s, sd_error *err) {
  item_row *rows = NULL;
  int64_t n = 0;
  if (sd_h5_read_table(f, "/items", item_fields, N_ITEM_FIELDS, sizeof *rows, (void **)&rows, &n, err)) return -1;
  int rc = -1;
  if (!(s->items = sd_calloc((size_t)(n ? n : 1), sizeof *s->items, err))) goto done;
  for (int64_t i = 0; i < n; i++) {
    sd_stats_item *it = &s->items[i];
    item_row *r = &rows[i];
    s->n_items = i + 1;
    it->set = set_index(s, r->set ? r->set : "");
    if (it->set < 0) {
      sd_fail(err, "%s: /items row %lld names set '%s', which has no /sets group", sd_h5_path(f), (long long)i,
              r->set ? r->set : "");
      goto done;
    }
    it->row = (int)r->row;
    it->case_number = r->case_number;
    it->prompt = sd_strdup(r->prompt ? r->prompt : "");
    it->seed = (uint64_t)r->seed;
    it->guidance = r->guidance;
    it->width = (int)r->width;
    it->height = (int)r->height;
    it->status = -1;
    for (int k = 0; k < 3; k++)
      if (r->status && !strcmp(r->status, status_names[k])) it->status = k;
    if (it->status < 0) {
      sd_fail(err, "%s: /items row %lld: unknown status '%s'", sd_h5_path(f), (long long)i, r->status ? r->status : "");
      goto done;
    }
    it->seconds = r->seconds;
    it->error = r->error && *r->error ? sd_strdup(r->error) : NULL;
    it->per_item_file = r->per_item_file && *r->per_item_file ? sd_strdup(r->per_item_file) : NULL;
    if (!it->prompt) {
      sd_fail(err, "out of memory");
      goto done;
    }
  }
  rc = 0;
done:
  sd_h5_free_table(item_fields, N_ITEM_FIELDS, sizeof *rows, rows, n);
  return rc;
}

int sd_stats_read(const char *path, sd_stats *s, int with_totals, sd_error *err) {
  memset(s, 0, sizeof *s);
  sd_h5 *f = NULL;
  if (sd_h5_open(path, &f, err)) return -1;
  int rc = -1;
  if (read_settings(f, s, err) || read_layers(f, s, err)) goto done;
  if (expect_numel(f, "/timesteps", s->n_steps, "the n_steps attribute", err)) goto done;
  if (!(s->timesteps = sd_malloc(sizeof(float) * (size_t)s->n_steps, err))) goto done;
  if (sd_h5_read_into(f, "/timesteps", SD_H5_F32, s->timesteps, s->n_steps, err)) goto done;
  if (read_sets(f, s, with_totals, err) || read_items(f, s, err)) goto done;
  rc = 0;
done:
  sd_h5_close(f);
  if (rc) sd_stats_free(s);
  return rc;
}

int sd_stats_read_acc(const char *path, const char *set, const char *layer, sd_stats_acc *a, int n_steps, int width,
                      sd_error *err) {
  sd_h5 *f = NULL;
  if (sd_h5_open(path, &f, err)) return -1;
  int rc = read_acc_open(f, set, layer, a, n_steps, width, err);
  sd_h5_close(f);
  return rc;
}

/* ---- merging --------------------------------------------------------------------------------- */

static int same_str(const char *a, const char *b) { return !strcmp(a ? a : "", b ? b : ""); }

static int check_compatible(const sd_stats *d, const sd_stats *s, const char *src, sd_error *err) {
  const sd_stats_settings *a = &d->settings, *b = &s->settings;
  if (!same_str(a->model_hash, b->model_hash))
    return sd_fail(err, "%s: statistics of another model (model hash %s, expected %s)", src, b->model_hash,
                   a->model_hash);
  if (!same_str(a->sampler, b->sampler) || a->steps != b->steps || a->max_steps != b->max_steps || a->eta != b->eta ||
      d->n_steps != s->n_steps)
    return sd_fail(err, "%s: other sampler settings (%s %d steps, max_steps %d, eta %g; expected %s %d, %d, %g)", src,
                   b->sampler, b->steps, b->max_steps, b->eta, a->sampler, a->steps, a->max_steps, a->eta);
  if (!same_str(a->hooks, b->hooks) || d->n_layers != s->n_layers)
    return sd_fail(err, "%s: other hooks (%s, %d layers; expected %s, %d)", src, b->hooks, s->n_layers, a->hooks,
                   d->n_layers);
  for (int l = 0; l < d->n_layers; l++)
    if (strcmp(d->layers[l].name, s->layers[l].name) || d->layers[l].width != s->layers[l].width)
      return sd_fail(err, "%s: layer %d is %s (width %d), expected %s (width %d)", src, l, s->layers[l].name,
                     s->layers[l].width, d->layers[l].name, d->layers[l].width);
  for (int t = 0; t < d->n_steps; t++)
    if (d->timesteps[t] != s->timesteps[t])
      return sd_fail(err, "%s: timestep %d is %g, expected %g", src, t, s->timesteps[t], d->timesteps[t]);
  return 0;
}

static int copy_set(sd_stats *d, const sd_stats_set *src, sd_error *err) {
  sd_stats_set *n = realloc(d->sets, sizeof *d->sets * (size_t)(d->n_sets + 1));
  if (!n) return sd_fail(err, "out of memory");
  d->sets = n;
  sd_stats_set *set = &d->sets[d->n_sets++];
  memset(set, 0, sizeof *set);
  set->name = sd_strdup(src->name);
  set->role = sd_strdup(src->role);
  set->file = sd_strdup(src->file ? src->file : "");
  set->file_sha256 = sd_strdup(src->file_sha256 ? src->file_sha256 : "");
  set->template_used = src->template_used ? sd_strdup(src->template_used) : NULL;
  set->n_rows = src->n_rows;
  if (!set->name || !set->role || !set->file || !set->file_sha256) return sd_fail(err, "out of memory");
  return sd_stats_alloc_totals(d, err);
}

static int64_t find_item(const sd_stats *d, const char *set, int row, uint64_t seed) {
  for (int64_t i = 0; i < d->n_items; i++)
    if (d->items[i].row == row && d->items[i].seed == seed && !strcmp(d->sets[d->items[i].set].name, set)) return i;
  return -1;
}

static int merge_item(sd_stats *d, const sd_stats *s, const sd_stats_item *it, const char *src, sd_error *err) {
  const char *set = s->sets[it->set].name;
  int64_t j = find_item(d, set, it->row, it->seed);
  if (j >= 0 && d->items[j].status == SD_ITEM_DONE)
    return sd_fail(err, "%s: item (set %s, row %d, seed %llu) is already counted in another file (duplicate)", src, set,
                   it->row, (unsigned long long)it->seed);
  if (j < 0) {
    sd_stats_item *n = realloc(d->items, sizeof *d->items * (size_t)(d->n_items + 1));
    if (!n) return sd_fail(err, "out of memory");
    d->items = n;
    j = d->n_items++;
    memset(&d->items[j], 0, sizeof d->items[j]);
  } else {
    free(d->items[j].prompt);
    free(d->items[j].error);
    free(d->items[j].per_item_file);
  }
  sd_stats_item *t = &d->items[j];
  *t = *it;
  t->set = set_index(d, set);
  t->prompt = sd_strdup(it->prompt ? it->prompt : "");
  t->error = it->error ? sd_strdup(it->error) : NULL;
  t->per_item_file = it->per_item_file ? sd_strdup(it->per_item_file) : NULL;
  return t->prompt ? 0 : sd_fail(err, "out of memory");
}

int sd_stats_merge(sd_stats *d, const sd_stats *s, const char *src, sd_error *err) {
  if (check_compatible(d, s, src, err)) return -1;
  for (int k = 0; k < s->n_sets; k++) {
    const sd_stats_set *ss = &s->sets[k];
    int dk = set_index(d, ss->name);
    if (dk >= 0 && !same_str(d->sets[dk].file_sha256, ss->file_sha256))
      return sd_fail(err, "%s: set %s was read from another prompt file (SHA-256 %.12s…, expected %.12s…)", src,
                     ss->name, ss->file_sha256, d->sets[dk].file_sha256);
    if (dk >= 0 && strcmp(d->sets[dk].role, ss->role))
      return sd_fail(err, "%s: set %s has role %s, expected %s", src, ss->name, ss->role, d->sets[dk].role);
    if (dk < 0 && copy_set(d, ss, err)) return -1;
  }
  /* Duplicates are refused before anything is added, so a failed merge leaves d's totals unchanged. */
  for (int64_t i = 0; i < s->n_items; i++) {
    const sd_stats_item *it = &s->items[i];
    if (it->status != SD_ITEM_DONE) continue;
    int64_t j = find_item(d, s->sets[it->set].name, it->row, it->seed);
    if (j >= 0 && d->items[j].status == SD_ITEM_DONE)
      return sd_fail(err, "%s: item (set %s, row %d, seed %llu) is already counted in another file (duplicate)", src,
                     s->sets[it->set].name, it->row, (unsigned long long)it->seed);
  }
  for (int64_t i = 0; i < s->n_items; i++) {
    const sd_stats_item *it = &s->items[i];
    int64_t j = find_item(d, s->sets[it->set].name, it->row, it->seed);
    if (it->status == SD_ITEM_DONE || j < 0 || d->items[j].status != SD_ITEM_DONE) {
      if (it->status != SD_ITEM_DONE && j >= 0) continue; /* d already knows it; keep d's state */
      if (merge_item(d, s, it, src, err)) return -1;
    }
  }
  for (int k = 0; k < s->n_sets; k++) {
    sd_stats_set *ds = &d->sets[set_index(d, s->sets[k].name)];
    for (int l = 0; s->sets[k].layers && l < d->n_layers; l++) /* src read without totals: the caller adds them */
      sd_stats_acc_add(&ds->layers[l], &s->sets[k].layers[l], d->n_steps, d->layers[l].width);
    ds->items_done += s->sets[k].items_done;
  }
  return 0;
}

int sd_stats_add_file_totals(sd_stats *d, const sd_stats *src, const char *path, sd_stats_acc *scratch, sd_error *err) {
  if (!d->sets || sd_stats_alloc_totals(d, err) != 0) return -1;
  sd_h5 *f = NULL;
  if (sd_h5_open(path, &f, err)) return -1; /* once per file: opening costs more than a small dataset */
  int rc = 0;
  for (int k = 0; !rc && k < src->n_sets; k++) {
    int dk = set_index(d, src->sets[k].name);
    if (dk < 0) {
      rc = sd_fail(err, "%s: set %s is not in the merged statistics", path, src->sets[k].name);
      break;
    }
    for (int l = 0; !rc && l < d->n_layers; l++) {
      rc = read_acc_open(f, src->sets[k].name, d->layers[l].name, &scratch[l], d->n_steps, d->layers[l].width, err);
      if (!rc) sd_stats_acc_add(&d->sets[dk].layers[l], &scratch[l], d->n_steps, d->layers[l].width);
    }
  }
  sd_h5_close(f);
  return rc;
}
