/* Attack shards and the final metrics file (attack_io.h). Everything through io/h5.h. */
#include "eval/attack_io.h"

#include <jansson.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/provenance.h"
#include "eval/metrics.h"
#include "io/h5.h"
#include "stats/concept_stats.h"
#include "stats/stats_shards.h"

/* ---- shards --------------------------------------------------------------------------------------- */

typedef struct {
  int64_t item, row, seed;
  char *model, *set, *error, *model_hash;
  int32_t status, success;
  double seconds, score, clip_score, reactivation;
} shard_row;

static const sd_h5_field shard_fields[] = {
    {"item", SD_H5_I64, offsetof(shard_row, item)},
    {"model", SD_H5_STR, offsetof(shard_row, model)},
    {"set", SD_H5_STR, offsetof(shard_row, set)},
    {"row", SD_H5_I64, offsetof(shard_row, row)},
    {"seed", SD_H5_I64, offsetof(shard_row, seed)},
    {"status", SD_H5_I32, offsetof(shard_row, status)},
    {"seconds", SD_H5_F64, offsetof(shard_row, seconds)},
    {"success", SD_H5_I32, offsetof(shard_row, success)},
    {"score", SD_H5_F64, offsetof(shard_row, score)},
    {"clip_score", SD_H5_F64, offsetof(shard_row, clip_score)},
    {"reactivation", SD_H5_F64, offsetof(shard_row, reactivation)},
    {"error", SD_H5_STR, offsetof(shard_row, error)},
    {"model_hash", SD_H5_STR, offsetof(shard_row, model_hash)},
};
#define N_SHARD_FIELDS ((int)(sizeof shard_fields / sizeof *shard_fields))

static int write_provenance(sd_h5 *f, const sd_attack_plan *p, const char *command_line, sd_error *err) {
  char when[32];
  return sd_h5_attr_set_str(f, "/", "plan_hash", p->plan_hash, err) ||
         sd_h5_attr_set_str(f, "/", "job", p->job_path, err) ||
         sd_h5_attr_set_str(f, "/", "sdprune_version", sd_version(), err) ||
         sd_h5_attr_set_str(f, "/", "git_revision", sd_git_revision(), err) ||
         sd_h5_attr_set_str(f, "/", "command_line", command_line ? command_line : "", err) ||
         sd_h5_attr_set_str(f, "/", "created_utc", sd_utc_now(when, sizeof when), err);
}

int sd_attack_shard_write(const char *path, const sd_attack_plan *p, const sd_attack_result *res,
                          const unsigned char *mine, char (*hashes)[16], int evals, const char *command_line,
                          sd_error *err) {
  int64_t n = 0;
  for (int64_t i = 0; i < p->n_items; i++)
    n += mine[i] && res[i].status != SD_ITEM_PENDING;
  shard_row *rows = sd_calloc((size_t)(n ? n : 1), sizeof *rows, err);
  float *probs = p->n_labels ? sd_calloc((size_t)(n ? n : 1) * p->n_labels, sizeof *probs, err) : NULL;
  float *react = p->reference_stats ? sd_calloc((size_t)(n ? n : 1) * evals, sizeof *react, err) : NULL;
  sd_h5 *f = NULL;
  int rc = -1;
  if (!rows || (p->n_labels && !probs) || (p->reference_stats && !react))
    goto done;
  int64_t k = 0;
  for (int64_t i = 0; i < p->n_items; i++) {
    if (!mine[i] || res[i].status == SD_ITEM_PENDING)
      continue;
    const sd_attack_item *it = &p->items[i];
    const sd_attack_result *r = &res[i];
    shard_row *w = &rows[k];
    *w = (shard_row){.item = i, .row = it->row, .seed = (int64_t)it->seed, .model = p->models[it->model].name,
                     .set = p->sets[it->set].name, .error = r->error, .model_hash = hashes[it->model],
                     .status = r->status, .success = r->success, .seconds = r->seconds, .score = r->score,
                     .clip_score = r->clip_score, .reactivation = r->reactivation};
    for (int l = 0; probs && l < p->n_labels; l++)
      probs[(size_t)k * p->n_labels + l] = r->probs ? r->probs[l] : NAN;
    for (int e = 0; react && e < evals; e++)
      react[(size_t)k * evals + e] = r->react_steps ? r->react_steps[e] : NAN;
    k++;
  }
  if (sd_h5_create(path, &f, err) != 0)
    goto done;
  if (write_provenance(f, p, command_line, err) || sd_h5_attr_set_i64(f, "/", "evals", evals, err) ||
      sd_h5_write_table(f, "/items", shard_fields, N_SHARD_FIELDS, sizeof *rows, rows, n, err))
    goto done;
  int64_t shape[2] = {n, p->n_labels};
  if (probs && sd_h5_write(f, "/probs", SD_H5_F32, 2, shape, probs, 0, err))
    goto done;
  shape[1] = evals;
  if (react && sd_h5_write(f, "/react_steps", SD_H5_F32, 2, shape, react, 0, err))
    goto done;
  rc = sd_h5_commit(f, err);
  f = NULL;
done:
  sd_h5_abort(f);
  free(rows);
  free(probs);
  free(react);
  return rc;
}

