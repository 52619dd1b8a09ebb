/* mask.h5 files (schema in mask_io.h) through io/h5.h: written whole under a temporary name and
 * renamed, read back with every index checked (sorted, in range, counts as the layer table says).
 * Not the scores (scores.c) nor applying a mask to a checkpoint (apply.c). */
#include "prune/mask_io.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5.h"

#define MASK_FORMAT "sdprune-mask"
#define MASK_FORMAT_VERSION 1

typedef struct {
  char *file, *sha256;
} source_row;

static const sd_h5_field source_fields[] = {
    {"file", SD_H5_STR, offsetof(source_row, file)},
    {"sha256", SD_H5_STR, offsetof(source_row, sha256)},
};

typedef struct {
  char *layer, *weight;
  int64_t rows, cols, n_weights, n_neurons, pruned;
  double sparsity;
} layer_row;

static const sd_h5_field layer_fields[] = {
    {"layer", SD_H5_STR, offsetof(layer_row, layer)},         {"weight", SD_H5_STR, offsetof(layer_row, weight)},
    {"rows", SD_H5_I64, offsetof(layer_row, rows)},           {"cols", SD_H5_I64, offsetof(layer_row, cols)},
    {"n_weights", SD_H5_I64, offsetof(layer_row, n_weights)}, {"n_neurons", SD_H5_I64, offsetof(layer_row, n_neurons)},
    {"pruned", SD_H5_I64, offsetof(layer_row, pruned)},       {"sparsity", SD_H5_F64, offsetof(layer_row, sparsity)},
};
#define N_LAYER_FIELDS ((int)(sizeof layer_fields / sizeof *layer_fields))

static int write_layer(sd_h5 *f, const sd_mask_layer *l, sd_error *err) {
  static const int64_t no_data = 0; /* a valid buffer for empty datasets */
  char group[1200], path[1300];
  snprintf(group, sizeof group, "/masks/%s", l->layer);
  if (strchr(l->layer, '/'))
    return sd_fail(err, "%s: layer name '%s' contains '/'", sd_h5_path(f), l->layer);
  if (sd_h5_group(f, group, err) != 0)
    return -1;
  int64_t n = l->n_weights;
  snprintf(path, sizeof path, "%s/weights", group);
  if (sd_h5_write(f, path, SD_H5_I64, 1, &n, n ? (const void *)l->weights : &no_data, 1, err) != 0)
    return -1;
  n = l->n_neurons;
  snprintf(path, sizeof path, "%s/neurons", group);
  if (sd_h5_write(f, path, SD_H5_I32, 1, &n, n ? (const void *)l->neurons : &no_data, 1, err) != 0)
    return -1;
  if (sd_h5_attr_set_i64(f, group, "rows", l->rows, err) != 0 ||
      sd_h5_attr_set_i64(f, group, "cols", l->cols, err) != 0 ||
      sd_h5_attr_set_str(f, group, "weight", l->weight, err) != 0)
    return -1;
  return 0;
}

