/* AVX-512 kernels for multi-head attention (see attention_kernels.h): scores from a kᵀ panel packed
 * once per head, the softmax of sd_exp_approx in 16-lane form, and P·V tiles that hold a few rows by
 * the whole head size in registers. Not a GEMM library and not built for other ISAs: each function
 * carries its own target attribute, so a generic build contains them and sd_attention picks them
 * at run time. */
#include "core/attention_kernels.h"

#include <float.h>
#include <immintrin.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define SD_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,fma")))
#define SD_AVX512_INLINE static inline __attribute__((always_inline, target("avx512f,avx512vl,avx512bw,avx512dq,fma")))

/* Query rows per task: the score block (64 rows × tk) stays in L2 between the three passes. */
#define ATTN_ROWS 64
/* Keys per packed kᵀ block: [dh][64] floats, one score tile is 4 rows × up to 64 keys. */
#define ATTN_KEYS 64
#define SCORE_ROWS 4
/* Keys per step of the P·V pass: the v rows of a step stay in L1 across the row groups. */
#define PV_KEYS 128
/* Most zmm columns of the output a P·V tile holds (5 × 16 = 80 floats, with 4 rows: 20 accumulators). */
#define PV_MAX_VECS 5

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
  if (choice && strcmp(choice, "blas") == 0) return 0;
  return sd_attention_avx512_supported();
}

#if defined(__x86_64__) && defined(__GNUC__)

/* sd_exp_approx (vmath.h) on 16 lanes: the same Cody-Waite reduction and cephes polynomial, with
 * fused multiply-adds and vscalefps for the 2^n factor (exact for the normal range the scalar
 * version covers); x < -87.3 gives 0 as there. Agrees with the scalar version to about 1 ulp. */
SD_AVX512_INLINE __m512 exp_approx16(__m512 x) {
  __mmask16 keep = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-87.3f), _CMP_GE_OQ);
  x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.7f));
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_add_ps(_mm512_fmadd_ps(p, _mm512_mul_ps(r, r), r), _mm512_set1_ps(1.0f));
  return _mm512_maskz_scalef_ps(keep, p, n);
}

SD_AVX512_INLINE __mmask16 tail_mask(int n) { return n >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << n) - 1u); }

/* kᵀ of one head in blocks of 64 keys: kp[kb][d][j] = k[kb·64 + j, h·dh + d], zero past tk. */
SD_AVX512 static void pack_keys(float *kp, const float *k, int ldk, int tk, int dh, int h, int kb) {
  int j0 = kb * ATTN_KEYS, n = tk - j0 < ATTN_KEYS ? tk - j0 : ATTN_KEYS;
  const float *src = k + (int64_t)j0 * ldk + (int64_t)h * dh;
  for (int j = 0; j < n; j++)
    for (int d = 0; d < dh; d++) kp[d * ATTN_KEYS + j] = src[(int64_t)j * ldk + d];
  for (int d = 0; d < dh; d++)
    for (int j = n; j < ATTN_KEYS; j++) kp[d * ATTN_KEYS + j] = 0.0f;
}

/* s[4, 16·NV] = scale · q[4 rows, dh] · kpᵀ for one packed key block; rows given by pointer so the
 * last group of a block can repeat a valid row instead of reading past the end of q. */
SD_AVX512_INLINE void score_tile(float *s, int lds, const float *const qr[SCORE_ROWS], const float *kp, int dh,
                                 float scale, int NV) {
  __m512 acc[SCORE_ROWS][4];
#pragma GCC unroll 4
  for (int i = 0; i < SCORE_ROWS; i++)
#pragma GCC unroll 4
    for (int c = 0; c < NV; c++) acc[i][c] = _mm512_setzero_ps();
  for (int d = 0; d < dh; d++) {
    __m512 kv[4];
#pragma GCC unroll 4
    for (int c = 0; c < NV; c++) kv[c] = _mm512_load_ps(kp + d * ATTN_KEYS + 16 * c);
#pragma GCC unroll 4
    for (int i = 0; i < SCORE_ROWS; i++) {
      __m512 qb = _mm512_set1_ps(qr[i][d]);
#pragma GCC unroll 4
      for (int c = 0; c < NV; c++) acc[i][c] = _mm512_fmadd_ps(qb, kv[c], acc[i][c]);
    }
  }
  __m512 vs = _mm512_set1_ps(scale);
#pragma GCC unroll 4
  for (int i = 0; i < SCORE_ROWS; i++)
#pragma GCC unroll 4
    for (int c = 0; c < NV; c++) _mm512_store_ps(s + (int64_t)i * lds + 16 * c, _mm512_mul_ps(acc[i][c], vs));
}

