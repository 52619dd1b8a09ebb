/* Concept-neuron statistics (see concept_stats.h): totals, exact item merge, and the UNet hook that
 * records one item. The per-evaluation pass over a layer's activations is the hot part; it reads each
 * token row twice (its L2 norm over the neurons, then the per-neuron sums) and is split across threads
 * by tokens for the norms and by neurons for the sums, so every sum has one fixed order. */
#include "stats/concept_stats.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const sd_stats_quantity_names[SD_STATS_NQ] = {"sum", "sumsq", "sumabs", "sumsq_hat"};

#define TOKEN_BLOCK 64 /* tokens summed in float before adding into double (as neuron_stats.c) */
#define FIX_LIMIT 4.0e18 /* |fixed-point value| beyond this is refused (int64 holds 9.2e18) */

/* ---- totals ---------------------------------------------------------------------------------- */

int sd_stats_acc_alloc(sd_stats_acc *a, int n_steps, int width, sd_error *err) {
  memset(a, 0, sizeof *a);
  size_t cells = (size_t)n_steps * SD_STATS_BRANCHES * (size_t)width;
  a->count = sd_calloc((size_t)n_steps * SD_STATS_BRANCHES, sizeof *a->count, err);
  for (int q = 0; q < SD_STATS_NQ && a->count; q++)
    if (!(a->q[q] = sd_calloc(cells ? cells : 1, sizeof(int64_t), err))) break;
  a->max = sd_malloc(sizeof(float) * (cells ? cells : 1), err);
  if (!a->count || !a->q[SD_STATS_NQ - 1] || !a->max) {
    sd_stats_acc_free(a);
    return -1;
  }
  for (size_t i = 0; i < cells; i++) a->max[i] = -INFINITY;
  return 0;
}

void sd_stats_acc_zero(sd_stats_acc *a, int n_steps, int width) {
  size_t cells = (size_t)n_steps * SD_STATS_BRANCHES * (size_t)width;
  memset(a->count, 0, sizeof *a->count * (size_t)n_steps * SD_STATS_BRANCHES);
  for (int q = 0; q < SD_STATS_NQ; q++) memset(a->q[q], 0, sizeof(int64_t) * cells);
  for (size_t i = 0; i < cells; i++) a->max[i] = -INFINITY;
}

void sd_stats_acc_free(sd_stats_acc *a) {
  if (!a) return;
  free(a->count);
  for (int q = 0; q < SD_STATS_NQ; q++) free(a->q[q]);
  free(a->max);
  memset(a, 0, sizeof *a);
}

void sd_stats_acc_add(sd_stats_acc *dst, const sd_stats_acc *src, int n_steps, int width) {
  int64_t cells = (int64_t)n_steps * SD_STATS_BRANCHES * width;
  for (int i = 0; i < n_steps * SD_STATS_BRANCHES; i++) dst->count[i] += src->count[i];
  for (int q = 0; q < SD_STATS_NQ; q++) {
    int64_t *d = dst->q[q];
    const int64_t *s = src->q[q];
    /* Serial on purpose: the add is bound by memory bandwidth, and an OpenMP region here left the other
     * threads spinning between regions while this thread read the next shard (30% of the offline
     * reduce's CPU time, perf, on a loaded 2-core machine). */
    for (int64_t i = 0; i < cells; i++) d[i] += s[i];
  }
  for (int64_t i = 0; i < cells; i++)
    if (src->max[i] > dst->max[i]) dst->max[i] = src->max[i];
}

int sd_stats_alloc_totals(sd_stats *s, sd_error *err) {
  for (int k = 0; k < s->n_sets; k++) {
    sd_stats_set *set = &s->sets[k];
    if (set->layers) continue;
    if (!(set->layers = sd_calloc((size_t)(s->n_layers ? s->n_layers : 1), sizeof *set->layers, err))) return -1;
    for (int l = 0; l < s->n_layers; l++)
      if (sd_stats_acc_alloc(&set->layers[l], s->n_steps, s->layers[l].width, err) != 0) return -1;
  }
  return 0;
}

