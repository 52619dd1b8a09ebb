/* The pruning scores on a small handmade sd_stats whose expected selections were worked out by hand
 * (the arithmetic is in the comments; the expected lists are literals, not computed by the code under
 * test): wanda with ties, tau and --select-ratio; actdiff per layer and global, per branch, with ties;
 * sensitivity pooled and by name, with wanda; the error cases. Then the optimised pieces against plain
 * references on random data: the top-k selection against a full sort, and wanda against a naive loop. */
#include <stdint.h>
#include <stdlib.h>

#include "prune/mask.h"
#include "prune/scores.h"
#include "stats/concept_stats.h"
#include "test_util.h"

#define FIX(x) ((int64_t)llround((x)*16777216.0)) /* 2^-24 units */

enum { TARGET, ANCHOR, ADV1, ADV2, N_SETS };
enum { L0, LA, L1, N_LAYERS }; /* L0 ff width 4, LA an attn2 layer (skipped), L1 ff width 5 */

static char *sdup(const char *s) {
  return strdup(s);
}

static int64_t *cell(sd_stats *s, int set, int layer, int q, int t, int b, int j) {
  return &s->sets[set].layers[layer].q[q][((int64_t)t * 2 + b) * s->layers[layer].width + j];
}

/* Wanda input: sumsq_hat over both branches of step t equals a2 (a quarter uncond, the rest cond), so
 * a^P_t[j] = sqrt(a2). */
static void set_hat(sd_stats *s, int set, int layer, int t, const double *a2) {
  for (int j = 0; j < s->layers[layer].width; j++) {
    *cell(s, set, layer, SD_Q_SUMSQ_HAT, t, 0, j) = FIX(a2[j] / 4);
    *cell(s, set, layer, SD_Q_SUMSQ_HAT, t, 1, j) = FIX(3 * a2[j] / 4);
  }
}

/* Cond-branch Σx and Σx² of neuron j, half in step 0 and half in step 1. */
static void set_cond(sd_stats *s, int set, int layer, int j, double sum, double sumsq) {
  for (int t = 0; t < 2; t++) {
    *cell(s, set, layer, SD_Q_SUM, t, 1, j) = FIX(sum / 2);
    *cell(s, set, layer, SD_Q_SUMSQ, t, 1, j) = FIX(sumsq / 2);
  }
}

