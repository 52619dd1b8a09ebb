/* The attack run on disk: per-rank shards RUN/attack/shards/rank-NNNNN.h5 (the items a rank ran, with their
 * results; rewritten whole, atomically, after completed items) and the final RUN/metrics.h5 + RUN/summary.md
 * merged from all shards. Shard layout: attributes plan_hash, job, provenance; /items (item index, model,
 * set, row, seed, status, seconds, success, score, clip_score, reactivation, error, model_hash); /probs
 * [n, n_labels] and /react_steps [n, evals] when the plan has a detector / re-activation. */
#ifndef SD_ATTACK_IO_H
#define SD_ATTACK_IO_H

#include <stdio.h>

#include "eval/attack.h"

/* Writes the shard at path with every item i where mine[i] is set and res[i] is not pending. hashes[m]:
 * model hashes known to this rank ("" unknown). */
int sd_attack_shard_write(const char *path, const sd_attack_plan *p, const sd_attack_result *res,
                          const unsigned char *mine, char (*hashes)[16], int evals, const char *command_line,
                          sd_error *err);

typedef struct {
  int n_shards;
  int64_t done, failed, duplicate; /* items found (a done item beats a failed one of another shard) */
} sd_attack_scan;

/* Reads every shard of run_dir into res[n_items] (cleared first: zeroed or valid results) and owner[n_items] (the
 * rank whose shard holds the item, -1 none) and fills hashes[m] where a shard knows them. A shard of another plan
 * (other job settings, prompt files, models, labels) is an error naming it. */
int sd_attack_shards_load(const char *run_dir, const sd_attack_plan *p, int evals, sd_attack_result *res,
                          int *owner, char (*hashes)[16], sd_attack_scan *scan, sd_error *err);

/* Records model m's content hash `now` (the runner's, after it loaded the model) in hashes[m]. When the run's
 * earlier shards recorded another hash for it, the file behind that model changed while the run was interrupted:
 * mixing its items would compare two models under one name, so that is an error naming the model and both
 * hashes. An empty `now` (the model never loaded: its items failed first) is ignored. */
int sd_attack_note_model_hash(const sd_attack_plan *p, char (*hashes)[16], int m, const char *now, sd_error *err);

/* With every item done or failed: RUN/metrics.h5 (items, sets, models, metrics, metrics_by_category,
 * reactivation curves, provenance) and RUN/summary.md, both replaced atomically; the table printed to out
 * (may be NULL). Items still pending are an error listing the first of them. */
int sd_attack_finish(const sd_attack_plan *p, const sd_attack_result *res, char (*hashes)[16], int evals,
                     const float *timesteps, const char *command_line, FILE *out, sd_error *err);

#endif
