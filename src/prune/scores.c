/* The three pruning scores of scores.h (formulas there) over in-memory statistics: wanda per weight
 * with a per-row partial selection (three-way quickselect, OpenMP over rows), actdiff and sensitivity
 * per neuron. Not the file formats (stats_io.c, mask_io.c) nor the command line (cmd_mask.c). */
#include "prune/scores.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_GROUP 64 /* sets pooled into one side of a comparison */

/* Sets pooled into one side (target, anchor or adversarial): their fixed-point totals are added. */
typedef struct {
  const char *what; /* "target", "anchor", "adversarial" (for messages) */
  int n;
  int set[MAX_GROUP];
} set_group;

void sd_score_params_default(sd_score_params *p) {
  memset(p, 0, sizeof *p);
  p->ratio = SD_WANDA_DEFAULT_RATIO;
  p->branch = SD_BRANCH_COND;
  p->wanda_ratio = SD_WANDA_DEFAULT_RATIO;
  p->wanda_tau = SD_WANDA_DEFAULT_TAU;
}

/* ---- partial selection ------------------------------------------------------------------------ */

static void swap_d(double *a, double *b) {
  double t = *a;
  *a = *b;
  *b = t;
}

/* Finds the value thr of rank k-1 (0-based, descending) of s[0..n) by three-way quickselect (equal
 * keys, common in rows with zero weights, cost one pass) and the count of values above it. s is
 * permuted. 0 < k <= n. */
static double kth_largest(double *s, int n, int k, int *n_above) {
  int lo = 0, hi = n, target = k - 1;
  for (;;) {
    if (hi - lo <= 16) { /* insertion sort, descending */
      for (int i = lo + 1; i < hi; i++) {
        double x = s[i];
        int j = i - 1;
        while (j >= lo && s[j] < x) {
          s[j + 1] = s[j];
          j--;
        }
        s[j + 1] = x;
      }
      double thr = s[target];
      int above = lo; /* everything left of lo is above every value in [lo, hi) */
      while (above < hi && s[above] > thr)
        above++;
      *n_above = above;
      return thr;
    }
    int mid = lo + (hi - lo) / 2;
    double a = s[lo], b = s[mid], c = s[hi - 1];
    double pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
    int lt = lo, i = lo, gt = hi; /* [lo,lt) > pivot, [lt,i) == pivot, [gt,hi) < pivot */
    while (i < gt) {
      double x = s[i];
      if (x > pivot)
        swap_d(&s[lt++], &s[i++]);
      else if (x < pivot)
        swap_d(&s[i], &s[--gt]);
      else
        i++;
    }
    if (target < lt)
      hi = lt;
    else if (target < gt) {
      *n_above = lt;
      return pivot;
    } else
      lo = gt;
  }
}

/* A pivot from a strided sample of SAMPLE values, ranked a few standard deviations above where the
 * k-th largest is expected, so that the values >= pivot (the candidates) hold the top k with high
 * probability while being few (about 3k + 30 of n for the 1% of wanda). Returns 0 when no useful pivot
 * exists (k too close to n): then every value is a candidate. */
#define SAMPLE 128
static int sample_pivot(const double *v, int n, int k, double *pivot) {
  if (n < 4 * SAMPLE)
    return 0;
  double expect = (double)k * SAMPLE / n;
  int rank = (int)(expect + 2 * sqrt(expect) + 4); /* 0-based rank in the sample, descending */
  if (rank >= SAMPLE / 2)
    return 0;
  double sample[SAMPLE];
  for (int i = 0; i < SAMPLE; i++)
    sample[i] = v[(int64_t)i * n / SAMPLE];
  int above;
  *pivot = kth_largest(sample, SAMPLE, rank + 1, &above);
  return 1;
}

int sd_select_top_k(const double *v, int n, int k, double *scratch, int32_t *out) {
  if (k <= 0 || n <= 0)
    return 0;
  if (k >= n) {
    for (int j = 0; j < n; j++)
      out[j] = j;
    return n;
  }
  /* The k-th largest thr is found among the candidates v >= pivot when there are at least k of them
   * (then thr >= pivot); otherwise (rare) among all values. Either way every value above thr is a
   * candidate, so the count above thr is exact. */
  int n_cand = n;
  double pivot;
  if (sample_pivot(v, n, k, &pivot)) {
    n_cand = 0;
    for (int j = 0; j < n; j++) { /* branch-free filter */
      scratch[n_cand] = v[j];
      n_cand += v[j] >= pivot;
    }
    if (n_cand < k)
      n_cand = n;
  }
  if (n_cand == n)
    memcpy(scratch, v, sizeof(double) * (size_t)n);
  int above;
  double thr = kth_largest(scratch, n_cand, k, &above);
  int ties = k - above, m = 0; /* values equal to thr that still fit: the lowest indices */
  for (int j = 0; j < n; j++) {
    if (v[j] > thr)
      out[m++] = j;
    else if (v[j] == thr && ties > 0) {
      out[m++] = j;
      ties--;
    }
  }
  return m;
}