static void make_stats(sd_stats *s) {
  sd_error err;
  memset(s, 0, sizeof *s);
  s->settings.model_hash = sdup("feedfacefeedface");
  s->settings.hooks = sdup("ff,attn2");
  s->n_steps = 3;
  s->timesteps = calloc(3, sizeof(float));
  s->n_layers = N_LAYERS;
  s->layers = calloc(N_LAYERS, sizeof *s->layers);
  const char *blocks[] = {"input_blocks.1.1.transformer_blocks.0", "input_blocks.1.1.transformer_blocks.0",
                          "output_blocks.3.1.transformer_blocks.0"};
  const int widths[] = {4, 2, 5};
  for (int l = 0; l < N_LAYERS; l++) {
    char name[200];
    snprintf(name, sizeof name, "%s.%s", blocks[l], l == LA ? "attn2" : "ff.net.2");
    s->layers[l] = (sd_stats_layer){
        sdup(name), sdup(blocks[l]), sdup(name), l == LA ? SD_HOOK_ATTN2_OUT : SD_HOOK_FF_NEURONS, widths[l], l};
  }
  const char *names[] = {"target", "anchor", "adv1", "adv2"},
             *roles[] = {"target", "anchor", "adversarial", "adversarial"};
  s->n_sets = N_SETS;
  s->sets = calloc(N_SETS, sizeof *s->sets);
  for (int k = 0; k < N_SETS; k++) {
    s->sets[k].name = sdup(names[k]);
    s->sets[k].role = sdup(roles[k]);
    s->sets[k].file = sdup("x.txt");
  }
  if (sd_stats_alloc_totals(s, &err) != 0) {
    fprintf(stderr, "%s\n", err.msg);
    exit(1);
  }

  /* wanda: a^P_t[j] per step (the values stored are their squares) */
  const double l0_t[3][4] = {{2, 1, 2, 2}, {1, 3, 1, 1}, {1, 1, 1, 4}};
  const double l0_a[3][4] = {{1, 1, 3, 1}, {1, 1, 1, 1}, {2, 2, 2, 2}};
  const double l1_t[3][5] = {{1, 2, 2, 2, 1}, {2, 1, 1, 1, 2}, {0, 0, 0, 0, 0}};
  const double l1_a[3][5] = {{1, 2, 1, 3, 1}, {1, 1, 1, 1, 1}, {1, 1, 1, 1, 1}};
  for (int t = 0; t < 3; t++) {
    double sq[5];
    for (int j = 0; j < 4; j++)
      sq[j] = l0_t[t][j] * l0_t[t][j];
    set_hat(s, TARGET, L0, t, sq);
    for (int j = 0; j < 4; j++)
      sq[j] = l0_a[t][j] * l0_a[t][j];
    set_hat(s, ANCHOR, L0, t, sq);
    for (int j = 0; j < 5; j++)
      sq[j] = l1_t[t][j] * l1_t[t][j];
    set_hat(s, TARGET, L1, t, sq);
    for (int j = 0; j < 5; j++)
      sq[j] = l1_a[t][j] * l1_a[t][j];
    set_hat(s, ANCHOR, L1, t, sq);
  }

  /* Neuron moments. Tokens: target and anchor 2 per step on cond in steps 0, 1 (N = 4) and 4 on uncond in
   * step 2; adv1 and adv2 1 per step on cond in steps 0, 1 (N = 2 each). */
  for (int l = 0; l < N_LAYERS; l++)
    for (int k = 0; k < N_SETS; k++) {
      int64_t *c = s->sets[k].layers[l].count; /* [t * 2 + b] */
      if (k == TARGET || k == ANCHOR)
        c[0 * 2 + 1] = c[1 * 2 + 1] = 2, c[2 * 2 + 0] = 4;
      else
        c[0 * 2 + 1] = c[1 * 2 + 1] = 1;
    }
  /* (Σx, Σx²) on cond: L0 target j0 (4,8) j1 (8,16) j2 (0,4) j3 (4,4); anchor j0 (0,4) j1 (4,8) j2 (0,4) */
  set_cond(s, TARGET, L0, 0, 4, 8), set_cond(s, TARGET, L0, 1, 8, 16), set_cond(s, TARGET, L0, 2, 0, 4);
  set_cond(s, TARGET, L0, 3, 4, 4);
  set_cond(s, ANCHOR, L0, 0, 0, 4), set_cond(s, ANCHOR, L0, 1, 4, 8), set_cond(s, ANCHOR, L0, 2, 0, 4);
  /* L1 target j0 (4,8) j2 (8,20) j3 (4,4) j4 (12,40); anchor j0 (0,4) j1 (4,4) j2 (0,4) j3 (4,4) j4 (0,4) */
  set_cond(s, TARGET, L1, 0, 4, 8), set_cond(s, TARGET, L1, 2, 8, 20), set_cond(s, TARGET, L1, 3, 4, 4);
  set_cond(s, TARGET, L1, 4, 12, 40);
  set_cond(s, ANCHOR, L1, 0, 0, 4), set_cond(s, ANCHOR, L1, 1, 4, 4), set_cond(s, ANCHOR, L1, 2, 0, 4);
  set_cond(s, ANCHOR, L1, 3, 4, 4), set_cond(s, ANCHOR, L1, 4, 0, 4);
  /* uncond, step 2: L0 target j2 (4,4); everything else 0 */
  *cell(s, TARGET, L0, SD_Q_SUM, 2, 0, 2) = FIX(4);
  *cell(s, TARGET, L0, SD_Q_SUMSQ, 2, 0, 2) = FIX(4);
  /* adversarial, L0: adv1 j0 (2,2) j3 (0,2); adv2 j0 (0,2) j1 (4,8) j3 (0,2); L1 all 0 */
  set_cond(s, ADV1, L0, 0, 2, 2), set_cond(s, ADV1, L0, 3, 0, 2);
  set_cond(s, ADV2, L0, 0, 0, 2), set_cond(s, ADV2, L0, 1, 4, 8), set_cond(s, ADV2, L0, 3, 0, 2);
}

/* ff.net.2 weights: L0 [3 x 4], L1 [2 x 5] */
static const float W0[12] = {1, 2, 1, 1, /**/ 2, 1, 1, 2, /**/ 0, -1, 3, 1};
static const float W1[10] = {1, 1, 1, 1, 1, /**/ 3, 0, 1, 2, 1};
static const sd_ff_weight W2[N_LAYERS] = {{3, W0}, {0, NULL}, {2, W1}};

static int same_i64(const int64_t *got, int64_t n, const int64_t *want, int64_t m) {
  if (n != m)
    return 0;
  for (int64_t k = 0; k < n; k++)
    if (got[k] != want[k])
      return 0;
  return 1;
}
static int same_i32(const int32_t *got, int n, const int32_t *want, int m) {
  if (n != m)
    return 0;
  for (int k = 0; k < n; k++)
    if (got[k] != want[k])
      return 0;
  return 1;
}
static void print_i64(const char *what, const int64_t *v, int64_t n) {
  fprintf(stderr, "  %s:", what);
  for (int64_t k = 0; k < n; k++)
    fprintf(stderr, " %lld", (long long)v[k]);
  fprintf(stderr, "\n");
}

