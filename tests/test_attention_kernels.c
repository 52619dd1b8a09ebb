/* The AVX-512 attention kernels (core/attention_kernels.c) and the sgemm path of sd_attention against
 * a plain double-precision attention on many shapes: head sizes that fill whole, partial and several
 * zmm columns, sequence lengths that are not multiples of the tiles, row strides wider than the heads,
 * causal masks. Skips the AVX-512 part (not the test) on CPUs without AVX-512F. */
#include <stdint.h>
#include <stdlib.h>

#include "core/attention_kernels.h"
#include "core/kernels.h"
#include "test_util.h"

static uint64_t state = 271828;
static float frand(void) {
  state = state * 6364136223846793005ull + 1442695040888963407ull;
  return (float)((state >> 40) & 0xffffff) / 16777216.0f * 2.0f - 1.0f;
}

/* out[tq, ldo] in double: softmax(q·kᵀ·scale [+ causal mask]) · v per head. */
static void attention_reference(double *out, int ldo, const float *q, int ldq, const float *k, const float *v, int ldk,
                                int tq, int tk, int heads, int dh, float scale, int causal) {
  double *sc = malloc(sizeof(double) * tk);
  for (int h = 0; h < heads; h++)
    for (int i = 0; i < tq; i++) {
      int valid = causal ? (i + 1 < tk ? i + 1 : tk) : tk;
      double mx = -1e300, sum = 0;
      for (int j = 0; j < valid; j++) {
        double d = 0;
        for (int c = 0; c < dh; c++)
          d += (double)q[(int64_t)i * ldq + h * dh + c] * k[(int64_t)j * ldk + h * dh + c];
        sc[j] = d * scale;
        if (sc[j] > mx)
          mx = sc[j];
      }
      for (int j = 0; j < valid; j++)
        sum += (sc[j] = exp(sc[j] - mx));
      for (int c = 0; c < dh; c++) {
        double acc = 0;
        for (int j = 0; j < valid; j++)
          acc += sc[j] * v[(int64_t)j * ldk + h * dh + c];
        out[(int64_t)i * ldo + h * dh + c] = acc / sum;
      }
    }
  free(sc);
}

/* rel-L2 over the written columns (heads·dh of each row) and whether the padding columns of out
 * (marked with a sentinel) are untouched. */
static double compare(const float *got, const double *want, int ldo, int tq, int width, int *padding_ok) {
  double num = 0, den = 0;
  *padding_ok = 1;
  for (int i = 0; i < tq; i++) {
    for (int c = 0; c < width; c++) {
      double d = got[(int64_t)i * ldo + c] - want[(int64_t)i * ldo + c];
      num += d * d;
      den += want[(int64_t)i * ldo + c] * want[(int64_t)i * ldo + c];
    }
    for (int c = width; c < ldo; c++)
      if (got[(int64_t)i * ldo + c] != 1234.5f)
        *padding_ok = 0;
  }
  return den > 0 ? sqrt(num / den) : sqrt(num);
}

static double worst_avx512, worst_blas;

