/* Fuzzes the restricted unpickler (io/pickle.c) from memory: any byte string must give a value tree or an
 * error message, never execute, crash or leak. The tree is walked (bounded depth: memo references may make it
 * a graph with cycles) to check that every pointer in it is valid. */
#include "fuzz_common.h"

#include "io/pickle.h"

static long budget; /* values visited per input: shared values could make the walk exponential */

static void walk(const pk_value *v, int depth) {
  if (!v || depth > 64 || --budget < 0)
    return;
  switch (v->kind) {
  case PK_STR:
    FUZZ_ASSERT(v->s && v->s[v->len] == 0, "string not terminated");
    break;
  case PK_TUPLE:
  case PK_LIST:
  case PK_DICT:
    FUZZ_ASSERT(v->n >= 0 && v->n <= v->cap, "container count %d of %d", v->n, v->cap);
    for (int i = 0; i < v->n; i++)
      walk(v->items[i], depth + 1);
    break;
  case PK_TENSOR:
    FUZZ_ASSERT(v->storage && v->storage->kind == PK_STORAGE, "tensor without a storage");
    FUZZ_ASSERT(v->ndim >= 0 && v->ndim <= SD_MAX_DIMS, "tensor of %d dims", v->ndim);
    break;
  case PK_STORAGE:
    FUZZ_ASSERT(v->s && v->numel >= 0, "storage without key or with negative size");
    break;
  default:
    break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  pk_doc doc = {0};
  sd_error err = {{0}};
  if (pk_load(data, size, &doc, &err) == 0) {
    FUZZ_ASSERT(doc.root != NULL, "no root");
    budget = 100000;
    walk(doc.root, 0);
    pk_dict_get(doc.root, "state_dict");
  } else {
    FUZZ_ASSERT(err.msg[0], "failure without a message");
  }
  pk_free(&doc);
  return 0;
}