/* ---- sets ------------------------------------------------------------------------------------- */

static void list_sets(const sd_stats *s, char *buf, size_t size) {
  size_t n = 0;
  buf[0] = 0;
  for (int k = 0; k < s->n_sets && n < size; k++)
    n += (size_t)snprintf(buf + n, size - n, "%s%s (%s)", k ? ", " : "", s->sets[k].name, s->sets[k].role);
  if (!s->n_sets)
    snprintf(buf, size, "none");
}

static int check_totals(const sd_stats *s, int k, sd_error *err) {
  if (!s->sets[k].layers)
    return sd_fail(err, "set '%s' has no totals in memory (statistics read without totals)", s->sets[k].name);
  return 0;
}

static int group_by_role(const sd_stats *s, const char *role, set_group *g, sd_error *err) {
  g->what = role;
  g->n = 0;
  for (int k = 0; k < s->n_sets; k++) {
    if (strcmp(s->sets[k].role, role) != 0)
      continue;
    if (g->n == MAX_GROUP)
      return sd_fail(err, "more than %d sets with role '%s'", MAX_GROUP, role);
    if (check_totals(s, k, err) != 0)
      return -1;
    g->set[g->n++] = k;
  }
  if (!g->n) {
    char sets[600];
    list_sets(s, sets, sizeof sets);
    return sd_fail(err, "no set with role '%s' in the statistics (sets: %s)", role, sets);
  }
  return 0;
}

static int group_by_names(const sd_stats *s, const char *const *names, int n, set_group *g, sd_error *err) {
  g->what = "adversarial";
  g->n = 0;
  if (n > MAX_GROUP)
    return sd_fail(err, "more than %d adversarial sets", MAX_GROUP);
  for (int a = 0; a < n; a++) {
    int found = -1;
    for (int k = 0; k < s->n_sets; k++)
      if (!strcmp(s->sets[k].name, names[a]))
        found = k;
    if (found < 0) {
      char sets[600];
      list_sets(s, sets, sizeof sets);
      return sd_fail(err, "no set named '%s' in the statistics (sets: %s)", names[a], sets);
    }
    for (int b = 0; b < g->n; b++)
      if (g->set[b] == found)
        return sd_fail(err, "adversarial set '%s' given twice", names[a]);
    if (check_totals(s, found, err) != 0)
      return -1;
    g->set[g->n++] = found;
  }
  return 0;
}

static json_t *group_names_json(const sd_stats *s, const set_group *g) {
  json_t *a = json_array();
  for (int k = 0; k < g->n; k++)
    json_array_append_new(a, json_string(s->sets[g->set[k]].name));
  return a;
}

static void group_names(const sd_stats *s, const set_group *g, char *buf, size_t size) {
  size_t n = 0;
  buf[0] = 0;
  for (int k = 0; k < g->n && n < size; k++)
    n += (size_t)snprintf(buf + n, size - n, "%s%s", k ? "," : "", s->sets[g->set[k]].name);
}

/* ---- parameters ------------------------------------------------------------------------------- */

static int resolve_tau(const sd_stats *s, int tau, int default_tau, const char *opt, int *out, sd_error *err) {
  if (tau < 0)
    return sd_fail(err, "%s must be at least 1, got %d", opt, tau);
  if (tau == 0)
    tau = default_tau > 0 ? default_tau : s->n_steps;
  if (tau > s->n_steps)
    return sd_fail(err, "%s %d is more than the %d steps recorded in the statistics", opt, tau, s->n_steps);
  if (tau > 65535)
    return sd_fail(err, "%s %d is more than 65535", opt, tau);
  *out = tau;
  return 0;
}

static int check_ratio(double r, const char *opt, sd_error *err) {
  if (!(r > 0 && r <= 1))
    return sd_fail(err, "%s must be in (0, 1], got %g", opt, r);
  return 0;
}

