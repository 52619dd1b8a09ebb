/* Concept-neuron statistics: per prompt set, hooked layer (each transformer block's ff.net.2 input,
 * optionally the attn2 output), UNet evaluation and CFG branch, per-neuron token count, Σx, Σx², Σ|x|,
 * max x and Σx̂² (x̂ = the token row over max(‖row‖₂, 1e-12), ConceptPrune's Wanda input).
 *
 * Exactness: an item (set, row, seed) is accumulated in double per evaluation, then rounded once to
 * fixed point (int64 in units of 2^-SD_STATS_FIX_BITS) and buffered; only a completed item is added
 * into its set's totals, by integer addition (max by fmax), so totals are bit-identical whatever the
 * order or the process that computed the items. Knows nothing of files (stats_io.c) or MPI. */
#ifndef SD_CONCEPT_STATS_H
#define SD_CONCEPT_STATS_H

#include <stdint.h>

#include "core/error.h"
#include "model/unet.h"

#define SD_STATS_FIX_BITS 24 /* fixed-point unit 2^-24 ≈ 6e-8 */
#define SD_STATS_BRANCHES 2  /* 0: unconditional, 1: conditional (the prompt) */

/* The summed quantities, in this order in every array and HDF5 dataset name. */
typedef enum { SD_Q_SUM, SD_Q_SUMSQ, SD_Q_SUMABS, SD_Q_SUMSQ_HAT, SD_Q_COUNT_ } sd_stats_quantity;
#define SD_STATS_NQ 4
extern const char *const sd_stats_quantity_names[SD_STATS_NQ]; /* "sum", "sumsq", "sumabs", "sumsq_hat" */

/* Item states in the items table. */
enum { SD_ITEM_PENDING = 0, SD_ITEM_DONE = 1, SD_ITEM_FAILED = 2 };

typedef struct {
  char *name;       /* canonical module path: "<block>.ff.net.2" (its input) or "<block>.attn2" (its output) */
  char *block;      /* the transformer block, e.g. "input_blocks.1.1.transformer_blocks.0" */
  char *diffusers;  /* the same module in diffusers naming, e.g. "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2" */
  sd_hook_kind kind;
  int width;        /* neurons (ff inner) or channels (attn2) */
  int site_index;   /* the UNet hook site of the block */
} sd_stats_layer;

/* Totals of one layer for one set (or one item). Layouts: count [steps, 2]; q[k] and max [steps, 2, width]. */
typedef struct {
  int64_t *count;
  int64_t *q[SD_STATS_NQ];
  float *max; /* -INFINITY where no token was seen */
} sd_stats_acc;

typedef struct {
  char *name;          /* set name: "target", "anchor", or the adversarial NAME */
  char *role;          /* "target", "anchor", "adversarial" */
  char *file;          /* prompt file as given */
  char *file_sha256;   /* hex */
  char *template_used; /* NULL unless templated */
  int n_rows;
  int64_t items_done;
  sd_stats_acc *layers; /* [n_layers] */
} sd_stats_set;

typedef struct {
  int set;             /* index into sets */
  int row;             /* 0-based row of the prompt file */
  int64_t case_number;
  char *prompt;
  uint64_t seed;
  double guidance;
  int width, height;   /* image size in pixels */
  int status;          /* SD_ITEM_* */
  double seconds;
  char *error;         /* failure message, or NULL */
  char *per_item_file; /* relative path of its per-item record file, or NULL */
} sd_stats_item;

/* Settings and provenance that must agree between files that are merged or resumed. */
typedef struct {
  char *model, *model_hash, *unet_override, *text_encoder_override;
  char *sampler;
  int steps, max_steps; /* max_steps 0: the whole trajectory */
  double eta;
  char *hooks;          /* "ff" or "ff,attn2" */
  int per_item;
  /* provenance only (not compared) */
  char *sdprune_version, *git_revision, *command_line, *created_utc;
} sd_stats_settings;