SD_AVX512 static void score_tile_4(float *s, int lds, const float *const qr[SCORE_ROWS], const float *kp, int dh,
                                   float scale) {
  score_tile(s, lds, qr, kp, dh, scale, 4);
}
SD_AVX512 static void score_tile_3(float *s, int lds, const float *const qr[SCORE_ROWS], const float *kp, int dh,
                                   float scale) {
  score_tile(s, lds, qr, kp, dh, scale, 3);
}
SD_AVX512 static void score_tile_2(float *s, int lds, const float *const qr[SCORE_ROWS], const float *kp, int dh,
                                   float scale) {
  score_tile(s, lds, qr, kp, dh, scale, 2);
}
SD_AVX512 static void score_tile_1(float *s, int lds, const float *const qr[SCORE_ROWS], const float *kp, int dh,
                                   float scale) {
  score_tile(s, lds, qr, kp, dh, scale, 1);
}

/* o[R, 16·NV] (+)= p[R, j0:j1] · v[j0:j1, 16·NV columns] with o in the task's buffer (row stride ldo,
 * first = 1 starts from zero); vmask[c] masks the columns past dh in the last vector. */
SD_AVX512_INLINE void pv_tile(float *o, int ldo, const float *const pr[], const float *v, int ldv, int j0, int j1,
                              const __mmask16 *vmask, int first, int R, int NV) {
  __m512 acc[16][PV_MAX_VECS];
#pragma GCC unroll 16
  for (int i = 0; i < R; i++)
#pragma GCC unroll 5
    for (int c = 0; c < NV; c++)
      acc[i][c] = first ? _mm512_setzero_ps() : _mm512_load_ps(o + (int64_t)i * ldo + 16 * c);
  for (int j = j0; j < j1; j++) {
    __m512 vv[PV_MAX_VECS];
    const float *vrow = v + (int64_t)j * ldv;
#pragma GCC unroll 5
    for (int c = 0; c < NV; c++) vv[c] = _mm512_maskz_loadu_ps(vmask[c], vrow + 16 * c);
#pragma GCC unroll 16
    for (int i = 0; i < R; i++) {
      __m512 pb = _mm512_set1_ps(pr[i][j]);
#pragma GCC unroll 5
      for (int c = 0; c < NV; c++) acc[i][c] = _mm512_fmadd_ps(pb, vv[c], acc[i][c]);
    }
  }
#pragma GCC unroll 16
  for (int i = 0; i < R; i++)
#pragma GCC unroll 5
    for (int c = 0; c < NV; c++) _mm512_store_ps(o + (int64_t)i * ldo + 16 * c, acc[i][c]);
}

#define PV_TILE(R, NV)                                                                                                 \
  SD_AVX512 static void pv_tile_##R##_##NV(float *o, int ldo, const float *const pr[], const float *v, int ldv,     \
                                           int j0, int j1, const __mmask16 *vmask, int first) {                       \
    pv_tile(o, ldo, pr, v, ldv, j0, j1, vmask, first, R, NV);                                                          \
  }
/* Rows per tile for NV vectors of output: R·NV accumulators + NV v vectors + 1 broadcast ≤ 32 zmm,
 * and R divides 64 so the row groups tile the block. */
PV_TILE(16, 1)
PV_TILE(8, 2)
PV_TILE(8, 3)
PV_TILE(4, 4)
PV_TILE(4, 5)

typedef void (*pv_tile_fn)(float *, int, const float *const[], const float *, int, int, int, const __mmask16 *, int);

/* Softmax numerators of one score row in place: exp(s - max) over the first `valid` entries, zeros
 * from there up to `cols` (a multiple of 16); returns their sum. */
