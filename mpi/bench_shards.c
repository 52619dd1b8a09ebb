/* sdprune-bench-shards: writes N synthetic rank shards of a full-size job (the SD-1.5 ff layers, PNDM 50
 * steps = 51 recorded evaluations, 3 sets) through the statistics library, for timing the offline reduce
 * (mpi/bench_reduce.sh). Totals are pseudo-random fixed-point integers, the items are dealt round-robin
 * to the shards, so the shards merge into one complete run. A benchmark tool, not a test; no model. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_common.h"
#include "core/files.h"
#include "stats/concept_stats.h"
#include "stats/stats_io.h"
#include "stats/stats_run.h"
#include "stats/stats_shards.h"

/* SD-1.5's 16 transformer blocks in forward order and their ff inner width (4 x the block's channels). */
static const struct {
  const char *block;
  int width;
} sd15_blocks[] = {
    {"input_blocks.1.1.transformer_blocks.0", 1280},   {"input_blocks.2.1.transformer_blocks.0", 1280},
    {"input_blocks.4.1.transformer_blocks.0", 2560},   {"input_blocks.5.1.transformer_blocks.0", 2560},
    {"input_blocks.7.1.transformer_blocks.0", 5120},   {"input_blocks.8.1.transformer_blocks.0", 5120},
    {"middle_block.1.transformer_blocks.0", 5120},     {"output_blocks.3.1.transformer_blocks.0", 5120},
    {"output_blocks.4.1.transformer_blocks.0", 5120},  {"output_blocks.5.1.transformer_blocks.0", 5120},
    {"output_blocks.6.1.transformer_blocks.0", 2560},  {"output_blocks.7.1.transformer_blocks.0", 2560},
    {"output_blocks.8.1.transformer_blocks.0", 2560},  {"output_blocks.9.1.transformer_blocks.0", 1280},
    {"output_blocks.10.1.transformer_blocks.0", 1280}, {"output_blocks.11.1.transformer_blocks.0", 1280},
};
#define N_BLOCKS (int)(sizeof sd15_blocks / sizeof sd15_blocks[0])

static uint64_t next_random(uint64_t *x) { /* xorshift64* */
  *x ^= *x >> 12;
  *x ^= *x << 25;
  *x ^= *x >> 27;
  return *x * 2685821657736338717ull;
}

static int write_prompts(const char *path, int rows, const char *word) {
  FILE *f = fopen(path, "w");
  if (!f)
    return -1;
  for (int r = 0; r < rows; r++)
    fprintf(f, "a photo number %d of a %s\n", r, word);
  return fclose(f);
}