#define WANT_WEIGHTS(m, layer, ...)                                                                                    \
  do {                                                                                                                 \
    const int64_t want_[] = {__VA_ARGS__};                                                                             \
    int64_t n_ = (int64_t)(sizeof want_ / sizeof *want_) - 1; /* a leading -1 so that empty lists compile */           \
    const sd_mask_layer *l_ = &(m)->layers[layer];                                                                     \
    int ok_ = same_i64(l_->weights, l_->n_weights, want_ + 1, n_);                                                     \
    CHECK(ok_, "%s layer %d: %lld weights, not the expected %lld", label, layer, (long long)l_->n_weights,             \
          (long long)n_);                                                                                              \
    if (!ok_)                                                                                                          \
      print_i64("got", l_->weights, l_->n_weights), print_i64("want", want_ + 1, n_);                                  \
  } while (0)

#define WANT_NEURONS(m, layer, ...)                                                                                    \
  do {                                                                                                                 \
    const int32_t want_[] = {__VA_ARGS__};                                                                             \
    int n_ = (int)(sizeof want_ / sizeof *want_) - 1;                                                                  \
    const sd_mask_layer *l_ = &(m)->layers[layer];                                                                     \
    CHECK(same_i32(l_->neurons, l_->n_neurons, want_ + 1, n_), "%s layer %d: %d neurons (first %d), expected %d",      \
          label, layer, l_->n_neurons, l_->n_neurons ? l_->neurons[0] : -1, n_);                                       \
  } while (0)

static int run(const char *method, const sd_stats *s, const sd_score_params *p, sd_mask *m, const char *label) {
  sd_error err = {{0}};
  int rc = sd_score_mask(method, s, W2, p, m, &err);
  CHECK(rc == 0, "%s: %s", label, err.msg);
  if (rc == 0)
    CHECK(m->n_layers == 2, "%s: %d mask layers (the attn2 layer must be skipped)", label, m->n_layers);
  return rc == 0 && m->n_layers == 2;
}

static void fails(const char *method, const sd_stats *s, const sd_score_params *p, const char *want) {
  sd_mask m;
  sd_error err = {{0}};
  int rc = sd_score_mask(method, s, W2, p, &m, &err);
  CHECK(rc != 0 && strstr(err.msg, want), "%s: rc %d, message '%s', want '%s'", method, rc, err.msg, want);
  if (rc == 0)
    sd_mask_free(&m);
}

/* Handmade wanda. ratio 0.5: k = ⌊0.5·4⌋ = 2 in L0, ⌊0.5·5⌋ = 2 in L1. S_t = |W|·a_t, S_a = |W|·a_a.
 * L0, W rows [1 2 1 1] [2 1 1 2] [0 -1 3 1]:
 *  t0 a_t [2 1 2 2] a_a [1 1 3 1]: row0 S_t [2 2 2 2] all tied -> j0, j1; S_a [1 2 3 1]: j0 2>1 yes, j1 2>2 no
 *       -> (0,0). row1 S_t [4 1 2 4] -> j0, j3; S_a [2 1 3 2]: both -> (1,0) (1,3). row2 S_t [0 1 6 2] -> j2, j3;
 *       S_a [0 1 9 1]: j2 6>9 no, j3 2>1 yes -> (2,3).                         selected {0, 4, 7, 11}
 *  t1 a_t [1 3 1 1] a_a [1 1 1 1]: row0 S_t [1 6 1 1] -> j1, then j0 of the tie at 1; j1 6>2 yes, j0 1>1 no
 *       -> (0,1). row1 S_t [2 3 1 2] -> j1, then j0 of the tie at 2 -> j1 only -> (1,1). row2 S_t [0 3 3 1]
 *       -> j1, j2; S_a [0 1 3 1]: j1 yes, j2 3>3 no -> (2,1).                    selected {1, 5, 9}
 *  t2 a_t [1 1 1 4] a_a [2 2 2 2]: row0 S_t [1 2 1 4] -> j3, j1; S_a [2 4 2 2]: j3 yes, j1 no -> (0,3). row1
 *       S_t [2 1 1 8] -> j3, j0; S_a [4 2 2 4]: j3 yes -> (1,3). row2 S_t [0 1 3 4] -> j3, j2; S_a [0 2 6 2]:
 *       j3 yes -> (2,3).                                                        selected {3, 7, 11}
 *  times selected over tau 3: 0,1,3,4,5,9 once; 7, 11 twice.
 * L1, W rows [1 1 1 1 1] [3 0 1 2 1]:
 *  t0 a_t [1 2 2 2 1] a_a [1 2 1 3 1]: row0 S_t [1 2 2 2 1] -> j1, j2 of the tie at 2; j1 2>2 no, j2 2>1 yes
 *       -> (0,2). row1 S_t [3 0 2 4 1] -> j3, j0; S_a [3 0 1 6 1]: j3 4>6 no, j0 3>3 no.  selected {2}
 *  t1 a_t [2 1 1 1 2] a_a [1 1 1 1 1]: row0 S_t [2 1 1 1 2] -> j0, j4, both > 1 -> (0,0) (0,4). row1
 *       S_t [6 0 1 2 2] -> j0, then j3 of the tie at 2 (j4 would pass: 2>1; j3 does not: 2>2) -> (1,0).
 *                                                                               selected {0, 4, 5}
 *  t2 a_t all 0: S_t = 0 never exceeds S_a.                                     selected {}  */
