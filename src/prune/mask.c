/* The pruning mask in memory (mask.h): counting, walking and applying a layer's pruned entries, which
 * are the union of individually listed ff.net.2 weights and whole neurons (input columns). Not the
 * scores that choose them (scores.c) nor the file format (mask_io.c). */
#include "prune/mask.h"

#include <stdlib.h>
#include <string.h>

/* 1 if column j is among the layer's sorted pruned neurons. */
static int has_neuron(const sd_mask_layer *l, int32_t j) {
  int lo = 0, hi = l->n_neurons;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (l->neurons[mid] < j)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < l->n_neurons && l->neurons[lo] == j;
}

int64_t sd_mask_layer_pruned(const sd_mask_layer *l) {
  int64_t n = (int64_t)l->n_neurons * l->rows;
  for (int64_t k = 0; k < l->n_weights; k++)
    if (!l->n_neurons || !has_neuron(l, (int32_t)(l->weights[k] % l->cols)))
      n++;
  return n;
}

/* Within a row the listed weights (sorted flat indices, so a contiguous run) and the neuron columns are
 * two sorted lists of columns: merging them gives the row's pruned entries in order, each once. */
int sd_mask_layer_foreach(const sd_mask_layer *l, int (*fn)(void *ctx, int64_t index), void *ctx) {
  int64_t k = 0;
  for (int64_t i = 0; i < l->rows; i++) {
    int64_t row0 = i * l->cols, row_end = row0 + l->cols;
    int c = 0;
    while ((k < l->n_weights && l->weights[k] < row_end) || c < l->n_neurons) {
      int64_t from_w = (k < l->n_weights && l->weights[k] < row_end) ? l->weights[k] : INT64_MAX;
      int64_t from_n = c < l->n_neurons ? row0 + l->neurons[c] : INT64_MAX;
      int64_t idx = from_w < from_n ? from_w : from_n;
      if (from_w == idx)
        k++;
      if (from_n == idx)
        c++;
      int r = fn(ctx, idx);
      if (r)
        return r;
    }
  }
  return 0;
}

void sd_mask_layer_apply_f32(const sd_mask_layer *l, float *w) {
  for (int64_t k = 0; k < l->n_weights; k++)
    w[l->weights[k]] = 0.0f;
  if (!l->n_neurons)
    return;
  for (int64_t i = 0; i < l->rows; i++) {
    float *row = w + i * l->cols;
    for (int c = 0; c < l->n_neurons; c++)
      row[l->neurons[c]] = 0.0f;
  }
}

void sd_mask_free(sd_mask *m) {
  if (!m)
    return;
  free(m->method);
  free(m->params_json);
  free(m->model_hash);
  for (int s = 0; s < m->n_sources; s++) {
    if (m->source_files)
      free(m->source_files[s]);
    if (m->source_sha256)
      free(m->source_sha256[s]);
  }
  free(m->source_files);
  free(m->source_sha256);
  free(m->sdprune_version);
  free(m->git_revision);
  free(m->command_line);
  free(m->created_utc);
  for (int i = 0; i < m->n_layers; i++) {
    free(m->layers[i].layer);
    free(m->layers[i].weight);
    free(m->layers[i].weights);
    free(m->layers[i].neurons);
  }
  free(m->layers);
  memset(m, 0, sizeof *m);
}