/* One shard into res/owner: checks the plan and that every row names the item it claims. */
static int load_shard(const char *path, int rank, const sd_attack_plan *p, int evals, sd_attack_result *res,
                      int *owner, char (*hashes)[16], sd_attack_scan *scan, sd_error *err) {
  sd_h5 *f = NULL;
  char *hash = NULL;
  shard_row *rows = NULL;
  float *probs = NULL, *react = NULL;
  int64_t n = 0;
  int rc = -1;
  if (sd_h5_open(path, &f, err) != 0)
    return -1;
  if (sd_h5_attr_get_str(f, "/", "plan_hash", &hash, err) != 0)
    goto done;
  if (strcmp(hash, p->plan_hash) != 0) {
    sd_fail(err,
            "%s: a shard of another attack plan (other models, prompt files, settings or labels than %s); move it "
            "away or use another --out",
            path, p->job_path);
    goto done;
  }
  if (sd_h5_read_table(f, "/items", shard_fields, N_SHARD_FIELDS, sizeof *rows, (void **)&rows, &n, err) != 0)
    goto done;
  if (p->n_labels && n && sd_h5_read(f, "/probs", SD_H5_F32, NULL, NULL, (void **)&probs, err) != 0)
    goto done;
  if (p->reference_stats && n && sd_h5_read(f, "/react_steps", SD_H5_F32, NULL, NULL, (void **)&react, err) != 0)
    goto done;
  for (int64_t k = 0; k < n; k++) {
    const shard_row *w = &rows[k];
    int64_t i = w->item;
    if (i < 0 || i >= p->n_items || strcmp(w->model, p->models[p->items[i].model].name) ||
        strcmp(w->set, p->sets[p->items[i].set].name) || w->row != p->items[i].row ||
        (uint64_t)w->seed != p->items[i].seed) {
      sd_fail(err, "%s: items row %lld does not match the plan (item %lld)", path, (long long)k, (long long)i);
      goto done;
    }
    if (w->model_hash && w->model_hash[0])
      snprintf(hashes[p->items[i].model], 16, "%s", w->model_hash);
    sd_attack_result *r = &res[i];
    if (r->status == SD_ITEM_DONE || (r->status == SD_ITEM_FAILED && w->status != SD_ITEM_DONE)) {
      scan->duplicate += r->status == SD_ITEM_DONE && w->status == SD_ITEM_DONE;
      continue; /* the first done record wins */
    }
    if (r->status == SD_ITEM_FAILED)
      scan->failed--;
    sd_attack_result_clear(r);
    *r = (sd_attack_result){.status = w->status, .seconds = w->seconds, .success = w->success, .score = w->score,
                            .clip_score = w->clip_score, .reactivation = w->reactivation};
    if (w->error && w->error[0] && !(r->error = sd_strdup(w->error)))
      goto oom;
    if (probs) {
      if (!(r->probs = sd_malloc(sizeof(float) * (size_t)p->n_labels, err)))
        goto done;
      memcpy(r->probs, probs + (size_t)k * p->n_labels, sizeof(float) * (size_t)p->n_labels);
    }
    if (react) {
      if (!(r->react_steps = sd_malloc(sizeof(float) * (size_t)evals, err)))
        goto done;
      memcpy(r->react_steps, react + (size_t)k * evals, sizeof(float) * (size_t)evals);
    }
    owner[i] = rank;
    if (w->status == SD_ITEM_DONE)
      scan->done++;
    else
      scan->failed++;
  }
  rc = 0;
  goto done;
oom:
  sd_fail(err, "out of memory");
done:
  if (rows)
    sd_h5_free_table(shard_fields, N_SHARD_FIELDS, sizeof *rows, rows, n);
  free(probs);
  free(react);
  free(hash);
  sd_h5_close(f);
  return rc;
}

