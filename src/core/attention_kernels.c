/* AVX-512 kernels for multi-head attention (see attention_kernels.h). Per task (head, 64 query rows
 * held in the 16 lanes of four zmm): score tiles of 64 rows × 6 keys over the head size, the softmax
 * of sd_exp_approx in 16-lane form applied online per step of 64 keys, and P·V tiles of 64 rows × 5
 * output columns, all in L1. k and v of each head are packed contiguous once per call. Not a GEMM
 * library and not built for other ISAs: each function carries its own target attribute, so a
 * generic build contains them and sd_attention picks them at run time. */
#include "core/attention_kernels.h"

#include <immintrin.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SD_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define SD_AVX512_INLINE static inline __attribute__((always_inline, target("avx512f,avx512vl,avx512bw,avx512dq,fma")))

/* Query rows per task: 64 = four zmm of rows, the lanes of every tile below. */
#define ATTN_ROWS 64
/* Keys per score tile: 4 row vectors × 6 keys = 24 accumulators. */
#define SCORE_KEYS 6
/* Keys per step of the fused exp + P·V pass: the step's probabilities (64 keys × 64 rows, 16 KiB)
 * are written to L1 once and read by every column group of the output. */
#define PV_KEYS 64
/* Output columns per P·V tile: 4 row vectors × 5 columns = 20 accumulators; 40, 80 and 160 are
 * multiples of 5, so the UNet's head sizes need no partial tiles. */
#define PV_COLS 5

int sd_attention_avx512_supported(void) {
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("fma");
#else
  return 0;
#endif
}

int sd_attention_avx512_selected(void) {
  const char *choice = getenv("SDPRUNE_ATTENTION");
  if (choice && strcmp(choice, "blas") == 0)
    return 0;
  return sd_attention_avx512_supported();
}

#if defined(__x86_64__) && defined(__GNUC__)

/* sd_exp_approx (vmath.h) on 16 lanes for x ≤ 0 (scores minus their row maximum, -inf for masked
 * keys): the same polynomial on the same reduced argument, in fewer instructions. n = round(x·log2 e)
 * by the 1.5·2^23 trick in one fused multiply-add; r = x - n·ln2 in one fused step (ln2 rounded to
 * float costs n·2e-9 relative, below 3e-8 for every term within e^-14 of the row maximum, where the
 * split constant of the scalar version is needed only for large n); 2^n by vscalefps. x < -87.3
 * gives 0 as there, and the zero-masking also discards what -inf makes of the reduction. */
SD_AVX512_INLINE __m512 exp_approx16(__m512 x) {
  __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_GE_OQ);
  __m512 n = _mm512_sub_ps(_mm512_fmadd_ps(x, _mm512_set1_ps(1.44269504088896341f), _mm512_set1_ps(12582912.0f)),
                           _mm512_set1_ps(12582912.0f));
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693147180559945309f), x);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  return _mm512_maskz_scalef_ps(keep, p, n);
}

/* One score tile in the transposed layout, query rows in lanes: st[t][r] = q_r·k_{j0+t} for the
 * 16·NR rows of qt [dh][64] (scale·qᵀ of the block) and the KT keys j0 .. j0+KT-1 of kh [tk][ldk].
 * causal_row0 ≥ 0 (the block's first query position) sets keys after a row's position to -inf.
 * Raises the running row maxima mx[64]. */
SD_AVX512_INLINE void score_tile(float *st, const float *qt, const float *kh, int ldk, int j0, int dh, int causal_row0,
                                 float *mx, int NR, int KT) {
  __m512 acc[SCORE_KEYS][4];
  const float *kr[SCORE_KEYS];
#pragma GCC unroll 6
  for (int t = 0; t < KT; t++)
    kr[t] = kh + (int64_t)(j0 + t) * ldk;
  /* the next tile's keys (contiguous when packed) from L2 into L1 while this one computes */
  for (int off = 0; off < SCORE_KEYS * ldk; off += 16)
    _mm_prefetch((const char *)(kr[0] + KT * ldk + off), _MM_HINT_T0);
#pragma GCC unroll 6
  for (int t = 0; t < KT; t++)
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
      acc[t][r] = _mm512_setzero_ps();
  for (int d = 0; d < dh; d++) {
    __m512 qv[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
      qv[r] = _mm512_load_ps(qt + d * ATTN_ROWS + 16 * r);
#pragma GCC unroll 6
    for (int t = 0; t < KT; t++) {
      __m512 kb = _mm512_set1_ps(kr[t][d]);
#pragma GCC unroll 4
      for (int r = 0; r < NR; r++)
        acc[t][r] = _mm512_fmadd_ps(kb, qv[r], acc[t][r]);
    }
  }
#pragma GCC unroll 4
  for (int r = 0; r < NR; r++) {
    __m512 m = _mm512_load_ps(mx + 16 * r);
    __m512i row = _mm512_add_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                   _mm512_set1_epi32(causal_row0 + 16 * r));
#pragma GCC unroll 6
    for (int t = 0; t < KT; t++) {
      __m512 sv = acc[t][r];
      if (causal_row0 >= 0)
        sv = _mm512_mask_mov_ps(sv, _mm512_cmplt_epi32_mask(row, _mm512_set1_epi32(j0 + t)), _mm512_set1_ps(-INFINITY));
      _mm512_store_ps(st + t * ATTN_ROWS + 16 * r, sv);
      m = _mm512_max_ps(m, sv);
    }
    _mm512_store_ps(mx + 16 * r, m);
  }
}

