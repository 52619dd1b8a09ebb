/* Fuzzes the safetensors reader (io/safetensors.c: header length, JSON header, tensor table, offsets) through a
 * file, as sd_store_open sees a downloaded checkpoint. Checks what the reader promises of an opened file:
 * every tensor lies inside the data block with nbytes = numel * dtype size, non-empty tensors do not overlap,
 * and every floating tensor converts to float32. */
#include "fuzz_common.h"

#include "io/tensor_store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(0, "model.safetensors", data, size);
  sd_tensor_store *s = NULL;
  sd_error err = {{0}};
  if (sd_store_open_safetensors(path, &s, &err) != 0) {
    FUZZ_ASSERT(s == NULL && err.msg[0], "failure without a message");
    return 0;
  }
  const unsigned char *lo = s->map, *hi = lo + s->map_size;
  for (int i = 0; i < s->count; i++) {
    sd_tensor *t = &s->tensors[i];
    const unsigned char *p = t->data;
    FUZZ_ASSERT(p >= lo + 8 && p + t->nbytes <= hi, "tensor '%s' outside the file", t->name);
    FUZZ_ASSERT((uint64_t)sd_tensor_numel(t) * sd_dtype_size(t->dtype) == t->nbytes, "tensor '%s' size", t->name);
    FUZZ_ASSERT(sd_store_find(s, t->name) == t, "tensor '%s' not found by name", t->name);
    for (int k = 0; k < i && i < 256; k++) {
      const sd_tensor *u = &s->tensors[k];
      const unsigned char *q = u->data;
      FUZZ_ASSERT(!t->nbytes || !u->nbytes || p + t->nbytes <= q || q + u->nbytes <= p, "tensors '%s' and '%s' overlap",
                  t->name, u->name);
    }
    if (t->nbytes <= (16u << 20)) {
      sd_error e2 = {{0}};
      const float *f = sd_tensor_f32(t, &e2);
      if (f && t->nbytes) {
        volatile float sink = f[0] + f[sd_tensor_numel(t) - 1];
        (void)sink;
      }
    }
  }
  sd_store_close(s);
  return 0;
}