static int check_select_ratio(double r, const char *opt, sd_error *err) {
  if (!(r >= 0 && r < 1))
    return sd_fail(err, "%s must be in [0, 1), got %g", opt, r);
  return 0;
}

static const char *branch_name(sd_score_branch b) {
  return b == SD_BRANCH_UNCOND ? "uncond" : b == SD_BRANCH_COND ? "cond" : "both";
}

/* ---- wanda ------------------------------------------------------------------------------------ */

/* a^P_t[j] = sqrt(Σ_{sets of P} Σ_b sumsq_hat[t,b,j]) for t < tau: out [tau, width]. */
static void wanda_activation(const sd_stats *s, int l, const set_group *g, int tau, double *out) {
  int width = s->layers[l].width;
  for (int t = 0; t < tau; t++)
    for (int j = 0; j < width; j++) {
      double sum = 0;
      for (int k = 0; k < g->n; k++) {
        const int64_t *q = s->sets[g->set[k]].layers[l].q[SD_Q_SUMSQ_HAT];
        for (int b = 0; b < SD_STATS_BRANCHES; b++)
          sum += sd_stats_fix_to_double(q[((int64_t)t * SD_STATS_BRANCHES + b) * width + j]);
      }
      out[(int64_t)t * width + j] = sqrt(sum);
    }
}

/* Selected weights of one layer, as sorted flat indices into ml->weights. */
static int wanda_layer(const sd_stats *s, int l, const sd_ff_weight *w2, const set_group *target,
                       const set_group *anchor, double ratio, int tau, double select_ratio, sd_mask_layer *ml,
                       sd_error *err) {
  const char *name = s->layers[l].name;
  int rows = w2->rows, cols = s->layers[l].width;
  const float *W = w2->w;
  if (!W || rows < 1)
    return sd_fail(err, "%s: no ff.net.2 weight given", name);
  int64_t size = (int64_t)rows * cols, bad = -1;
#pragma omp parallel for schedule(static) reduction(max : bad)
  for (int64_t x = 0; x < size; x++)
    if (!isfinite(W[x]))
      bad = x;
  if (bad >= 0)
    return sd_fail(err, "%s.weight: entry [%lld, %lld] is not finite", name, (long long)(bad / cols),
                   (long long)(bad % cols));
  int k = (int)floor(ratio * (double)cols); /* as Python's int(ratio * in_features) */
  double *a_t = malloc(sizeof(double) * (size_t)tau * cols), *a_a = malloc(sizeof(double) * (size_t)tau * cols);
  uint16_t *times = calloc((size_t)size, sizeof *times); /* steps in which (i,j) was selected */
  int failed = !a_t || !a_a || !times;
  if (!failed) {
    wanda_activation(s, l, target, tau, a_t);
    wanda_activation(s, l, anchor, tau, a_a);
#pragma omp parallel reduction(| : failed)
    {
      double *score = malloc(sizeof(double) * (size_t)cols), *scratch = malloc(sizeof(double) * (size_t)cols);
      int32_t *top = malloc(sizeof(int32_t) * (size_t)(k ? k : 1));
      if (!score || !scratch || !top)
        failed = 1;
#pragma omp for schedule(static)
      for (int i = 0; i < rows; i++) {
        if (failed)
          continue;
        const float *wr = W + (int64_t)i * cols;
        uint16_t *tr = times + (int64_t)i * cols;
        for (int t = 0; t < tau; t++) {
          const double *at = a_t + (int64_t)t * cols, *aa = a_a + (int64_t)t * cols;
          for (int j = 0; j < cols; j++)
            score[j] = fabs((double)wr[j]) * at[j];
          int m = sd_select_top_k(score, cols, k, scratch, top);
          for (int c = 0; c < m; c++) {
            int j = top[c];
            if (score[j] > fabs((double)wr[j]) * aa[j])
              tr[j]++;
          }
        }
      }
      free(score);
      free(scratch);
      free(top);
    }
  }
  free(a_t);
  free(a_a);
  if (failed) {
    free(times);
    return sd_fail(err, "%s: out of memory for the wanda scores", name);
  }
  double need = select_ratio * (double)tau; /* selected in more than this many steps */
  int64_t n = 0;
  for (int64_t x = 0; x < size; x++)
    n += (double)times[x] > need;
  ml->weights = malloc(sizeof(int64_t) * (size_t)(n ? n : 1));
  if (!ml->weights) {
    free(times);
    return sd_fail(err, "%s: out of memory for %lld selected weights", name, (long long)n);
  }
  ml->n_weights = 0;
  for (int64_t x = 0; x < size; x++)
    if ((double)times[x] > need)
      ml->weights[ml->n_weights++] = x;
  free(times);
  return 0;
}

