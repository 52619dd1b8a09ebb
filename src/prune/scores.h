/* Scores that choose what to prune, from concept statistics (stats/concept_stats.h) and, for wanda, the
 * ff.net.2 weights: `wanda` (ConceptPrune's Wanda score, weights), `actdiff` (standardised difference of
 * neuron means, whole neurons) and `sensitivity` (the same difference on the erased model's statistics
 * under adversarial prompts, a training-free reading of Yang, Cao, Xu 2405.16534). Fills an sd_mask;
 * knows nothing of files, models or the command line.
 *
 * Notation: P is a prompt set (the sets of one role pooled, or named sets pooled), t a UNet evaluation
 * (step), b the CFG branch (0 uncond, 1 cond), j a neuron (ff.net.2 input column), i an output row.
 * Fixed-point totals are converted to double before any arithmetic.
 *
 * wanda (per layer):   a^P_t[j] = sqrt( Σ_b sumsq_hat_P[t,b,j] )           (all tokens, both branches)
 *                      S^P_t[i,j] = |W2[i,j]| · a^P_t[j]
 *                      sel_t(i,j) = j ∈ top_k(S^target_t[i,·]) ∧ S^target_t[i,j] > S^anchor_t[i,j],
 *                      k = ⌊ratio · cols⌋; ties in the top-k go to the lower j;
 *                      (i,j) pruned if #{t < τ : sel_t(i,j)} > select_ratio · τ  (select_ratio 0: the union).
 * actdiff (per neuron): over t < τ and the branches B (cond by default):
 *                      N_P = Σ count_P[t,b],  μ_P[j] = Σ sum_P[t,b,j] / N_P,
 *                      σ²_P[j] = max(0, Σ sumsq_P[t,b,j] / N_P − μ_P[j]²),
 *                      d[j] = (μ_target[j] − μ_anchor[j]) / sqrt((σ²_target[j] + σ²_anchor[j]) / 2 + 1e-12);
 *                      pruned: the ⌊ratio · width⌋ largest positive d of each layer (scope layer), or the
 *                      ⌊ratio · Σ widths⌋ largest positive d of all layers (scope global); ties go to the
 *                      earlier layer, then the lower j.
 * sensitivity:         d as actdiff with P = the adversarial sets pooled in place of target, on the
 *                      erased model's statistics; with_wanda adds the wanda weights of target vs anchor. */
#ifndef SD_SCORES_H
#define SD_SCORES_H

#include <stdint.h>

#include "core/error.h"
#include "prune/mask.h"
#include "stats/concept_stats.h"

typedef enum { SD_BRANCH_UNCOND = 0, SD_BRANCH_COND = 1, SD_BRANCH_BOTH = 2 } sd_score_branch;

/* The ff.net.2 weight of one stats layer: [rows = out_features, cols = the layer's width], float32.
 * w may be NULL for the neuron methods (rows is still needed: the mask records the weight's shape). */
typedef struct {
  int rows;
  const float *w;
} sd_ff_weight;

typedef struct {
  double ratio;                   /* (0, 1]: wanda: share of each row's inputs; actdiff/sensitivity: share of neurons */
  int tau;                        /* first tau evaluations; 0: the method's default (wanda 10, else all recorded) */
  double select_ratio;            /* wanda: [0, 1); weights selected in more than select_ratio·tau steps (0: union) */
  sd_score_branch branch;         /* actdiff/sensitivity (default cond) */
  int scope_global;               /* actdiff/sensitivity: 0 top share per layer, 1 over all layers */
  const char *const *adversarial; /* sensitivity: set names to pool; NULL/0: every set of role adversarial */
  int n_adversarial;
  int with_wanda;                         /* sensitivity: add the wanda weights of target vs anchor */
  double wanda_ratio, wanda_select_ratio; /* for with_wanda */
  int wanda_tau;
} sd_score_params;

#define SD_WANDA_DEFAULT_RATIO 0.01
#define SD_WANDA_DEFAULT_TAU 10

void sd_score_params_default(sd_score_params *p);

/* Builds the mask of `method` ("wanda", "actdiff", "sensitivity") over the ff layers of s, in the
 * order of s->layers (attn2 layers are skipped). w2 is indexed like s->layers. Fills m's layers,
 * method, params_json (the parameters actually used, with the set names) and model_hash; sources and
 * provenance are the caller's. Errors name the missing role or set, the bad parameter, or the layer. */
int sd_score_mask(const char *method, const sd_stats *s, const sd_ff_weight *w2, const sd_score_params *p, sd_mask *m,
                  sd_error *err);

/* Checks the parameters and that s holds the sets the method needs (run before loading weights). */
int sd_score_check(const char *method, const sd_stats *s, const sd_score_params *p, sd_error *err);

/* The k largest of v[0..n) (ties: the lower index), written to out as increasing indices; returns the
 * number written, min(k, n). scratch holds n doubles. v must hold no NaN. Expected O(n). */
int sd_select_top_k(const double *v, int n, int k, double *scratch, int32_t *out);

#endif
