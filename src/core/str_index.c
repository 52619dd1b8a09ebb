/* String-keyed index behind core/str_index.h: linear probing in a power-of-two table kept at most half
 * full. Not thread-safe for writers. */
#include "core/str_index.h"

#include <stdlib.h>
#include <string.h>

static uint64_t fnv1a(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++)
    h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* Slot of key, or of the empty slot where it would go. cap is a power of two and never full. */
static size_t find_slot(char *const *keys, size_t cap, const char *key) {
  size_t i = (size_t)fnv1a(key) & (cap - 1);
  while (keys[i] && strcmp(keys[i], key) != 0)
    i = (i + 1) & (cap - 1);
  return i;
}

static int grow(sd_str_index *ix) {
  size_t cap = ix->cap ? 2 * ix->cap : 64;
  char **keys = calloc(cap, sizeof *keys);
  int64_t *values = calloc(cap, sizeof *values);
  if (!keys || !values) {
    free(keys);
    free(values);
    return -1;
  }
  for (size_t i = 0; i < ix->cap; i++) {
    if (!ix->keys[i])
      continue;
    size_t j = find_slot(keys, cap, ix->keys[i]);
    keys[j] = ix->keys[i];
    values[j] = ix->values[i];
  }
  free(ix->keys);
  free(ix->values);
  ix->keys = keys;
  ix->values = values;
  ix->cap = cap;
  return 0;
}

int sd_str_index_put(sd_str_index *ix, const char *key, int64_t value, int64_t *existing) {
  if (2 * (ix->n + 1) > ix->cap && grow(ix) != 0)
    return -1;
  size_t i = find_slot(ix->keys, ix->cap, key);
  if (ix->keys[i]) {
    if (existing)
      *existing = ix->values[i];
    return 1;
  }
  size_t len = strlen(key);
  if (!(ix->keys[i] = malloc(len + 1)))
    return -1;
  memcpy(ix->keys[i], key, len + 1);
  ix->values[i] = value;
  ix->n++;
  return 0;
}

int64_t sd_str_index_get(const sd_str_index *ix, const char *key) {
  if (ix->cap == 0)
    return -1;
  size_t i = find_slot(ix->keys, ix->cap, key);
  return ix->keys[i] ? ix->values[i] : -1;
}

void sd_str_index_free(sd_str_index *ix) {
  for (size_t i = 0; i < ix->cap; i++)
    free(ix->keys[i]);
  free(ix->keys);
  free(ix->values);
  *ix = (sd_str_index){0};
}
