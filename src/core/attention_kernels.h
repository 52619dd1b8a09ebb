/* AVX-512 attention: the same contract and softmax as sd_attention (kernels.h), computed with
 * register-tiled kernels written for the thin products of attention (head size 40-160) instead of
 * two sgemm calls per block. Not a general GEMM, and not used on CPUs without AVX-512F: sd_attention
 * dispatches here at run time and keeps its sgemm path as the fallback and reference. */
#ifndef SD_ATTENTION_KERNELS_H
#define SD_ATTENTION_KERNELS_H

#include "core/arena.h"
#include "core/error.h"

/* Nonzero when this CPU runs AVX-512F (the kernels below need F, VL, BW, DQ and FMA, which every
 * AVX-512 x86 CPU with F also has in practice; all five are checked). */
int sd_attention_avx512_supported(void);

/* Nonzero when sd_attention should take the AVX-512 path: the CPU supports it and the environment
 * variable SDPRUNE_ATTENTION is not "blas" (read at every call, so an A/B run needs no rebuild). */
int sd_attention_avx512_selected(void);

/* Multi-head attention as sd_attention: out[tq, ldo] (head h at columns h·dh ..) =
 * softmax(q·kᵀ·scale [+ causal mask]) · v per head, q [tq, ldq], k/v [tk, ldk]; columns of out
 * outside the heads are not touched. Agrees with the sgemm path to float rounding (rel-L2 ~1e-6).
 * Scratch from the arena: k and v packed per head (2·heads·tk·dh floats) and per thread
 * (2·dh + 64)·64 floats. Call only when sd_attention_avx512_supported(). Returns 0, or -1 with
 * err set (no keys, or out of memory). */
int sd_attention_avx512(float *out, int ldo, const float *q, int ldq, const float *k, const float *v, int ldk, int tq,
                        int tk, int heads, int dh, float scale, int causal, sd_arena *arena, sd_error *err);

#endif