int sd_mask_write(const char *path, const sd_mask *m, sd_error *err) {
  sd_h5 *f = NULL;
  source_row *sources = NULL;
  layer_row *layers = NULL;
  if (sd_h5_create(path, &f, err) != 0)
    return -1;
  int64_t total = 0, pruned = 0;
  if (!(sources = sd_calloc((size_t)m->n_sources + 1, sizeof *sources, err)))
    goto fail;
  if (!(layers = sd_calloc((size_t)m->n_layers + 1, sizeof *layers, err)))
    goto fail;
  for (int s = 0; s < m->n_sources; s++) {
    sources[s].file = m->source_files[s];
    sources[s].sha256 = m->source_sha256 ? m->source_sha256[s] : NULL;
  }
  for (int i = 0; i < m->n_layers; i++) {
    const sd_mask_layer *l = &m->layers[i];
    int64_t size = (int64_t)l->rows * l->cols, p = sd_mask_layer_pruned(l);
    layers[i] = (layer_row){l->layer,     l->weight,    l->rows, l->cols,
                            l->n_weights, l->n_neurons, p,       size ? (double)p / (double)size : 0.0};
    total += size;
    pruned += p;
  }
  const char *strs[][2] = {{"format", MASK_FORMAT},
                           {"method", m->method},
                           {"params", m->params_json ? m->params_json : "{}"},
                           {"model_hash", m->model_hash},
                           {"sdprune_version", m->sdprune_version},
                           {"git_revision", m->git_revision},
                           {"command_line", m->command_line},
                           {"created_utc", m->created_utc}};
  for (size_t k = 0; k < sizeof strs / sizeof *strs; k++)
    if (sd_h5_attr_set_str(f, "/", strs[k][0], strs[k][1] ? strs[k][1] : "", err) != 0)
      goto fail;
  if (sd_h5_attr_set_i64(f, "/", "format_version", MASK_FORMAT_VERSION, err) != 0 ||
      sd_h5_attr_set_i64(f, "/", "total_weights", total, err) != 0 ||
      sd_h5_attr_set_i64(f, "/", "pruned_weights", pruned, err) != 0 ||
      sd_h5_attr_set_f64(f, "/", "sparsity", total ? (double)pruned / (double)total : 0.0, err) != 0)
    goto fail;
  if (sd_h5_write_table(f, "/sources", source_fields, 2, sizeof *sources, sources, m->n_sources, err) != 0)
    goto fail;
  if (sd_h5_write_table(f, "/layers", layer_fields, N_LAYER_FIELDS, sizeof *layers, layers, m->n_layers, err) != 0)
    goto fail;
  if (sd_h5_group(f, "/masks", err) != 0)
    goto fail;
  for (int i = 0; i < m->n_layers; i++)
    if (write_layer(f, &m->layers[i], err) != 0)
      goto fail;
  free(sources);
  free(layers);
  return sd_h5_commit(f, err);
fail:
  free(sources);
  free(layers);
  sd_h5_abort(f);
  return -1;
}

/* Reads /masks/<layer>/{weights,neurons} and checks them against the layer table's row. */
static int read_layer(sd_h5 *f, const layer_row *row, sd_mask_layer *l, sd_error *err) {
  const char *file = sd_h5_path(f);
  char path[1300];
  int ndim;
  int64_t shape[SD_H5_MAX_DIMS];
  if (row->rows < 1 || row->cols < 1 || row->rows > INT32_MAX || row->cols > INT32_MAX)
    return sd_fail(err, "%s: /layers: layer %s has shape %lldx%lld", file, row->layer, (long long)row->rows,
                   (long long)row->cols);
  l->layer = sd_strdup(row->layer);
  l->weight = sd_strdup(row->weight);
  if (!l->layer || !l->weight)
    return sd_fail(err, "%s: out of memory", file);
  l->rows = (int)row->rows;
  l->cols = (int)row->cols;
  int64_t size = row->rows * row->cols;

  void *data = NULL;
  snprintf(path, sizeof path, "/masks/%s/weights", row->layer);
  if (sd_h5_read(f, path, SD_H5_I64, &ndim, shape, &data, err) != 0)
    return -1;
  l->weights = data;
  if (ndim != 1 || shape[0] != row->n_weights)
    return sd_fail(err, "%s: %s: %lld entries, the layer table says %lld", file, path,
                   ndim == 1 ? (long long)shape[0] : -1LL, (long long)row->n_weights);
  l->n_weights = row->n_weights;
  for (int64_t k = 0; k < l->n_weights; k++)
    if (l->weights[k] < 0 || l->weights[k] >= size || (k && l->weights[k] <= l->weights[k - 1]))
      return sd_fail(err, "%s: %s: entry %lld (%lld) is out of range [0, %lld) or not increasing", file, path,
                     (long long)k, (long long)l->weights[k], (long long)size);
  if (!l->n_weights) {
    free(l->weights);
    l->weights = NULL;
  }

  data = NULL;
  snprintf(path, sizeof path, "/masks/%s/neurons", row->layer);
  if (sd_h5_read(f, path, SD_H5_I32, &ndim, shape, &data, err) != 0)
    return -1;
  l->neurons = data;
  if (ndim != 1 || shape[0] != row->n_neurons)
    return sd_fail(err, "%s: %s: %lld entries, the layer table says %lld", file, path,
                   ndim == 1 ? (long long)shape[0] : -1LL, (long long)row->n_neurons);
  l->n_neurons = (int)row->n_neurons;
  for (int k = 0; k < l->n_neurons; k++)
    if (l->neurons[k] < 0 || l->neurons[k] >= l->cols || (k && l->neurons[k] <= l->neurons[k - 1]))
      return sd_fail(err, "%s: %s: entry %d (%d) is out of range [0, %d) or not increasing", file, path, k,
                     (int)l->neurons[k], l->cols);
  if (!l->n_neurons) {
    free(l->neurons);
    l->neurons = NULL;
  }
  return 0;
}