static void test_wanda(const sd_stats *s) {
  sd_score_params p;
  sd_mask m;
  const char *label;
  sd_score_params_default(&p);
  p.ratio = 0.5;
  p.tau = 3;
  label = "wanda union tau 3";
  if (run("wanda", s, &p, &m, label)) {
    WANT_WEIGHTS(&m, 0, -1, 0, 1, 3, 4, 5, 7, 9, 11);
    WANT_WEIGHTS(&m, 1, -1, 0, 2, 4, 5);
    WANT_NEURONS(&m, 0, -1);
    CHECK(!strcmp(m.method, "wanda") && !strcmp(m.model_hash, "feedfacefeedface"), "method %s hash %s", m.method,
          m.model_hash);
    CHECK(strstr(m.params_json, "\"tau\":3") && strstr(m.params_json, "\"target\":[\"target\"]") &&
              strstr(m.params_json, "\"anchor\":[\"anchor\"]"),
          "params %s", m.params_json);
    CHECK(!strcmp(m.layers[1].layer, "output_blocks.3.1.transformer_blocks.0.ff.net.2") &&
              !strcmp(m.layers[1].weight, "output_blocks.3.1.transformer_blocks.0.ff.net.2.weight") &&
              m.layers[1].rows == 2 && m.layers[1].cols == 5,
          "layer names/shape: %s %s %dx%d", m.layers[1].layer, m.layers[1].weight, m.layers[1].rows, m.layers[1].cols);
    sd_mask_free(&m);
  }
  p.tau = 2;
  label = "wanda union tau 2";
  if (run("wanda", s, &p, &m, label)) {
    WANT_WEIGHTS(&m, 0, -1, 0, 1, 4, 5, 7, 9, 11);
    WANT_WEIGHTS(&m, 1, -1, 0, 2, 4, 5);
    sd_mask_free(&m);
  }
  p.tau = 1;
  label = "wanda tau 1";
  if (run("wanda", s, &p, &m, label)) {
    WANT_WEIGHTS(&m, 0, -1, 0, 4, 7, 11);
    WANT_WEIGHTS(&m, 1, -1, 2);
    sd_mask_free(&m);
  }
  /* select ratio 0.5, tau 3: more than 1.5 steps -> twice or more: L0 {7, 11}, L1 none. */
  p.tau = 3;
  p.select_ratio = 0.5;
  label = "wanda select 0.5";
  if (run("wanda", s, &p, &m, label)) {
    WANT_WEIGHTS(&m, 0, -1, 7, 11);
    WANT_WEIGHTS(&m, 1, -1);
    CHECK(m.layers[1].n_weights == 0, "empty layer");
    sd_mask_free(&m);
  }
  /* 0.3 · 3 = 0.9: once is enough, the union again. */
  p.select_ratio = 0.3;
  label = "wanda select 0.3";
  if (run("wanda", s, &p, &m, label)) {
    WANT_WEIGHTS(&m, 0, -1, 0, 1, 3, 4, 5, 7, 9, 11);
    sd_mask_free(&m);
  }
  /* ratio 0.2: k = ⌊0.8⌋ = 0 in L0 and ⌊1⌋ = 1 in L1 (row0 t0 S_t [1 2 2 2 1] -> j1: 2>2 no; row1 t0 ->
   * j3: 4>6 no; t1 row0 -> j0: yes (0,0); row1 -> j0: 6>3 yes (1,0); t2 none) */
  p.select_ratio = 0;
  p.ratio = 0.2;
  label = "wanda ratio 0.2";
  if (run("wanda", s, &p, &m, label)) {
    WANT_WEIGHTS(&m, 0, -1);
    WANT_WEIGHTS(&m, 1, -1, 0, 5);
    sd_mask_free(&m);
  }
}

