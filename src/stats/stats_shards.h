/* Shards of a distributed statistics run: RUN/shards/rank-NNNNN.h5, each a stats.h5 file (stats_io.h)
 * holding the whole plan's items table with the items that rank completed (done/failed) and their
 * totals. Listing, the completeness check (every planned item done exactly once; missing, duplicate and
 * foreign items named by (set, row, seed)) and the merge into one sd_stats. Used by `sdprune reduce`
 * and the MPI driver; knows no MPI. */
#ifndef SD_STATS_SHARDS_H
#define SD_STATS_SHARDS_H

#include <stdio.h>

#include "stats/concept_stats.h"

/* "RUN/shards/rank-00003.h5" into out. */
void sd_shard_path(const char *run_dir, int rank, char *out, size_t size);
/* The shard files of RUN (sorted by rank) and their ranks; *n = 0 when there are none. */
int sd_shards_list(const char *run_dir, char ***paths, int **ranks, int *n, sd_error *err);
void sd_shards_list_free(char **paths, int *ranks, int n);

/* 1 if b may be merged into a (model hash and overrides, sampler settings, hooks, layers, timesteps);
 * else 0 with the first difference in why. */
int sd_stats_compatible(const sd_stats *a, const sd_stats *b, char *why, size_t why_size);

typedef struct {
  int64_t planned, done, missing, failed, duplicate, foreign;
  int foreign_files; /* shards whose settings differ from the plan's */
} sd_shards_report;

/* Checks shards[n] (read with or without totals; names for messages) against plan, or against the
 * union of the compatible shards' item tables when plan is NULL (the reference settings are then the
 * first shard's). Prints up to max_lines lines per kind to report (NULL: silent). Returns 0 when every
 * planned item is done exactly once and nothing is foreign, 1 otherwise (r tells what). */
int sd_shards_check(const sd_stats *plan, const sd_stats *shards, const char *const *names, int n, FILE *report,
                    int max_lines, sd_shards_report *r);

/* Reads the files (with totals), checks them (as sd_shards_check, against the union) and merges them
 * into out: 0 complete, 1 written but incomplete (missing or failed items; out is still valid), -1 with
 * err on duplicate or foreign items or a read error (out is then empty). */
int sd_shards_merge_files(char *const *paths, int n, FILE *report, int max_lines, sd_stats *out, sd_shards_report *r,
                          sd_error *err);

#endif