static void free_layer(sd_stats_layer *l) {
  free(l->name);
  free(l->block);
  free(l->diffusers);
}

void sd_stats_layers_free(sd_stats_layer *layers, int n) {
  for (int i = 0; layers && i < n; i++) free_layer(&layers[i]);
  free(layers);
}

int sd_stats_layers_copy(const sd_stats_layer *src, int n, sd_stats_layer **out, sd_error *err) {
  sd_stats_layer *d = sd_calloc((size_t)(n ? n : 1), sizeof *d, err);
  if (!d) return -1;
  for (int i = 0; i < n; i++) {
    d[i] = src[i];
    d[i].name = sd_strdup(src[i].name);
    d[i].block = sd_strdup(src[i].block);
    d[i].diffusers = sd_strdup(src[i].diffusers ? src[i].diffusers : "");
    if (!d[i].name || !d[i].block || !d[i].diffusers) {
      sd_stats_layers_free(d, i + 1);
      return sd_fail(err, "out of memory");
    }
  }
  *out = d;
  return 0;
}

void sd_stats_free(sd_stats *s) {
  if (!s) return;
  sd_stats_settings *st = &s->settings;
  char **strs[] = {&st->model, &st->model_hash, &st->unet_override, &st->text_encoder_override, &st->sampler,
                   &st->hooks, &st->sdprune_version, &st->git_revision, &st->command_line, &st->created_utc};
  for (size_t i = 0; i < sizeof strs / sizeof *strs; i++) free(*strs[i]);
  for (int k = 0; k < s->n_sets; k++) {
    sd_stats_set *set = &s->sets[k];
    for (int l = 0; set->layers && l < s->n_layers; l++) sd_stats_acc_free(&set->layers[l]);
    free(set->layers);
    free(set->name);
    free(set->role);
    free(set->file);
    free(set->file_sha256);
    free(set->template_used);
  }
  free(s->sets);
  for (int64_t i = 0; i < s->n_items; i++) {
    free(s->items[i].prompt);
    free(s->items[i].error);
    free(s->items[i].per_item_file);
  }
  free(s->items);
  sd_stats_layers_free(s->layers, s->n_layers);
  free(s->timesteps);
  memset(s, 0, sizeof *s);
}

/* ---- the collector --------------------------------------------------------------------------- */

typedef struct {
  double *q[SD_STATS_NQ]; /* [2, width] this evaluation's sums */
  float *max;             /* [2, width] */
  int64_t count[SD_STATS_BRANCHES];
} step_buffer;

struct sd_stats_collector {
  int want_ff, want_attn2, per_item, n_steps;
  int n_layers;
  sd_stats_layer *layers;
  int *layer_of[2]; /* [kind][site_index] -> layer, -1 */
  int n_sites;
  step_buffer *step; /* [n_layers] */
  sd_stats_acc *item; /* [n_layers] */
  float **item_mean, **item_max; /* [n_layers][n_steps, width] (per_item) */
  float *inv_norm2;   /* [tokens] */
  int64_t inv_cap;
  int cfg, batch, steps_done;
  int out_of_memory; /* a hook call could not grow its buffer: the evaluation is incomplete */
  double seconds; /* time spent in the hook and the folding, for the summary */
};

static int parse_hooks(const char *hooks, int *ff, int *attn2, sd_error *err) {
  *ff = *attn2 = 0;
  const char *p = hooks && *hooks ? hooks : "ff";
  while (*p) {
    const char *e = strchr(p, ',');
    size_t n = e ? (size_t)(e - p) : strlen(p);
    if (n == 2 && !strncmp(p, "ff", 2)) *ff = 1;
    else if (n == 5 && !strncmp(p, "attn2", 5)) *attn2 = 1;
    else return sd_fail(err, "hooks: unknown site kind '%.*s' (expected ff, attn2 or ff,attn2)", (int)n, p);
    p = e ? e + 1 : p + n;
  }
  if (!*ff && !*attn2) return sd_fail(err, "hooks: nothing to record");
  return 0;
}

