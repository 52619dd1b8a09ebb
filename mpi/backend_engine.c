/* The engine backend of sdprune-mpi: the model opened through the CLI's common options (float32 weight
 * cache included) and one item's trajectory through sd_stats_runner, exactly as `sdprune stats`. */
#include <stdlib.h>
#include <string.h>

#include "model/parts.h"
#include "model/weight_cache.h"
#include "mpi/backend.h"
#include "stats/stats_io.h"
#include "stats/stats_run.h"

typedef struct {
  sd_cli_common common; /* a copy: sd_cli_open_model takes a non-const one */
  sd_model *model;
  sd_tokenizer *tokenizer;
  sd_stats_runner runner;
  int have_runner;
} engine_ctx;

static int engine_open(const sdm_options *o, void **out, sd_error *err) {
  engine_ctx *c = sd_calloc(1, sizeof *c, err);
  if (!c)
    return -1;
  c->common = o->common;
  /* sd_cli_open_model prints its own one-line message */
  if (sd_cli_open_model(&c->common, "sdprune-mpi", &c->model) != 0) {
    free(c);
    return sd_fail(err, "cannot open the model %s", o->common.model.path);
  }
  *out = c;
  return 0;
}

static int engine_plan(void *ctx, const sdm_options *o, sd_stats *s, int *n_truncated, sd_error *err) {
  engine_ctx *c = ctx;
  int factor = 8;
  if (sd_stats_latent_factor(c->model, &factor, err) != 0 || sd_parts_tokenizer(c->model, &c->tokenizer, err) != 0)
    return -1;
  if (sd_stats_plan(s, &o->plan, c->tokenizer, factor, n_truncated, err) != 0)
    return -1;
  sd_stats_settings *st = &s->settings;
  st->model = sd_strdup(c->model->path);
  st->model_hash = sd_strdup(c->model->hash);
  st->unet_override = o->common.model.unet_path ? sd_strdup(o->common.model.unet_path) : NULL;
  st->text_encoder_override = o->common.model.text_encoder_path ? sd_strdup(o->common.model.text_encoder_path) : NULL;
  st->hooks = sd_strdup(o->hooks);
  if (!st->model || !st->model_hash || !st->hooks)
    return sd_fail(err, "out of memory");
  c->have_runner = 1;
  if (sd_stats_runner_init(&c->runner, c->model, o->hooks, s->n_steps, o->per_item, err) != 0)
    return -1;
  sd_model_release_source_pages(c->model);
  int n = 0;
  const sd_stats_layer *layers = sd_stats_collector_layers(c->runner.collector, &n);
  if (sd_stats_layers_copy(layers, n, &s->layers, err) != 0)
    return -1;
  s->n_layers = n;
  return 0;
}

static int engine_run_item(void *ctx, const sd_stats *s, int64_t i, sd_error *err) {
  return sd_stats_run_item(&((engine_ctx *)ctx)->runner, s, &s->items[i], err);
}

static int engine_write_record(void *ctx, const sd_stats *s, int64_t i, const char *path, sd_error *err) {
  const sd_stats_collector *col = ((engine_ctx *)ctx)->runner.collector;
  const float **mean = sd_calloc((size_t)s->n_layers + 1, sizeof *mean, err);
  const float **max = sd_calloc((size_t)s->n_layers + 1, sizeof *max, err);
  int rc = -1;
  if (mean && max) {
    for (int l = 0; l < s->n_layers; l++) {
      mean[l] = sd_stats_collector_item_mean(col, l);
      max[l] = sd_stats_collector_item_max(col, l);
    }
    rc = sd_stats_write_item_record(path, s, &s->items[i], mean, max, err);
  }
  free(mean);
  free(max);
  return rc;
}

static void engine_add_item(void *ctx, sd_stats *s, int64_t i, double seconds) {
  sd_stats_add_item(s, i, ((engine_ctx *)ctx)->runner.collector, seconds);
}

static double engine_hook_seconds(void *ctx) {
  engine_ctx *c = ctx;
  return c->have_runner && c->runner.collector ? sd_stats_collector_seconds(c->runner.collector) : 0;
}

static void engine_close(void *ctx) {
  engine_ctx *c = ctx;
  if (!c)
    return;
  if (c->have_runner)
    sd_stats_runner_free(&c->runner);
  sd_tokenizer_free(c->tokenizer);
  sd_model_close(c->model);
  free(c);
}

const sdm_backend sdm_backend_engine = {
    .name = "engine",
    .open = engine_open,
    .plan = engine_plan,
    .run_item = engine_run_item,
    .write_record = engine_write_record,
    .add_item = engine_add_item,
    .hook_seconds = engine_hook_seconds,
    .close = engine_close,
};

const sdm_backend *sdm_backend_find(const char *name) {
  if (!strcmp(name, "engine"))
    return &sdm_backend_engine;
  if (!strcmp(name, "fake"))
    return &sdm_backend_fake;
  return NULL;
}