/* ot[c][r] (+)= Σ_jj pb[jj][r] · v[j0+jj][c0+c] for the CT columns c0 .. of the head, over the n keys
 * of one step; first = 1 starts from zero. The step's sum is formed apart and then added, so the
 * rounding grows with steps + keys per step instead of keys (tk = 4096: 1.5e-6 -> 4e-7 rel-L2). */
SD_AVX512_INLINE void pv_tile(float *ot, const float *pb, const float *vh, int ldk, int j0, int n, int c0, int first,
                              int NR, int CT) {
  __m512 acc[PV_COLS][4];
#pragma GCC unroll 5
  for (int c = 0; c < CT; c++)
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
      acc[c][r] = _mm512_setzero_ps();
  const float *vr = vh + (int64_t)j0 * ldk + c0;
  for (int jj = 0; jj < n; jj++, vr += ldk) {
    __m512 p[4];
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++)
      p[r] = _mm512_load_ps(pb + jj * ATTN_ROWS + 16 * r);
#pragma GCC unroll 5
    for (int c = 0; c < CT; c++) {
      __m512 vb = _mm512_set1_ps(vr[c]);
#pragma GCC unroll 4
      for (int r = 0; r < NR; r++)
        acc[c][r] = _mm512_fmadd_ps(vb, p[r], acc[c][r]);
    }
  }
#pragma GCC unroll 5
  for (int c = 0; c < CT; c++)
#pragma GCC unroll 4
    for (int r = 0; r < NR; r++) {
      float *o = ot + (int64_t)(c0 + c) * ATTN_ROWS + 16 * r;
      _mm512_store_ps(o, first ? acc[c][r] : _mm512_add_ps(_mm512_load_ps(o), acc[c][r]));
    }
}

/* One out-of-line copy per (row vectors, keys) and (row vectors, columns), so each tile gets the
 * whole register file: a tile inlined into the task loop spilled its operands. */
typedef void (*score_fn)(float *, const float *, const float *, int, int, int, int, float *);
typedef void (*pv_fn)(float *, const float *, const float *, int, int, int, int, int);
#define SCORE_FN(NR, KT)                                                                                               \
  SD_AVX512 __attribute__((noinline)) static void score_##NR##_##KT(                                                   \
      float *st, const float *qt, const float *kh, int ldk, int j0, int dh, int causal_row0, float *mx) {              \
    score_tile(st, qt, kh, ldk, j0, dh, causal_row0, mx, NR, KT);                                                      \
  }
#define PV_FN(NR, CT)                                                                                                  \
  SD_AVX512 __attribute__((noinline)) static void pv_##NR##_##CT(float *ot, const float *pb, const float *vh, int ldk, \
                                                                 int j0, int n, int c0, int first) {                   \
    pv_tile(ot, pb, vh, ldk, j0, n, c0, first, NR, CT);                                                                \
  }
#define TILES_FOR_ROWS(NR)                                                                                             \
  SCORE_FN(NR, 1)                                                                                                      \
  SCORE_FN(NR, 2)                                                                                                      \
  SCORE_FN(NR, 3) SCORE_FN(NR, 4) SCORE_FN(NR, 5) SCORE_FN(NR, 6) PV_FN(NR, 1) PV_FN(NR, 2) PV_FN(NR, 3) PV_FN(NR, 4)  \
      PV_FN(NR, 5)
TILES_FOR_ROWS(1)
TILES_FOR_ROWS(2)
TILES_FOR_ROWS(3)
TILES_FOR_ROWS(4)
static const score_fn score_fns[4][SCORE_KEYS] = {{score_1_1, score_1_2, score_1_3, score_1_4, score_1_5, score_1_6},
                                                  {score_2_1, score_2_2, score_2_3, score_2_4, score_2_5, score_2_6},
                                                  {score_3_1, score_3_2, score_3_3, score_3_4, score_3_5, score_3_6},
                                                  {score_4_1, score_4_2, score_4_3, score_4_4, score_4_5, score_4_6}};
