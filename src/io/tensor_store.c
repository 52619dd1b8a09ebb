/* Tensor store: named tensors of one checkpoint, hash lookup, cached float32 conversion. */
#include "io/tensor_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/half.h"

size_t sd_dtype_size(sd_dtype dtype) {
  switch (dtype) {
  case SD_DTYPE_F64:
  case SD_DTYPE_I64: return 8;
  case SD_DTYPE_F32:
  case SD_DTYPE_I32: return 4;
  case SD_DTYPE_F16:
  case SD_DTYPE_BF16:
  case SD_DTYPE_I16: return 2;
  case SD_DTYPE_I8:
  case SD_DTYPE_U8:
  case SD_DTYPE_BOOL: return 1;
  }
  return 0;
}

static const char *const dtype_names[] = {"F32", "F16", "BF16", "F64", "I64", "I32", "I16", "I8", "U8", "BOOL"};

const char *sd_dtype_name(sd_dtype dtype) {
  return (unsigned)dtype < sizeof dtype_names / sizeof *dtype_names ? dtype_names[dtype] : "?";
}

int sd_dtype_from_name(const char *name, sd_dtype *out) {
  for (size_t i = 0; i < sizeof dtype_names / sizeof *dtype_names; i++) {
    if (strcmp(name, dtype_names[i]) == 0) {
      *out = (sd_dtype)i;
      return 0;
    }
  }
  return -1;
}

