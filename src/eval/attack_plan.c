/* The attack evaluation's plan: the items of every prompt set x seed x model, its hash, and the names
 * derived from each item (attack.h). The engine that runs the items is attack.c. */
#include "eval/attack.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/files.h"
#include "core/sha256.h"
#include "eval/scores_import.h"

/* ---- the plan ------------------------------------------------------------------------------------ */

static char *dup_or_null(const char *s) {
  return s ? sd_strdup(s) : NULL;
}

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *s = malloc(n);
  if (s)
    snprintf(s, n, "%s/%s", dir, name);
  return s;
}

static void hash_str(sd_sha256_ctx *h, const char *key, const char *v) {
  sd_sha256_update(h, key, strlen(key) + 1);
  if (v)
    sd_sha256_update(h, v, strlen(v));
  sd_sha256_update(h, "\n", 1);
}

/* A mask's bytes, when the file exists: a run whose mask changed (another ratio, new statistics) must not
 * resume from images made with the old one. A rerun of the mask stage writes the same bytes. Statistics
 * files are named, not hashed: they are large, and a resumed `run` rewrites them with new times. */
static void hash_file(sd_sha256_ctx *h, const char *path) {
  uint8_t d[32];
  char hex[65] = "";
  sd_error err;
  if (path && sd_is_file(path) && sd_sha256_file(path, d, &err) == 0)
    sd_sha256_hex(d, hex);
  hash_str(h, "sha256", hex);
}

/* Everything that decides an item's image and judgement; resuming under another plan would mix results. */
static void plan_hash(sd_attack_plan *p, const sd_job *job) {
  sd_sha256_ctx h;
  char buf[256];
  sd_sha256_init(&h);
  hash_str(&h, "sampler", p->sampler);
  snprintf(buf, sizeof buf, "%d %.17g", p->steps, p->eta);
  hash_str(&h, "steps eta", buf);
  hash_str(&h, "config", p->config);
  hash_str(&h, "prediction", p->prediction);
  for (int m = 0; m < p->n_models; m++) {
    hash_str(&h, "model", p->models[m].name);
    hash_str(&h, "path", p->models[m].path);
    hash_str(&h, "unet", p->models[m].unet);
    hash_str(&h, "text_encoder", p->models[m].text_encoder);
    hash_str(&h, "mask", p->models[m].mask);
    hash_file(&h, p->models[m].mask);
  }
  for (int s = 0; s < p->n_sets; s++) {
    hash_str(&h, "set", p->sets[s].name);
    hash_str(&h, "sha256", p->sets[s].prompts->sha256_hex);
    hash_str(&h, "template", p->sets[s].prompts->template_used);
  }
  hash_str(&h, "clip", p->clip);
  for (int l = 0; l < p->n_labels; l++)
    hash_str(&h, l < p->n_concept ? "concept" : "neutral", p->labels[l]);
  snprintf(buf, sizeof buf, "%.17g", p->threshold);
  hash_str(&h, "threshold", buf);
  hash_str(&h, "reference", p->reference_stats);
  hash_str(&h, "reactivation_mask", p->reactivation_mask);
  hash_file(&h, p->reactivation_mask);
  for (int64_t i = 0; i < p->n_items; i++) {
    const sd_attack_item *it = &p->items[i];
    snprintf(buf, sizeof buf, "%d %d %d %llu %.17g %d %d", it->model, it->set, it->row, (unsigned long long)it->seed,
             it->guidance, it->width, it->height);
    hash_str(&h, "item", buf);
  }
  (void)job;
  uint8_t d[32];
  sd_sha256_final(&h, d);
  sd_sha256_hex(d, p->plan_hash);
}

static int plan_models(const sd_job *job, const char *out_dir, sd_attack_plan *p, sd_error *err) {
  if (!(p->models = sd_calloc((size_t)job->n_attack_models, sizeof *p->models, err)))
    return -1;
  p->n_models = job->n_attack_models;
  for (int m = 0; m < p->n_models; m++) {
    const sd_job_attack_model *jm = &job->attack_models[m];
    sd_attack_model *am = &p->models[m];
    am->name = sd_strdup(jm->name);
    am->path = sd_strdup(jm->path ? jm->path : job->model);
    /* a model with its own path does not inherit the job's part overrides */
    am->unet = dup_or_null(jm->unet ? jm->unet : jm->path ? NULL : job->unet);
    am->text_encoder = dup_or_null(jm->text_encoder ? jm->text_encoder : jm->path ? NULL : job->text_encoder);
    if (jm->mask)
      am->mask = !strcmp(jm->mask, "run") ? join(out_dir, "mask.h5") : sd_strdup(jm->mask);
    if (!am->name || !am->path || (jm->mask && !am->mask))
      return sd_fail(err, "out of memory");
  }
  return 0;
}

