/* Fuzzes the torch zip checkpoint reader (io/torch_zip.c with the restricted unpickler of io/pickle.c) through
 * a file, in two forms of input:
 *   raw:        input starting "PK\3\4" is the .ckpt file itself (zip structure, sizes, CRCs, entry names);
 *   structured: otherwise records of u32-le length + bytes: record 0 is archive/data.pkl, record k >= 1 is
 *               archive/data/<k-1> (the storages torch.save numbers from 0), all stored uncompressed, so that
 *               mutations of the pickle reach the unpickler instead of failing libzip's CRC check.
 * An opened store must hold tensors whose bytes lie in buffers the store owns (ASan checks the reads). */
#include <zip.h>

#include "fuzz_common.h"

#include "io/tensor_store.h"

#define MAX_RECORDS 16

static int write_structured(const char *path, const uint8_t *data, size_t size) {
  unlink(path);
  int zerr;
  zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
  if (!z)
    return -1;
  size_t at = 0;
  for (int k = 0; k < MAX_RECORDS && at + 4 <= size; k++) {
    uint32_t n =
        (uint32_t)data[at] | (uint32_t)data[at + 1] << 8 | (uint32_t)data[at + 2] << 16 | (uint32_t)data[at + 3] << 24;
    at += 4;
    if (n > size - at)
      n = (uint32_t)(size - at);
    char name[64];
    if (k == 0)
      snprintf(name, sizeof name, "archive/data.pkl");
    else
      snprintf(name, sizeof name, "archive/data/%d", k - 1);
    zip_source_t *s = zip_source_buffer(z, data + at, n, 0);
    zip_int64_t i = s ? zip_file_add(z, name, s, ZIP_FL_OVERWRITE) : -1;
    if (i < 0) {
      zip_source_free(s);
      zip_discard(z);
      return -1;
    }
    zip_set_file_compression(z, (zip_uint64_t)i, ZIP_CM_STORE, 0);
    at += n;
  }
  zip_source_t *s = zip_source_buffer(z, "3\n", 2, 0);
  if (zip_file_add(z, "archive/version", s, 0) < 0)
    zip_source_free(s);
  return zip_close(z) == 0 ? 0 : (zip_discard(z), -1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path;
  if (size >= 4 && memcmp(data, "PK\003\004", 4) == 0) {
    path = fuzz_file(0, "model.ckpt", data, size);
  } else {
    path = fuzz_file(0, "model.ckpt", "", 0);
    if (write_structured(path, data, size) != 0)
      return 0;
  }
  sd_tensor_store *s = NULL;
  sd_error err = {{0}};
  if (sd_store_open_torch(path, &s, &err) != 0) {
    FUZZ_ASSERT(s == NULL && err.msg[0], "failure without a message");
    return 0;
  }
  for (int i = 0; i < s->count; i++) {
    sd_tensor *t = &s->tensors[i];
    FUZZ_ASSERT((uint64_t)sd_tensor_numel(t) * sd_dtype_size(t->dtype) == t->nbytes, "tensor '%s' size", t->name);
    FUZZ_ASSERT(sd_store_find(s, t->name) == t, "tensor '%s' not found by name", t->name);
    if (t->nbytes && t->nbytes <= (16u << 20)) {
      /* Touches the first and the last byte, then converts: both read the tensor's whole extent. */
      volatile unsigned char sink =
          ((const unsigned char *)t->data)[0] ^ ((const unsigned char *)t->data)[t->nbytes - 1];
      (void)sink;
      sd_error e2 = {{0}};
      sd_tensor_f32(t, &e2);
    }
  }
  sd_store_close(s);
  return 0;
}
