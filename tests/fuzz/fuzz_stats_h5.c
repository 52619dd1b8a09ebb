/* Fuzzes the statistics reader (stats/stats_io.c over io/h5.c and libhdf5) on raw file bytes: stats.h5 and
 * the MPI shards are read back by `sdprune mask`, the reduce and a resume, and may come from another machine.
 * A file that reads is also merged with a second reading of itself (the reduce's checks: settings, layers,
 * sets, duplicate items) and its totals are added as the reduce adds them. */
#include "fuzz_common.h"

#include "stats/stats_io.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_file(0, "stats.h5", data, size);
  sd_stats s, again;
  sd_error err = {{0}};
  if (sd_stats_read(path, &s, 1, &err) != 0) {
    FUZZ_ASSERT(err.msg[0], "failure without a message");
    FUZZ_ASSERT(fuzz_h5_open_objects() == 0, "sd_stats_read failed (%s) and left HDF5 objects open", err.msg);
    return 0;
  }
  FUZZ_ASSERT(fuzz_h5_open_objects() == 0, "sd_stats_read left HDF5 objects open");
  FUZZ_ASSERT(s.n_steps >= 1 && s.timesteps, "steps");
  for (int64_t i = 0; i < s.n_items; i++)
    FUZZ_ASSERT(s.items[i].set >= 0 && s.items[i].set < s.n_sets, "item %lld of set %d", (long long)i, s.items[i].set);
  if (sd_stats_read(path, &again, 0, &err) == 0) {
    if (sd_stats_merge(&s, &again, path, &err) == 0 && s.n_layers <= 64) {
      sd_stats_acc scratch[64];
      int ok = 1;
      for (int l = 0; l < s.n_layers; l++)
        ok = ok && sd_stats_acc_alloc(&scratch[l], s.n_steps, s.layers[l].width, &err) == 0;
      if (ok)
        sd_stats_add_file_totals(&s, &again, path, scratch, &err);
      for (int l = 0; l < s.n_layers; l++)
        sd_stats_acc_free(&scratch[l]);
    }
    sd_stats_free(&again);
  }
  sd_stats_free(&s);
  return 0;
}