static int plan_sets(const sd_job *job, sd_attack_plan *p, sd_error *err) {
  if (!(p->sets = sd_calloc((size_t)job->n_attack_sets, sizeof *p->sets, err)))
    return -1;
  p->n_sets = job->n_attack_sets;
  for (int s = 0; s < p->n_sets; s++) {
    const sd_job_attack_set *js = &job->attack_sets[s];
    sd_attack_set *as = &p->sets[s];
    as->name = sd_strdup(js->name);
    as->counterpart = dup_or_null(js->counterpart);
    if (!as->name || (js->counterpart && !as->counterpart))
      return sd_fail(err, "out of memory");
    if (sd_prompt_set_load(js->file, js->template_str, &as->prompts, err) != 0)
      return -1;
    if (as->prompts->n_rows == 0)
      return sd_fail(err, "%s: no prompts (attack set %s)", js->file, js->name);
    as->categories_column = sd_prompt_set_column(as->prompts, "categories");
  }
  return 0;
}

static int plan_items(const sd_job *job, sd_attack_plan *p, sd_error *err) {
  int64_t per_model = 0;
  for (int s = 0; s < p->n_sets; s++) {
    int rows = p->sets[s].prompts->n_rows;
    if (job->limit && job->limit < rows)
      rows = job->limit;
    per_model += (int64_t)rows * (job->n_seeds > 0 ? job->n_seeds : 1);
  }
  p->n_items = per_model * p->n_models;
  if (!(p->items = sd_calloc((size_t)(p->n_items ? p->n_items : 1), sizeof *p->items, err)))
    return -1;
  int64_t k = 0;
  for (int m = 0; m < p->n_models; m++)
    for (int s = 0; s < p->n_sets; s++) {
      const sd_prompt_set *ps = p->sets[s].prompts;
      int rows = job->limit && job->limit < ps->n_rows ? job->limit : ps->n_rows;
      for (int r = 0; r < rows; r++) {
        const sd_prompt *row = &ps->rows[r];
        int W = job->width, H = job->height;
        if (!job->size_given && row->width > 0 && row->height > 0)
          W = row->width, H = row->height;
        for (int q = 0; q < (job->n_seeds > 0 ? job->n_seeds : 1); q++) {
          sd_attack_item *it = &p->items[k++];
          it->model = m;
          it->set = s;
          it->row = r;
          it->seed = job->n_seeds > 0 ? job->seeds[q] : row->has_seed ? row->seed : job->seed;
          it->guidance = row->has_guidance && !job->guidance_given ? row->guidance : job->guidance;
          it->width = W;
          it->height = H;
        }
      }
    }
  return 0;
}

static int plan_detector(const sd_job *job, sd_attack_plan *p, sd_error *err) {
  p->threshold = job->threshold;
  if (!job->clip)
    return 0;
  p->n_concept = job->n_concept;
  p->n_labels = job->n_concept + job->n_neutral;
  if (!(p->clip = sd_strdup(job->clip)) || !(p->labels = sd_calloc((size_t)p->n_labels, sizeof *p->labels, err)))
    return sd_fail(err, "out of memory");
  for (int l = 0; l < p->n_labels; l++)
    if (!(p->labels[l] = sd_strdup(l < p->n_concept ? job->concept_labels[l] : job->neutral_labels[l - p->n_concept])))
      return sd_fail(err, "out of memory");
  return 0;
}

/* Re-activation needs the original model's statistics (target and anchor) and the concept neurons. Named
 * in the job, they must exist; by default they are this run's own outputs, used when present. */
