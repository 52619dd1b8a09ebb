/* Torch-exact CPU randn (see rng_torch.h for the mapping to torch and the algorithm).
 * Mirrors ATen's MT19937RNGEngine.h, DistributionsHelper.h and cpu/DistributionTemplates.h of torch 1.13;
 * no other distributions. */
#include "sample/rng_torch.h"

#include <math.h>
#include <string.h>

#define MT_M 397
#define MT_MATRIX_A 0x9908b0dfu
#define MT_UMASK 0x80000000u
#define MT_LMASK 0x7fffffffu

void sd_torch_rng_seed(sd_torch_rng *rng, uint64_t seed) {
  rng->seed = seed;
  rng->state[0] = (uint32_t)(seed & 0xffffffffu);
  for (int j = 1; j < SD_MT_N; j++)
    rng->state[j] = 1812433253u * (rng->state[j - 1] ^ (rng->state[j - 1] >> 30)) + (uint32_t)j;
  rng->left = 1;
  rng->next = 0;
  rng->has_next_double_normal = 0;
  rng->next_double_normal = 0.0;
}

static uint32_t mt_twist(uint32_t u, uint32_t v) {
  return (((u & MT_UMASK) | (v & MT_LMASK)) >> 1) ^ ((v & 1u) ? MT_MATRIX_A : 0u);
}

static void mt_next_state(sd_torch_rng *rng) {
  uint32_t *s = rng->state;
  int k = 0;
  rng->left = SD_MT_N;
  rng->next = 0;
  for (; k < SD_MT_N - MT_M; k++) s[k] = s[k + MT_M] ^ mt_twist(s[k], s[k + 1]);
  for (; k < SD_MT_N - 1; k++) s[k] = s[k + MT_M - SD_MT_N] ^ mt_twist(s[k], s[k + 1]);
  s[SD_MT_N - 1] = s[MT_M - 1] ^ mt_twist(s[SD_MT_N - 1], s[0]);
}

uint32_t sd_torch_rng_u32(sd_torch_rng *rng) {
  if (--rng->left == 0) mt_next_state(rng);
  uint32_t y = rng->state[rng->next++];
  y ^= (y >> 11);
  y ^= (y << 7) & 0x9d2c5680u;
  y ^= (y << 15) & 0xefc60000u;
  y ^= (y >> 18);
  return y;
}

/* CPUGeneratorImpl::random64: the first draw is the high word. */
static uint64_t rng_u64(sd_torch_rng *rng) {
  uint64_t hi = sd_torch_rng_u32(rng);
  uint64_t lo = sd_torch_rng_u32(rng);
  return (hi << 32) | lo;
}

/* uniform_real_distribution<float>(0, 1): 24 random bits times 2^-24, in float. */
static float uniform_f32(sd_torch_rng *rng) {
  return (float)(sd_torch_rng_u32(rng) & ((1u << 24) - 1)) * (1.0f / 16777216.0f);
}

/* uniform_real_distribution<double>(0, 1): 53 random bits times 2^-53. */
static double uniform_f64(sd_torch_rng *rng) {
  return (double)(rng_u64(rng) & ((UINT64_C(1) << 53) - 1)) * (1.0 / 9007199254740992.0);
}

/* normal_distribution<double>(0, 1) with the generator's cached second sample. */
static double normal_f64(sd_torch_rng *rng) {
  if (rng->has_next_double_normal) {
    rng->has_next_double_normal = 0;
    return rng->next_double_normal;
  }
  double u1 = uniform_f64(rng);
  double u2 = uniform_f64(rng);
  double r = sqrt(-2.0 * log(1.0 - u2));
  double theta = 2.0 * M_PI * u1;
  rng->next_double_normal = r * sin(theta);
  rng->has_next_double_normal = 1;
  return r * cos(theta);
}

/* The AVX2 build of normal_fill_16 evaluates log and sincos with the Cephes polynomials of avx_mathfun.h
 * (log256_ps, sincos256_ps), and GCC compiles those intrinsics with -mfma into fused multiply-adds. This
 * is a scalar rewrite of the same arithmetic with every fusion made explicit (fmaf); which products GCC
 * fused was settled against the reference vectors (all 9 bit-exact; libm logf/cosf/sinf, the non-AVX2
 * build, differs by 1 ulp in ~40% of values). This file relies on no implicit contraction: ISO C11 mode
 * (-std=c11) keeps GCC at -ffp-contract=off. */