int sd_attack_shards_load(const char *run_dir, const sd_attack_plan *p, int evals, sd_attack_result *res,
                          int *owner, char (*hashes)[16], sd_attack_scan *scan, sd_error *err) {
  memset(scan, 0, sizeof *scan);
  for (int64_t i = 0; i < p->n_items; i++) {
    sd_attack_result_clear(&res[i]); /* a reload after the run: what the run's items own is freed, not dropped */
    owner[i] = -1;
  }
  char dir[4200], **paths = NULL;
  int *ranks = NULL, n = 0, rc = 0;
  snprintf(dir, sizeof dir, "%s/attack", run_dir);
  if (sd_shards_list(dir, &paths, &ranks, &n, err) != 0)
    return -1;
  scan->n_shards = n;
  for (int k = 0; !rc && k < n; k++)
    rc = load_shard(paths[k], ranks[k], p, evals, res, owner, hashes, scan, err);
  sd_shards_list_free(paths, ranks, n);
  return rc;
}

/* ---- RUN/metrics.h5 ------------------------------------------------------------------------------- */

/* The per-item table: this fixed part, then one float64 p_<label> column per detector label. */
typedef struct {
  int64_t item, row, seed;
  char *model, *set, *case_id, *prompt, *image, *categories, *error;
  double guidance;
  int32_t width, height, success, failed;
  double score, clip_score, reactivation, seconds;
} item_row;

static const sd_h5_field item_fields[] = {
    {"item", SD_H5_I64, offsetof(item_row, item)},
    {"model", SD_H5_STR, offsetof(item_row, model)},
    {"set", SD_H5_STR, offsetof(item_row, set)},
    {"row", SD_H5_I64, offsetof(item_row, row)},
    {"case_id", SD_H5_STR, offsetof(item_row, case_id)},
    {"seed", SD_H5_I64, offsetof(item_row, seed)},
    {"prompt", SD_H5_STR, offsetof(item_row, prompt)},
    {"image", SD_H5_STR, offsetof(item_row, image)},
    {"categories", SD_H5_STR, offsetof(item_row, categories)},
    {"guidance", SD_H5_F64, offsetof(item_row, guidance)},
    {"width", SD_H5_I32, offsetof(item_row, width)},
    {"height", SD_H5_I32, offsetof(item_row, height)},
    {"success", SD_H5_I32, offsetof(item_row, success)},
    {"score", SD_H5_F64, offsetof(item_row, score)},
    {"clip_score", SD_H5_F64, offsetof(item_row, clip_score)},
    {"reactivation", SD_H5_F64, offsetof(item_row, reactivation)},
    {"seconds", SD_H5_F64, offsetof(item_row, seconds)},
    {"failed", SD_H5_I32, offsetof(item_row, failed)},
    {"error", SD_H5_STR, offsetof(item_row, error)},
};
#define N_ITEM_FIELDS ((int)(sizeof item_fields / sizeof *item_fields))

typedef struct {
  char *name, *counterpart, *file, *sha256, *template_used;
  int64_t n_rows;
} set_row;
static const sd_h5_field set_fields[] = {
    {"name", SD_H5_STR, offsetof(set_row, name)},         {"counterpart", SD_H5_STR, offsetof(set_row, counterpart)},
    {"file", SD_H5_STR, offsetof(set_row, file)},         {"sha256", SD_H5_STR, offsetof(set_row, sha256)},
    {"template", SD_H5_STR, offsetof(set_row, template_used)}, {"n_rows", SD_H5_I64, offsetof(set_row, n_rows)},
};

typedef struct {
  char *name, *path, *unet, *text_encoder, *mask, *model_hash;
} model_row;
static const sd_h5_field model_fields[] = {
    {"name", SD_H5_STR, offsetof(model_row, name)},
    {"path", SD_H5_STR, offsetof(model_row, path)},
    {"unet", SD_H5_STR, offsetof(model_row, unet)},
    {"text_encoder", SD_H5_STR, offsetof(model_row, text_encoder)},
    {"mask", SD_H5_STR, offsetof(model_row, mask)},
    {"model_hash", SD_H5_STR, offsetof(model_row, model_hash)},
};

static const char *or_empty(const char *s) {
  return s ? s : "";
}

typedef struct {
  char *rows;
  size_t row_size;
  sd_h5_field *fields;
  int n_fields;
  char **owned; /* [3 * n_items]: case_id, image, label field names after */
  int64_t n_owned;
} items_table;