int sd_mask_read(const char *path, sd_mask *m, sd_error *err) {
  memset(m, 0, sizeof *m);
  sd_h5 *f = NULL;
  source_row *sources = NULL;
  layer_row *layers = NULL;
  int64_t n_sources = 0, n_layers = 0, version = 0;
  char *format = NULL;
  if (sd_h5_open(path, &f, err) != 0)
    return -1;
  if (sd_h5_attr_get_str(f, "/", "format", &format, err) != 0)
    goto fail;
  if (strcmp(format, MASK_FORMAT) != 0) {
    sd_fail(err, "%s: format is '%s', not '%s'", path, format, MASK_FORMAT);
    goto fail;
  }
  if (sd_h5_attr_get_i64(f, "/", "format_version", &version, err) != 0)
    goto fail;
  if (version < 1 || version > MASK_FORMAT_VERSION) {
    sd_fail(err, "%s: format_version %lld is not supported (this sdprune reads %d)", path, (long long)version,
            MASK_FORMAT_VERSION);
    goto fail;
  }
  struct {
    const char *name;
    char **dst;
  } strs[] = {{"method", &m->method},
              {"params", &m->params_json},
              {"model_hash", &m->model_hash},
              {"sdprune_version", &m->sdprune_version},
              {"git_revision", &m->git_revision},
              {"command_line", &m->command_line},
              {"created_utc", &m->created_utc}};
  for (size_t k = 0; k < sizeof strs / sizeof *strs; k++)
    if (sd_h5_attr_get_str(f, "/", strs[k].name, strs[k].dst, err) != 0)
      goto fail;

  if (sd_h5_read_table(f, "/sources", source_fields, 2, sizeof *sources, (void **)&sources, &n_sources, err) != 0)
    goto fail;
  m->n_sources = (int)n_sources;
  if (!(m->source_files = sd_calloc((size_t)n_sources + 1, sizeof(char *), err)) ||
      !(m->source_sha256 = sd_calloc((size_t)n_sources + 1, sizeof(char *), err)))
    goto fail;
  for (int64_t s = 0; s < n_sources; s++) { /* taken over from the table rows */
    m->source_files[s] = sources[s].file;
    m->source_sha256[s] = sources[s].sha256;
    sources[s].file = sources[s].sha256 = NULL;
  }

  if (sd_h5_read_table(f, "/layers", layer_fields, N_LAYER_FIELDS, sizeof *layers, (void **)&layers, &n_layers, err) !=
      0)
    goto fail;
  if (!(m->layers = sd_calloc((size_t)n_layers + 1, sizeof *m->layers, err)))
    goto fail;
  for (int64_t i = 0; i < n_layers; i++) {
    m->n_layers = (int)i + 1; /* so that sd_mask_free frees a partly read layer */
    if (read_layer(f, &layers[i], &m->layers[i], err) != 0)
      goto fail;
  }
  m->n_layers = (int)n_layers;
  sd_h5_free_table(source_fields, 2, sizeof *sources, sources, n_sources);
  sd_h5_free_table(layer_fields, N_LAYER_FIELDS, sizeof *layers, layers, n_layers);
  free(format);
  sd_h5_close(f);
  return 0;
fail:
  if (sources)
    sd_h5_free_table(source_fields, 2, sizeof *sources, sources, n_sources);
  if (layers)
    sd_h5_free_table(layer_fields, N_LAYER_FIELDS, sizeof *layers, layers, n_layers);
  free(format);
  sd_h5_close(f);
  sd_mask_free(m);
  return -1;
}
