/* Backends of sdprune-mpi (ior's aiori style): what computes one work item's statistics. The driver
 * (sdprune_mpi.c) distributes items, writes shards and reduces; a backend only plans and runs items.
 * engine: the UNet through sd_stats_runner; fake: deterministic small integers, no model (tests). */
#ifndef SDM_BACKEND_H
#define SDM_BACKEND_H

#include "mpi/options.h"
#include "stats/concept_stats.h"

typedef struct {
  const char *name;
  /* Opens what this rank needs (the model and its weights); *ctx is the backend's state. */
  int (*open)(const sdm_options *o, void **ctx, sd_error *err);
  /* Fills s: plan (sets, items, steps, timesteps), settings of the model, hooks, layers (no totals,
   * no provenance). *n_truncated counts prompts over 77 CLIP tokens. */
  int (*plan)(void *ctx, const sdm_options *o, sd_stats *s, int *n_truncated, sd_error *err);
  /* Computes item i of s; on success the item's totals wait in ctx for add_item. */
  int (*run_item)(void *ctx, const sd_stats *s, int64_t i, sd_error *err);
  /* Writes the last computed item's per-item record file (--per-item) to path; NULL: not supported. */
  int (*write_record)(void *ctx, const sd_stats *s, int64_t i, const char *path, sd_error *err);
  /* Adds the last computed item's totals to its set and marks it done. */
  void (*add_item)(void *ctx, sd_stats *s, int64_t i, double seconds);
  /* Seconds spent in hooks and accumulation (for the summary), or 0. */
  double (*hook_seconds)(void *ctx);
  void (*close)(void *ctx);
} sdm_backend;

extern const sdm_backend sdm_backend_engine;
extern const sdm_backend sdm_backend_fake;

/* The backend named name, or NULL. */
const sdm_backend *sdm_backend_find(const char *name);

#endif