static void items_table_free(items_table *t) {
  for (int64_t k = 0; k < t->n_owned; k++)
    free(t->owned[k]);
  free(t->owned);
  free(t->rows);
  free(t->fields);
  memset(t, 0, sizeof *t);
}

static char *own(items_table *t, char *s) {
  if (s)
    t->owned[t->n_owned++] = s;
  return s;
}

static int build_items_table(const sd_attack_plan *p, const sd_attack_result *res, items_table *t, sd_error *err) {
  memset(t, 0, sizeof *t);
  t->row_size = sizeof(item_row) + sizeof(double) * (size_t)p->n_labels;
  t->n_fields = N_ITEM_FIELDS + p->n_labels;
  if (!(t->rows = sd_calloc((size_t)(p->n_items ? p->n_items : 1), t->row_size, err)) ||
      !(t->fields = sd_calloc((size_t)t->n_fields, sizeof *t->fields, err)) ||
      !(t->owned = sd_calloc((size_t)(2 * p->n_items + p->n_labels + 1), sizeof *t->owned, err)))
    return -1;
  memcpy(t->fields, item_fields, sizeof item_fields);
  for (int l = 0; l < p->n_labels; l++) { /* p_<label>: pandas columns named by the label text */
    size_t n = strlen(p->labels[l]) + 3;
    char *name = own(t, malloc(n));
    if (!name)
      return sd_fail(err, "out of memory");
    snprintf(name, n, "p_%s", p->labels[l]);
    t->fields[N_ITEM_FIELDS + l] = (sd_h5_field){name, SD_H5_F64, sizeof(item_row) + sizeof(double) * (size_t)l};
  }
  for (int64_t i = 0; i < p->n_items; i++) {
    const sd_attack_item *it = &p->items[i];
    const sd_attack_result *r = &res[i];
    item_row *w = (item_row *)(t->rows + (size_t)i * t->row_size);
    char cases[32], image[1200];
    sd_attack_item_case(p, i, cases, sizeof cases);
    sd_attack_item_image(p, i, image, sizeof image);
    int failed = r->status != SD_ITEM_DONE;
    *w = (item_row){.item = i, .row = it->row, .seed = (int64_t)it->seed, .model = p->models[it->model].name,
                    .set = p->sets[it->set].name, .case_id = own(t, sd_strdup(cases)),
                    .prompt = (char *)sd_attack_item_prompt(p, i), .image = own(t, sd_strdup(failed ? "" : image)),
                    .categories = (char *)sd_attack_item_categories(p, i), .error = r->error,
                    .guidance = it->guidance, .width = it->width, .height = it->height,
                    .success = failed ? -1 : r->success, .failed = failed, .score = r->score,
                    .clip_score = r->clip_score, .reactivation = r->reactivation, .seconds = r->seconds};
    if (!w->case_id || !w->image)
      return sd_fail(err, "out of memory");
    double *probs = (double *)(w + 1);
    for (int l = 0; l < p->n_labels; l++)
      probs[l] = r->probs ? r->probs[l] : NAN;
  }
  return 0;
}

static int write_sets_models(sd_h5 *f, const sd_attack_plan *p, char (*hashes)[16], sd_error *err) {
  set_row *sets = sd_calloc((size_t)p->n_sets, sizeof *sets, err);
  model_row *models = sd_calloc((size_t)p->n_models, sizeof *models, err);
  int rc = -1;
  if (sets && models) {
    for (int s = 0; s < p->n_sets; s++) {
      const sd_attack_set *as = &p->sets[s];
      sets[s] = (set_row){as->name, (char *)or_empty(as->counterpart), as->prompts->path, as->prompts->sha256_hex,
                          (char *)or_empty(as->prompts->template_used), as->prompts->n_rows};
    }
    for (int m = 0; m < p->n_models; m++) {
      const sd_attack_model *am = &p->models[m];
      models[m] = (model_row){am->name, am->path, (char *)or_empty(am->unet), (char *)or_empty(am->text_encoder),
                              (char *)or_empty(am->mask), hashes[m]};
    }
    rc = sd_h5_write_table(f, "/sets", set_fields, 6, sizeof *sets, sets, p->n_sets, err) ||
                 sd_h5_write_table(f, "/models", model_fields, 6, sizeof *models, models, p->n_models, err)
             ? -1
             : 0;
  }
  free(sets);
  free(models);
  return rc;
}