static int plan_reactivation(const sd_job *job, const char *out_dir, sd_attack_plan *p, sd_error *err) {
  char *ref = job->reference_stats ? sd_strdup(job->reference_stats) : join(out_dir, "stats.h5");
  char *mask = NULL;
  if (job->reactivation_mask)
    mask = sd_strdup(job->reactivation_mask);
  for (int m = 0; !mask && m < p->n_models; m++)
    if (p->models[m].mask)
      mask = sd_strdup(p->models[m].mask);
  if (!mask)
    mask = join(out_dir, "mask.h5");
  if (!ref || !mask) {
    free(ref);
    free(mask);
    return sd_fail(err, "out of memory");
  }
  if (job->reference_stats && !sd_is_file(ref)) {
    sd_fail(err, "%s: attack.reference: no such file (the statistics of the original model)", ref);
    free(ref);
    free(mask);
    return -1;
  }
  if (job->reactivation_mask && !sd_is_file(mask)) {
    sd_fail(err, "%s: attack.reactivation_mask: no such file", mask);
    free(ref);
    free(mask);
    return -1;
  }
  if (sd_is_file(ref) && sd_is_file(mask)) {
    p->reference_stats = ref;
    p->reactivation_mask = mask;
  } else {
    free(ref);
    free(mask);
  }
  return 0;
}

int sd_attack_plan_build(const sd_job *job, const char *out_dir, sd_attack_plan *p, sd_error *err) {
  memset(p, 0, sizeof *p);
  if (job->n_attack_models == 0)
    return sd_fail(err, "%s: the job has no attack section (attack.models, attack.sets)", job->path);
  p->config = job->config;
  p->tokenizer = job->tokenizer;
  p->prediction = job->prediction;
  p->steps = job->steps;
  p->eta = job->eta;
  if (!(p->job_path = sd_strdup(job->path)) || !(p->out_dir = sd_strdup(out_dir)) ||
      !(p->sampler = sd_strdup(job->sampler)))
    goto oom;
  if (plan_models(job, out_dir, p, err) || plan_sets(job, p, err) || plan_items(job, p, err) ||
      plan_detector(job, p, err) || plan_reactivation(job, out_dir, p, err))
    goto fail;
  plan_hash(p, job);
  return 0;
oom:
  sd_fail(err, "out of memory");
fail:
  sd_attack_plan_free(p);
  return -1;
}

void sd_attack_plan_free(sd_attack_plan *p) {
  for (int m = 0; m < p->n_models; m++) {
    sd_attack_model *am = &p->models[m];
    free(am->name), free(am->path), free(am->unet), free(am->text_encoder), free(am->mask);
  }
  free(p->models);
  for (int s = 0; s < p->n_sets; s++) {
    free(p->sets[s].name);
    free(p->sets[s].counterpart);
    sd_prompt_set_free(p->sets[s].prompts);
  }
  free(p->sets);
  free(p->items);
  for (int l = 0; l < p->n_labels; l++)
    free(p->labels[l]);
  free(p->labels);
  free(p->clip), free(p->reference_stats), free(p->reactivation_mask);
  free(p->job_path), free(p->out_dir), free(p->sampler);
  memset(p, 0, sizeof *p);
}

const char *sd_attack_item_prompt(const sd_attack_plan *p, int64_t i) {
  const sd_attack_item *it = &p->items[i];
  return p->sets[it->set].prompts->rows[it->row].prompt;
}

void sd_attack_item_id(const sd_attack_plan *p, int64_t i, char *out, size_t n) {
  const sd_attack_item *it = &p->items[i];
  if (sd_item_id(p->models[it->model].name, p->sets[it->set].name, it->row, it->seed, out, n) != 0 && n)
    out[0] = 0;
}

void sd_attack_item_image(const sd_attack_plan *p, int64_t i, char *out, size_t n) {
  char id[600];
  sd_attack_item_id(p, i, id, sizeof id);
  snprintf(out, n, "images/%s.png", id);
}

void sd_attack_item_case(const sd_attack_plan *p, int64_t i, char *out, size_t n) {
  const sd_attack_item *it = &p->items[i];
  snprintf(out, n, "%lld", (long long)p->sets[it->set].prompts->rows[it->row].case_number);
}

const char *sd_attack_item_categories(const sd_attack_plan *p, int64_t i) {
  const sd_attack_item *it = &p->items[i];
  const sd_attack_set *s = &p->sets[it->set];
  if (s->categories_column < 0)
    return "";
  const char *v = s->prompts->cells[(size_t)it->row * s->prompts->n_columns + s->categories_column];
  return v ? v : "";
}
