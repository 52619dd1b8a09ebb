/* Views over tensor stores: a model part (unet, text encoder, vae) sees its tensors under one
 * canonical naming (the original ldm/HF module paths without the checkpoint prefix), whatever
 * file layout they came from. A view's tensors point into the source stores (no copy), so the
 * sources must outlive the view. */
#ifndef SD_STORE_VIEW_H
#define SD_STORE_VIEW_H

#include <stddef.h>

#include "io/tensor_store.h"

/* Maps a source key to its canonical name in out (size n); returns 1 if the key belongs to the
 * part, 0 if it does not (skipped). */
typedef int (*sd_name_map_fn)(void *ctx, const char *key, char *out, size_t n);

/* Adds the tensors of src whose key starts with prefix (the prefix is stripped), renamed by map
 * (NULL: keep the stripped name). A name already in the view is an error unless skip_existing,
 * in which case the view keeps its earlier entry (used for overrides: add the override first).
 * Returns the number of tensors added, or -1. */
int sd_view_add(sd_tensor_store *view, const sd_tensor_store *src, const char *prefix, sd_name_map_fn map, void *ctx,
                int skip_existing, sd_error *err);

/* A shortcut: a new view of src's tensors under prefix, stripped. */
sd_tensor_store *sd_view_of_prefix(const sd_tensor_store *src, const char *prefix, sd_error *err);

/* Looks up a canonical tensor for a model part, checks its shape against the expected one
 * (ndim entries; -1 matches anything) and returns its float32 data; on failure err names the view's
 * source (view->path) and the tensor, with got/expected shapes. */
const float *sd_view_get(sd_tensor_store *view, const char *name, int ndim, const int64_t *shape, sd_error *err);

#endif