static const pv_fn pv_fns[4][PV_COLS] = {{pv_1_1, pv_1_2, pv_1_3, pv_1_4, pv_1_5},
                                         {pv_2_1, pv_2_2, pv_2_3, pv_2_4, pv_2_5},
                                         {pv_3_1, pv_3_2, pv_3_3, pv_3_4, pv_3_5},
                                         {pv_4_1, pv_4_2, pv_4_3, pv_4_4, pv_4_5}};

/* Per-thread scratch of one task, all [x][64] with the block's query rows along the 64. */
typedef struct {
  float *q_t;   /* [dh][64] scale·qᵀ of the block, zero past its rows */
  float *probs; /* [PV_KEYS][64] scores of one step of keys, then their exponentials */
  float *out_t; /* [dh][64] unnormalised outputs, transposed */
} attention_scratch;

/* One task: query rows r0 .. r0+m-1 (m ≤ 64) of head h, one pass over the keys in steps of 64
 * (the online softmax of flash attention): a step's scores stay in L1 from the score tiles through
 * the exponentials to P·V. When a step raises a row's maximum, what that row accumulated so far
 * (its sum and dh outputs) is multiplied by exp(old - new max), so every term ends up as
 * exp(score - final max) up to rounding, as in the two-pass softmax of the sgemm path. */
