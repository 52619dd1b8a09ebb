/* Tests of the torch-exact CPU randn against torch's own output: the rng.* vectors of tiny-sd1
 * (torch.manual_seed(S); torch.randn(shape), bit for bit), plus seeding and the scalar (n < 16) path. */
#include <stdint.h>

#include "io/tensor_store.h"
#include "sample/rng_torch.h"
#include "test_util.h"

static void test_reference_vectors(const char *ref_dir) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tiny-sd1/vectors.safetensors", ref_dir);
  sd_error err;
  sd_tensor_store *store = NULL;
  if (sd_store_open(path, &store, &err) != 0) {
    CHECK(0, "%s", err.msg);
    return;
  }
  const uint64_t seeds[3] = {0, 42, 1234};
  const char *shapes[3] = {"1x4x8x8", "1x4x64x64", "1x4x9x7"};
  double worst = 0;
  for (int a = 0; a < 3; a++) {
    for (int b = 0; b < 3; b++) {
      char name[128];
      snprintf(name, sizeof name, "rng.seed%llu.shape%s", (unsigned long long)seeds[a], shapes[b]);
      sd_tensor *t = sd_store_find(store, name);
      CHECK(t != NULL, "%s missing from %s", name, path);
      if (!t) continue;
      const float *ref = sd_tensor_f32(t, &err);
      CHECK(ref != NULL, "%s", err.msg);
      if (!ref) continue;
      int64_t n = sd_tensor_numel(t);
      float *got = malloc((size_t)n * sizeof *got);
      sd_torch_rng rng;
      sd_torch_rng_seed(&rng, seeds[a]);
      sd_torch_randn(&rng, got, n);
      double max_abs = 0;
      int64_t n_diff = 0;
      for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)got[i] - (double)ref[i]);
        if (d > max_abs) max_abs = d;
        if (got[i] != ref[i]) n_diff++;
      }
      if (max_abs > worst) worst = max_abs;
      /* tolerance: torch's values exactly (the tail-recompute and FMA details are all reproduced) */
      CHECK(n_diff == 0, "%s: %lld of %lld values differ, max abs %.3g", name, (long long)n_diff, (long long)n,
            max_abs);
      free(got);
    }
  }
  printf("rng: 9 reference tensors, worst max abs error %.3g\n", worst);
  sd_store_close(store);
}

static void test_seeding(void) {
  /* mt19937's published first output for the default seed 5489 */
  sd_torch_rng rng;
  sd_torch_rng_seed(&rng, 5489);
  uint32_t first = sd_torch_rng_u32(&rng);
  CHECK(first == 3499211612u, "mt19937(5489) first output %u, want 3499211612", first);
  /* 10000th output of mt19937(5489) is 4123659995 (C++11 [rand.predef]) */
  sd_torch_rng_seed(&rng, 5489);
  uint32_t v = 0;
  for (int i = 0; i < 10000; i++) v = sd_torch_rng_u32(&rng);
  CHECK(v == 4123659995u, "mt19937(5489) 10000th output %u, want 4123659995", v);

  /* torch seeds mt19937 from the low 32 bits only: S and S + 2^32 give the same noise */
  float a[64], b[64];
  sd_torch_rng_seed(&rng, 42);
  sd_torch_randn(&rng, a, 64);
  sd_torch_rng_seed(&rng, (UINT64_C(1) << 32) + 42);
  sd_torch_randn(&rng, b, 64);
  CHECK(memcmp(a, b, sizeof a) == 0, "seed 2^32+42 differs from seed 42");
  CHECK(rng.seed == (UINT64_C(1) << 32) + 42, "full 64-bit seed not kept");
}

static void test_scalar_path(void) {
  /* torch.manual_seed(0); torch.randn(2, 3) prints
   * [[1.5410, -0.2934, -2.1788], [0.5684, -1.0845, -1.3986]] (torch's documentation examples) */
  const float want[6] = {1.5410f, -0.2934f, -2.1788f, 0.5684f, -1.0845f, -1.3986f};
  float got[6];
  sd_torch_rng rng;
  sd_torch_rng_seed(&rng, 0);
  sd_torch_randn(&rng, got, 6);
  for (int i = 0; i < 6; i++) CHECK_NEAR(got[i], want[i], 5e-5, "randn(2,3) seed 0");
  /* the cached second Box-Muller value carries over between scalar calls: 3 + 3 equals 6 */
  float split[6];
  sd_torch_rng_seed(&rng, 0);
  sd_torch_randn(&rng, split, 3);
  sd_torch_randn(&rng, split + 3, 3);
  CHECK(memcmp(split, got, sizeof got) == 0, "two randn(3) calls differ from one randn(6)");
  /* re-seeding clears the cache */
  sd_torch_rng_seed(&rng, 0);
  sd_torch_randn(&rng, split, 1);
  sd_torch_rng_seed(&rng, 0);
  sd_torch_randn(&rng, split + 1, 1);
  CHECK(split[0] == split[1], "manual_seed did not clear the cached normal");
}

int main(void) {
  test_seeding();
  test_scalar_path();
  test_reference_vectors(test_reference_dir());
  return test_finish();
}
