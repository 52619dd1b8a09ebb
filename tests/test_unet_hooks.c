/* The UNet's hook interface and its memory discipline on the tiny reference model:
 * - every transformer block is offered as a site, by its ldm path, for both kinds;
 * - observing changes nothing in eps; sites that are not wanted are never called;
 * - a hook that zeroes FFN neurons (what pruning does) changes eps, and zeroing the neurons equals
 *   zeroing the matching input columns of ff.net.2;
 * - after the first evaluation the activation arenas do not grow (no allocation in the timestep loop). */
#include "model/model.h"
#include "model/parts.h"
#include "test_util.h"

typedef struct {
  int offered, calls_ff, calls_attn2, zero_site; /* zero_site: site index whose neurons are zeroed, or -1 */
  char first_site[128];
  int want_attn2;
} hook_state;

static int wants(void *ctx, const char *site, sd_hook_kind kind) {
  hook_state *h = ctx;
  if (h->offered++ == 0) snprintf(h->first_site, sizeof h->first_site, "%s", site);
  return kind == SD_HOOK_FF_NEURONS || h->want_attn2;
}

static void observe(void *ctx, int site_index, const char *site, sd_hook_kind kind, int b, float t, float *data,
                    int64_t tokens, int channels) {
  hook_state *h = ctx;
  if (kind == SD_HOOK_FF_NEURONS) h->calls_ff++;
  else h->calls_attn2++;
  if (kind == SD_HOOK_FF_NEURONS && site_index == h->zero_site)
    for (int64_t i = 0; i < tokens * channels; i++) data[i] = 0.0f;
}

static void run(sd_model *m, const sd_unet_hooks *hooks, const float *x, const float *t, const float *ctx, float *eps,
                sd_unet *keep) {
  sd_unet u;
  sd_error err;
  if (sd_parts_unet(m, hooks, &u, &err) != 0) {
    fprintf(stderr, "%s\n", err.msg);
    exit(1);
  }
  CHECK(sd_unet_forward(&u, x, 2, 16, 16, t, ctx, 77, eps, &err) == 0, "forward: %s", err.msg);
  if (keep) *keep = u;
  else sd_unet_free(&u);
}

int main(void) {
  const char *ref = test_reference_dir();
  char path[512];
  snprintf(path, sizeof path, "%s/tiny-sd1/model.safetensors", ref);
  sd_model_options o = {.path = path};
  sd_model *m;
  sd_error err;
  if (sd_model_open(&o, &m, &err) != 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  enum { N = 2 * 4 * 16 * 16 };
  static float x[N], ctx[2 * 77 * 32], plain[N], observed[N], zeroed[N], colzero[N];
  float t[2] = {500, 999};
  for (int i = 0; i < N; i++) x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
  for (int i = 0; i < 2 * 77 * 32; i++) ctx[i] = (float)((i * 13) % 97) / 97.0f - 0.5f;

  sd_unet u;
  run(m, NULL, x, t, ctx, plain, &u);
  CHECK(u.n_tblocks == 7, "7 transformer blocks, got %d", u.n_tblocks);
  CHECK(strcmp(sd_unet_site(&u, 0), "input_blocks.1.1.transformer_blocks.0") == 0, "first site %s", sd_unet_site(&u, 0));
  CHECK(strcmp(sd_unet_site(&u, 6), "output_blocks.3.1.transformer_blocks.0") == 0, "last site %s", sd_unet_site(&u, 6));
  /* Arenas: sized by the first evaluation, then reused as they are. */
  size_t hw_work = u.work.high_water, hw_skips = u.skips.high_water;
  for (int r = 0; r < 2; r++) CHECK(sd_unet_forward(&u, x, 2, 16, 16, t, ctx, 77, observed, &err) == 0, "again");
  CHECK(u.work.n_chunks == 1 && u.skips.n_chunks == 1, "one chunk each after the first call (%d, %d)", u.work.n_chunks,
        u.skips.n_chunks);
  CHECK(u.work.high_water == hw_work && u.skips.high_water == hw_skips, "arenas did not grow");
  CHECK(memcmp(observed, plain, sizeof plain) == 0, "repeated evaluation is bit-identical");
  sd_unet_free(&u);

  hook_state h = {.zero_site = -1};
  sd_unet_hooks hooks = {.wants = wants, .observe = observe, .ctx = &h};
  run(m, &hooks, x, t, ctx, observed, NULL);
  CHECK(h.offered == 14, "each of 7 sites offered for 2 kinds, got %d", h.offered);
  CHECK(strcmp(h.first_site, "input_blocks.1.1.transformer_blocks.0") == 0, "site name %s", h.first_site);
  CHECK(h.calls_ff == 7 * 2 && h.calls_attn2 == 0, "ff observed per block and batch element, attn2 not wanted: %d %d",
        h.calls_ff, h.calls_attn2);
  CHECK(memcmp(observed, plain, sizeof plain) == 0, "observing does not change eps");
  h = (hook_state){.zero_site = -1, .want_attn2 = 1};
  run(m, &hooks, x, t, ctx, observed, NULL);
  CHECK(h.calls_attn2 == 14, "attn2 observed when wanted: %d", h.calls_attn2);
  double mx, rel = test_rel_l2(observed, plain, N, &mx);
  CHECK(rel < 1e-5, "attn2 observation path equals the fused one up to summation order (rel %g)", rel);

  /* Zero the neurons of the middle block: eps changes, exactly as with zeroed ff.net.2 input columns. */
  h = (hook_state){.zero_site = 2};
  run(m, &hooks, x, t, ctx, zeroed, NULL);
  rel = test_rel_l2(zeroed, plain, N, &mx);
  CHECK(rel > 1e-4, "zeroing neurons changes eps (rel %g)", rel);
  sd_tensor *w = sd_store_find(m->unet_view, "middle_block.1.transformer_blocks.0.ff.net.2.weight");
  CHECK(w != NULL, "ff.net.2 weight");
  if (w) {
    float *wf = (float *)sd_tensor_f32(w, &err); /* the model's own float32 copy (F16 source) */
    size_t n = (size_t)sd_tensor_numel(w);
    float *saved = malloc(n * sizeof(float));
    memcpy(saved, wf, n * sizeof(float));
    memset(wf, 0, n * sizeof(float));
    run(m, NULL, x, t, ctx, colzero, NULL);
    memcpy(wf, saved, n * sizeof(float));
    free(saved);
    rel = test_rel_l2(colzero, zeroed, N, &mx);
    CHECK(rel < 1e-6, "zeroed neurons == zeroed ff.net.2 columns (rel %g)", rel);
  }
  sd_model_close(m);
  return test_finish();
}