/* Handmade neuron scores. d = (μ_t − μ_a) / sqrt((σ²_t + σ²_a)/2 + 1e-12), μ = Σx/N, σ² = Σx²/N − μ².
 * cond, N = 4:
 *  L0: j0 t μ1 σ²1, a μ0 σ²1 -> d 1;  j1 t μ2 σ²0, a μ1 σ²1 -> 1/sqrt(.5) = 1.414;  j2 t μ0 σ²1, a μ0 σ²1 -> 0;
 *      j3 t μ1 σ²0, a μ0 σ²0 -> 1/sqrt(1e-12) = 1e6.                                       d = [1 1.41 0 1e6]
 *  L1: j0 as L0 j0 -> 1 (the same inputs: an exact tie);  j1 t μ0 σ²0, a μ1 σ²0 -> −1e6;  j2 t μ2 σ²1,
 *      a μ0 σ²1 -> 2;  j3 t μ1 σ²0, a μ1 σ²0 -> 0;  j4 t μ3 σ²1, a μ0 σ²1 -> 3.         d = [1 −1e6 2 0 3]
 * both branches, tau 3, N = 8 (the uncond tokens add target L0 j2 (4,4)):
 *  L0: j0 t μ.5 σ².75, a μ0 σ².5 -> .5/sqrt(.625) = .632;  j1 t μ1 σ²1, a μ.5 σ².75 -> .5/sqrt(.875) = .535;
 *      j2 t (4,8) μ.5 σ².75, a μ0 σ².5 -> .632 (tie with j0);  j3 t μ.5 σ².25, a 0 0 -> .5/sqrt(.125) = 1.41
 *  L1: j0 .632;  j1 < 0;  j2 t μ1 σ²1.5, a μ0 σ².5 -> 1;  j3 0;  j4 t μ1.5 σ²2.75, a μ0 σ².5 -> 1.18
 * uncond, tau 3, N = 4: L0 j2 t μ1 σ²0, a 0 0 -> 1e6, the rest 0; L1 all 0. */
static void test_actdiff(const sd_stats *s) {
  sd_score_params p;
  sd_mask m;
  const char *label;
  sd_score_params_default(&p);
  p.ratio = 0.5; /* k = 2 and 2 */
  label = "actdiff layer 0.5";
  if (run("actdiff", s, &p, &m, label)) {
    WANT_NEURONS(&m, 0, -1, 1, 3);
    WANT_NEURONS(&m, 1, -1, 2, 4);
    WANT_WEIGHTS(&m, 0, -1);
    CHECK(sd_mask_layer_pruned(&m.layers[0]) == 2 * 3, "pruned %lld", (long long)sd_mask_layer_pruned(&m.layers[0]));
    CHECK(strstr(m.params_json, "\"branch\":\"cond\"") && strstr(m.params_json, "\"scope\":\"layer\"") &&
              strstr(m.params_json, "\"tau\":3"),
          "params %s", m.params_json);
    sd_mask_free(&m);
  }
  p.ratio = 0.6; /* per layer k = ⌊2.4⌋ = 2 and ⌊3⌋ = 3: L1 takes j0 too */
  label = "actdiff layer 0.6";
  if (run("actdiff", s, &p, &m, label)) {
    WANT_NEURONS(&m, 0, -1, 1, 3);
    WANT_NEURONS(&m, 1, -1, 0, 2, 4);
    sd_mask_free(&m);
  }
  /* global: K = ⌊0.6·9⌋ = 5 of 1e6 (L0 j3), 3 (L1 j4), 2 (L1 j2), 1.41 (L0 j1), then the tie at 1 between
   * L0 j0 and L1 j0 goes to the earlier layer. */
  p.scope_global = 1;
  label = "actdiff global 0.6";
  if (run("actdiff", s, &p, &m, label)) {
    WANT_NEURONS(&m, 0, -1, 0, 1, 3);
    WANT_NEURONS(&m, 1, -1, 2, 4);
    sd_mask_free(&m);
  }
  /* ratio 1: every positive d. */
  p.scope_global = 0;
  p.ratio = 1;
  label = "actdiff layer 1";
  if (run("actdiff", s, &p, &m, label)) {
    WANT_NEURONS(&m, 0, -1, 0, 1, 3);
    WANT_NEURONS(&m, 1, -1, 0, 2, 4);
    sd_mask_free(&m);
  }
  p.ratio = 0.5;
  p.branch = SD_BRANCH_BOTH;
  label = "actdiff both";
  if (run("actdiff", s, &p, &m, label)) {
    WANT_NEURONS(&m, 0, -1, 0, 3); /* 1.41, then j0 of the tie at .632 */
    WANT_NEURONS(&m, 1, -1, 2, 4); /* 1.18, 1 */
    sd_mask_free(&m);
  }
  p.branch = SD_BRANCH_UNCOND;
  label = "actdiff uncond";
  if (run("actdiff", s, &p, &m, label)) {
    WANT_NEURONS(&m, 0, -1, 2);
    WANT_NEURONS(&m, 1, -1);
    sd_mask_free(&m);
  }
  /* uncond tokens exist only in step 2 */
  p.tau = 2;
  fails("actdiff", s, &p, "target set target has no tokens in steps 0..1, branch uncond");
}

