/* Internal to io/job.c and io/job_check.c: the YAML layout libcyaml loads a job file onto (one struct per
 * section; every leaf a pointer, NULL when the key is absent or null, so a layer (the file, then each
 * override) says exactly what it sets and layers merge field by field), the job's source, and the
 * validation of the merged layout into sd_job. Nothing else includes it. */
#ifndef SD_JOB_LAYOUT_H
#define SD_JOB_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/job.h"
#include "io/yaml_check.h"

#define JOB_MAX_BYTES (1 << 20)
#define JOB_MAX_SETS 64
#define JOB_MAX_SEEDS 4096
#define JOB_MAX_OVERRIDES 256
#define JOB_MAX_STRING 4096

typedef struct {
  char *path, *unet, *text_encoder, *config, *tokenizer, *prediction;
} y_model;
typedef struct {
  char *name, *role, *file, *template_str;
} y_set;
typedef struct {
  uint64_t *default_seed;
  uint64_t *list;
  unsigned list_count;
  uint64_t *range;
  unsigned range_count;
} y_seeds;
typedef struct {
  char *name;
  int *steps, *max_steps;
  double *guidance, *eta;
  char *size;
  int *limit;
} y_sampler;
typedef struct {
  char *hooks;
  bool *per_item;
} y_stats;
typedef struct {
  char *method;
  double *ratio;
  int *tau;
  double *select_ratio;
  char *branch, *scope;
  char **adversarial;
  unsigned adversarial_count;
  bool *with_wanda;
  double *wanda_ratio;
  int *wanda_tau;
  double *wanda_select_ratio;
} y_mask;
typedef struct {
  char *name, *path, *unet, *text_encoder, *mask;
} y_attack_model;
typedef struct {
  char *name, *file, *template_str, *counterpart;
} y_attack_set;
typedef struct {
  char *clip;
  char **concept;
  unsigned concept_count;
  char **neutral;
  unsigned neutral_count;
  double *threshold;
} y_detector;
typedef struct {
  y_attack_model *models;
  unsigned models_count;
  y_attack_set *sets;
  unsigned sets_count;
  y_detector *detector;
  char *reference, *reactivation_mask;
} y_attack;
typedef struct {
  char *description;
  y_model *model;
  y_set *sets;
  unsigned sets_count;
  y_seeds *seeds;
  y_sampler *sampler;
  y_stats *stats;
  y_mask *mask;
  y_attack *attack;
  char *out;
  int *threads;
} y_job;

struct sd_job_source {
  char *text; /* the job file as read */
  size_t len;
  char *dir; /* its folder, or NULL when it is the current one */
  char **overrides;
  int n_overrides;
};

/* Where validation messages point: "FILE:LINE: ..." from the file's key lines, or the override that set the
 * key last. */
typedef struct {
  const char *file;
  const sd_yaml_lines *lines;
  const struct sd_job_source *src;
  sd_error *err;
} job_checker;

/* Checks the merged layout (names, ranges, consistency; not whether files exist) and fills j, whose
 * strings it allocates; -1 with the message in c->err on the first problem (j may be partly filled: the
 * caller frees it). */
int job_convert(const job_checker *c, const y_job *y, sd_job *j);

#endif
