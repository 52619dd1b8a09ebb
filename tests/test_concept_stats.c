/* Concept-neuron statistics on the tiny reference model:
 * - one UNet evaluation's statistics (count, sum, sumsq, sumabs, sumsq_hat, max per neuron) equal the
 *   same quantities computed in double straight from the upstream `unet.case0.ff.*` activations;
 * - the branch mapping: with CFG the batch's first half is the unconditional branch;
 * - set totals are bit-identical for items added in two different orders (exact fixed point);
 * - NaN activations are refused with a message naming the layer. */
#include <math.h>

#include "model/model.h"
#include "model/parts.h"
#include "stats/concept_stats.h"
#include "test_util.h"

static sd_tensor *need(sd_tensor_store *s, const char *name) {
  sd_tensor *t = sd_store_find(s, name);
  if (!t) {
    fprintf(stderr, "reference tensor %s missing\n", name);
    exit(1);
  }
  return t;
}

/* Expected quantities of one [tokens, width] activation block, in double. */
static void expected(const float *x, int64_t T, int W, double *sum, double *sumsq, double *sumabs, double *hat,
                     double *mx) {
  for (int j = 0; j < W; j++) sum[j] = sumsq[j] = sumabs[j] = hat[j] = 0, mx[j] = -INFINITY;
  for (int64_t t = 0; t < T; t++) {
    double n2 = 0;
    for (int j = 0; j < W; j++) n2 += (double)x[t * W + j] * x[t * W + j];
    double nrm = sqrt(n2) > 1e-12 ? sqrt(n2) : 1e-12;
    for (int j = 0; j < W; j++) {
      double v = x[t * W + j];
      sum[j] += v;
      sumsq[j] += v * v;
      sumabs[j] += fabs(v);
      hat[j] += (v / nrm) * (v / nrm);
      if (v > mx[j]) mx[j] = v;
    }
  }
}