/* sensitivity, cond, N = 4 pooled (adv1 + adv2), anchor as above:
 *  L0 pooled: j0 (2,4) μ.5 σ².75 vs a μ0 σ²1 -> .5/sqrt(.875) > 0;  j1 (4,8) μ1 σ²1 vs a μ1 σ²1 -> 0;
 *     j2 (0,0) vs μ0 -> 0;  j3 (0,4) μ0 σ²1 vs a μ0 σ²0 -> 0.      -> {0}
 *  adv2 alone (N = 2): j1 (4,8) μ2 σ²0 vs a μ1 σ²1 -> 1.41; j0, j2, j3 0.  -> {1}
 *  L1: adversarial means 0, anchor means [0 1 0 1 0]: no positive d.     -> {} */
static void test_sensitivity(sd_stats *s) {
  sd_score_params p;
  sd_mask m;
  const char *label;
  sd_score_params_default(&p);
  p.ratio = 0.5;
  label = "sensitivity pooled";
  if (run("sensitivity", s, &p, &m, label)) {
    WANT_NEURONS(&m, 0, -1, 0);
    WANT_NEURONS(&m, 1, -1);
    WANT_WEIGHTS(&m, 0, -1);
    CHECK(strstr(m.params_json, "\"adversarial\":[\"adv1\",\"adv2\"]") && !strstr(m.params_json, "\"target\""),
          "params %s", m.params_json);
    sd_mask_free(&m);
  }
  const char *only[] = {"adv2"};
  p.adversarial = only;
  p.n_adversarial = 1;
  label = "sensitivity adv2";
  if (run("sensitivity", s, &p, &m, label)) {
    WANT_NEURONS(&m, 0, -1, 1);
    sd_mask_free(&m);
  }
  /* with wanda (ratio .5, tau 3): the wanda union of test_wanda added as weights. */
  p.n_adversarial = 0;
  p.with_wanda = 1;
  p.wanda_ratio = 0.5;
  p.wanda_tau = 3;
  label = "sensitivity with wanda";
  if (run("sensitivity", s, &p, &m, label)) {
    WANT_NEURONS(&m, 0, -1, 0);
    WANT_WEIGHTS(&m, 0, -1, 0, 1, 3, 4, 5, 7, 9, 11);
    WANT_WEIGHTS(&m, 1, -1, 0, 2, 4, 5);
    /* L0: neuron 0 (3 weights: 0, 4, 8) ∪ 8 weights, of which 0 and 4 are in column 0: 3 + 8 − 2 = 9 */
    CHECK(sd_mask_layer_pruned(&m.layers[0]) == 9, "pruned %lld", (long long)sd_mask_layer_pruned(&m.layers[0]));
    CHECK(strstr(m.params_json, "\"with_wanda\":true") && strstr(m.params_json, "\"target\":[\"target\"]"), "params %s",
          m.params_json);
    sd_mask_free(&m);
  }
  p.wanda_tau = 0; /* default 10 > 3 steps */
  fails("sensitivity", s, &p, "--wanda-tau 10 is more than the 3 steps");
  p.wanda_tau = 3;
  char *role = s->sets[TARGET].role;
  s->sets[TARGET].role = "other";
  fails("sensitivity", s, &p, "--with-wanda: no set with role 'target'");
  p.with_wanda = 0;
  label = "sensitivity without target";
  if (run("sensitivity", s, &p, &m, label))
    sd_mask_free(&m);
  s->sets[TARGET].role = role;
  const char *unknown[] = {"adv9"};
  p.adversarial = unknown;
  p.n_adversarial = 1;
  fails("sensitivity", s, &p, "no set named 'adv9' in the statistics (sets: target (target), anchor (anchor)");
  char *r2 = s->sets[ADV1].role, *r3 = s->sets[ADV2].role;
  s->sets[ADV1].role = s->sets[ADV2].role = "target";
  p.n_adversarial = 0;
  fails("sensitivity", s, &p, "no set with role 'adversarial'");
  s->sets[ADV1].role = r2, s->sets[ADV2].role = r3;
}