static int wants(void *ctx, const char *site, sd_hook_kind kind) {
  sd_stats_collector *c = ctx;
  return kind == SD_HOOK_FF_NEURONS ? c->want_ff : c->want_attn2;
}

/* Per-token 1 / max(‖row‖², 1e-24): x̂² = x² · inv_norm2[t]. */
static void token_inv_norms(float *inv, const float *data, int64_t tokens, int channels) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tokens; t++) {
    const float *row = data + t * channels;
    double acc = 0.0;
    float part = 0.0f;
    for (int c = 0; c < channels; c++) {
      part += row[c] * row[c];
      if ((c & 255) == 255) {
        acc += part;
        part = 0.0f;
      }
    }
    acc += part;
    inv[t] = (float)(1.0 / (acc > 1e-24 ? acc : 1e-24));
  }
}

/* Adds the evaluation's activations of one branch into its step buffer (sums in the fixed order:
 * tokens in blocks of 64 in float, blocks in double). */
static void accumulate(step_buffer *sb, int branch, const float *data, const float *inv, int64_t tokens, int width) {
  double *s1 = sb->q[SD_Q_SUM] + (size_t)branch * width, *s2 = sb->q[SD_Q_SUMSQ] + (size_t)branch * width;
  double *sa = sb->q[SD_Q_SUMABS] + (size_t)branch * width, *sh = sb->q[SD_Q_SUMSQ_HAT] + (size_t)branch * width;
  float *mx = sb->max + (size_t)branch * width;
  const int chunk = 128;
#pragma omp parallel for schedule(dynamic, 1)
  for (int c0 = 0; c0 < width; c0 += chunk) {
    int n = width - c0 < chunk ? width - c0 : chunk;
    float a[128], q[128], b[128], h[128], m[128];
    for (int c = 0; c < n; c++) m[c] = mx[c0 + c];
    for (int64_t t0 = 0; t0 < tokens; t0 += TOKEN_BLOCK) {
      int64_t t1 = t0 + TOKEN_BLOCK < tokens ? t0 + TOKEN_BLOCK : tokens;
      for (int c = 0; c < n; c++) a[c] = q[c] = b[c] = h[c] = 0.0f;
      for (int64_t t = t0; t < t1; t++) {
        const float *row = data + t * width + c0;
        float w = inv[t];
#pragma omp simd
        for (int c = 0; c < n; c++) {
          float x = row[c], x2 = x * x;
          a[c] += x;
          q[c] += x2;
          b[c] += fabsf(x);
          h[c] += x2 * w;
          m[c] = x > m[c] ? x : m[c];
        }
      }
      for (int c = 0; c < n; c++) {
        s1[c0 + c] += a[c];
        s2[c0 + c] += q[c];
        sa[c0 + c] += b[c];
        sh[c0 + c] += h[c];
      }
    }
    for (int c = 0; c < n; c++) mx[c0 + c] = m[c];
  }
}

static void observe(void *ctx, int site_index, const char *site, sd_hook_kind kind, int b, float t, float *data,
                    int64_t tokens, int channels) {
  sd_stats_collector *c = ctx;
  if (site_index < 0 || site_index >= c->n_sites) return;
  int l = c->layer_of[kind == SD_HOOK_FF_NEURONS ? 0 : 1][site_index];
  if (l < 0 || c->steps_done >= c->n_steps || channels != c->layers[l].width) return;
  double t0 = omp_get_wtime();
  int branch = c->cfg ? (b < c->batch ? 0 : 1) : 1;
  if (tokens > c->inv_cap) {
    float *p = realloc(c->inv_norm2, sizeof(float) * (size_t)tokens);
    if (!p) { /* end_step reports it: this evaluation's statistics would be incomplete */
      c->out_of_memory = 1;
      return;
    }
    c->inv_norm2 = p;
    c->inv_cap = tokens;
  }
  token_inv_norms(c->inv_norm2, data, tokens, channels);
  accumulate(&c->step[l], branch, data, c->inv_norm2, tokens, channels);
  c->step[l].count[branch] += tokens;
  c->seconds += omp_get_wtime() - t0;
}