SD_AVX512 static float softmax_row(float *s, int valid, int cols) {
  __m512 mx = _mm512_set1_ps(-FLT_MAX);
  int j = 0;
  for (; j + 16 <= valid; j += 16) mx = _mm512_max_ps(mx, _mm512_load_ps(s + j));
  if (j < valid) mx = _mm512_max_ps(mx, _mm512_mask_load_ps(mx, tail_mask(valid - j), s + j));
  __m512 vmax = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
  __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
  j = 0;
  for (; j + 32 <= valid; j += 32) {
    __m512 e0 = exp_approx16(_mm512_sub_ps(_mm512_load_ps(s + j), vmax));
    __m512 e1 = exp_approx16(_mm512_sub_ps(_mm512_load_ps(s + j + 16), vmax));
    _mm512_store_ps(s + j, e0);
    _mm512_store_ps(s + j + 16, e1);
    sum0 = _mm512_add_ps(sum0, e0);
    sum1 = _mm512_add_ps(sum1, e1);
  }
  for (; j < valid; j += 16) {
    __mmask16 m = tail_mask(valid - j);
    __m512 e = _mm512_maskz_mov_ps(m, exp_approx16(_mm512_sub_ps(_mm512_maskz_load_ps(m, s + j), vmax)));
    _mm512_store_ps(s + j, e);
    sum0 = _mm512_add_ps(sum0, e);
  }
  for (; j < cols; j += 16) _mm512_store_ps(s + j, _mm512_setzero_ps());
  return _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
}

/* One task: query rows r0 .. r0+m-1 (m ≤ 64) of head h. s [64, lds] and o [64, ldo] are the
 * thread's scratch (64-byte aligned, lds and ldo multiples of 16). */
SD_AVX512 static void attention_block(float *out, int ldo_out, const float *q, int ldq, const float *kp,
                                      const float *v, int ldk, int tk, int dh, float scale, int causal, int h, int r0,
                                      int m, float *s, int lds, float *o, int ldo) {
  /* keys after the last query of the block are masked anyway: skip them */
  int cols = causal ? (r0 + m < tk ? r0 + m : tk) : tk;
  int cols16 = (cols + 15) & ~15;
  const float *qh = q + (int64_t)h * dh;
  const float *qlast = qh + (int64_t)(r0 + m - 1) * ldq;

  /* scores: key block outer, so one kᵀ block (64·dh floats) serves all row groups from L1 */
  for (int kb = 0; kb * ATTN_KEYS < cols16; kb++) {
    int nk = cols16 - kb * ATTN_KEYS < ATTN_KEYS ? cols16 - kb * ATTN_KEYS : ATTN_KEYS;
    const float *kblk = kp + (int64_t)kb * ATTN_KEYS * dh;
    for (int i0 = 0; i0 < m; i0 += SCORE_ROWS) {
      const float *qr[SCORE_ROWS];
      for (int i = 0; i < SCORE_ROWS; i++)
        qr[i] = i0 + i < m ? qh + (int64_t)(r0 + i0 + i) * ldq : qlast;
      float *st = s + (int64_t)i0 * lds + kb * ATTN_KEYS;
      switch (nk / 16) {
      case 4: score_tile_4(st, lds, qr, kblk, dh, scale); break;
      case 3: score_tile_3(st, lds, qr, kblk, dh, scale); break;
      case 2: score_tile_2(st, lds, qr, kblk, dh, scale); break;
      default: score_tile_1(st, lds, qr, kblk, dh, scale); break;
      }
    }
  }

  float inv_sum[ATTN_ROWS];
  for (int r = 0; r < m; r++) {
    int valid = causal ? (r0 + r + 1 < cols ? r0 + r + 1 : cols) : cols;
    inv_sum[r] = 1.0f / softmax_row(s + (int64_t)r * lds, valid, cols16);
  }

  /* P·V: the output columns in chunks of at most 5 vectors, each chunk as row groups of R rows */
  int nv = (dh + 15) / 16;
  int n_chunks = (nv + PV_MAX_VECS - 1) / PV_MAX_VECS;
  const float *vh = v + (int64_t)h * dh;
  for (int j0 = 0; j0 < cols; j0 += PV_KEYS) {
    int j1 = j0 + PV_KEYS < cols ? j0 + PV_KEYS : cols;
    for (int ch = 0, c0 = 0; ch < n_chunks; ch++) {
      int cnv = (nv - c0 + (n_chunks - ch) - 1) / (n_chunks - ch); /* balanced chunk sizes */
      __mmask16 vmask[PV_MAX_VECS];
      for (int c = 0; c < cnv; c++) vmask[c] = tail_mask(dh - 16 * (c0 + c));
      int R = cnv == 1 ? 16 : cnv <= 3 ? 8 : 4;
      pv_tile_fn tile = cnv == 1 ? pv_tile_16_1 : cnv == 2 ? pv_tile_8_2 : cnv == 3 ? pv_tile_8_3 : cnv == 4 ? pv_tile_4_4 : pv_tile_4_5;
      for (int i0 = 0; i0 < m; i0 += R) {
        const float *pr[16];
        for (int i = 0; i < R; i++) pr[i] = s + (int64_t)(i0 + i < m ? i0 + i : m - 1) * lds;
        tile(o + (int64_t)i0 * ldo + 16 * c0, ldo, pr, vh + 16 * c0, ldk, j0, j1, vmask, j0 == 0);
      }
      c0 += cnv;
    }
  }

  /* normalising the dh outputs of a row is cheaper than the tk probabilities */
  for (int r = 0; r < m; r++) {
    float *dst = out + (int64_t)(r0 + r) * ldo_out + (int64_t)h * dh;
    const float *src = o + (int64_t)r * ldo;
    __m512 inv = _mm512_set1_ps(inv_sum[r]);
    for (int c = 0; c < dh; c += 16) {
      __mmask16 msk = tail_mask(dh - c);
      _mm512_mask_storeu_ps(dst + c, msk, _mm512_mul_ps(_mm512_load_ps(src + c), inv));
    }
  }
}

