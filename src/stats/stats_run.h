/* Running a statistics job: the plan (prompt sets → work items (set, row, seed) with each row's seed,
 * guidance and size as `generate` uses them) and one item's trajectory through the engine with the
 * collector hooked into the UNet. Used by `sdprune stats` and, per rank, by the MPI driver; knows no
 * files beyond the prompt sets, no HDF5 and no MPI. */
#ifndef SD_STATS_RUN_H
#define SD_STATS_RUN_H

#include <stdint.h>

#include "io/prompt_csv.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "sample/txt2img.h"
#include "stats/concept_stats.h"

typedef struct {
  const char *name;     /* "target", "anchor", or the adversarial NAME ([A-Za-z0-9_.-], not starting with '.') */
  const char *role;     /* "target", "anchor", "adversarial" */
  const char *file;     /* .txt or .csv */
  const char *template_str; /* NULL: the file's prompt column */
} sd_stats_set_spec;

typedef struct {
  const sd_stats_set_spec *sets;
  int n_sets;
  const char *sampler;
  int steps;
  double eta;
  double guidance;
  int guidance_given; /* 1: guidance wins over the rows' evaluation_guidance */
  uint64_t seed;
  int seed_given;     /* 1: seed wins over the rows' evaluation_seed */
  const uint64_t *seeds; /* several seeds per row (wins over the rows' seeds), or NULL */
  int n_seeds;
  int width, height;
  int size_given;     /* 1: size wins over the rows' sd_image_width/height */
  int max_steps;      /* record (and run) only the first K UNet evaluations; 0: all */
  int limit;          /* only the first N rows of each set; 0: all */
} sd_stats_plan_options;

/* Fills s->settings.sampler/steps/max_steps/eta, s->sets (names, roles, files, hashes; no totals),
 * s->items (pending), s->n_steps and s->timesteps. *n_truncated counts prompts over 77 CLIP tokens
 * (they are truncated, as CLIP does) when tok is given. Errors name the file and line. */
int sd_stats_plan(sd_stats *s, const sd_stats_plan_options *o, sd_tokenizer *tok, int latent_factor,
                  int *n_truncated, sd_error *err);
/* 1 if name is usable as a set name (it becomes an HDF5 group and a folder name). */
int sd_stats_valid_set_name(const char *name);

/* The engine for a statistics job: UNet with the collector's hooks, text encoder, tokenizer; no VAE. */
typedef struct {
  sd_model *model;
  sd_unet unet;
  sd_clip_text text;
  sd_tokenizer *tokenizer;
  sd_stats_collector *collector;
  int have_unet, have_text;
  int latent_factor; /* image pixels per latent pixel (8 for SD) */
  sd_progress_fn progress;
  void *progress_ctx;
} sd_stats_runner;

/* Image pixels per latent pixel from the model's VAE configuration (8 when there is no VAE). */
int sd_stats_latent_factor(sd_model *m, int *factor, sd_error *err);
int sd_stats_runner_init(sd_stats_runner *r, sd_model *m, const char *hooks, int n_steps, int per_item,
                         sd_error *err);
void sd_stats_runner_free(sd_stats_runner *r);
/* Runs item it of s; on success the collector holds the item's totals (sd_stats_collector_item). */
int sd_stats_run_item(sd_stats_runner *r, const sd_stats *s, const sd_stats_item *it, sd_error *err);
/* Adds the collector's item into its set's totals and marks the item done. */
void sd_stats_add_item(sd_stats *s, int64_t item, const sd_stats_collector *c, double seconds);

#endif