/* diffusers name of an ldm transformer block (input_blocks.I.1 / middle_block.1 / output_blocks.I.1). */
static void diffusers_block(const sd_unet *u, const char *kind, int block, int in_level, const char *rest, char *out,
                            size_t n) {
  if (!strcmp(kind, "input")) snprintf(out, n, "down_blocks.%d.attentions.%d.%s", u->input_blocks[block].level, in_level, rest);
  else if (!strcmp(kind, "middle")) snprintf(out, n, "mid_block.attentions.0.%s", rest);
  else snprintf(out, n, "up_blocks.%d.attentions.%d.%s", u->cfg.n_levels - 1 - u->output_blocks[block].level, in_level, rest);
}

static int add_layer(sd_stats_collector *c, const sd_unet *u, const sd_unet_tblock *tb, sd_hook_kind kind,
                     const char *dkind, int block, int in_level, int depth_index, int dim, sd_error *err) {
  sd_stats_layer *L = &c->layers[c->n_layers];
  char name[256], rest[128], dname[256];
  int ff = kind == SD_HOOK_FF_NEURONS;
  snprintf(name, sizeof name, "%s.%s", tb->site, ff ? "ff.net.2" : "attn2");
  snprintf(rest, sizeof rest, "transformer_blocks.%d.%s", depth_index, ff ? "ff.net.2" : "attn2");
  diffusers_block(u, dkind, block, in_level, rest, dname, sizeof dname);
  L->name = sd_strdup(name);
  L->block = sd_strdup(tb->site);
  L->diffusers = sd_strdup(dname);
  if (!L->name || !L->block || !L->diffusers) return sd_fail(err, "out of memory");
  L->kind = kind;
  L->width = ff ? tb->ff_inner : dim;
  L->site_index = tb->site_index;
  c->layer_of[ff ? 0 : 1][tb->site_index] = c->n_layers++;
  return 0;
}

static int bind_blocks(sd_stats_collector *c, const sd_unet *u, const sd_unet_block *blocks, int n, const char *dkind,
                       sd_error *err) {
  int per_level[SD_UNET_MAX_LEVELS + 1] = {0};
  for (int i = 0; i < n; i++) {
    int lev = blocks[i].level < SD_UNET_MAX_LEVELS ? blocks[i].level : SD_UNET_MAX_LEVELS;
    int has_res = 0;
    for (int j = 0; j < blocks[i].n_layers; j++) {
      const sd_unet_layer *ly = &blocks[i].layers[j];
      if (ly->kind == SD_LAYER_RES) has_res = 1;
      if (ly->kind != SD_LAYER_ATTN) continue;
      for (int d = 0; d < ly->attn.depth; d++) {
        const sd_unet_tblock *tb = &ly->attn.blocks[d];
        if (c->want_ff && add_layer(c, u, tb, SD_HOOK_FF_NEURONS, dkind, i, per_level[lev], d, ly->attn.inner, err)) return -1;
        if (c->want_attn2 && add_layer(c, u, tb, SD_HOOK_ATTN2_OUT, dkind, i, per_level[lev], d, ly->attn.inner, err))
          return -1;
      }
    }
    if (has_res) per_level[lev]++; /* diffusers counts resnets (and their attentions) per level */
  }
  return 0;
}

int sd_stats_collector_new(const char *hooks, int n_steps, int per_item, sd_stats_collector **out, sd_error *err) {
  *out = NULL;
  if (n_steps < 1) return sd_fail(err, "statistics: no UNet evaluation to record");
  sd_stats_collector *c = sd_calloc(1, sizeof *c, err);
  if (!c) return -1;
  if (parse_hooks(hooks, &c->want_ff, &c->want_attn2, err) != 0) {
    free(c);
    return -1;
  }
  c->n_steps = n_steps;
  c->per_item = per_item;
  *out = c;
  return 0;
}

