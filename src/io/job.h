/* Job files (jobs/NAME.yaml): one documented YAML file describes a statistics + mask run (model and part
 * overrides, tokenizer, prompt sets with roles, seeds, sampler settings, hooks, per-item records, the
 * mask method and its parameters, the output folder). Parsed with libcyaml (a schema mapped onto these
 * structs); unknown keys and wrong types are errors naming file, line and key. Every key can be
 * overridden as "section.key=value" (the `--set` option). Knows nothing of the engine or MPI.
 * The keys, types and defaults are documented in README.md ("Job files"). Paths in the file (model.*, sets'
 * files) are relative to the job file's folder; `out` and paths given as overrides to the current one. */
#ifndef SD_JOB_H
#define SD_JOB_H

#include <stdint.h>

#include "core/error.h"

typedef struct {
  char *name;         /* "target", "anchor", or the adversarial set's name */
  char *role;         /* "target", "anchor", "adversarial" */
  char *file;         /* prompt file (.txt/.csv), relative paths resolved against the job file's folder */
  char *template_str; /* NULL: the file's prompt column */
} sd_job_set;

/* attack.models[]: a model to attack, the job's model (or its own path) with optional part overrides and a
 * mask applied in memory ("run": the run's OUT/mask.h5). */
typedef struct {
  char *name; /* [A-Za-z0-9_.+-], e.g. "sd14+esd+mask" */
  char *path, *unet, *text_encoder; /* path: NULL = the job's model.path; unet/text_encoder: NULL = none */
  char *mask; /* NULL, "run" or a mask.h5 path */
} sd_job_attack_model;

/* attack.sets[]: an attack prompt set (a CSV of the literature as published, or .txt). */
typedef struct {
  char *name, *file, *template_str;
  char *counterpart; /* the attack set holding the same prompts unattacked, or NULL */
} sd_job_attack_set;

struct sd_job_source;

typedef struct {
  char *path;        /* the job file */
  char *description; /* free text, or NULL */
  /* model */
  char *model, *unet, *text_encoder, *config, *tokenizer, *prediction; /* NULL when absent */
  /* prompt sets */
  sd_job_set *sets;
  int n_sets;
  /* seeds: the row's (else `seed`), or a list/range for every row */
  uint64_t seed;
  uint64_t *seeds; /* NULL: the row's */
  int n_seeds;
  /* sampler */
  char *sampler;
  int steps, max_steps;
  double guidance, eta;
  int guidance_given; /* 1: guidance wins over the rows' */
  int width, height, size_given;
  int limit;
  /* statistics */
  char *hooks; /* "ff" or "ff,attn2" */
  int per_item;
  /* mask */
  char *mask_method; /* wanda, actdiff, sensitivity; NULL: no mask stage */
  double ratio, select_ratio;
  int tau;
  char *branch, *scope;
  char **adversarial; /* sets chosen for sensitivity */
  int n_adversarial;
  int with_wanda;
  double wanda_ratio, wanda_select_ratio; /* with_wanda: the wanda parameters (0.01, 0) */
  int wanda_tau;                          /* with_wanda (10) */
 /* attack evaluation (attack section; n_attack_models == 0: none) */
  sd_job_attack_model *attack_models;
  int n_attack_models;
  sd_job_attack_set *attack_sets;
  int n_attack_sets;
  char *clip;                   /* detector.clip: CLIPModel folder or .safetensors; NULL: no detector */
  char **concept_labels;        /* detector.concept: the concept's label prompts */
  int n_concept;
  char **neutral_labels;        /* detector.neutral */
  int n_neutral;
  double threshold;             /* detector.threshold (0.5): success when P(concept) exceeds it */
  char *reference_stats;        /* attack.reference: stats.h5 of the original model; NULL: OUT/stats.h5 */
  char *reactivation_mask;      /* attack.reactivation_mask: the neurons watched; NULL: OUT/mask.h5 */
  /* output */
  char *out;                    /* output folder */
  int threads;                  /* 0: from SLURM_CPUS_PER_TASK etc. */
  struct sd_job_source *source; /* private: the file's text and the overrides, rebuilt on each override */
} sd_job;

/* Loads and validates a job file (*job zeroed first; defaults as `sdprune stats`/`mask`). */
int sd_job_load(const char *path, sd_job *job, sd_error *err);
/* Applies one "section.key=value" override (e.g. "sampler.steps=20", "seeds.list=[0,1]", "mask=null"); the
 * value is YAML of the key's type, null restores the default. On error the job is unchanged. */
int sd_job_set_override(sd_job *job, const char *assignment, sd_error *err);
void sd_job_free(sd_job *job);

#endif
