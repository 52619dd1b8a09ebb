/* Fuzzes the mask reader (prune/mask_io.c over io/h5.c and libhdf5) on raw file bytes: `sdprune apply` and the
 * attack evaluation read masks that may come from elsewhere. A mask that reads must be safe to apply: every
 * index inside its layer's [rows, cols] weight, which sd_mask_layer_apply_f32 then zeroes (ASan checks). */
#include "fuzz_common.h"

#include "prune/mask_io.h"

static int count(void *ctx, int64_t index) {
  (void)index;
  ++*(int64_t *)ctx;
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(0, "mask.h5", data, size);
  sd_mask m;
  sd_error err = {{0}};
  if (sd_mask_read(path, &m, &err) != 0) {
    FUZZ_ASSERT(err.msg[0], "failure without a message");
    FUZZ_ASSERT(fuzz_h5_open_objects() == 0, "sd_mask_read failed (%s) and left HDF5 objects open", err.msg);
    return 0;
  }
  FUZZ_ASSERT(fuzz_h5_open_objects() == 0, "sd_mask_read left HDF5 objects open");
  for (int i = 0; i < m.n_layers; i++) {
    const sd_mask_layer *l = &m.layers[i];
    FUZZ_ASSERT(l->rows >= 1 && l->cols >= 1, "layer %d shape %dx%d", i, l->rows, l->cols);
    int64_t n = 0, pruned = sd_mask_layer_pruned(l);
    sd_mask_layer_foreach(l, count, &n);
    FUZZ_ASSERT(n == pruned, "layer %d: foreach visits %lld, pruned says %lld", i, (long long)n, (long long)pruned);
    if ((int64_t)l->rows * l->cols <= (1 << 22)) {
      float *w = calloc((size_t)l->rows * (size_t)l->cols, sizeof *w);
      if (w)
        sd_mask_layer_apply_f32(l, w);
      free(w);
    }
  }
  sd_mask_free(&m);
  return 0;
}