/* ---- neuron scores ---------------------------------------------------------------------------- */

/* μ_P[j] and σ²_P[j] pooled over the sets of P, steps t < tau and the chosen branches. */
static int neuron_moments(const sd_stats *s, int l, const set_group *g, int tau, sd_score_branch branch, double *mean,
                          double *var, sd_error *err) {
  int width = s->layers[l].width, b0 = branch == SD_BRANCH_COND ? 1 : 0, b1 = branch == SD_BRANCH_UNCOND ? 0 : 1;
  double tokens = 0;
  for (int k = 0; k < g->n; k++)
    for (int t = 0; t < tau; t++)
      for (int b = b0; b <= b1; b++)
        tokens += (double)s->sets[g->set[k]].layers[l].count[t * SD_STATS_BRANCHES + b];
  if (tokens <= 0) {
    char names[300];
    group_names(s, g, names, sizeof names);
    return sd_fail(err, "%s: %s set %s has no tokens in steps 0..%d, branch %s (no items done?)", s->layers[l].name,
                   g->what, names, tau - 1, branch_name(branch));
  }
  for (int j = 0; j < width; j++) {
    double sum = 0, sumsq = 0;
    for (int k = 0; k < g->n; k++) {
      const sd_stats_acc *a = &s->sets[g->set[k]].layers[l];
      for (int t = 0; t < tau; t++)
        for (int b = b0; b <= b1; b++) {
          int64_t x = ((int64_t)t * SD_STATS_BRANCHES + b) * width + j;
          sum += sd_stats_fix_to_double(a->q[SD_Q_SUM][x]);
          sumsq += sd_stats_fix_to_double(a->q[SD_Q_SUMSQ][x]);
        }
    }
    mean[j] = sum / tokens;
    double v = sumsq / tokens - mean[j] * mean[j];
    var[j] = v > 0 ? v : 0;
  }
  return 0;
}

/* d[j] = (μ_hi − μ_lo) / sqrt((σ²_hi + σ²_lo)/2 + 1e-12) for layer l. */
static int neuron_difference(const sd_stats *s, int l, const set_group *hi, const set_group *lo, int tau,
                             sd_score_branch branch, double *d, sd_error *err) {
  int width = s->layers[l].width;
  double *buf = malloc(sizeof(double) * 4 * (size_t)width);
  if (!buf)
    return sd_fail(err, "out of memory");
  double *mh = buf, *vh = buf + width, *ml = buf + 2 * width, *vl = buf + 3 * width;
  int rc = neuron_moments(s, l, hi, tau, branch, mh, vh, err);
  if (!rc)
    rc = neuron_moments(s, l, lo, tau, branch, ml, vl, err);
  if (!rc)
    for (int j = 0; j < width; j++)
      d[j] = (mh[j] - ml[j]) / sqrt((vh[j] + vl[j]) / 2 + 1e-12);
  free(buf);
  return rc;
}

/* Selects the largest positive d per layer or over all ff layers into the mask layers' neurons.
 * ff[] maps mask layer -> stats layer. */
