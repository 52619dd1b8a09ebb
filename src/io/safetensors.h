/* safetensors writer; the reader is sd_store_open_safetensors in tensor_store.h. */
#ifndef SD_SAFETENSORS_H
#define SD_SAFETENSORS_H

#include <stdio.h>

#include "io/tensor_store.h"

typedef struct sd_st_entry {
  const char *name;
  sd_dtype dtype;
  int ndim;
  int64_t shape[SD_MAX_DIMS];
  const void *data;                                      /* raw bytes, or NULL when write is set */
  int (*write)(FILE *f, const struct sd_st_entry *self); /* streams the bytes itself (e.g. generated) */
  void *user;
} sd_st_entry;

/* Writes to "<path>.tmp.<pid>" and renames, so an existing file is never left half-written. */
int sd_safetensors_write(const char *path, const sd_st_entry *entries, int count, const char *metadata_json,
                         sd_error *err);

#endif