typedef struct {
  sd_stats_settings settings;
  int n_layers;
  sd_stats_layer *layers;
  int n_steps;      /* recorded UNet evaluations per item (min(evaluations, max_steps)) */
  float *timesteps; /* [n_steps] timesteps of those evaluations */
  int n_sets;
  sd_stats_set *sets;
  int64_t n_items;
  sd_stats_item *items;
} sd_stats;

/* Allocates zeroed totals (max = -inf) for every set × layer. sets/layers/n_steps must be filled. */
int sd_stats_alloc_totals(sd_stats *s, sd_error *err);
int sd_stats_acc_alloc(sd_stats_acc *a, int n_steps, int width, sd_error *err);
void sd_stats_acc_zero(sd_stats_acc *a, int n_steps, int width);
void sd_stats_acc_free(sd_stats_acc *a);
/* dst += src (integers; max by fmax). */
void sd_stats_acc_add(sd_stats_acc *dst, const sd_stats_acc *src, int n_steps, int width);
void sd_stats_free(sd_stats *s); /* frees everything inside s (not s itself) */

/* Double value of a fixed-point total. */
static inline double sd_stats_fix_to_double(int64_t v) { return (double)v * (1.0 / (double)(1 << SD_STATS_FIX_BITS)); }

/* The hook that records one item: give it to sd_parts_unet (or sd_unet_init) as the UNet's hooks;
 * call sd_stats_collector_begin_item before sampling, sd_stats_collector_end_step after every UNet
 * evaluation (the sampler's progress callback), and take the item's fixed-point totals with
 * sd_stats_collector_item. Knows which batch entries are uncond/cond from begin_item. */
typedef struct sd_stats_collector sd_stats_collector;

/* hooks: "ff" or "ff,attn2"; per_item additionally keeps per-step mean and max over tokens (cond
 * branch) of every neuron. Give sd_stats_collector_hooks(c) to the UNet's init, then bind. */
int sd_stats_collector_new(const char *hooks, int n_steps, int per_item, sd_stats_collector **out, sd_error *err);
/* Builds the layer list from the initialised UNet's hook sites (forward order). */
int sd_stats_collector_bind(sd_stats_collector *c, const sd_unet *unet, sd_error *err);
const sd_stats_layer *sd_stats_collector_layers(const sd_stats_collector *c, int *n_layers);
void sd_stats_collector_free(sd_stats_collector *c);
sd_unet_hooks sd_stats_collector_hooks(sd_stats_collector *c);
/* cfg: 1 when the UNet batch is [uncond × n, cond × n], 0 when it is [cond × n]. */
void sd_stats_collector_begin_item(sd_stats_collector *c, int cfg, int batch);
/* Folds the evaluation just finished into the item (double → fixed point). Returns 1 when n_steps
 * evaluations are recorded (the caller may stop sampling), 0 before, -1 with err on a non-finite or
 * overflowing value (naming layer, step and neuron). */
int sd_stats_collector_end_step(sd_stats_collector *c, sd_error *err);
int sd_stats_collector_steps_done(const sd_stats_collector *c);
/* Seconds spent in the hook and the folding since the collector was made (for summaries). */
double sd_stats_collector_seconds(const sd_stats_collector *c);
/* The item's totals, per layer ([n_layers], valid until the next begin_item). */
const sd_stats_acc *sd_stats_collector_item(const sd_stats_collector *c);
/* Per-item records of layer l (per_item only): mean and max over tokens, cond branch, [n_steps, width]. */
const float *sd_stats_collector_item_mean(const sd_stats_collector *c, int layer);
const float *sd_stats_collector_item_max(const sd_stats_collector *c, int layer);

/* Deep copy / free of a layer list. */
int sd_stats_layers_copy(const sd_stats_layer *src, int n, sd_stats_layer **out, sd_error *err);
void sd_stats_layers_free(sd_stats_layer *layers, int n);

#endif