SD_AVX512 static void attention_block(float *out, int ldo, const float *q, int ldq, const float *kh, const float *vh,
                                      int tk, int dh, float scale, int causal, int h, int r0, int m,
                                      const attention_scratch *w) {
  int ldk = dh; /* kh, vh: the head's keys and values packed [tk][dh] */
  int nr = (m + 15) / 16;
  /* keys after the last query of the block are masked anyway: skip them */
  int cols = causal ? (r0 + m < tk ? r0 + m : tk) : tk;
  const float *qh = q + (int64_t)r0 * ldq + (int64_t)h * dh;
  for (int d = 0; d < dh; d++)
    for (int r = 0; r < m; r++)
      w->q_t[d * ATTN_ROWS + r] = qh[(int64_t)r * ldq + d] * scale;
  for (int d = 0; d < dh; d++)
    for (int r = m; r < 16 * nr; r++)
      w->q_t[d * ATTN_ROWS + r] = 0.0f;

  float mx[ATTN_ROWS] __attribute__((aligned(64)));
  for (int r = 0; r < ATTN_ROWS; r++)
    mx[r] = -INFINITY;
  __m512 vmax[4], sum[4];
#pragma GCC unroll 4
  for (int r = 0; r < 4; r++)
    vmax[r] = _mm512_set1_ps(-INFINITY), sum[r] = _mm512_setzero_ps();
  const score_fn *score = score_fns[nr - 1];
  const pv_fn *pv = pv_fns[nr - 1];
  int causal_row0 = causal ? r0 : -1;
  for (int j0 = 0; j0 < cols; j0 += PV_KEYS) {
    int n = cols - j0 < PV_KEYS ? cols - j0 : PV_KEYS, j = j0;
    for (; j + SCORE_KEYS <= j0 + n; j += SCORE_KEYS)
      score[SCORE_KEYS - 1](w->probs + (j - j0) * ATTN_ROWS, w->q_t, kh, ldk, j, dh, causal_row0, mx);
    if (j < j0 + n)
      score[j0 + n - j - 1](w->probs + (j - j0) * ATTN_ROWS, w->q_t, kh, ldk, j, dh, causal_row0, mx);
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
      if (r < nr) {
        __m512 new_max = _mm512_load_ps(mx + 16 * r);
        if (j0 > 0 && _mm512_cmp_ps_mask(new_max, vmax[r], _CMP_NEQ_UQ)) {
          __m512 alpha = exp_approx16(_mm512_sub_ps(vmax[r], new_max));
          sum[r] = _mm512_mul_ps(sum[r], alpha);
          for (int c = 0; c < dh; c++) {
            float *o = w->out_t + c * ATTN_ROWS + 16 * r;
            _mm512_store_ps(o, _mm512_mul_ps(_mm512_load_ps(o), alpha));
          }
        }
        vmax[r] = new_max;
      }
    __m512 step_sum[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
      step_sum[r] = _mm512_setzero_ps();
    for (int jj = 0; jj < n; jj++) {
      float *s = w->probs + jj * ATTN_ROWS;
      /* the step's values from L2 into L1 while the exponentials are computed */
      for (int off = 0; off < dh; off += 16)
        _mm_prefetch((const char *)(vh + (int64_t)(j0 + jj) * dh + off), _MM_HINT_T0);
        /* unrolled with constant indices so that the sums stay in registers */
#pragma GCC unroll 4
      for (int r = 0; r < 4; r++)
        if (r < nr) {
          __m512 e = exp_approx16(_mm512_sub_ps(_mm512_load_ps(s + 16 * r), vmax[r]));
          _mm512_store_ps(s + 16 * r, e);
          step_sum[r] = _mm512_add_ps(step_sum[r], e);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++)
      sum[r] = _mm512_add_ps(sum[r], step_sum[r]); /* two-level sum, as for the outputs */
    for (int c0 = 0; c0 < dh; c0 += PV_COLS) {
      int ct = dh - c0 < PV_COLS ? dh - c0 : PV_COLS;
      pv[ct - 1](w->out_t, w->probs, vh, ldk, j0, n, c0, j0 == 0);
    }
  }

  /* normalising the dh outputs of a row is cheaper than the tk probabilities */
  float inv_sum[ATTN_ROWS] __attribute__((aligned(64)));
#pragma GCC unroll 4
  for (int r = 0; r < 4; r++)
    if (r < nr)
      _mm512_store_ps(inv_sum + 16 * r, _mm512_div_ps(_mm512_set1_ps(1.0f), sum[r]));
  for (int r = 0; r < m; r++) {
    float *dst = out + (int64_t)(r0 + r) * ldo + (int64_t)h * dh;
    for (int c = 0; c < dh; c++)
      dst[c] = w->out_t[c * ATTN_ROWS + r] * inv_sum[r];
  }
}

int sd_attention_avx512(float *out, int ldo, const float *q, int ldq, const float *k, const float *v, int ldk, int tq,
                        int tk, int heads, int dh, float scale, int causal, sd_arena *arena, sd_error *err) {
  if (tq <= 0 || heads <= 0)
    return 0;
  if (tk <= 0 || dh <= 0)
    return sd_fail(err, "attention: %d keys of head size %d", tk, dh);
  int n_blocks = (tq + ATTN_ROWS - 1) / ATTN_ROWS, n_threads = omp_get_max_threads();
  size_t n_head = (size_t)dh * ATTN_ROWS, n_probs = (size_t)PV_KEYS * ATTN_ROWS;
  size_t per_thread = 2 * n_head + n_probs, n_packed = (size_t)tk * dh;
  size_t mark = sd_arena_mark(arena);
  float *packed = sd_arena_floats(arena, 2 * n_packed * heads, err);
  float *scratch = packed ? sd_arena_floats(arena, per_thread * n_threads, err) : NULL;
  if (!scratch) {
    sd_arena_release(arena, mark);
    return -1;
  }
#pragma omp parallel
  {
    /* every task of a head streams all its keys and values: contiguous copies [tk][dh] stay in L2
     * and suit the prefetchers, where rows of k and v a row stride apart came from L3 */
#pragma omp for schedule(dynamic, 1)
    for (int t = 0; t < 2 * heads; t++) {
      int h = t >> 1;
      const float *src = (t & 1 ? v : k) + (int64_t)h * dh;
      float *dst = packed + (size_t)t * n_packed;
      for (int j = 0; j < tk; j++)
        memcpy(dst + (size_t)j * dh, src + (int64_t)j * ldk, sizeof(float) * dh);
    }
    float *base = scratch + (size_t)omp_get_thread_num() * per_thread;
    attention_scratch w = {.q_t = base, .out_t = base + n_head, .probs = base + 2 * n_head};
#pragma omp for schedule(dynamic, 1)
    for (int task = 0; task < heads * n_blocks; task++) {
      int h = task / n_blocks, r0 = (task % n_blocks) * ATTN_ROWS;
      int m = tq - r0 < ATTN_ROWS ? tq - r0 : ATTN_ROWS;
      const float *kh = packed + (size_t)2 * h * n_packed, *vh = kh + n_packed;
      attention_block(out, ldo, q, ldq, kh, vh, tk, dh, scale, causal, h, r0, m, &w);
    }
  }
  sd_arena_release(arena, mark);
  return 0;
}

#else /* not x86-64 GCC/clang: never selected */

int sd_attention_avx512(float *out, int ldo, const float *q, int ldq, const float *k, const float *v, int ldk, int tq,
                        int tk, int heads, int dh, float scale, int causal, sd_arena *arena, sd_error *err) {
  return sd_fail(err, "attention: AVX-512 kernels not built for this platform");
}

#endif
