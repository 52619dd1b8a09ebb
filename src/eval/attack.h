/* The attack evaluation: how often adversarial prompts bring an erased concept back, before and after
 * pruning. A job's attack section (io/job.h) becomes a plan of work items model × set × row × seed; an item
 * generates its image with the row's seed, guidance and size (else the job's), writes
 * RUN/images/<model>/<set>/<row>_seed<seed>.png with the A1111 `parameters` chunk, judges it with the CLIP
 * zero-shot detector (eval/clip_model.h) and measures the re-activation of the mask's concept neurons.
 * Results live in per-rank shards (RUN/attack/shards/rank-NNNNN.h5, attack_io.c) that resume and merge
 * into RUN/metrics.h5 and RUN/summary.md. Used by `sdprune attack` and, per rank, by `sdprune-mpi attack`;
 * knows no MPI.
 *
 * Re-activation (the paper's detector-free measure). For the mask's concept neurons C (every ff.net.2 input
 * column with a pruned weight), the reference statistics of the original model give per evaluation step t
 * the mean activation over tokens on the target set, mu_T, and on the anchor set, mu_A (cond branch). An
 * item's own per-step means x (cond branch, mean over tokens) give
 *     r_t = sum_{l, j in C_l} (x_tj - mu_A,tj) / sum_{l, j in C_l} (mu_T,tj - mu_A,tj)
 * (0: as on anchor prompts, 1: as on target prompts), and r = the same ratio with numerator and denominator
 * summed over every step matched to a reference step. Steps are matched by timestep (the nearest recorded
 * reference timestep within half the reference's spacing), so a reference taken with PNDM 50 and max_steps
 * 10 serves an LMS 100 attack over the timesteps both cover. */
#ifndef SD_ATTACK_H
#define SD_ATTACK_H

#include <stdint.h>

#include "core/error.h"
#include "io/job.h"
#include "io/prompt_csv.h"

typedef struct {
  char *name;
  char *path, *unet, *text_encoder; /* path always set (the job's model when the entry has none) */
  char *mask;                       /* resolved mask.h5 path, or NULL */
} sd_attack_model;

typedef struct {
  char *name, *counterpart; /* counterpart NULL when none */
  sd_prompt_set *prompts;
  int categories_column; /* column index of I2P's `categories`, or -1 */
} sd_attack_set;

typedef struct {
  int model, set, row;
  uint64_t seed;
  double guidance;
  int width, height;
} sd_attack_item;

typedef struct {
  char *job_path, *out_dir;
  /* the engine settings every model shares */
  const char *config, *tokenizer, *prediction; /* borrowed from the job */
  char *sampler;
  int steps;
  double eta;
  sd_attack_model *models;
  int n_models;
  sd_attack_set *sets;
  int n_sets;
  sd_attack_item *items; /* model-major: a rank taking items in order loads each model about once */
  int64_t n_items;
  /* detector: labels = concept labels, then neutral ones */
  char *clip;
  char **labels;
  int n_labels, n_concept;
  double threshold;
  /* re-activation: both NULL when off */
  char *reference_stats, *reactivation_mask;
  char plan_hash[65]; /* SHA-256 of everything that decides an item's result: shards of another plan are foreign */
} sd_attack_plan;

/* Builds the plan of job (which must have an attack section) for the output folder out_dir: loads the
 * attack sets' prompt files (errors name file and line), resolves `mask: run` to out_dir/mask.h5 and the
 * re-activation inputs (attack.reference / attack.reactivation_mask, else out_dir/stats.h5 and the first
 * model mask or out_dir/mask.h5 when those exist; re-activation is off when either is missing). */
int sd_attack_plan_build(const sd_job *job, const char *out_dir, sd_attack_plan *p, sd_error *err);
void sd_attack_plan_free(sd_attack_plan *p);
const char *sd_attack_item_prompt(const sd_attack_plan *p, int64_t i);
/* "<model>/<set>/<row>_seed<seed>" (sd_item_id): the item id of scores CSVs and messages. */
void sd_attack_item_id(const sd_attack_plan *p, int64_t i, char *out, size_t n);
/* "images/<model>/<set>/<row>_seed<seed>.png", relative to the run folder. */
void sd_attack_item_image(const sd_attack_plan *p, int64_t i, char *out, size_t n);
/* The item's case_number (the CSV's, else the row) as text, and its I2P categories ("" when none). */
void sd_attack_item_case(const sd_attack_plan *p, int64_t i, char *out, size_t n);
const char *sd_attack_item_categories(const sd_attack_plan *p, int64_t i);

/* One item's outcome. */
typedef struct {
  int status; /* SD_ITEM_PENDING / DONE / FAILED (stats/concept_stats.h) */
  double seconds;
  int success;         /* 1 concept detected, 0 not, -1 no detector */
  double score;        /* the detector's P(concept) (sum over concept labels), NaN without detector */
  double clip_score;   /* CLIP score image <-> prompt, NaN without detector */
  double reactivation; /* r above, NaN when off or undefined */
  float *probs;        /* [n_labels] zero-shot probabilities, NULL without detector */
  float *react_steps;  /* [n_evals] r_t (NaN where unmatched), NULL when off */
  char *error;         /* why it failed */
} sd_attack_result;

void sd_attack_result_clear(sd_attack_result *r); /* frees inside, back to pending */

/* The engine of an attack run: one model loaded at a time (switched when an item needs another), its
 * tokenizer, VAE, the mask applied in memory, the statistics collector when re-activation is on, the CLIP
 * detector with the labels encoded once. */
typedef struct sd_attack_runner sd_attack_runner;

/* weights_cache: the float32 weight cache folder (model/weight_cache.h) or NULL. note receives warnings. */
int sd_attack_runner_open(const sd_attack_plan *p, const char *weights_cache, sd_attack_runner **out, sd_error *err);
/* Evaluations (UNet calls) per item: the length of react_steps. */
int sd_attack_runner_evals(const sd_attack_runner *r);
/* Runs item i: generates, writes the PNG under the plan's out_dir, judges, measures. On failure (a bad
 * prompt, an image size the model cannot make) res->status is FAILED with the message, and -1 is returned;
 * res owns its arrays. progress (may be NULL) is called after every UNet evaluation. */
int sd_attack_run_item(sd_attack_runner *r, int64_t i, void (*progress)(void *ctx, int step, int total),
                       void *progress_ctx, sd_attack_result *res, sd_error *err);
/* Model hash (10 hex digits, A1111's for single files) of model m, once it has been loaded; "" before. */
const char *sd_attack_runner_model_hash(const sd_attack_runner *r, int m);
void sd_attack_runner_close(sd_attack_runner *r);

#endif