static double rel_l2_fix(const int64_t *got, const double *want, int n) {
  double num = 0, den = 0;
  for (int j = 0; j < n; j++) {
    double d = sd_stats_fix_to_double(got[j]) - want[j];
    num += d * d;
    den += want[j] * want[j];
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static sd_unet make_unet(sd_model *m, sd_stats_collector *c) {
  sd_unet u;
  sd_error err;
  sd_unet_hooks h = sd_stats_collector_hooks(c);
  if (sd_parts_unet(m, &h, &u, &err) != 0 || sd_stats_collector_bind(c, &u, &err) != 0) {
    fprintf(stderr, "%s\n", err.msg);
    exit(1);
  }
  return u;
}

int main(void) {
  const char *ref = test_reference_dir();
  char path[512], vpath[512];
  snprintf(path, sizeof path, "%s/tiny-sd1/model.safetensors", ref);
  snprintf(vpath, sizeof vpath, "%s/tiny-sd1/vectors.safetensors", ref);
  sd_model_options o = {.path = path};
  sd_model *m;
  sd_tensor_store *vec;
  sd_error err;
  if (sd_model_open(&o, &m, &err) != 0 || sd_store_open(vpath, &vec, &err) != 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  sd_tensor *x = need(vec, "unet.case0.x"), *t = need(vec, "unet.case0.t"), *cx = need(vec, "unet.case0.context");
  int B = (int)x->shape[0], H = (int)x->shape[2], W = (int)x->shape[3];
  float tf[8];
  const int32_t *ti = t->data;
  for (int b = 0; b < B; b++) tf[b] = t->dtype == SD_DTYPE_I32 ? (float)ti[b] : sd_tensor_f32(t, &err)[b];

  /* 1. one evaluation, no CFG: everything lands in the cond branch */
  sd_stats_collector *c;
  CHECK(sd_stats_collector_new("ff", 1, 1, &c, &err) == 0, "%s", err.msg);
  sd_unet u = make_unet(m, c);
  int n_layers = 0;
  const sd_stats_layer *layers = sd_stats_collector_layers(c, &n_layers);
  CHECK(n_layers == u.n_tblocks, "layers %d, transformer blocks %d", n_layers, u.n_tblocks);
  CHECK(!strcmp(layers[0].name, "input_blocks.1.1.transformer_blocks.0.ff.net.2"), "first layer %s", layers[0].name);
  CHECK(!strcmp(layers[0].diffusers, "down_blocks.0.attentions.0.transformer_blocks.0.ff.net.2"), "diffusers %s",
        layers[0].diffusers);
  CHECK(!strcmp(layers[n_layers - 1].diffusers, "up_blocks.1.attentions.1.transformer_blocks.0.ff.net.2"),
        "last diffusers %s", layers[n_layers - 1].diffusers);
  float *eps = malloc(sizeof(float) * (size_t)(B * 4 * H * W));
  sd_stats_collector_begin_item(c, 0, B);
  CHECK(sd_unet_forward(&u, sd_tensor_f32(x, &err), B, H, W, tf, sd_tensor_f32(cx, &err), 77, eps, &err) == 0, "%s",
        err.msg);
  CHECK(sd_stats_collector_end_step(c, &err) == 1, "end_step: %s", err.msg);
  const sd_stats_acc *acc = sd_stats_collector_item(c);
  double worst = 0;
  for (int l = 0; l < n_layers; l++) {
    char name[300];
    snprintf(name, sizeof name, "unet.case0.ff.%s", layers[l].block);
    sd_tensor *ff = need(vec, name);
    const float *act = sd_tensor_f32(ff, &err);
    int64_t T = ff->shape[1];
    int Wd = (int)ff->shape[2];
    CHECK(Wd == layers[l].width, "%s width %d vs %d", name, Wd, layers[l].width);
    double *e[5];
    for (int k = 0; k < 5; k++) e[k] = calloc((size_t)Wd, sizeof(double));
    double *tot[4];
    for (int k = 0; k < 4; k++) tot[k] = calloc((size_t)Wd, sizeof(double));
    double *mx = calloc((size_t)Wd, sizeof(double));
    for (int j = 0; j < Wd; j++) mx[j] = -INFINITY;
    for (int b = 0; b < B; b++) { /* all batch entries are "cond" without CFG */
      expected(act + (int64_t)b * T * Wd, T, Wd, e[0], e[1], e[2], e[3], e[4]);
      for (int j = 0; j < Wd; j++) {
        for (int k = 0; k < 4; k++) tot[k][j] += e[k][j];
        if (e[4][j] > mx[j]) mx[j] = e[4][j];
      }
    }
    CHECK(acc[l].count[1] == B * T && acc[l].count[0] == 0, "%s count %lld/%lld", name, (long long)acc[l].count[0],
          (long long)acc[l].count[1]);
    for (int q = 0; q < SD_STATS_NQ; q++) {
      double r = rel_l2_fix(acc[l].q[q] + Wd, tot[q], Wd); /* step 0, branch 1 */
      if (r > worst) worst = r;
      CHECK(r <= 1e-5, "%s %s rel-L2 %.3g (tolerance 1e-5)", name, sd_stats_quantity_names[q], r);
    }
    double mdiff = 0, mscale = 0;
    for (int j = 0; j < Wd; j++) mdiff = fmax(mdiff, fabs(acc[l].max[Wd + j] - mx[j])), mscale = fmax(mscale, fabs(mx[j]));
    CHECK(mdiff <= 1e-5 * mscale, "%s max differs by %g (scale %g)", name, mdiff, mscale);
    const float *mean = sd_stats_collector_item_mean(c, l);
    double md = 0;
    for (int j = 0; j < Wd; j++) md = fmax(md, fabs(mean[j] - tot[0][j] / (double)(B * T)));
    CHECK(md <= 1e-5, "%s per-item mean off by %g", name, md);
    for (int k = 0; k < 5; k++) free(e[k]);
    for (int k = 0; k < 4; k++) free(tot[k]);
    free(mx);
  }
  printf("statistics vs reference activations: worst rel-L2 %.3g over %d layers (tolerance 1e-5)\n", worst, n_layers);
  sd_unet_free(&u);
  sd_stats_collector_free(c);

  /* 2. CFG branches and order independence: items A, B as [uncond, cond] batches, added A+B and B+A */
  CHECK(sd_stats_collector_new("ff,attn2", 2, 0, &c, &err) == 0, "%s", err.msg);
  u = make_unet(m, c);
  layers = sd_stats_collector_layers(c, &n_layers);
  CHECK(n_layers == 2 * u.n_tblocks, "ff,attn2 layers %d", n_layers);
  CHECK(!strcmp(layers[1].name, "input_blocks.1.1.transformer_blocks.0.attn2"), "attn2 layer %s", layers[1].name);
  enum { HH = 8, WW = 8 };
  int64_t n = 2 * 4 * HH * WW;
  float *xi = malloc(sizeof(float) * (size_t)n), *ctx = malloc(sizeof(float) * 2 * 77 * 32);
  float *ep = malloc(sizeof(float) * (size_t)n);
  sd_stats_acc item[2][64], tot_ab[64], tot_ba[64];
  for (int it = 0; it < 2; it++) {
    sd_stats_collector_begin_item(c, 1, 1);
    for (int step = 0; step < 2; step++) {
      for (int64_t i = 0; i < n; i++) xi[i] = (float)sin(0.37 * (double)i + it + 3 * step);
      for (int i = 0; i < 2 * 77 * 32; i++) ctx[i] = (float)cos(0.11 * i + it) * (i >= 77 * 32 ? 1.0f : 0.3f);
      float ts[2] = {900.0f - 400 * step, 900.0f - 400 * step};
      CHECK(sd_unet_forward(&u, xi, 2, HH, WW, ts, ctx, 77, ep, &err) == 0, "%s", err.msg);
      CHECK(sd_stats_collector_end_step(c, &err) == step, "end_step %d: %s", step, err.msg);
    }
    const sd_stats_acc *a = sd_stats_collector_item(c);
    for (int l = 0; l < n_layers; l++) {
      sd_stats_acc_alloc(&item[it][l], 2, layers[l].width, &err);
      sd_stats_acc_add(&item[it][l], &a[l], 2, layers[l].width);
    }
  }
  int same = 1, branches_differ = 0;
  for (int l = 0; l < n_layers; l++) {
    int w = layers[l].width;
    sd_stats_acc_alloc(&tot_ab[l], 2, w, &err);
    sd_stats_acc_alloc(&tot_ba[l], 2, w, &err);
    sd_stats_acc_add(&tot_ab[l], &item[0][l], 2, w);
    sd_stats_acc_add(&tot_ab[l], &item[1][l], 2, w);
    sd_stats_acc_add(&tot_ba[l], &item[1][l], 2, w);
    sd_stats_acc_add(&tot_ba[l], &item[0][l], 2, w);
    size_t cells = 2 * 2 * (size_t)w;
    for (int q = 0; q < SD_STATS_NQ; q++) same &= !memcmp(tot_ab[l].q[q], tot_ba[l].q[q], cells * 8);
    same &= !memcmp(tot_ab[l].max, tot_ba[l].max, cells * 4) && !memcmp(tot_ab[l].count, tot_ba[l].count, 4 * 8);
    CHECK(item[0][l].count[0] == item[0][l].count[1] && item[0][l].count[0] > 0, "%s: uncond and cond token counts "
          "differ", layers[l].name);
    for (int j = 0; j < w; j++) branches_differ |= item[0][l].q[SD_Q_SUM][j] != item[0][l].q[SD_Q_SUM][w + j];
    for (int it = 0; it < 2; it++) sd_stats_acc_free(&item[it][l]);
    sd_stats_acc_free(&tot_ab[l]);
    sd_stats_acc_free(&tot_ba[l]);
  }
  CHECK(same, "totals of A+B and B+A are not bit-identical");
  CHECK(branches_differ, "the uncond and cond branches hold the same sums (branch mapping broken?)");

  /* 3. a NaN activation is refused, naming the layer */
  sd_stats_collector_begin_item(c, 1, 1);
  for (int64_t i = 0; i < n; i++) xi[i] = NAN;
  float ts[2] = {500, 500};
  sd_unet_forward(&u, xi, 2, HH, WW, ts, ctx, 77, ep, &err);
  CHECK(sd_stats_collector_end_step(c, &err) == -1 && strstr(err.msg, "not finite") && strstr(err.msg, "input_blocks"),
        "NaN activations: '%s'", err.msg);
  sd_unet_free(&u);
  sd_stats_collector_free(c);
  free(xi);
  free(ctx);
  free(ep);
  free(eps);
  sd_store_close(vec);
  sd_model_close(m);
  return test_finish();
}
