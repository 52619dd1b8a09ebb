/* A float32 copy of a model's weights in one safetensors file that every process on a node maps
 * read-only: the page cache holds the weights once, so a second MPI rank adds only its activations,
 * and loading skips the f16/bf16 conversion. Keyed by the model hash (overrides included). */
#ifndef SD_WEIGHT_CACHE_H
#define SD_WEIGHT_CACHE_H

#include "model/model.h"

/* Makes m's part views point into DIR/sdprune-<hash>.f32.safetensors, writing it first when absent
 * (one process writes, under a lock file; others wait for it up to wait_seconds). On any problem
 * with the cache (unwritable, read-only filesystem, timeout, a broken cache file) the model is left as
 * it was and a one-line reason is put in note (returns 1); 0 when the cache is in use. */
int sd_weight_cache_apply(sd_model *m, const char *dir, int wait_seconds, char *note, size_t note_size);

/* Drops the pages of the checkpoint mappings whose tensors were all converted to float32 copies, so
 * they stop counting in the resident set (the f16 file is not needed after conversion). */
void sd_model_release_source_pages(sd_model *m);

#endif
