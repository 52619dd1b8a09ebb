/* Store views under canonical names (see store_view.h). */
#include "io/store_view.h"

#include <stdio.h>
#include <string.h>

int sd_view_add(sd_tensor_store *view, const sd_tensor_store *src, const char *prefix, sd_name_map_fn map, void *ctx,
                int skip_existing, sd_error *err) {
  size_t plen = prefix ? strlen(prefix) : 0;
  int added = 0;
  char name[512];
  for (int i = 0; i < src->count; i++) {
    const sd_tensor *t = &src->tensors[i];
    if (plen && strncmp(t->name, prefix, plen) != 0) continue;
    const char *rest = t->name + plen;
    if (map) {
      if (!map(ctx, rest, name, sizeof name)) continue;
    } else {
      snprintf(name, sizeof name, "%s", rest);
    }
    if (sd_store_find(view, name)) {
      if (skip_existing) continue;
      return sd_fail(err, "%s: tensor '%s' maps to '%s', which is already present", src->path, t->name, name);
    }
    if (sd_store_add(view, name, t->dtype, t->ndim, t->shape, t->data, t->nbytes, err) != 0) return -1;
    added++;
  }
  return added;
}

sd_tensor_store *sd_view_of_prefix(const sd_tensor_store *src, const char *prefix, sd_error *err) {
  sd_tensor_store *v = sd_store_new(src->path, "view", err);
  if (!v) return NULL;
  if (sd_view_add(v, src, prefix, NULL, NULL, 0, err) < 0) {
    sd_store_close(v);
    return NULL;
  }
  return v;
}

const float *sd_view_get(sd_tensor_store *view, const char *name, int ndim, const int64_t *shape, sd_error *err) {
  sd_tensor *t = sd_store_find(view, name);
  if (!t) {
    sd_fail(err, "%s: missing tensor '%s'", view->path, name);
    return NULL;
  }
  int ok = t->ndim == ndim;
  for (int i = 0; ok && i < ndim; i++) ok = shape[i] < 0 || shape[i] == t->shape[i];
  if (!ok) {
    char got[128], want[128];
    sd_fail(err, "%s: tensor '%s' has shape %s, expected %s", view->path, name, sd_shape_str(t->shape, t->ndim, got, sizeof got),
            sd_shape_str(shape, ndim, want, sizeof want));
    return NULL;
  }
  const float *data = sd_tensor_f32(t, err);
  if (!data) sd_fail_prefix(err, "%s: tensor '%s'", view->path, name);
  return data;
}