static int neuron_selection(const sd_stats *s, const int *ff, int n_ff, const set_group *hi, const set_group *lo,
                            double ratio, int tau, sd_score_branch branch, int scope_global, sd_mask *m,
                            sd_error *err) {
  int64_t total = 0;
  int64_t *offset = malloc(sizeof(int64_t) * (size_t)(n_ff + 1));
  if (!offset)
    return sd_fail(err, "out of memory");
  for (int f = 0; f < n_ff; f++) {
    offset[f] = total;
    total += s->layers[ff[f]].width;
  }
  offset[n_ff] = total;
  if (total > INT32_MAX) {
    free(offset);
    return sd_fail(err, "%lld neurons are more than this selection handles", (long long)total);
  }
  double *d = malloc(sizeof(double) * (size_t)(total ? total : 1)),
         *scratch = malloc(sizeof(double) * (size_t)(total ? total : 1));
  int32_t *top = malloc(sizeof(int32_t) * (size_t)(total ? total : 1));
  int rc = (!d || !scratch || !top) ? sd_fail(err, "out of memory") : 0;
  for (int f = 0; f < n_ff && !rc; f++) {
    rc = neuron_difference(s, ff[f], hi, lo, tau, branch, d + offset[f], err);
    for (int64_t x = offset[f]; x < offset[f + 1] && !rc; x++)
      if (!(d[x] > 0))
        d[x] = -INFINITY; /* only positive differences are pruned */
  }
  for (int pass = 0; pass < (scope_global ? 1 : n_ff) && !rc; pass++) {
    int64_t from = scope_global ? 0 : offset[pass], n = scope_global ? total : offset[pass + 1] - offset[pass];
    int k = (int)floor(ratio * (double)n);
    int got = sd_select_top_k(d + from, (int)n, k, scratch, top);
    for (int c = 0; c < got; c++) {
      int64_t x = from + top[c];
      if (d[x] == -INFINITY)
        continue;
      int f = 0;
      while (offset[f + 1] <= x)
        f++;
      sd_mask_layer *ml = &m->layers[f];
      if (!ml->neurons && !(ml->neurons = malloc(sizeof(int32_t) * (size_t)s->layers[ff[f]].width))) {
        rc = sd_fail(err, "out of memory");
        break;
      }
      ml->neurons[ml->n_neurons++] = (int32_t)(x - offset[f]); /* increasing: top is increasing */
    }
  }
  free(offset);
  free(d);
  free(scratch);
  free(top);
  return rc;
}

/* ---- the mask --------------------------------------------------------------------------------- */

/* What a method needs, resolved and checked before any work. */
typedef struct {
  int is_wanda, is_actdiff, is_sens, use_wanda, use_neurons;
  double wanda_ratio, wanda_select;
  int wanda_tau, neuron_tau;
  set_group target, anchor, adversarial;
} score_plan;

static int make_plan(const char *method, const sd_stats *s, const sd_score_params *p, score_plan *q, sd_error *err) {
  memset(q, 0, sizeof *q);
  q->is_wanda = !strcmp(method, "wanda");
  q->is_actdiff = !strcmp(method, "actdiff");
  q->is_sens = !strcmp(method, "sensitivity");
  if (!q->is_wanda && !q->is_actdiff && !q->is_sens)
    return sd_fail(err, "unknown method '%s' (wanda, actdiff, sensitivity)", method);
  q->use_wanda = q->is_wanda || (q->is_sens && p->with_wanda);
  q->use_neurons = !q->is_wanda;
  q->wanda_ratio = q->is_wanda ? p->ratio : p->wanda_ratio;
  q->wanda_select = q->is_wanda ? p->select_ratio : p->wanda_select_ratio;
  if (check_ratio(p->ratio, "--ratio", err) != 0)
    return -1;
  if (q->is_wanda && (resolve_tau(s, p->tau, SD_WANDA_DEFAULT_TAU, "--tau", &q->wanda_tau, err) != 0 ||
                      check_select_ratio(p->select_ratio, "--select-ratio", err) != 0))
    return -1;
  if (q->use_neurons && resolve_tau(s, p->tau, 0, "--tau", &q->neuron_tau, err) != 0)
    return -1;
  if (q->use_neurons && (p->branch < SD_BRANCH_UNCOND || p->branch > SD_BRANCH_BOTH))
    return sd_fail(err, "unknown branch %d", (int)p->branch);
  if (q->is_sens && p->with_wanda &&
      (check_ratio(p->wanda_ratio, "--wanda-ratio", err) != 0 ||
       resolve_tau(s, p->wanda_tau, SD_WANDA_DEFAULT_TAU, "--wanda-tau", &q->wanda_tau, err) != 0 ||
       check_select_ratio(p->wanda_select_ratio, "--wanda-select-ratio", err) != 0))
    return -1;
  if (group_by_role(s, "anchor", &q->anchor, err) != 0)
    return -1;
  if ((q->is_wanda || q->is_actdiff || q->use_wanda) && group_by_role(s, "target", &q->target, err) != 0) {
    if (q->is_sens)
      sd_fail_prefix(err, "--with-wanda");
    return -1;
  }
  if (q->is_sens) {
    int rc = p->n_adversarial ? group_by_names(s, p->adversarial, p->n_adversarial, &q->adversarial, err)
                              : group_by_role(s, "adversarial", &q->adversarial, err);
    if (rc != 0)
      return -1;
  }
  for (int l = 0; l < s->n_layers; l++)
    if (s->layers[l].kind == SD_HOOK_FF_NEURONS)
      return 0;
  return sd_fail(err, "the statistics have no ff.net.2 layers (hooks '%s')",
                 s->settings.hooks ? s->settings.hooks : "");
}