/* One shape through both paths; extra widens the row strides of q, k/v and out past heads·dh. */
static void test_shape(int tq, int tk, int heads, int dh, int extra, int causal, float score_gain) {
  int width = heads * dh, ldq = width + extra, ldk = width + 2 * extra + 1, ldo = width + extra;
  float *q = malloc(sizeof(float) * tq * ldq), *k = malloc(sizeof(float) * tk * ldk);
  float *v = malloc(sizeof(float) * tk * ldk), *o = malloc(sizeof(float) * tq * ldo);
  double *ref = malloc(sizeof(double) * tq * ldo);
  /* score_gain scales q so that some rows have peaked softmaxes (scores of tens) */
  for (int64_t i = 0; i < (int64_t)tq * ldq; i++)
    q[i] = frand() * score_gain;
  for (int64_t i = 0; i < (int64_t)tk * ldk; i++)
    k[i] = frand();
  for (int64_t i = 0; i < (int64_t)tk * ldk; i++)
    v[i] = frand();
  float scale = 1.0f / sqrtf((float)dh);
  attention_reference(ref, ldo, q, ldq, k, v, ldk, tq, tk, heads, dh, scale, causal);
  sd_arena arena = {0};
  sd_error err;
  for (int path = 0; path < 2; path++) {
    if (path == 0 && !sd_attention_avx512_supported())
      continue;
    for (int64_t i = 0; i < (int64_t)tq * ldo; i++)
      o[i] = 1234.5f;
    int rc;
    if (path == 0) {
      rc = sd_attention_avx512(o, ldo, q, ldq, k, v, ldk, tq, tk, heads, dh, scale, causal, &arena, &err);
    } else {
      setenv("SDPRUNE_ATTENTION", "blas", 1);
      rc = sd_attention(o, ldo, q, ldq, k, v, ldk, tq, tk, heads, dh, scale, causal, &arena, &err);
      unsetenv("SDPRUNE_ATTENTION");
    }
    CHECK(rc == 0, "attention %s: %s", path ? "blas" : "avx512", err.msg);
    int padding_ok;
    double rel = compare(o, ref, ldo, tq, width, &padding_ok);
    double *worst = path == 0 ? &worst_avx512 : &worst_blas;
    if (rel > *worst)
      *worst = rel;
    CHECK(rel < 2e-6, "%s tq%d tk%d heads%d dh%d extra%d causal%d gain%g: rel-L2 %.3g (tolerance 2e-6)",
          path ? "blas" : "avx512", tq, tk, heads, dh, extra, causal, score_gain, rel);
    CHECK(padding_ok, "%s tq%d tk%d heads%d dh%d: wrote outside the heads' columns", path ? "blas" : "avx512", tq, tk,
          heads, dh);
  }
  free(q), free(k), free(v), free(o), free(ref);
  sd_arena_free(&arena);
}

int main(void) {
  printf("AVX-512 attention %s on this CPU\n", sd_attention_avx512_supported() ? "supported" : "not supported");
  static const int dhs[] = {8, 16, 40, 64, 80, 160};
  static const int lens[] = {1, 5, 63, 77, 130, 257};
  int n = 0;
  for (int a = 0; a < 6; a++)
    for (int b = 0; b < 6; b++)
      for (int c = 0; c < 6; c++) {
        int dh = dhs[a], tq = lens[b], tk = lens[c];
        int heads = 1 + (a + b + c) % 8, extra = (a + c) % 3 == 0 ? 0 : 3 + b;
        int causal = (a + b + c) % 3 == 0;
        test_shape(tq, tk, heads, dh, extra, causal, 1.0f);
        n++;
      }
  /* CLIP's causal self-attention, the UNet's cross-attention, and peaked softmaxes */
  test_shape(77, 77, 12, 64, 0, 1, 1.0f);
  test_shape(256, 77, 8, 40, 0, 0, 1.0f);
  test_shape(130, 257, 3, 40, 5, 0, 8.0f);
  test_shape(257, 130, 2, 80, 0, 1, 8.0f);
  test_shape(64, 1024, 8, 40, 0, 0, 1.0f);
  test_shape(300, 200, 1, 512, 0, 0, 1.0f); /* the VAE's single-head attention over 512 channels */
  test_shape(70, 4096, 2, 40, 0, 0, 1.0f);  /* long sums: the UNet's 64x64 self-attention */
  printf("%d shapes; worst rel-L2: avx512 %.3g, blas %.3g\n", n + 7, worst_avx512, worst_blas);
  /* a selected path is a supported one */
  CHECK(!sd_attention_avx512_selected() || sd_attention_avx512_supported(), "selected without support");
  setenv("SDPRUNE_ATTENTION", "blas", 1);
  CHECK(!sd_attention_avx512_selected(), "SDPRUNE_ATTENTION=blas still selects the AVX-512 path");
  unsetenv("SDPRUNE_ATTENTION");
  return test_finish();
}