static void test_errors(sd_stats *s) {
  sd_score_params p;
  sd_score_params_default(&p);
  fails("wanda", s, &p, "--tau 10 is more than the 3 steps recorded");
  p.tau = 3;
  p.ratio = 0;
  fails("wanda", s, &p, "--ratio must be in (0, 1], got 0");
  p.ratio = 1.5;
  fails("actdiff", s, &p, "--ratio must be in (0, 1], got 1.5");
  p.ratio = 0.5;
  p.tau = -1;
  fails("actdiff", s, &p, "--tau must be at least 1");
  p.tau = 4;
  fails("actdiff", s, &p, "--tau 4 is more than the 3 steps");
  p.tau = 3;
  p.select_ratio = 1;
  fails("wanda", s, &p, "--select-ratio must be in [0, 1)");
  p.select_ratio = 0;
  fails("magnitude", s, &p, "unknown method 'magnitude'");
  char *role = s->sets[ANCHOR].role;
  s->sets[ANCHOR].role = "control";
  fails("wanda", s, &p, "no set with role 'anchor'");
  fails("actdiff", s, &p, "no set with role 'anchor'");
  s->sets[ANCHOR].role = role;
  sd_mask m;
  sd_error err = {{0}};
  CHECK(sd_score_mask("wanda", s, NULL, &p, &m, &err) != 0 &&
            strstr(err.msg, "input_blocks.1.1.transformer_blocks.0.ff.net.2"),
        "wanda without weights: %s", err.msg);
}

/* ---- optimised pieces against plain references on random data ------------------------------- */

static uint64_t rng_state = 12345;
static uint64_t rnd(void) {
  rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
  return rng_state >> 33;
}

static const double *sort_values;
static int by_value_then_index(const void *a, const void *b) {
  int i = *(const int32_t *)a, j = *(const int32_t *)b;
  if (sort_values[i] != sort_values[j])
    return sort_values[i] > sort_values[j] ? -1 : 1;
  return i - j;
}
static int ascending(const void *a, const void *b) {
  return *(const int32_t *)a - *(const int32_t *)b;
}

/* The k best by a full sort on (value desc, index asc), returned in increasing index order. */
static int naive_top_k(const double *v, int n, int k, int32_t *out) {
  int32_t *idx = malloc(sizeof(int32_t) * (size_t)n);
  for (int j = 0; j < n; j++)
    idx[j] = j;
  sort_values = v;
  qsort(idx, (size_t)n, sizeof *idx, by_value_then_index);
  int m = k < n ? (k > 0 ? k : 0) : n;
  memcpy(out, idx, sizeof(int32_t) * (size_t)m);
  qsort(out, (size_t)m, sizeof *out, ascending);
  free(idx);
  return m;
}

static void test_select_random(void) {
  const int sizes[] = {1, 2, 5, 16, 17, 33, 100, 1000, 5120};
  int bad = 0, cases = 0;
  for (size_t a = 0; a < sizeof sizes / sizeof *sizes; a++) {
    int n = sizes[a];
    double *v = malloc(sizeof(double) * n), *scratch = malloc(sizeof(double) * n);
    int32_t *got = malloc(sizeof(int32_t) * (n + 1)), *want = malloc(sizeof(int32_t) * (n + 1));
    for (int kind = 0; kind < 3; kind++) {
      for (int j = 0; j < n; j++) /* 0: few distinct values (many ties), 1: continuous, 2: all equal */
        v[j] = kind == 0 ? (double)(rnd() % 4) : kind == 1 ? (double)rnd() / 4294967296.0 : 0.5;
      const int ks[] = {0, 1, n / 100, n / 3, n - 1, n, n + 1};
      for (int c = 0; c < 7; c++) {
        int m = sd_select_top_k(v, n, ks[c], scratch, got), w = naive_top_k(v, n, ks[c], want);
        cases++;
        if (m != w || memcmp(got, want, sizeof(int32_t) * (size_t)w)) {
          if (!bad)
            fprintf(stderr, "  top-k n %d k %d kind %d: %d vs %d selected\n", n, ks[c], kind, m, w);
          bad++;
        }
      }
    }
    free(v), free(scratch), free(got), free(want);
  }
  { /* the sampled values are the largest: fewer than k candidates, the fallback over all values */
    enum { N = 1024 };
    static double v[N], scratch[N];
    static int32_t got[N], want[N];
    for (int j = 0; j < N; j++)
      v[j] = j % 8 ? (double)(rnd() % 1000) : 1e9;
    const int ks[] = {100, 200, 500};
    for (int c = 0; c < 3; c++) {
      int m = sd_select_top_k(v, N, ks[c], scratch, got), w = naive_top_k(v, N, ks[c], want);
      cases++;
      if (m != w || memcmp(got, want, sizeof(int32_t) * (size_t)w))
        bad++;
    }
  }
  CHECK(bad == 0, "top-k selection differs from the full sort in %d of %d cases", bad, cases);
}

