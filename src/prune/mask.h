/* The pruning mask: per hooked FFN layer, the selected weights of ff.net.2 (sorted flat indices
 * i·in_features + j into the [out, in] weight) and/or whole neurons (input columns j), with the method,
 * its parameters and the statistics it came from. The scores that build it live in scores.c; HDF5 in
 * mask_io.c; applying it to checkpoints in apply.c. */
#ifndef SD_MASK_H
#define SD_MASK_H

#include <stdint.h>

#include "core/error.h"

typedef struct {
  char *layer;   /* stats layer name, e.g. "input_blocks.1.1.transformer_blocks.0.ff.net.2" */
  char *weight;  /* canonical weight tensor it prunes: layer + ".weight" */
  int rows, cols;          /* out_features, in_features of the weight */
  int64_t n_weights;       /* selected weights */
  int64_t *weights;        /* [n_weights] sorted flat indices i*cols + j, or NULL */
  int n_neurons;           /* whole neurons (columns) */
  int32_t *neurons;        /* [n_neurons] sorted column indices, or NULL */
} sd_mask_layer;

typedef struct {
  char *method;       /* "wanda", "actdiff", "sensitivity" */
  char *params_json;  /* {"ratio":0.01,"tau":10,...} */
  char *model_hash;   /* of the model the statistics were taken on */
  int n_sources;
  char **source_files; /* statistics files */
  char **source_sha256;
  /* provenance */
  char *sdprune_version, *git_revision, *command_line, *created_utc;
  int n_layers;
  sd_mask_layer *layers;
} sd_mask;

/* Pruned weights of a layer counting whole neurons (each pruning `rows` weights) without double
 * counting weights that are also listed individually. */
int64_t sd_mask_layer_pruned(const sd_mask_layer *l);
/* Calls fn for every pruned flat index of the layer in increasing order (union of weights and neurons). */
int sd_mask_layer_foreach(const sd_mask_layer *l, int (*fn)(void *ctx, int64_t index), void *ctx);
/* Zeroes the pruned entries of a float32 weight [rows, cols] in place. */
void sd_mask_layer_apply_f32(const sd_mask_layer *l, float *w);
void sd_mask_free(sd_mask *m); /* frees everything inside m (not m itself) */

#endif