int sd_attention_avx512(float *out, int ldo, const float *q, int ldq, const float *k, const float *v, int ldk, int tq,
                        int tk, int heads, int dh, float scale, int causal, sd_arena *arena, sd_error *err) {
  if (tq <= 0 || heads <= 0) return 0;
  if (tk <= 0 || dh <= 0) return sd_fail(err, "attention: %d keys of head size %d", tk, dh);
  int n_kb = (tk + ATTN_KEYS - 1) / ATTN_KEYS;
  int lds = (tk + 15) & ~15, ldo_buf = (dh + 15) & ~15;
  int rows = tq < ATTN_ROWS ? tq : ATTN_ROWS;
  int n_blocks = (tq + ATTN_ROWS - 1) / ATTN_ROWS, n_threads = omp_get_max_threads();
  size_t kp_head = (size_t)n_kb * ATTN_KEYS * dh;
  size_t per_thread = (((size_t)rows + 15) & ~(size_t)15) * lds + (size_t)ATTN_ROWS * ldo_buf;
  size_t mark = sd_arena_mark(arena);
  float *kp = sd_arena_floats(arena, kp_head * heads, err);
  float *scratch = kp ? sd_arena_floats(arena, per_thread * n_threads, err) : NULL;
  if (!scratch) {
    sd_arena_release(arena, mark);
    return -1;
  }
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (int t = 0; t < heads * n_kb; t++) {
      int h = t / n_kb, kb = t % n_kb;
      pack_keys(kp + h * kp_head + (size_t)kb * ATTN_KEYS * dh, k, ldk, tk, dh, h, kb);
    }
    float *s = scratch + (size_t)omp_get_thread_num() * per_thread;
    float *o = s + (((size_t)rows + 15) & ~(size_t)15) * lds;
#pragma omp for schedule(dynamic, 1)
    for (int task = 0; task < heads * n_blocks; task++) {
      int h = task / n_blocks, r0 = (task % n_blocks) * ATTN_ROWS;
      int m = tq - r0 < ATTN_ROWS ? tq - r0 : ATTN_ROWS;
      attention_block(out, ldo, q, ldq, kp + h * kp_head, v, ldk, tk, dh, scale, causal, h, r0, m, s, lds, o,
                      ldo_buf);
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