/* Wanda on one random layer against a naive loop over the formulas of scores.h. */
static void test_wanda_random(void) {
  const int rows = 23, cols = 61, steps = 5, tau = 4;
  sd_stats s;
  sd_error err;
  memset(&s, 0, sizeof s);
  s.settings.model_hash = sdup("0");
  s.n_steps = steps;
  s.n_layers = 1;
  s.layers = calloc(1, sizeof *s.layers);
  s.layers[0] = (sd_stats_layer){sdup("b.ff.net.2"), sdup("b"), sdup("b.ff.net.2"), SD_HOOK_FF_NEURONS, cols, 0};
  s.n_sets = 2;
  s.sets = calloc(2, sizeof *s.sets);
  s.sets[0].name = sdup("t"), s.sets[0].role = sdup("target");
  s.sets[1].name = sdup("a"), s.sets[1].role = sdup("anchor");
  if (sd_stats_alloc_totals(&s, &err) != 0)
    exit(1);
  for (int k = 0; k < 2; k++)
    for (int64_t x = 0; x < (int64_t)steps * 2 * cols; x++)
      s.sets[k].layers[0].q[SD_Q_SUMSQ_HAT][x] = (int64_t)(rnd() % 8) << 20;
  float *w = malloc(sizeof(float) * rows * cols);
  for (int x = 0; x < rows * cols; x++)
    w[x] = (float)((int)(rnd() % 7) - 3) * 0.25f; /* ties and zeros */
  sd_ff_weight w2 = {rows, w};
  const double ratios[] = {0.05, 0.2, 0.5, 1.0}, selects[] = {0, 0.5};
  int bad = 0;
  for (int r = 0; r < 4; r++)
    for (int q = 0; q < 2; q++) {
      sd_score_params p;
      sd_score_params_default(&p);
      p.ratio = ratios[r], p.tau = tau, p.select_ratio = selects[q];
      sd_mask m;
      if (sd_score_mask("wanda", &s, &w2, &p, &m, &err) != 0) {
        CHECK(0, "wanda random: %s", err.msg);
        continue;
      }
      /* naive */
      int k = (int)floor(ratios[r] * cols);
      int *times = calloc((size_t)rows * cols, sizeof(int));
      double *st = malloc(sizeof(double) * cols);
      int32_t *top = malloc(sizeof(int32_t) * (cols + 1));
      for (int t = 0; t < tau; t++)
        for (int i = 0; i < rows; i++) {
          double at[61], aa[61];
          for (int j = 0; j < cols; j++) {
            const int64_t *ht = s.sets[0].layers[0].q[SD_Q_SUMSQ_HAT], *ha = s.sets[1].layers[0].q[SD_Q_SUMSQ_HAT];
            at[j] = sqrt(sd_stats_fix_to_double(ht[(t * 2) * cols + j]) +
                         sd_stats_fix_to_double(ht[(t * 2 + 1) * cols + j]));
            aa[j] = sqrt(sd_stats_fix_to_double(ha[(t * 2) * cols + j]) +
                         sd_stats_fix_to_double(ha[(t * 2 + 1) * cols + j]));
            st[j] = fabs((double)w[i * cols + j]) * at[j];
          }
          int n = naive_top_k(st, cols, k, top);
          for (int c = 0; c < n; c++)
            if (st[top[c]] > fabs((double)w[i * cols + top[c]]) * aa[top[c]])
              times[i * cols + top[c]]++;
        }
      int64_t n = 0, mismatch = 0;
      for (int x = 0; x < rows * cols; x++)
        if (times[x] > selects[q] * tau) {
          if (n >= m.layers[0].n_weights || m.layers[0].weights[n] != x)
            mismatch++;
          n++;
        }
      if (mismatch || n != m.layers[0].n_weights) {
        fprintf(stderr, "  wanda random ratio %g select %g: %lld vs %lld weights\n", ratios[r], selects[q],
                (long long)m.layers[0].n_weights, (long long)n);
        bad++;
      }
      free(times), free(st), free(top);
      sd_mask_free(&m);
    }
  CHECK(bad == 0, "wanda differs from the naive loop in %d of 8 cases", bad);
  free(w);
  sd_stats_free(&s);
}

int main(void) {
  sd_stats s;
  make_stats(&s);
  test_wanda(&s);
  test_actdiff(&s);
  test_sensitivity(&s);
  test_errors(&s);
  sd_stats_free(&s);
  test_select_random();
  test_wanda_random();
  return test_finish();
}
