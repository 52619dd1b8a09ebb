/* stats.h5 files: concept-neuron statistics (concept_stats.h) in HDF5 through io/h5.h.
 * Schema (documented in the README):
 *   /                      attrs: format="sdprune-stats", format_version, settings and provenance
 *                          (sdprune_version, git_revision, command_line, created_utc, model, model_hash,
 *                          sampler, steps, max_steps, eta, hooks, per_item, fixed_point_bits)
 *   /layers                table: index, name, block, diffusers, kind, width
 *   /timesteps             float32 [n_steps]
 *   /items                 table: item, set, row, case_number, prompt, seed, guidance, width, height,
 *                          status, seconds, error, per_item_file
 *   /sets/<set>            attrs: role, file, file_sha256, template, n_rows, items_done
 *   /sets/<set>/<layer>/count               int64 [steps, 2]
 *   /sets/<set>/<layer>/{sum,sumsq,sumabs,sumsq_hat}  int64 [steps, 2, width], units of 2^-fixed_point_bits
 *   /sets/<set>/<layer>/max                 float32 [steps, 2, width]
 *   /per_item/<set>/<case>_seed<seed>       external link to the item's record file (--per-item):
 *                          <layer>/mean, <layer>/max float32 [steps, width] (cond branch)
 * The file is always replaced whole (temporary name, then rename): valid after every completed item. */
#ifndef SD_STATS_IO_H
#define SD_STATS_IO_H

#include "stats/concept_stats.h"

int sd_stats_write(const char *path, const sd_stats *s, sd_error *err);
/* The same with the totals stored uncompressed (compress 0): for MPI shards, which are transient and
 * read once by the reduce — inflating them, not the disk, bounded the offline reduce at ~100 MB/s. */
int sd_stats_write_ex(const char *path, const sd_stats *s, int compress, sd_error *err);
/* Reads settings, layers, timesteps, sets and items; totals too when with_totals. */
int sd_stats_read(const char *path, sd_stats *s, int with_totals, sd_error *err);
/* Reads the totals of one set × layer into a (allocated by the caller with sd_stats_acc_alloc). */
int sd_stats_read_acc(const char *path, const char *set, const char *layer, sd_stats_acc *a, int n_steps, int width,
                      sd_error *err);
/* Writes one item's per-item record file (atomically): per layer mean and max [n_steps, width]. */
int sd_stats_write_item_record(const char *path, const sd_stats *s, const sd_stats_item *item, const float *const *mean,
                               const float *const *max, sd_error *err);

/* Merges src into dst (the reduce): settings must agree (model hash, sampler, steps, max_steps, eta,
 * hooks), layers and timesteps equal, sets matched by name and file hash; items are added, an item
 * (set, row, seed) done in both is a duplicate error naming it. A src read without totals contributes
 * its items and sets only; the caller then adds its totals (sd_stats_add_file_totals), so a reduce of
 * many files holds one file's totals at a time. */
int sd_stats_merge(sd_stats *dst, const sd_stats *src, const char *src_name, sd_error *err);
/* dst's totals += the totals of the sets of file `path` (described by src, read without totals), one
 * set × layer at a time through the caller's scratch accumulators (scratch[n_layers], reused). */
int sd_stats_add_file_totals(sd_stats *dst, const sd_stats *src, const char *path, sd_stats_acc *scratch,
                             sd_error *err);

#endif
