/* A restricted unpickler for PyTorch state dicts (the data.pkl inside a torch.save zip).
 *
 * It interprets only the pickle opcodes that torch.save emits for nested dicts of tensors and plain
 * values, and builds a small value tree. Globals are looked up in a fixed allowlist (OrderedDict,
 * torch._utils._rebuild_tensor_v2 / _rebuild_parameter, the torch *Storage types, torch dtypes);
 * any other global, or a REDUCE/NEWOBJ on something that is not an allowlisted callable, is refused.
 * Nothing is ever executed or imported: "calling" OrderedDict makes an empty dict, "calling"
 * _rebuild_tensor_v2 records a tensor description (storage reference, offset, sizes, strides).
 * It does not read storages; torch_zip.c does that. */
#ifndef SD_PICKLE_H
#define SD_PICKLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "io/tensor_store.h"

typedef enum {
  PK_NONE,
  PK_BOOL,
  PK_INT,
  PK_FLOAT,
  PK_STR,    /* unicode or bytes; s/len (NUL-terminated copy, may contain NUL) */
  PK_TUPLE,
  PK_LIST,
  PK_DICT,   /* items[2i] = key, items[2i+1] = value, insertion order */
  PK_GLOBAL, /* an allowlisted global used as a value (e.g. a dtype or a storage type) */
  PK_STORAGE,
  PK_TENSOR,
} pk_kind;

typedef enum {
  PK_G_ORDERED_DICT,
  PK_G_REBUILD_TENSOR_V2,
  PK_G_REBUILD_PARAMETER,
  PK_G_STORAGE_TYPE, /* torch.FloatStorage etc.; dtype in the value */
  PK_G_DTYPE,        /* torch.float16 etc. */
} pk_global_kind;

typedef struct pk_value pk_value;
struct pk_value {
  pk_kind kind;
  int64_t i;    /* PK_INT, PK_BOOL */
  double f;     /* PK_FLOAT */
  char *s;      /* PK_STR: bytes + NUL; PK_STORAGE: key; PK_GLOBAL: "module.name" */
  size_t len;   /* PK_STR length */
  pk_value **items;
  int n, cap;   /* PK_TUPLE/PK_LIST: n items; PK_DICT: n/2 pairs (key, value, key, value, ...) */
  int visited;  /* for walkers: set on a dict already walked (catches cycles and shared dicts) */
  pk_global_kind global;
  sd_dtype dtype; /* PK_GLOBAL storage type / dtype, PK_STORAGE */
  int64_t numel;  /* PK_STORAGE: elements in the storage */
  /* PK_TENSOR */
  pk_value *storage;
  int64_t offset; /* in elements */
  int ndim;
  int64_t size[SD_MAX_DIMS], stride[SD_MAX_DIMS];
};

/* Every value of one unpickling; freed together. */
typedef struct {
  pk_value **all;
  int n_all, cap_all;
  pk_value *root;
} pk_doc;

/* Unpickles `len` bytes. On failure returns -1 with a message like
 * "refusing global 'os.system' (not on the allowlist for tensor checkpoints); nothing was executed"
 * or "truncated pickle at byte N"; the caller prefixes the file name. */
int pk_load(const unsigned char *data, size_t len, pk_doc *doc, sd_error *err);
void pk_free(pk_doc *doc);

/* Dict lookup by string key; NULL when absent or `d` is not a dict. */
pk_value *pk_dict_get(const pk_value *d, const char *key);

#endif