/* /reactivation/<model>/<set>: the mean r_t over the done items of each model x set, [evals]; the whole
 * per-item matrix as /reactivation_steps [n_items, evals]. */
static int write_reactivation(sd_h5 *f, const sd_attack_plan *p, const sd_attack_result *res, int evals,
                              const float *timesteps, sd_error *err) {
  float *all = sd_malloc(sizeof(float) * (size_t)(p->n_items ? p->n_items : 1) * evals, err);
  double *sum = sd_calloc((size_t)evals, sizeof *sum, err);
  int64_t *cnt = sd_calloc((size_t)evals, sizeof *cnt, err);
  float *mean = sd_malloc(sizeof(float) * (size_t)evals, err);
  int rc = -1;
  if (!all || !sum || !cnt || !mean)
    goto done;
  for (int64_t i = 0; i < p->n_items; i++)
    for (int e = 0; e < evals; e++)
      all[(size_t)i * evals + e] = res[i].react_steps ? res[i].react_steps[e] : NAN;
  int64_t shape[2] = {p->n_items, evals}, ts = evals;
  if (sd_h5_write(f, "/reactivation_steps", SD_H5_F32, 2, shape, all, 1, err) ||
      sd_h5_write(f, "/timesteps", SD_H5_F32, 1, &ts, timesteps, 0, err))
    goto done;
  for (int m = 0; m < p->n_models; m++)
    for (int s = 0; s < p->n_sets; s++) {
      memset(sum, 0, sizeof *sum * (size_t)evals);
      memset(cnt, 0, sizeof *cnt * (size_t)evals);
      for (int64_t i = 0; i < p->n_items; i++) {
        if (p->items[i].model != m || p->items[i].set != s || res[i].status != SD_ITEM_DONE)
          continue;
        for (int e = 0; e < evals; e++) {
          float v = all[(size_t)i * evals + e];
          if (isfinite(v))
            sum[e] += v, cnt[e]++;
        }
      }
      for (int e = 0; e < evals; e++)
        mean[e] = cnt[e] ? (float)(sum[e] / (double)cnt[e]) : NAN;
      char path[400];
      snprintf(path, sizeof path, "/reactivation/%s/%s", p->models[m].name, p->sets[s].name);
      if (sd_h5_write(f, path, SD_H5_F32, 1, &ts, mean, 0, err))
        goto done;
    }
  rc = 0;
done:
  free(all);
  free(sum);
  free(cnt);
  free(mean);
  return rc;
}

static int compute_metrics(const sd_attack_plan *p, const sd_attack_result *res, const items_table *t,
                           sd_metrics *m, sd_error *err) {
  sd_metric_item *items = sd_calloc((size_t)(p->n_items ? p->n_items : 1), sizeof *items, err);
  sd_metric_set *sets = sd_calloc((size_t)p->n_sets, sizeof *sets, err);
  int rc = -1;
  if (items && sets) {
    for (int64_t i = 0; i < p->n_items; i++) {
      const item_row *w = (const item_row *)(t->rows + (size_t)i * t->row_size);
      items[i] = (sd_metric_item){.model = w->model, .set = w->set, .case_id = w->case_id,
                                  .categories = w->categories, .row = w->row, .seed = (uint64_t)w->seed,
                                  .success = w->success, .failed = w->failed, .clip_score = w->clip_score,
                                  .reactivation = w->reactivation};
    }
    for (int s = 0; s < p->n_sets; s++)
      sets[s] = (sd_metric_set){p->sets[s].name, p->sets[s].counterpart};
    rc = sd_metrics_compute(items, p->n_items, sets, p->n_sets, SD_WILSON_Z95, m, err);
  }
  (void)res;
  free(items);
  free(sets);
  return rc;
}

static int write_attrs(sd_h5 *f, const sd_attack_plan *p, const char *command_line, sd_error *err) {
  json_t *labels = json_array();
  for (int l = 0; l < p->n_labels; l++)
    json_array_append_new(labels, json_string(p->labels[l]));
  char *labels_json = json_dumps(labels, JSON_COMPACT);
  json_decref(labels);
  int rc = write_provenance(f, p, command_line, err) || sd_h5_attr_set_str(f, "/", "sampler", p->sampler, err) ||
           sd_h5_attr_set_i64(f, "/", "steps", p->steps, err) || sd_h5_attr_set_f64(f, "/", "eta", p->eta, err) ||
           sd_h5_attr_set_str(f, "/", "detector", p->clip ? p->clip : "", err) ||
           sd_h5_attr_set_str(f, "/", "labels", labels_json ? labels_json : "[]", err) ||
           sd_h5_attr_set_f64(f, "/", "threshold", p->threshold, err) ||
           sd_h5_attr_set_i64(f, "/", "n_concept_labels", p->n_concept, err) ||
           sd_h5_attr_set_str(f, "/", "reference_stats", or_empty(p->reference_stats), err) ||
           sd_h5_attr_set_str(f, "/", "reactivation_mask", or_empty(p->reactivation_mask), err)
               ? -1
               : 0;
  free(labels_json);
  return rc;
}

