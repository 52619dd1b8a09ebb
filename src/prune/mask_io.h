/* mask.h5 files: the pruning mask in HDF5 (through io/h5.h), readable by h5py with no sdprune code.
 * Schema (documented in the README):
 *   /                 attrs format="sdprune-mask", format_version=1, method, params (JSON), model_hash,
 *                     sdprune_version, git_revision, command_line, created_utc, total_weights,
 *                     pruned_weights, sparsity (over the masked ff.net.2 weights)
 *   /sources          table: file, sha256 (the statistics files)
 *   /layers           table: layer, weight, rows, cols, n_weights, n_neurons, pruned, sparsity
 *   /masks/<layer>/weights  int64 [n] sorted flat indices i*cols+j of ff.net.2's weight (may be empty)
 *   /masks/<layer>/neurons  int32 [n] sorted pruned neurons (input columns; may be empty)
 *   (attrs rows, cols, weight on /masks/<layer>)
 * A layer's pruned entries are the union of its weights and its neurons' columns. */
#ifndef SD_MASK_IO_H
#define SD_MASK_IO_H

#include "prune/mask.h"

/* Writes atomically (temporary name, then rename). */
int sd_mask_write(const char *path, const sd_mask *m, sd_error *err);
/* Reads a mask file into *m (zeroed first); errors name the file and the object. */
int sd_mask_read(const char *path, sd_mask *m, sd_error *err);

#endif