int64_t sd_tensor_numel(const sd_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

const char *sd_shape_str(const int64_t *shape, int ndim, char *buf, size_t size) {
  size_t used = (size_t)snprintf(buf, size, "[");
  for (int i = 0; i < ndim && used < size; i++)
    used += (size_t)snprintf(buf + used, size - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
  if (used < size) snprintf(buf + used, size - used, "]");
  return buf;
}

static uint64_t hash_name(const char *s) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

sd_tensor_store *sd_store_new(const char *path, const char *format, sd_error *err) {
  sd_tensor_store *s = sd_calloc(1, sizeof *s, err);
  if (!s) return NULL;
  s->path = sd_strdup(path);
  s->format = sd_strdup(format);
  if (!s->path || !s->format) {
    sd_store_close(s);
    sd_fail(err, "out of memory");
    return NULL;
  }
  return s;
}

static int rehash(sd_tensor_store *s, int new_size, sd_error *err) {
  int *h = sd_malloc(sizeof(int) * (size_t)new_size, err);
  if (!h) return -1;
  for (int i = 0; i < new_size; i++) h[i] = -1;
  for (int i = 0; i < s->count; i++) {
    uint64_t k = hash_name(s->tensors[i].name) & (uint64_t)(new_size - 1);
    while (h[k] >= 0) k = (k + 1) & (uint64_t)(new_size - 1);
    h[k] = i;
  }
  free(s->hash);
  s->hash = h;
  s->hash_size = new_size;
  return 0;
}

sd_tensor *sd_store_find(const sd_tensor_store *s, const char *name) {
  if (!s || !s->hash_size) return NULL;
  uint64_t k = hash_name(name) & (uint64_t)(s->hash_size - 1);
  while (s->hash[k] >= 0) {
    sd_tensor *t = &s->tensors[s->hash[k]];
    if (strcmp(t->name, name) == 0) return t;
    k = (k + 1) & (uint64_t)(s->hash_size - 1);
  }
  return NULL;
}

int sd_store_add(sd_tensor_store *s, const char *name, sd_dtype dtype, int ndim, const int64_t *shape,
                 const void *data, size_t nbytes, sd_error *err) {
  if (ndim < 0 || ndim > SD_MAX_DIMS) return sd_fail(err, "tensor '%s' has %d dimensions (at most %d)", name, ndim, SD_MAX_DIMS);
  if (sd_store_find(s, name)) return sd_fail(err, "tensor '%s' appears twice", name);
  if (s->count == s->capacity) {
    int cap = s->capacity ? s->capacity * 2 : 256;
    sd_tensor *t = realloc(s->tensors, sizeof *t * (size_t)cap);
    if (!t) return sd_fail(err, "out of memory");
    s->tensors = t;
    s->capacity = cap;
  }
  sd_tensor *t = &s->tensors[s->count];
  memset(t, 0, sizeof *t);
  t->name = sd_strdup(name);
  if (!t->name) return sd_fail(err, "out of memory");
  t->dtype = dtype;
  t->ndim = ndim;
  for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
  t->data = data;
  t->nbytes = nbytes;
  s->count++;
  if (s->count * 2 > s->hash_size) return rehash(s, s->hash_size ? s->hash_size * 2 : 512, err);
  uint64_t k = hash_name(name) & (uint64_t)(s->hash_size - 1);
  while (s->hash[k] >= 0) k = (k + 1) & (uint64_t)(s->hash_size - 1);
  s->hash[k] = s->count - 1;
  return 0;
}

int sd_store_own(sd_tensor_store *s, void *buffer, sd_error *err) {
  if (s->n_owned == s->cap_owned) {
    int cap = s->cap_owned ? s->cap_owned * 2 : 64;
    void **o = realloc(s->owned, sizeof *o * (size_t)cap);
    if (!o) {
      free(buffer);
      return sd_fail(err, "out of memory");
    }
    s->owned = o;
    s->cap_owned = cap;
  }
  s->owned[s->n_owned++] = buffer;
  return 0;
}

void sd_dtype_to_f32(sd_dtype dtype, const void *src, float *out, int64_t n) {
  const unsigned char *p = src;
  for (int64_t i = 0; i < n; i++) {
    switch (dtype) {
    case SD_DTYPE_F32: memcpy(&out[i], p + 4 * i, 4); break;
    case SD_DTYPE_F16: {
      uint16_t h;
      memcpy(&h, p + 2 * i, 2);
      out[i] = sd_f16_to_f32(h);
    } break;
    case SD_DTYPE_BF16: {
      uint16_t h;
      memcpy(&h, p + 2 * i, 2);
      out[i] = sd_bf16_to_f32(h);
    } break;
    case SD_DTYPE_F64: {
      double d;
      memcpy(&d, p + 8 * i, 8);
      out[i] = (float)d;
    } break;
    case SD_DTYPE_I64: {
      int64_t v;
      memcpy(&v, p + 8 * i, 8);
      out[i] = (float)v;
    } break;
    case SD_DTYPE_I32: {
      int32_t v;
      memcpy(&v, p + 4 * i, 4);
      out[i] = (float)v;
    } break;
    case SD_DTYPE_I16: {
      int16_t v;
      memcpy(&v, p + 2 * i, 2);
      out[i] = (float)v;
    } break;
    case SD_DTYPE_I8: out[i] = (float)(int8_t)p[i]; break;
    case SD_DTYPE_U8:
    case SD_DTYPE_BOOL: out[i] = (float)p[i]; break;
    }
  }
}

const float *sd_tensor_f32(sd_tensor *t, sd_error *err) {
  if (t->f32) return t->f32;
  int64_t n = sd_tensor_numel(t);
  if (t->dtype == SD_DTYPE_F32 && ((uintptr_t)t->data & 3u) == 0) {
    t->f32 = (float *)t->data;
    return t->f32;
  }
  float *out = sd_malloc(sizeof(float) * (size_t)(n ? n : 1), err);
  if (!out) return NULL;
  sd_dtype_to_f32(t->dtype, t->data, out, n);
  t->f32 = out;
  t->f32_owned = 1;
  return out;
}

void sd_store_close(sd_tensor_store *s) {
  if (!s) return;
  for (int i = 0; i < s->count; i++) {
    free(s->tensors[i].name);
    if (s->tensors[i].f32_owned) free(s->tensors[i].f32);
  }
  for (int i = 0; i < s->n_owned; i++) free(s->owned[i]);
  if (s->map) munmap(s->map, s->map_size);
  free(s->owned);
  free(s->tensors);
  free(s->hash);
  free(s->path);
  free(s->format);
  free(s->metadata_json);
  free(s);
}