static float f32_from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static uint32_t bits_from_f32(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* log256_ps for one lane; x > 0 here (x = 1 - u lies in (0, 1]). */
static float cephes_logf(float x) {
  const float sqrt_half = 0.707106781186547524f;
  if (x < f32_from_bits(0x00800000u)) x = f32_from_bits(0x00800000u); /* no denormals */
  int32_t exponent = (int32_t)(bits_from_f32(x) >> 23) - 0x7f;
  x = f32_from_bits((bits_from_f32(x) & ~0x7f800000u) | bits_from_f32(0.5f)); /* mantissa in [0.5, 1) */
  float e = (float)exponent + 1.0f;
  if (x < sqrt_half) {
    e = e - 1.0f;
    x = (x - 1.0f) + x;
  } else {
    x = x - 1.0f;
  }
  float z = x * x;
  float y = 7.0376836292E-2f;
  y = fmaf(y, x, -1.1514610310E-1f);
  y = fmaf(y, x, 1.1676998740E-1f);
  y = fmaf(y, x, -1.2420140846E-1f);
  y = fmaf(y, x, 1.4249322787E-1f);
  y = fmaf(y, x, -1.6668057665E-1f);
  y = fmaf(y, x, 2.0000714765E-1f);
  y = fmaf(y, x, -2.4999993993E-1f);
  y = fmaf(y, x, 3.3333331174E-1f);
  y = y * x;
  y = fmaf(y, z, e * -2.12194440e-4f);
  y = fmaf(-z, 0.5f, y);
  return fmaf(e, 0.693359375f, x + y);
}

/* sincos256_ps for one lane, theta in [0, 2 pi). */
static void cephes_sincosf(float x, float *sin_out, float *cos_out) {
  uint32_t sign_sin = bits_from_f32(x) & 0x80000000u;
  x = fabsf(x);
  int32_t octant = (int32_t)(x * 1.27323954473516f); /* 4 / pi, truncated */
  octant = (octant + 1) & ~1;
  float y = (float)octant;
  sign_sin ^= (uint32_t)(octant & 4) << 29;
  uint32_t sign_cos = (uint32_t)(~(octant - 2) & 4) << 29;
  int sine_poly_for_sin = (octant & 2) == 0;
  /* extended-precision reduction x - y pi/4 */
  x = fmaf(y, -0.78515625f, x);
  x = fmaf(y, -2.4187564849853515625e-4f, x);
  x = fmaf(y, -3.77489497744594108e-8f, x);
  float z = x * x;
  float yc = 2.443315711809948E-005f;
  yc = fmaf(yc, z, -1.388731625493765E-003f);
  yc = fmaf(yc, z, 4.166664568298827E-002f);
  yc = yc * z;
  yc = fmaf(yc, z, -(z * 0.5f));
  yc = yc + 1.0f;
  float ys = -1.9515295891E-4f;
  ys = fmaf(ys, z, 8.3321608736E-3f);
  ys = fmaf(ys, z, -1.6666654611E-1f);
  ys = ys * z;
  ys = fmaf(ys, x, x);
  float s = sine_poly_for_sin ? ys : yc;
  float c = sine_poly_for_sin ? yc : ys;
  *sin_out = f32_from_bits(bits_from_f32(s) ^ sign_sin);
  *cos_out = f32_from_bits(bits_from_f32(c) ^ sign_cos);
}

/* Box-Muller on 16 uniforms in place: pairs (j, j+8). mean 0 and std 1, so torch's final
 * fmadd(n, std, mean) is the identity. */
static void normal_fill_16(float *data) {
  const float two_pi = (float)(2.0 * M_PI);
  for (int j = 0; j < 8; j++) {
    float radius = sqrtf(-2.0f * cephes_logf(1.0f - data[j])); /* [0, 1) -> (0, 1] for log */
    float theta = two_pi * data[j + 8];
    float s, c;
    cephes_sincosf(theta, &s, &c);
    data[j] = radius * c;
    data[j + 8] = radius * s;
  }
}

void sd_torch_randn(sd_torch_rng *rng, float *out, int64_t n) {
  if (n <= 0) return;
  if (n < 16) {
    for (int64_t i = 0; i < n; i++) out[i] = (float)normal_f64(rng);
    return;
  }
  for (int64_t i = 0; i < n; i++) out[i] = uniform_f32(rng);
  for (int64_t i = 0; i + 16 <= n; i += 16) normal_fill_16(out + i);
  if (n % 16 != 0) {
    float *tail = out + n - 16;
    for (int i = 0; i < 16; i++) tail[i] = uniform_f32(rng);
    normal_fill_16(tail);
  }
}
