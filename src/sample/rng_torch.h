/* Torch-exact CPU random numbers: `torch.manual_seed(seed); torch.randn(shape)` on CPU in float32,
 * reproduced bit for bit (mt19937 as in ATen's MT19937RNGEngine.h, 24-bit float uniforms, and the
 * normal_ kernel's batched Box-Muller). Not a general RNG library and not CUDA's Philox generator.
 *
 * How seeds map to torch (so users can reproduce images from seeds written in CSV files):
 *  - sd_torch_rng_seed(rng, S) is torch.manual_seed(S) / torch.Generator("cpu").manual_seed(S) for any
 *    S in [0, 2^64). Torch stores the full uint64 seed but mt19937 is initialised from its low 32 bits
 *    only (state[0] = seed & 0xffffffff), so seeds S and S + 2^32 give identical noise, in torch and here.
 *    A negative Python seed s is taken by torch modulo 2^64: pass (uint64_t)(int64_t)s.
 *  - sd_torch_randn(rng, out, n) is torch.randn(shape) with numel(shape) == n (float32, contiguous), and
 *    consecutive calls continue the stream exactly as consecutive torch.randn calls on the same generator.
 *    torch.randn_like(x) is sd_torch_randn with n = numel(x).
 *  - diffusers' `torch.randn(shape, generator=torch.Generator("cpu").manual_seed(S))` for latents of shape
 *    [1,4,H/8,W/8] is sd_torch_rng_seed(S) then sd_torch_randn(n = 4*H/8*W/8).
 *
 * Torch's kernel for float32 randn (aten/src/ATen/native/cpu/DistributionTemplates.h, normal_kernel):
 *  - n >= 16: fill n uniforms u = (mt() & 0xffffff) * 2^-24; transform every block of 16 in place with
 *    Box-Muller (pairs (j, j+8): r = sqrt(-2 log(1 - u_j)), theta = 2 pi u_{j+8}, out_j = r cos theta,
 *    out_{j+8} = r sin theta); when n % 16 != 0, draw 16 fresh uniforms into the last 16 slots and
 *    transform them again (overwriting some already-finished values).
 *  - n < 16: one value at a time from normal_distribution<double> (53-bit double uniforms, Box-Muller in
 *    double, the sine half cached in the generator for the next scalar draw), cast to float.
 * The block transform exists in two builds of torch: a plain one (libm float log/cos/sin) and an AVX2 one
 * (Cephes-polynomial log256_ps/sincos256_ps, compiled with FMA). This file reproduces the AVX2 one, which
 * is what torch runs on x86-64 CPUs with AVX2 and what made the reference vectors (bit-exact on all 9);
 * torch on CPUs without AVX2 (or aarch64) gives values that differ by about 1 ulp in ~40% of elements. */
#ifndef SD_RNG_TORCH_H
#define SD_RNG_TORCH_H

#include <stdint.h>

#define SD_MT_N 624

typedef struct {
  uint32_t state[SD_MT_N];
  int left; /* values left before the next twist (ATen's left_) */
  int next; /* index of the next state word (ATen's next_) */
  uint64_t seed;
  int has_next_double_normal; /* cached second Box-Muller value of the scalar (n < 16) path */
  double next_double_normal;
} sd_torch_rng;

/* torch.manual_seed(seed) on the CPU generator: mt19937 from the low 32 bits, caches cleared. */
void sd_torch_rng_seed(sd_torch_rng *rng, uint64_t seed);

/* One raw 32-bit mt19937 output (ATen CPUGeneratorImpl::random). */
uint32_t sd_torch_rng_u32(sd_torch_rng *rng);

/* torch.randn(n) in float32: out[n]. */
void sd_torch_randn(sd_torch_rng *rng, float *out, int64_t n);

#endif