int sd_stats_collector_bind(sd_stats_collector *c, const sd_unet *u, sd_error *err) {
  c->n_sites = u->n_tblocks;
  int max_layers = 2 * u->n_tblocks;
  c->layers = sd_calloc((size_t)(max_layers ? max_layers : 1), sizeof *c->layers, err);
  c->layer_of[0] = sd_malloc(sizeof(int) * (size_t)(c->n_sites + 1), err);
  c->layer_of[1] = sd_malloc(sizeof(int) * (size_t)(c->n_sites + 1), err);
  if (!c->layers || !c->layer_of[0] || !c->layer_of[1]) return -1;
  for (int i = 0; i < c->n_sites; i++) c->layer_of[0][i] = c->layer_of[1][i] = -1;
  if (bind_blocks(c, u, u->input_blocks, u->n_input_blocks, "input", err) ||
      bind_blocks(c, u, &u->middle, 1, "middle", err) ||
      bind_blocks(c, u, u->output_blocks, u->n_output_blocks, "output", err))
    return -1;
  if (c->n_layers == 0) return sd_fail(err, "statistics: the UNet has no transformer blocks to observe");
  c->step = sd_calloc((size_t)c->n_layers, sizeof *c->step, err);
  c->item = sd_calloc((size_t)c->n_layers, sizeof *c->item, err);
  if (!c->step || !c->item) return -1;
  if (c->per_item) {
    c->item_mean = sd_calloc((size_t)c->n_layers, sizeof(float *), err);
    c->item_max = sd_calloc((size_t)c->n_layers, sizeof(float *), err);
    if (!c->item_mean || !c->item_max) return -1;
  }
  for (int l = 0; l < c->n_layers; l++) {
    size_t w = (size_t)c->layers[l].width;
    step_buffer *sb = &c->step[l];
    for (int q = 0; q < SD_STATS_NQ; q++)
      if (!(sb->q[q] = sd_calloc(SD_STATS_BRANCHES * w, sizeof(double), err))) return -1;
    if (!(sb->max = sd_malloc(sizeof(float) * SD_STATS_BRANCHES * w, err))) return -1;
    if (sd_stats_acc_alloc(&c->item[l], c->n_steps, (int)w, err) != 0) return -1;
    if (c->per_item && (!(c->item_mean[l] = sd_calloc((size_t)c->n_steps * w, sizeof(float), err)) ||
                        !(c->item_max[l] = sd_calloc((size_t)c->n_steps * w, sizeof(float), err))))
      return -1;
  }
  return 0;
}

const sd_stats_layer *sd_stats_collector_layers(const sd_stats_collector *c, int *n_layers) {
  *n_layers = c->n_layers;
  return c->layers;
}

sd_unet_hooks sd_stats_collector_hooks(sd_stats_collector *c) {
  sd_unet_hooks h = {.wants = wants, .observe = observe, .ctx = c};
  return h;
}

static void reset_step(sd_stats_collector *c) {
  for (int l = 0; l < c->n_layers; l++) {
    step_buffer *sb = &c->step[l];
    size_t cells = SD_STATS_BRANCHES * (size_t)c->layers[l].width;
    for (int q = 0; q < SD_STATS_NQ; q++) memset(sb->q[q], 0, sizeof(double) * cells);
    for (size_t i = 0; i < cells; i++) sb->max[i] = -INFINITY;
    sb->count[0] = sb->count[1] = 0;
  }
}

void sd_stats_collector_begin_item(sd_stats_collector *c, int cfg, int batch) {
  c->cfg = cfg;
  c->batch = batch > 0 ? batch : 1;
  c->steps_done = 0;
  c->out_of_memory = 0;
  for (int l = 0; l < c->n_layers; l++) sd_stats_acc_zero(&c->item[l], c->n_steps, c->layers[l].width);
  reset_step(c);
}