int sd_score_check(const char *method, const sd_stats *s, const sd_score_params *p, sd_error *err) {
  score_plan q;
  return make_plan(method, s, p, &q, err);
}

int sd_score_mask(const char *method, const sd_stats *s, const sd_ff_weight *w2, const sd_score_params *p, sd_mask *m,
                  sd_error *err) {
  memset(m, 0, sizeof *m);
  score_plan q;
  if (make_plan(method, s, p, &q, err) != 0)
    return -1;
  int is_wanda = q.is_wanda, is_actdiff = q.is_actdiff, is_sens = q.is_sens, use_wanda = q.use_wanda,
      use_neurons = q.use_neurons, wanda_tau = q.wanda_tau, neuron_tau = q.neuron_tau;
  const set_group *target = &q.target, *anchor = &q.anchor, *adversarial = &q.adversarial;

  int n_ff = 0;
  int *ff = malloc(sizeof(int) * (size_t)(s->n_layers + 1));
  if (!ff)
    return sd_fail(err, "out of memory");
  for (int l = 0; l < s->n_layers; l++)
    if (s->layers[l].kind == SD_HOOK_FF_NEURONS)
      ff[n_ff++] = l;
  if (!(m->layers = sd_calloc((size_t)n_ff, sizeof *m->layers, err))) {
    free(ff);
    return -1;
  }
  m->n_layers = n_ff;
  int rc = 0;
  for (int f = 0; f < n_ff && !rc; f++) {
    const sd_stats_layer *sl = &s->layers[ff[f]];
    sd_mask_layer *ml = &m->layers[f];
    size_t len = strlen(sl->name);
    ml->layer = sd_strdup(sl->name);
    ml->weight = malloc(len + 8);
    if (!ml->layer || !ml->weight) {
      rc = sd_fail(err, "out of memory");
      break;
    }
    memcpy(ml->weight, sl->name, len);
    memcpy(ml->weight + len, ".weight", 8);
    ml->cols = sl->width;
    ml->rows = w2 ? w2[ff[f]].rows : 0;
    if (!rc && ml->rows < 1)
      rc = sd_fail(err, "%s: the rows of its weight are not known", sl->name);
    if (!rc && use_wanda)
      rc = wanda_layer(s, ff[f], &w2[ff[f]], target, anchor, q.wanda_ratio, wanda_tau, q.wanda_select, ml, err);
  }
  if (!rc && use_neurons)
    rc = neuron_selection(s, ff, n_ff, is_sens ? adversarial : target, anchor, p->ratio, neuron_tau, p->branch,
                          p->scope_global, m, err);
  free(ff);

  if (!rc) {
    json_t *j = json_object();
    json_object_set_new(j, "ratio", json_real(p->ratio));
    if (is_wanda) {
      json_object_set_new(j, "tau", json_integer(wanda_tau));
      json_object_set_new(j, "select_ratio", json_real(p->select_ratio));
    } else {
      json_object_set_new(j, "tau", json_integer(neuron_tau));
      json_object_set_new(j, "branch", json_string(branch_name(p->branch)));
      json_object_set_new(j, "scope", json_string(p->scope_global ? "global" : "layer"));
    }
    if (is_sens) {
      json_object_set_new(j, "adversarial", group_names_json(s, adversarial));
      json_object_set_new(j, "with_wanda", json_boolean(p->with_wanda));
      if (p->with_wanda) {
        json_object_set_new(j, "wanda_ratio", json_real(p->wanda_ratio));
        json_object_set_new(j, "wanda_tau", json_integer(wanda_tau));
        json_object_set_new(j, "wanda_select_ratio", json_real(p->wanda_select_ratio));
      }
    }
    if (use_wanda || is_actdiff)
      json_object_set_new(j, "target", group_names_json(s, target));
    json_object_set_new(j, "anchor", group_names_json(s, anchor));
    m->params_json = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15));
    json_decref(j);
    m->method = sd_strdup(method);
    m->model_hash = sd_strdup(s->settings.model_hash ? s->settings.model_hash : "");
    if (!m->params_json || !m->method || !m->model_hash)
      rc = sd_fail(err, "out of memory");
  }
  if (rc)
    sd_mask_free(m);
  return rc;
}