int main(int argc, char **argv) {
  if (argc < 3) {
    fprintf(stderr, "usage: sdprune-bench-shards DIR N_SHARDS [ROWS_PER_SET=50] [--record FILE]\n"
                    "writes DIR/shards/rank-NNNNN.h5 (SD-1.5 ff layers, pndm 50 steps, 3 sets); --record also\n"
                    "writes one per-item record file of that shape (its size is the per-item cost)\n");
    return 2;
  }
  const char *dir = argv[1], *record = NULL;
  int n_shards = atoi(argv[2]), rows = argc > 3 && argv[3][0] != '-' ? atoi(argv[3]) : 50;
  for (int i = 3; i + 1 < argc; i++)
    if (!strcmp(argv[i], "--record"))
      record = argv[i + 1];
  sd_error err;
  char path[4300], files[3][4300];
  const char *names[3] = {"target", "anchor", "adv"}, *roles[3] = {"target", "anchor", "adversarial"};
  snprintf(path, sizeof path, "%s/shards", dir);
  if (n_shards < 1 || rows < 1 || sd_mkdir_p(path) != 0) {
    fprintf(stderr, "sdprune-bench-shards: bad arguments or cannot create %s: %s\n", path, strerror(errno));
    return 1;
  }
  sd_stats_set_spec sets[3];
  for (int k = 0; k < 3; k++) {
    snprintf(files[k], sizeof files[k], "%s/%s.txt", dir, names[k]);
    if (write_prompts(files[k], rows, names[k]) != 0) {
      fprintf(stderr, "sdprune-bench-shards: cannot write %s\n", files[k]);
      return 1;
    }
    sets[k] = (sd_stats_set_spec){.name = names[k], .role = roles[k], .file = files[k]};
  }
  sd_stats_plan_options po = {
      .sets = sets, .n_sets = 3, .sampler = "pndm", .steps = 50, .guidance = 7.5, .width = 512, .height = 512};
  sd_stats s;
  memset(&s, 0, sizeof s);
  int truncated = 0;
  if (sd_stats_plan(&s, &po, NULL, 8, &truncated, &err) != 0)
    goto fail;
  s.settings.model = sd_strdup("bench:sd15");
  s.settings.model_hash = sd_strdup("00000000bench015");
  s.settings.hooks = sd_strdup("ff");
  s.settings.sdprune_version = sd_strdup("bench");
  s.n_layers = N_BLOCKS;
  s.layers = sd_calloc(N_BLOCKS, sizeof *s.layers, &err);
  if (!s.layers)
    goto fail;
  for (int l = 0; l < N_BLOCKS; l++) {
    char name[256];
    snprintf(name, sizeof name, "%s.ff.net.2", sd15_blocks[l].block);
    s.layers[l] = (sd_stats_layer){.name = sd_strdup(name),
                                   .block = sd_strdup(sd15_blocks[l].block),
                                   .diffusers = sd_strdup(name),
                                   .kind = SD_HOOK_FF_NEURONS,
                                   .width = sd15_blocks[l].width,
                                   .site_index = l};
  }
  if (sd_stats_alloc_totals(&s, &err) != 0)
    goto fail;
  uint64_t x = 0x9e3779b97f4a7c15ull, cells = 0;
  double t0 = sd_now();
  for (int r = 0; r < n_shards; r++) {
    for (int k = 0; k < s.n_sets; k++) {
      s.sets[k].items_done = 0;
      for (int l = 0; l < s.n_layers; l++) {
        sd_stats_acc *a = &s.sets[k].layers[l];
        int64_t n = (int64_t)s.n_steps * SD_STATS_BRANCHES * s.layers[l].width;
        for (int64_t c = 0; c < s.n_steps * SD_STATS_BRANCHES; c++)
          a->count[c] = 77;
        for (int q = 0; q < SD_STATS_NQ; q++)
          for (int64_t c = 0; c < n; c++)
            a->q[q][c] = (int64_t)(next_random(&x) >> 30); /* ~2^34: a sum of O(100) in 2^-24 units */
        for (int64_t c = 0; c < n; c++)
          a->max[c] = (float)(next_random(&x) >> 40) * 1e-6f;
        cells += (uint64_t)n;
      }
    }
    for (int64_t i = 0; i < s.n_items; i++) {
      int mine = i % n_shards == r;
      s.items[i].status = mine ? SD_ITEM_DONE : SD_ITEM_PENDING;
      s.items[i].seconds = mine ? 10.0 : 0;
      if (mine)
        s.sets[s.items[i].set].items_done++;
    }
    sd_shard_path(dir, r, path, sizeof path);
    if (sd_stats_write_ex(path, &s, 0, &err) != 0) /* as the driver writes shards */
      goto fail;
  }
  fprintf(stderr, "sdprune-bench-shards: %d shards of %lld items, %d sets x %d layers x %d steps in %s (%.1f s)\n",
          n_shards, (long long)s.n_items, s.n_sets, s.n_layers, s.n_steps, dir, sd_now() - t0);
  (void)cells;
  if (record) { /* one per-item record: mean and max [n_steps, width] per layer */
    float **mean = sd_calloc(N_BLOCKS, sizeof *mean, &err), **max = sd_calloc(N_BLOCKS, sizeof *max, &err);
    if (!mean || !max)
      goto fail;
    for (int l = 0; l < N_BLOCKS; l++) {
      size_t n = (size_t)s.n_steps * (size_t)s.layers[l].width;
      mean[l] = sd_calloc(n, sizeof(float), &err);
      max[l] = sd_calloc(n, sizeof(float), &err);
      if (!mean[l] || !max[l])
        goto fail;
      for (size_t c = 0; c < n; c++)
        mean[l][c] = (float)(next_random(&x) >> 40) * 1e-6f, max[l][c] = mean[l][c] * 2;
    }
    if (sd_stats_write_item_record(record, &s, &s.items[0], (const float *const *)mean, (const float *const *)max,
                                   &err) != 0)
      goto fail;
    for (int l = 0; l < N_BLOCKS; l++)
      free(mean[l]), free(max[l]);
    free(mean);
    free(max);
  }
  sd_stats_free(&s);
  return 0;
fail:
  fprintf(stderr, "sdprune-bench-shards: %s\n", err.msg);
  sd_stats_free(&s);
  return 1;
}
