/* A string-keyed index (open addressing, FNV-1a): string -> int64 value, for joining records by name
 * (item ids, image paths, pairing keys) in linear time. Keys are copied. Not an ordered map; no removal. */
#ifndef SD_STR_INDEX_H
#define SD_STR_INDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  char **keys;     /* [cap], NULL for an empty slot */
  int64_t *values; /* [cap] */
  size_t cap, n;
} sd_str_index;

/* Inserts key -> value. Returns 0 when inserted, 1 when the key was there already (its value is left as it
 * was and given in *existing if non-NULL), -1 when out of memory. A zeroed struct is an empty index. */
int sd_str_index_put(sd_str_index *ix, const char *key, int64_t value, int64_t *existing);
/* The value of key, or -1 when absent. */
int64_t sd_str_index_get(const sd_str_index *ix, const char *key);
void sd_str_index_free(sd_str_index *ix);

#endif
