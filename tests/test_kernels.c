/* Optimised kernels against plain reference versions on small random shapes (STYLE #13):
 * im2col convolutions, attention (plain and causal), GroupNorm with SiLU, and the vectorised
 * exp/erf/softmax against libm. */
#include <stdint.h>

#include "core/kernels.h"
#include "core/vmath.h"
#include "test_util.h"

static uint64_t state = 12345;
static float frand(void) {
  state = state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((state >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}
static void fill(float *x, int64_t n) {
  for (int64_t i = 0; i < n; i++) x[i] = frand();
}

static void conv_naive(float *y, const float *x, int h, int w, const sd_conv2d *c, int stride, int pad) {
  int ho = (h + 2 * pad - c->k) / stride + 1, wo = (w + 2 * pad - c->k) / stride + 1;
  for (int co = 0; co < c->cout; co++)
    for (int oy = 0; oy < ho; oy++)
      for (int ox = 0; ox < wo; ox++) {
        double acc = c->b ? c->b[co] : 0;
        for (int ci = 0; ci < c->cin; ci++)
          for (int ky = 0; ky < c->k; ky++)
            for (int kx = 0; kx < c->k; kx++) {
              int iy = oy * stride + ky - pad, ix = ox * stride + kx - pad;
              if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
              acc += (double)c->w[((co * c->cin + ci) * c->k + ky) * c->k + kx] * x[(ci * h + iy) * w + ix];
            }
        y[(co * ho + oy) * wo + ox] = (float)acc;
      }
}

static void test_conv(int cin, int cout, int k, int h, int w, int stride, int pad) {
  sd_arena arena = {0};
  sd_error err;
  float *wt = malloc(sizeof(float) * cout * cin * k * k), *b = malloc(sizeof(float) * cout);
  float *x = malloc(sizeof(float) * cin * h * w);
  int ho = (h + 2 * pad - k) / stride + 1, wo = (w + 2 * pad - k) / stride + 1;
  float *y = malloc(sizeof(float) * cout * ho * wo), *r = malloc(sizeof(float) * cout * ho * wo);
  fill(wt, (int64_t)cout * cin * k * k);
  fill(b, cout);
  fill(x, (int64_t)cin * h * w);
  sd_conv2d c = {.w = wt, .b = b, .cout = cout, .cin = cin, .k = k};
  CHECK(sd_conv2d_forward(y, x, h, w, &c, stride, pad, 0, &arena, &err) == 0, "conv: %s", err.msg);
  conv_naive(r, x, h, w, &c, stride, pad);
  double mx, rel = test_rel_l2(y, r, (long)cout * ho * wo, &mx);
  CHECK(rel < 1e-6, "conv %dx%d k%d s%d: rel %g", cin, cout, k, stride, rel);
  free(wt), free(b), free(x), free(y), free(r);
  sd_arena_free(&arena);
}

static void test_attention(int tq, int tk, int heads, int dh, int causal) {
  int ld = heads * dh;
  sd_arena arena = {0};
  sd_error err;
  float *q = malloc(sizeof(float) * tq * ld), *k = malloc(sizeof(float) * tk * ld), *v = malloc(sizeof(float) * tk * ld);
  float *o = malloc(sizeof(float) * tq * ld), *r = malloc(sizeof(float) * tq * ld), *s = malloc(sizeof(double) * tk);
  fill(q, (int64_t)tq * ld);
  fill(k, (int64_t)tk * ld);
  fill(v, (int64_t)tk * ld);
  float scale = 1.0f / sqrtf((float)dh);
  CHECK(sd_attention(o, ld, q, ld, k, v, ld, tq, tk, heads, dh, scale, causal, &arena, &err) == 0, "attn: %s", err.msg);
  for (int h = 0; h < heads; h++)
    for (int i = 0; i < tq; i++) {
      double mx = -1e300, sum = 0, sc[512];
      int valid = causal ? (i + 1 < tk ? i + 1 : tk) : tk;
      for (int j = 0; j < valid; j++) {
        double d = 0;
        for (int c = 0; c < dh; c++) d += (double)q[i * ld + h * dh + c] * k[j * ld + h * dh + c];
        sc[j] = d * scale;
        if (sc[j] > mx) mx = sc[j];
      }
      for (int j = 0; j < valid; j++) sum += (sc[j] = exp(sc[j] - mx));
      for (int c = 0; c < dh; c++) {
        double acc = 0;
        for (int j = 0; j < valid; j++) acc += sc[j] / sum * v[j * ld + h * dh + c];
        r[i * ld + h * dh + c] = (float)acc;
      }
    }
  double mx, rel = test_rel_l2(o, r, (long)tq * ld, &mx);
  CHECK(rel < 2e-6, "attention tq%d tk%d h%d dh%d causal%d: rel %g", tq, tk, heads, dh, causal, rel);
  free(q), free(k), free(v), free(o), free(r), free(s);
  sd_arena_free(&arena);
}

static void test_group_norm(int c, int hw, int groups, int silu) {
  float *x = malloc(sizeof(float) * c * hw), *y = malloc(sizeof(float) * c * hw), *g = malloc(sizeof(float) * c),
        *b = malloc(sizeof(float) * c), *r = malloc(sizeof(float) * c * hw);
  fill(x, (int64_t)c * hw);
  fill(g, c);
  fill(b, c);
  for (int i = 0; i < c * hw; i++) x[i] = x[i] * 3 + 1; /* non-zero mean */
  sd_norm n = {.gamma = g, .beta = b, .c = c};
  sd_group_norm(y, x, c, hw, groups, 1e-5f, &n, silu);
  int cpg = c / groups;
  for (int gi = 0; gi < groups; gi++) {
    double mean = 0, var = 0;
    for (int i = 0; i < cpg * hw; i++) mean += x[gi * cpg * hw + i];
    mean /= cpg * hw;
    for (int i = 0; i < cpg * hw; i++) var += (x[gi * cpg * hw + i] - mean) * (x[gi * cpg * hw + i] - mean);
    var /= cpg * hw;
    for (int ci = 0; ci < cpg; ci++)
      for (int i = 0; i < hw; i++) {
        int ch = gi * cpg + ci;
        double v = (x[ch * hw + i] - mean) / sqrt(var + 1e-5) * g[ch] + b[ch];
        r[ch * hw + i] = (float)(silu ? v / (1 + exp(-v)) : v);
      }
  }
  double mx, rel = test_rel_l2(y, r, (long)c * hw, &mx);
  CHECK(rel < 1e-6, "group norm c%d hw%d silu%d: rel %g", c, hw, silu, rel);
  free(x), free(y), free(g), free(b), free(r);
}

/* The ResBlock's fused form: group_norm_add(x, e) is bit-identical to adding e per channel (in float,
 * as the separate pass stored it) and then group_norm, in place as the UNet calls it. */
static void test_group_norm_add(int c, int hw, int groups) {
  float *x = malloc(sizeof(float) * c * hw), *sum = malloc(sizeof(float) * c * hw), *e = malloc(sizeof(float) * c),
        *g = malloc(sizeof(float) * c), *b = malloc(sizeof(float) * c);
  fill(x, (int64_t)c * hw);
  fill(e, c);
  fill(g, c);
  fill(b, c);
  for (int ch = 0; ch < c; ch++)
    for (int i = 0; i < hw; i++) sum[ch * hw + i] = x[ch * hw + i] + e[ch];
  sd_norm n = {.gamma = g, .beta = b, .c = c};
  sd_group_norm(sum, sum, c, hw, groups, 1e-5f, &n, 1);
  sd_group_norm_add(x, x, e, c, hw, groups, 1e-5f, &n, 1);
  CHECK(memcmp(x, sum, sizeof(float) * c * hw) == 0, "group norm with channel add c%d hw%d equals add then norm", c, hw);
  free(x), free(sum), free(e), free(g), free(b);
}

int main(void) {
  test_conv(3, 5, 3, 7, 9, 1, 1);
  test_conv(4, 6, 3, 8, 8, 2, 1);
  test_conv(8, 3, 1, 5, 6, 1, 0);
  test_conv(2, 2, 3, 1, 1, 1, 1);
  test_conv(512, 8, 3, 16, 256, 1, 1); /* im2col in bands of 4 rows */
  test_conv(512, 8, 3, 17, 250, 1, 1); /* a last, shorter band */
  test_attention(7, 7, 2, 4, 0);
  test_attention(9, 5, 3, 8, 0);
  test_attention(77, 77, 2, 16, 1);
  test_group_norm(64, 10, 32, 0);
  test_group_norm(96, 7, 32, 1);
  test_group_norm_add(64, 100, 32);
  test_group_norm_add(320, 1024, 32);

  /* Nearest resize: exact 2x equals the 2x kernel; 5 -> 9 follows torch's floor(dst * 5/9). */
  {
    float img[2 * 5 * 5], a[2 * 10 * 10], b[2 * 10 * 10], odd[9 * 9 * 2];
    for (int i = 0; i < 50; i++) img[i] = (float)i;
    sd_upsample_nearest2x(a, img, 2, 5, 5);
    sd_upsample_nearest(b, img, 2, 5, 5, 10, 10);
    CHECK(memcmp(a, b, sizeof a) == 0, "2x resize equals the 2x kernel");
    sd_upsample_nearest(odd, img, 2, 5, 5, 9, 9);
    const int idx[9] = {0, 0, 1, 1, 2, 2, 3, 3, 4};
    int ok = 1;
    for (int ch = 0; ch < 2; ch++)
      for (int y = 0; y < 9; y++)
        for (int x = 0; x < 9; x++) ok &= odd[(ch * 9 + y) * 9 + x] == img[(ch * 5 + idx[y]) * 5 + idx[x]];
    CHECK(ok, "5 -> 9 nearest indices");
  }

  /* Vectorised math against libm over a dense grid. */
  double worst_exp = 0, worst_erf = 0, worst_gelu = 0;
  for (float x = -87.0f; x <= 88.0f; x += 0.0137f) {
    double e = fabs(sd_exp_approx(x) - exp((double)x)) / exp((double)x);
    if (e > worst_exp) worst_exp = e;
  }
  for (float x = -6.0f; x <= 6.0f; x += 0.0007f) {
    double e = fabs(sd_erf_approx(x) - erf((double)x));
    if (e > worst_erf) worst_erf = e;
    double g = fabs(sd_gelu_approx(x) - 0.5 * x * (1 + erf(x / sqrt(2.0))));
    if (g > worst_gelu) worst_gelu = g;
  }
  printf("vmath worst: exp rel %.2e, erf abs %.2e, gelu abs %.2e\n", worst_exp, worst_erf, worst_gelu);
  CHECK(worst_exp < 5e-7, "exp relative error %g", worst_exp);
  CHECK(worst_erf < 6e-7, "erf absolute error %g", worst_erf);
  CHECK(worst_gelu < 1e-6, "gelu absolute error %g", worst_gelu);
  float row[5] = {1, 2, 3, -1e30f, 0.5f};
  sd_softmax_row(row, 5);
  double sum = 0;
  for (int i = 0; i < 5; i++) sum += row[i];
  CHECK_NEAR(sum, 1.0, 1e-6, "softmax sums to 1");
  CHECK_NEAR(row[2], exp(3.0) / (exp(1.0) + exp(2.0) + exp(3.0) + exp(0.5)), 1e-6, "softmax value");
  CHECK(row[3] == 0.0f, "softmax of -1e30 is 0");
  return test_finish();
}