static char *summary_preamble(const sd_attack_plan *p, int64_t done, int64_t failed) {
  size_t cap = 4096;
  char *s = malloc(cap);
  if (!s)
    return NULL;
  snprintf(s, cap,
           "# Attack evaluation\n\nJob `%s`, plan %.12s, %s %d steps; %lld items (%lld failed); detector %s "
           "(success: P(concept) > %.3g); re-activation %s.\n\n",
           p->job_path, p->plan_hash, p->sampler, p->steps, (long long)done + failed, (long long)failed,
           p->clip ? p->clip : "none", p->threshold, p->reference_stats ? "against the reference statistics" : "off");
  return s;
}

int sd_attack_finish(const sd_attack_plan *p, const sd_attack_result *res, char (*hashes)[16], int evals,
                     const float *timesteps, const char *command_line, FILE *out, sd_error *err) {
  int64_t pending = 0, done = 0, failed = 0;
  for (int64_t i = 0; i < p->n_items; i++) {
    pending += res[i].status == SD_ITEM_PENDING;
    done += res[i].status == SD_ITEM_DONE;
    failed += res[i].status == SD_ITEM_FAILED;
  }
  if (pending) {
    char id[600] = "";
    for (int64_t i = 0; i < p->n_items && !id[0]; i++)
      if (res[i].status == SD_ITEM_PENDING)
        sd_attack_item_id(p, i, id, sizeof id);
    return sd_fail(err, "%lld of %lld items not done (first: %s); %s/metrics.h5 not written", (long long)pending,
                   (long long)p->n_items, id, p->out_dir);
  }
  items_table t;
  sd_metrics m = {0};
  sd_h5 *f = NULL;
  char path[4300], md[4300];
  char *preamble = NULL;
  int rc = -1;
  snprintf(path, sizeof path, "%s/metrics.h5", p->out_dir);
  snprintf(md, sizeof md, "%s/summary.md", p->out_dir);
  if (build_items_table(p, res, &t, err) != 0 || compute_metrics(p, res, &t, &m, err) != 0)
    goto done;
  if (sd_h5_create(path, &f, err) != 0)
    goto done;
  if (write_attrs(f, p, command_line, err) ||
      sd_h5_write_table(f, "/items", t.fields, t.n_fields, t.row_size, t.rows, p->n_items, err) ||
      write_sets_models(f, p, hashes, err) || sd_metrics_write_h5(f, &m, err) ||
      (p->reference_stats && write_reactivation(f, p, res, evals, timesteps, err)))
    goto done;
  if (sd_h5_commit(f, err) != 0) {
    f = NULL;
    goto done;
  }
  f = NULL;
  if (!(preamble = summary_preamble(p, done, failed))) {
    sd_fail(err, "out of memory");
    goto done;
  }
  if (sd_metrics_write_markdown_file(md, preamble, &m, err) != 0)
    goto done;
  if (out)
    sd_metrics_print_markdown(out, &m);
  rc = 0;
done:
  sd_h5_abort(f);
  free(preamble);
  sd_metrics_free(&m);
  items_table_free(&t);
  return rc;
}

int sd_attack_note_model_hash(const sd_attack_plan *p, char (*hashes)[16], int m, const char *now, sd_error *err) {
  if (!now || !now[0])
    return 0;
  if (hashes[m][0] && strncmp(hashes[m], now, 15) != 0)
    return sd_fail(err,
                   "%s/attack/shards: model '%s' (%s) has content hash %.15s now but %s in this run's earlier "
                   "shards: its file changed since; rerun with a new --out (or restore the file)",
                   p->out_dir, p->models[m].name, p->models[m].unet ? p->models[m].unet : p->models[m].path, now,
                   hashes[m]);
  snprintf(hashes[m], 16, "%s", now);
  return 0;
}
