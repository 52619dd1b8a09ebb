/* PyTorch zip checkpoints (.ckpt/.pt): placeholder until the reader lands (issue #5). */
#include "io/tensor_store.h"

int sd_store_open_torch(const char *path, sd_tensor_store **out, sd_error *err) {
  *out = NULL;
  return sd_fail(err, "%s: PyTorch zip checkpoints are not supported yet", path);
}
