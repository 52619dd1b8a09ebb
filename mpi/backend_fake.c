/* The fake backend of sdprune-mpi (ior's DUMMY): plans from the prompt files like the engine but needs
 * no model; an item's activations are deterministic small integers (stats/fake_activations.h), so the
 * distribution, shard, resume and reduce tests of 8 ranks run in seconds. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mpi/backend.h"
#include "stats/fake_activations.h"

typedef struct {
  const sdm_options *o;
  sd_stats_acc *acc; /* [n_layers] the last item's totals */
  int n_layers;
  char fail_set[72], crash_set[72];
  int fail_row, crash_row;
} fake_ctx;

/* "SET:ROW" into set and *row. */
static int parse_set_row(const char *opt, const char *v, char *set, size_t n, int *row, sd_error *err) {
  const char *colon = v ? strrchr(v, ':') : NULL;
  if (!v)
    return 0;
  if (!colon || colon == v || (size_t)(colon - v) >= n || !colon[1])
    return sd_fail(err, "%s needs SET:ROW, got '%s'", opt, v);
  snprintf(set, n, "%.*s", (int)(colon - v), v);
  *row = atoi(colon + 1);
  return 0;
}

static int fake_open(const sdm_options *o, void **out, sd_error *err) {
  fake_ctx *c = sd_calloc(1, sizeof *c, err);
  if (!c)
    return -1;
  c->o = o;
  c->fail_row = c->crash_row = -1;
  if (parse_set_row("--fake-fail", o->fake_fail, c->fail_set, sizeof c->fail_set, &c->fail_row, err) ||
      parse_set_row("--fake-crash", o->fake_crash, c->crash_set, sizeof c->crash_set, &c->crash_row, err)) {
    free(c);
    return -1;
  }
  *out = c;
  return 0;
}

static int fake_plan(void *ctx, const sdm_options *o, sd_stats *s, int *n_truncated, sd_error *err) {
  fake_ctx *c = ctx;
  if (strcmp(o->hooks, "ff"))
    return sd_fail(err, "the fake backend records --hooks ff only");
  if (sd_stats_plan(s, &o->plan, NULL, 8, n_truncated, err) != 0)
    return -1;
  char hash[17];
  sd_stats_fake_model_hash(o->fake_hash, hash);
  s->settings.model = sd_strdup("fake");
  s->settings.model_hash = sd_strdup(hash);
  s->settings.hooks = sd_strdup(o->hooks);
  if (!s->settings.model || !s->settings.model_hash || !s->settings.hooks)
    return sd_fail(err, "out of memory");
  if (sd_stats_fake_layers(&s->layers, &s->n_layers, err) != 0)
    return -1;
  c->n_layers = s->n_layers;
  if (!(c->acc = sd_calloc((size_t)s->n_layers, sizeof *c->acc, err)))
    return -1;
  for (int l = 0; l < s->n_layers; l++)
    if (sd_stats_acc_alloc(&c->acc[l], s->n_steps, s->layers[l].width, err) != 0)
      return -1;
  return 0;
}

static int fake_run_item(void *ctx, const sd_stats *s, int64_t i, sd_error *err) {
  fake_ctx *c = ctx;
  const sd_stats_item *it = &s->items[i];
  if (c->o->fake_ms > 0) {
    struct timespec ts = {c->o->fake_ms / 1000, (long)(c->o->fake_ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
  }
  if (c->crash_row == it->row && !strcmp(c->crash_set, s->sets[it->set].name) && it->seed == s->items[0].seed)
    raise(SIGSEGV); /* a rank dying mid-item, for the tests */
  if (c->fail_row == it->row && !strcmp(c->fail_set, s->sets[it->set].name))
    return sd_fail(err, "fake failure (--fake-fail %s:%d)", c->fail_set, c->fail_row);
  return sd_stats_fake_item(s, it, c->acc, err);
}

static void fake_add_item(void *ctx, sd_stats *s, int64_t i, double seconds) {
  sd_stats_add_item_acc(s, i, ((fake_ctx *)ctx)->acc, seconds);
}

static double fake_hook_seconds(void *ctx) {
  return 0;
}

static void fake_close(void *ctx) {
  fake_ctx *c = ctx;
  if (!c)
    return;
  for (int l = 0; c->acc && l < c->n_layers; l++)
    sd_stats_acc_free(&c->acc[l]);
  free(c->acc);
  free(c);
}

const sdm_backend sdm_backend_fake = {
    .name = "fake",
    .open = fake_open,
    .plan = fake_plan,
    .run_item = fake_run_item,
    .write_record = NULL, /* no per-item records: there are no activations to keep */
    .add_item = fake_add_item,
    .hook_seconds = fake_hook_seconds,
    .close = fake_close,
};
