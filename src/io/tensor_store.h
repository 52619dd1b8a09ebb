/* A named set of tensors read from one checkpoint file (safetensors or a torch zip), with lazy,
 * cached conversion to float32. Knows file formats' dtypes, nothing of model architecture. */
#ifndef SD_TENSOR_STORE_H
#define SD_TENSOR_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define SD_MAX_DIMS 8

typedef enum {
  SD_DTYPE_F32,
  SD_DTYPE_F16,
  SD_DTYPE_BF16,
  SD_DTYPE_F64,
  SD_DTYPE_I64,
  SD_DTYPE_I32,
  SD_DTYPE_I16,
  SD_DTYPE_I8,
  SD_DTYPE_U8,
  SD_DTYPE_BOOL,
} sd_dtype;

typedef struct {
  char *name;
  sd_dtype dtype;
  int ndim;
  int64_t shape[SD_MAX_DIMS];
  const void *data; /* raw, contiguous, little-endian; inside the mapping or an owned buffer */
  size_t nbytes;
  float *f32; /* float32 copy made on first request (NULL until then), or == data for aligned F32 */
  int f32_owned;
} sd_tensor;

typedef struct sd_tensor_store {
  char *path;
  char *format;        /* "safetensors" or "torch" */
  char *metadata_json; /* safetensors "__metadata__" object as JSON text, or NULL */
  sd_tensor *tensors;
  int count, capacity;
  int *hash; /* open addressing over tensors, -1 = empty */
  int hash_size;
  void *map; /* mmapped file (safetensors) */
  size_t map_size;
  void **owned; /* buffers freed with the store */
  int n_owned, cap_owned;
} sd_tensor_store;

size_t sd_dtype_size(sd_dtype dtype);
const char *sd_dtype_name(sd_dtype dtype);
int sd_dtype_from_name(const char *name, sd_dtype *out); /* safetensors spelling: F32, F16, BF16, ... */
int64_t sd_tensor_numel(const sd_tensor *t);
/* "[320, 4, 3, 3]" into buf. */
const char *sd_shape_str(const int64_t *shape, int ndim, char *buf, size_t size);

/* Opens a checkpoint by content: safetensors, or a torch zip (.ckpt/.pt/.pth/.bin). */
int sd_store_open(const char *path, sd_tensor_store **out, sd_error *err);
int sd_store_open_safetensors(const char *path, sd_tensor_store **out, sd_error *err);
/* Implemented in torch_zip.c. */
int sd_store_open_torch(const char *path, sd_tensor_store **out, sd_error *err);
void sd_store_close(sd_tensor_store *store);

/* Building blocks for readers. */
sd_tensor_store *sd_store_new(const char *path, const char *format, sd_error *err);
/* Adds a tensor (name copied; data not copied). Fails on a duplicate name. */
int sd_store_add(sd_tensor_store *store, const char *name, sd_dtype dtype, int ndim, const int64_t *shape,
                 const void *data, size_t nbytes, sd_error *err);
/* Hands a malloc'ed buffer to the store, to be freed by sd_store_close. */
int sd_store_own(sd_tensor_store *store, void *buffer, sd_error *err);

sd_tensor *sd_store_find(const sd_tensor_store *store, const char *name);
/* Converts n elements of dtype at src (little-endian, any alignment) to float32. */
void sd_dtype_to_f32(sd_dtype dtype, const void *src, float *out, int64_t n);
/* Float32 view of a floating tensor (F32/F16/BF16/F64; integer dtypes are converted too), cached. */
const float *sd_tensor_f32(sd_tensor *t, sd_error *err);

#endif