/* Rounds one step's double sums to fixed point; refuses NaN/Inf and values int64 cannot hold. */
static int fold_layer(sd_stats_collector *c, int l, sd_error *err) {
  const sd_stats_layer *L = &c->layers[l];
  step_buffer *sb = &c->step[l];
  sd_stats_acc *it = &c->item[l];
  int w = L->width, s = c->steps_done;
  const double unit = (double)(1 << SD_STATS_FIX_BITS);
  for (int br = 0; br < SD_STATS_BRANCHES; br++) {
    size_t off = ((size_t)s * SD_STATS_BRANCHES + br) * w;
    it->count[s * SD_STATS_BRANCHES + br] = sb->count[br];
    for (int q = 0; q < SD_STATS_NQ; q++) {
      const double *src = sb->q[q] + (size_t)br * w;
      int64_t *dst = it->q[q] + off;
      for (int j = 0; j < w; j++) {
        double v = src[j] * unit;
        if (!(fabs(v) < FIX_LIMIT))
          return sd_fail(err, "layer %s, UNet evaluation %d, %s branch, neuron %d: %s is %s", L->name, s,
                         br ? "cond" : "uncond", j, sd_stats_quantity_names[q],
                         isfinite(v) ? "too large for the fixed-point totals" : "not finite (NaN/Inf activations)");
        dst[j] = llround(v);
      }
    }
    memcpy(it->max + off, sb->max + (size_t)br * w, sizeof(float) * (size_t)w);
  }
  if (c->per_item) {
    int br = 1; /* the prompt's branch */
    double n = (double)sb->count[br];
    for (int j = 0; j < w; j++) {
      c->item_mean[l][(size_t)s * w + j] = n > 0 ? (float)(sb->q[SD_Q_SUM][(size_t)br * w + j] / n) : NAN;
      c->item_max[l][(size_t)s * w + j] = sb->max[(size_t)br * w + j];
    }
  }
  return 0;
}

int sd_stats_collector_end_step(sd_stats_collector *c, sd_error *err) {
  if (c->steps_done >= c->n_steps) return 1;
  double t0 = omp_get_wtime();
  if (c->out_of_memory)
    return sd_fail(err, "UNet evaluation %d: out of memory for the statistics of a layer", c->steps_done);
  for (int l = 0; l < c->n_layers; l++) {
    if (c->step[l].count[1] == 0 && c->step[l].count[0] == 0)
      return sd_fail(err, "layer %s, UNet evaluation %d: no activations were observed", c->layers[l].name,
                     c->steps_done);
    if (fold_layer(c, l, err) != 0) return -1;
  }
  c->steps_done++;
  reset_step(c);
  c->seconds += omp_get_wtime() - t0;
  return c->steps_done >= c->n_steps ? 1 : 0;
}

int sd_stats_collector_steps_done(const sd_stats_collector *c) { return c->steps_done; }
double sd_stats_collector_seconds(const sd_stats_collector *c) { return c->seconds; }

const sd_stats_acc *sd_stats_collector_item(const sd_stats_collector *c) { return c->item; }
const float *sd_stats_collector_item_mean(const sd_stats_collector *c, int layer) {
  return c->per_item ? c->item_mean[layer] : NULL;
}
const float *sd_stats_collector_item_max(const sd_stats_collector *c, int layer) {
  return c->per_item ? c->item_max[layer] : NULL;
}

void sd_stats_collector_free(sd_stats_collector *c) {
  if (!c) return;
  for (int l = 0; l < c->n_layers; l++) {
    for (int q = 0; q < SD_STATS_NQ; q++) free(c->step ? c->step[l].q[q] : NULL);
    if (c->step) free(c->step[l].max);
    if (c->item) sd_stats_acc_free(&c->item[l]);
    if (c->item_mean) free(c->item_mean[l]);
    if (c->item_max) free(c->item_max[l]);
  }
  free(c->step);
  free(c->item);
  free(c->item_mean);
  free(c->item_max);
  free(c->layer_of[0]);
  free(c->layer_of[1]);
  free(c->inv_norm2);
  sd_stats_layers_free(c->layers, c->n_layers);
  free(c);
}
