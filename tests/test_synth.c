/* sdprune synth (model/synth.h): the tiny-sd1 key/shape/dtype list against the real reference file,
 * the schedule buffers and position_ids against the reference's values, the metadata, determinism
 * and f16 = round(f32); SD 1.5 and SD 2.1 part counts, parameter totals and spot shapes against the
 * published architectures; and loading every written file through the model loader with finite
 * UNet and text encoder outputs (SD 1.5: one full UNet evaluation at 64x64 latents).
 * SDPRUNE_SYNTH_QUICK=1 skips writing and running the two full-size models (~2 minutes, 4.7 GB disk). */
#include <jansson.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>

#include "core/half.h"
#include "model/model.h"
#include "model/parts.h"
#include "model/synth.h"
#include "test_util.h"

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const sd_synth_tensor *find_key(const sd_synth_list *l, const char *name) {
  for (int i = 0; i < l->count; i++)
    if (strcmp(l->items[i].name, name) == 0) return &l->items[i];
  return NULL;
}

static int same_shape(const int64_t *a, int na, const int64_t *b, int nb) {
  if (na != nb) return 0;
  for (int i = 0; i < na; i++)
    if (a[i] != b[i]) return 0;
  return 1;
}

/* Every non-EMA tensor of the reference has our name and shape and vice versa; dtypes are ours. */
static void check_tiny_keys(sd_tensor_store *ref) {
  sd_synth_list l;
  sd_error err = {{0}};
  CHECK(sd_synth_arch_get("tiny-sd1", &(sd_synth_arch){0}, &err) == 0, "%s", err.msg);
  sd_synth_arch a;
  sd_synth_arch_get("tiny-sd1", &a, &err);
  if (sd_synth_all_keys(&a, SD_DTYPE_F16, &l, &err) != 0) {
    CHECK(0, "keys: %s", err.msg);
    return;
  }
  int n_ref = 0, missing = 0, wrong = 0;
  char sa[96], sb[96];
  for (int i = 0; i < ref->count; i++) {
    const sd_tensor *r = &ref->tensors[i];
    if (strncmp(r->name, "model_ema.", 10) == 0) continue;
    n_ref++;
    const sd_synth_tensor *t = find_key(&l, r->name);
    if (!t) {
      missing++;
      fprintf(stderr, "  missing in synth: %s\n", r->name);
    } else if (!same_shape(t->shape, t->ndim, r->shape, r->ndim)) {
      wrong++;
      fprintf(stderr, "  shape of %s: synth %s, reference %s\n", r->name, sd_shape_str(t->shape, t->ndim, sa, sizeof sa),
              sd_shape_str(r->shape, r->ndim, sb, sizeof sb));
    }
  }
  printf("tiny-sd1: %d synth tensors, %d reference tensors (model_ema.* left out), %d missing, %d shapes differ\n",
         l.count, n_ref, missing, wrong);
  CHECK(l.count == n_ref, "synth has %d tensors, reference %d", l.count, n_ref);
  CHECK(missing == 0 && wrong == 0, "%d missing, %d wrong shapes", missing, wrong);
  int bad_dtype = 0;
  for (int i = 0; i < l.count; i++) {
    const sd_synth_tensor *t = &l.items[i];
    sd_dtype want = strstr(t->name, "position_ids")    ? SD_DTYPE_I64
                    : strchr(t->name, '.') == NULL     ? SD_DTYPE_F32 /* betas, alphas_cumprod(_prev) */
                                                       : SD_DTYPE_F16;
    const sd_tensor *r = sd_store_find(ref, t->name);
    if (t->dtype != want || (r && (want != SD_DTYPE_F16) && r->dtype != t->dtype)) bad_dtype++;
  }
  CHECK(bad_dtype == 0, "%d tensors with an unexpected dtype", bad_dtype);
  sd_synth_list_free(&l);
}

/* Schedule buffers and position_ids equal the reference's (ldm's float64 computation, stored F32). */
static void check_buffers(sd_tensor_store *ref) {
  static const char *const names[3] = {"betas", "alphas_cumprod", "alphas_cumprod_prev"};
  for (int w = 0; w < 3; w++) {
    float ours[1000];
    sd_synth_schedule(w, 0.00085, 0.012, 1000, ours);
    sd_tensor *r = sd_store_find(ref, names[w]);
    sd_error err;
    const float *rv = r ? sd_tensor_f32(r, &err) : NULL;
    CHECK(rv && sd_tensor_numel(r) == 1000, "reference %s", names[w]);
    if (!rv) continue;
    double max_rel = 0;
    int exact = 0;
    for (int i = 0; i < 1000; i++) {
      double d = fabs((double)ours[i] - rv[i]) / fabs((double)rv[i]);
      if (d > max_rel) max_rel = d;
      exact += ours[i] == rv[i];
    }
    printf("%-20s vs reference: %d/1000 bit-identical, max rel diff %.3g (tol 2.4e-7, 2 float32 ulp)\n", names[w],
           exact, max_rel);
    CHECK(max_rel <= 2.4e-7, "%s: max rel diff %g", names[w], max_rel);
  }
}

/* Reads the whole file into memory (small files only). */
static unsigned char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  *n = (size_t)ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *b = malloc(*n);
  if (b && fread(b, 1, *n, f) != *n) {
    free(b);
    b = NULL;
  }
  fclose(f);
  return b;
}

static void fill_normal(float *x, long n, uint64_t seed) {
  for (long i = 0; i < n; i++) {
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    double u1 = ((seed >> 11) + 1) * 0x1p-53;
    seed = seed * 6364136223846793005ull + 1442695040888963407ull;
    double u2 = (seed >> 11) * 0x1p-53;
    x[i] = (float)(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
  }
}

static int all_finite(const float *x, long n, double *max_abs) {
  *max_abs = 0;
  for (long i = 0; i < n; i++) {
    if (!isfinite(x[i])) return 0;
    if (fabs(x[i]) > *max_abs) *max_abs = fabs(x[i]);
  }
  return 1;
}

/* Opens path with the model loader, checks the UNet config against want (if non-NULL) and against the
 * config inferred from shapes (if infer), runs the text encoder and (if hw > 0) one UNet evaluation. */
static void check_load_and_run(const char *what, const char *path, const sd_unet_config *want, int infer, int hw) {
  sd_error err = {{0}};
  sd_model_options o = {.path = path};
  sd_model *m = NULL;
  double t0 = now();
  int rc = sd_model_open(&o, &m, &err);
  CHECK(rc == 0, "%s: open: %s", what, err.msg);
  if (rc != 0) return;
  CHECK(m->unet_view && m->text_view && m->vae_view, "%s: a part is missing", what);
  CHECK(m->unet_cfg_source && strcmp(m->unet_cfg_source, "checkpoint metadata") == 0, "%s: UNet config from %s", what,
        m->unet_cfg_source ? m->unet_cfg_source : "(none)");
  char d1[512], d2[512];
  sd_unet_config_describe(&m->unet_cfg, d1, sizeof d1);
  if (want) {
    sd_unet_config_describe(want, d2, sizeof d2);
    CHECK(memcmp(&m->unet_cfg, want, sizeof *want) == 0, "%s: metadata config\n  %s\nwant\n  %s", what, d1, d2);
  }
  if (infer) {
    sd_unet_config inferred;
    rc = sd_unet_config_infer(m->unet_view, &inferred, &err);
    CHECK(rc == 0, "%s: infer: %s", what, err.msg);
    sd_unet_config_describe(&inferred, d2, sizeof d2);
    CHECK(rc == 0 && memcmp(&m->unet_cfg, &inferred, sizeof inferred) == 0, "%s: metadata config\n  %s\ninferred\n  %s",
          what, d1, d2);
  }
  printf("%s: %s\n", what, d1);
  /* text encoder: BOS, a few tokens, EOS padding */
  sd_clip_text clip;
  rc = sd_parts_text(m, &clip, &err);
  CHECK(rc == 0, "%s: text encoder: %s", what, err.msg);
  float *ctx = NULL;
  int d = 0;
  if (rc == 0) {
    d = clip.cfg.hidden;
    int32_t ids[SD_CLIP_TEXT_TOKENS];
    for (int i = 0; i < SD_CLIP_TEXT_TOKENS; i++) ids[i] = 49407;
    ids[0] = 49406;
    ids[1] = 320;
    ids[2] = 1125;
    ids[3] = 539;
    ctx = malloc(sizeof *ctx * SD_CLIP_TEXT_TOKENS * (size_t)d);
    rc = sd_clip_text_forward(&clip, ids, ctx, &err);
    CHECK(rc == 0, "%s: text forward: %s", what, err.msg);
    double mx;
    int fin = all_finite(ctx, (long)SD_CLIP_TEXT_TOKENS * d, &mx);
    CHECK(rc == 0 && fin, "%s: text hidden state not finite", what);
    printf("%s: text encoder (%s layout, %d layers run, width %d): finite, max|h| %.3g\n", what, m->text_layout,
           clip.n_run, d, mx);
    sd_clip_text_free(&clip);
  }
  if (hw > 0 && ctx) {
    sd_unet u;
    rc = sd_parts_unet(m, NULL, &u, &err);
    CHECK(rc == 0, "%s: unet init: %s", what, err.msg);
    CHECK(d == m->unet_cfg.context_dim, "%s: text width %d, UNet context %d", what, d, m->unet_cfg.context_dim);
    if (rc == 0 && d == m->unet_cfg.context_dim) {
      long n = 4L * hw * hw;
      float *x = malloc(sizeof *x * (size_t)n), *eps = malloc(sizeof *eps * (size_t)n), t = 500.0f;
      fill_normal(x, n, 7);
      double t1 = now();
      rc = sd_unet_forward(&u, x, 1, hw, hw, &t, ctx, SD_CLIP_TEXT_TOKENS, eps, &err);
      CHECK(rc == 0, "%s: unet forward: %s", what, err.msg);
      double mx, ss = 0;
      int fin = all_finite(eps, n, &mx);
      for (long i = 0; i < n; i++) ss += (double)eps[i] * eps[i];
      CHECK(rc == 0 && fin, "%s: eps not finite", what);
      printf("%s: UNet at %dx%d latents, t=500: finite, rms %.3g, max|eps| %.3g, %.1f s\n", what, hw, hw,
             sqrt(ss / n), mx, now() - t1);
      free(x);
      free(eps);
      sd_unet_free(&u);
    }
  }
  free(ctx);
  sd_model_close(m);
  printf("%s: load + run %.1f s\n", what, now() - t0);
}

/* Writes tiny-sd1 files; checks metadata, determinism, f16 = round(f32), value scales; loads them. */
static void check_tiny_files(sd_tensor_store *ref, const char *dir) {
  sd_synth_arch a;
  sd_error err = {{0}};
  sd_synth_arch_get("tiny-sd1", &a, &err);
  char p32[4096], p16[4096], p16b[4096], p16c[4096];
  snprintf(p32, sizeof p32, "%s/tiny32.safetensors", dir);
  snprintf(p16, sizeof p16, "%s/tiny16.safetensors", dir);
  snprintf(p16b, sizeof p16b, "%s/tiny16b.safetensors", dir);
  snprintf(p16c, sizeof p16c, "%s/tiny16c.safetensors", dir);
  int count = 0;
  uint64_t bytes = 0;
  CHECK(sd_synth_write(p32, &a, SD_DTYPE_F32, 42, NULL, NULL, &count, &bytes, &err) == 0, "%s", err.msg);
  CHECK(sd_synth_write(p16, &a, SD_DTYPE_F16, 42, NULL, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
  CHECK(sd_synth_write(p16b, &a, SD_DTYPE_F16, 42, NULL, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
  CHECK(sd_synth_write(p16c, &a, SD_DTYPE_F16, 43, NULL, NULL, NULL, NULL, &err) == 0, "%s", err.msg);
  size_t n1 = 0, n2 = 0, n3 = 0;
  unsigned char *b1 = slurp(p16, &n1), *b2 = slurp(p16b, &n2), *b3 = slurp(p16c, &n3);
  CHECK(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1) == 0, "same seed gives different bytes");
  CHECK(b1 && b3 && n1 == n3 && memcmp(b1, b3, n1) != 0, "seeds 42 and 43 give the same bytes");
  free(b1), free(b2), free(b3);

  sd_tensor_store *s32 = NULL, *s16 = NULL;
  CHECK(sd_store_open(p32, &s32, &err) == 0, "%s", err.msg);
  CHECK(sd_store_open(p16, &s16, &err) == 0, "%s", err.msg);
  if (!s32 || !s16) goto done;
  CHECK(s32->count == count, "f32 file holds %d tensors, writer said %d", s32->count, count);
  uint64_t data = 0;
  for (int i = 0; i < s32->count; i++) data += s32->tensors[i].nbytes;
  CHECK(data == bytes, "data bytes %llu, writer said %llu", (unsigned long long)data, (unsigned long long)bytes);

  /* metadata: same object shape as the reference's config, plus provenance */
  json_t *md = json_loads(s16->metadata_json ? s16->metadata_json : "", 0, NULL);
  json_t *rmd = json_loads(ref->metadata_json ? ref->metadata_json : "", 0, NULL);
  json_t *cfg = json_loads(json_string_value(json_object_get(md, "config")) ?: "", 0, NULL);
  json_t *rcfg = json_loads(json_string_value(json_object_get(rmd, "config")) ?: "", 0, NULL);
  CHECK(cfg && rcfg, "config JSON strings missing");
  CHECK(json_is_string(json_object_get(md, "sdprune_version")), "sdprune_version");
  CHECK(strcmp(json_string_value(json_object_get(md, "synth_seed")) ?: "", "42") == 0, "synth_seed");
  CHECK(strcmp(json_string_value(json_object_get(md, "synth_arch")) ?: "", "tiny-sd1") == 0, "synth_arch");
  static const char *const parts[] = {"unet", "text", "vae", "schedule"};
  int mismatches = 0;
  for (int p = 0; cfg && rcfg && p < 4; p++) {
    json_t *ours = json_object_get(cfg, parts[p]), *theirs = json_object_get(rcfg, parts[p]);
    const char *key;
    json_t *val;
    json_object_foreach(theirs, key, val) { /* every reference key, same value (ours may add keys) */
      json_t *mine = json_object_get(ours, key);
      int eq = json_is_real(val) && mine ? fabs(json_number_value(val) - json_number_value(mine)) < 1e-12
                                         : json_equal(val, mine);
      if (!eq) {
        mismatches++;
        fprintf(stderr, "  config %s.%s differs from the reference\n", parts[p], key);
      }
    }
  }
  CHECK(cfg && json_equal(json_object_get(cfg, "kind"), json_object_get(rcfg, "kind")), "config kind");
  CHECK(mismatches == 0, "%d config entries differ from the reference's", mismatches);
  json_decref(md), json_decref(rmd), json_decref(cfg), json_decref(rcfg);

  /* f16 file = round(f32 file); position_ids as the reference; fan-in scale of a big weight */
  int not_rounded = 0;
  for (int i = 0; i < s32->count; i++) {
    sd_tensor *t32 = &s32->tensors[i], *t16 = sd_store_find(s16, t32->name);
    if (!t16 || t32->dtype != SD_DTYPE_F32 || t16->dtype != SD_DTYPE_F16) continue;
    const float *v = t32->data;
    const uint16_t *h = t16->data;
    for (int64_t k = 0; k < sd_tensor_numel(t32); k++) not_rounded += sd_f32_to_f16(v[k]) != h[k];
  }
  CHECK(not_rounded == 0, "%d f16 values are not the rounded f32 values", not_rounded);
  const char *pid = "cond_stage_model.transformer.text_model.embeddings.position_ids";
  sd_tensor *ours = sd_store_find(s16, pid), *theirs = sd_store_find(ref, pid);
  CHECK(ours && theirs && ours->nbytes == theirs->nbytes && memcmp(ours->data, theirs->data, ours->nbytes) == 0,
        "position_ids differ from the reference");
  sd_tensor *w = sd_store_find(s32, "model.diffusion_model.output_blocks.0.0.in_layers.2.weight"); /* [64,128,3,3] */
  sd_tensor *g = sd_store_find(s32, "model.diffusion_model.output_blocks.0.0.in_layers.0.weight");
  if (w && g) {
    const float *v = w->data;
    double ss = 0, sum = 0;
    int64_t n = sd_tensor_numel(w);
    for (int64_t k = 0; k < n; k++) ss += (double)v[k] * v[k], sum += v[k];
    double sd = sqrt(ss / n), want = 1.0 / sqrt(128 * 9);
    printf("fan-in init of [64,128,3,3]: std %.5f, want %.5f (1/sqrt(1152)), mean %.2g\n", sd, want, sum / n);
    CHECK(fabs(sd / want - 1) < 0.03 && fabs(sum / n) < 4 * want / sqrt((double)n), "std %g want %g", sd, want);
    const float *gv = g->data;
    int ones = 1;
    for (int64_t k = 0; k < sd_tensor_numel(g); k++) ones &= gv[k] == 1.0f;
    CHECK(ones, "GroupNorm gamma is not 1");
  }
  check_load_and_run("tiny-sd1 f16", p16, NULL, 0, 16);
  check_load_and_run("tiny-sd1 f32", p32, NULL, 0, 8);
done:
  sd_store_close(s32);
  sd_store_close(s16);
  unlink(p32), unlink(p16), unlink(p16b), unlink(p16c);
}

typedef struct {
  const char *prefix;
  int want;
  int got;
  int64_t params;
} part_count;

/* Part counts, parameter totals and spot shapes of the full-size key lists. */
static void check_full_keys(const char *arch, part_count *pc, int n_parts, int64_t want_total,
                            const char *const *spot_names, const int64_t (*spot_shapes)[5]) {
  sd_synth_arch a;
  sd_synth_list l;
  sd_error err = {{0}};
  CHECK(sd_synth_arch_get(arch, &a, &err) == 0, "%s", err.msg);
  if (sd_synth_all_keys(&a, SD_DTYPE_F16, &l, &err) != 0) {
    CHECK(0, "%s: %s", arch, err.msg);
    return;
  }
  int64_t total = 0;
  for (int i = 0; i < l.count; i++) {
    int64_t numel = 1;
    for (int k = 0; k < l.items[i].ndim; k++) numel *= l.items[i].shape[k];
    total += numel;
    for (int p = 0; p < n_parts; p++)
      if (strncmp(l.items[i].name, pc[p].prefix, strlen(pc[p].prefix)) == 0) {
        pc[p].got++;
        pc[p].params += numel;
        break;
      }
  }
  for (int p = 0; p < n_parts; p++) {
    printf("%s: %-36s %4d tensors (want %4d), %11lld parameters\n", arch, pc[p].prefix, pc[p].got, pc[p].want,
           (long long)pc[p].params);
    CHECK(pc[p].got == pc[p].want, "%s: %s has %d tensors, want %d", arch, pc[p].prefix, pc[p].got, pc[p].want);
  }
  printf("%s: %d tensors, %lld values in all (want %lld)\n", arch, l.count, (long long)total, (long long)want_total);
  CHECK(total == want_total, "%s: %lld values, want %lld", arch, (long long)total, (long long)want_total);
  char sa[96], sb[96];
  for (int s = 0; spot_names[s]; s++) {
    const sd_synth_tensor *t = find_key(&l, spot_names[s]);
    int nd = 0;
    while (nd < 5 && spot_shapes[s][nd] >= 0) nd++;
    CHECK(t && same_shape(t->shape, t->ndim, spot_shapes[s], nd), "%s: %s is %s, want %s", arch, spot_names[s],
          t ? sd_shape_str(t->shape, t->ndim, sa, sizeof sa) : "absent", sd_shape_str(spot_shapes[s], nd, sb, sizeof sb));
  }
  sd_synth_list_free(&l);
}

static void check_sd15_sd21_keys(void) {
  /* SD 1.5 (v1-5-pruned-emaonly): UNet 686 tensors / 859,520,964 parameters; CLIP ViT-L text 196 +
   * position_ids / 123,060,480 (+77); KL VAE 248 / 83,653,863; plus 3 schedule buffers. */
  part_count sd15[] = {{"model.diffusion_model.", 686, 0, 0},
                       {"cond_stage_model.transformer.text_model.", 197, 0, 0},
                       {"first_stage_model.", 248, 0, 0}};
  static const char *const n15[] = {"model.diffusion_model.input_blocks.1.1.proj_in.weight",
                                    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight",
                                    "model.diffusion_model.middle_block.1.transformer_blocks.0.ff.net.0.proj.weight",
                                    "model.diffusion_model.output_blocks.3.0.skip_connection.weight",
                                    "model.diffusion_model.output_blocks.8.2.conv.weight",
                                    "model.diffusion_model.time_embed.0.weight",
                                    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight",
                                    "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc1.weight",
                                    "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight",
                                    "first_stage_model.encoder.conv_out.weight",
                                    "first_stage_model.quant_conv.weight",
                                    NULL};
  static const int64_t s15[][5] = {{320, 320, 1, 1, -1}, {320, 768, -1}, {10240, 1280, -1}, {1280, 2560, 1, 1, -1},
                                   {640, 640, 3, 3, -1}, {1280, 320, -1}, {49408, 768, -1},  {3072, 768, -1},
                                   {256, 512, 1, 1, -1}, {8, 512, 3, 3, -1}, {8, 8, 1, 1, -1}};
  check_full_keys("sd15", sd15, 3, 859520964LL + 123060480 + 77 + 83653863 + 3000, n15, s15);
  CHECK(sd15[1].params == 123060480 + 77, "sd15 text parameters %lld", (long long)sd15[1].params);
  CHECK(sd15[0].params == 859520964, "sd15 UNet parameters %lld", (long long)sd15[0].params);

  /* SD 2.1: UNet 686 / 865,910,724; OpenCLIP ViT-H text tower 24 x 12 + 6 = 294 tensors, 354,032,641
   * values (diffusers' 23-layer CLIPTextModel has 340,387,840; + one block 12,596,224 + text_projection
   * 1,048,576 + logit_scale 1); same VAE. */
  part_count sd21[] = {{"model.diffusion_model.", 686, 0, 0},
                       {"cond_stage_model.model.", 294, 0, 0},
                       {"first_stage_model.", 248, 0, 0}};
  static const char *const n21[] = {"model.diffusion_model.input_blocks.1.1.proj_in.weight",
                                    "model.diffusion_model.output_blocks.11.1.proj_out.weight",
                                    "model.diffusion_model.input_blocks.4.1.transformer_blocks.0.attn2.to_v.weight",
                                    "cond_stage_model.model.positional_embedding",
                                    "cond_stage_model.model.transformer.resblocks.23.attn.in_proj_weight",
                                    "cond_stage_model.model.transformer.resblocks.0.mlp.c_proj.weight",
                                    "cond_stage_model.model.text_projection",
                                    "cond_stage_model.model.logit_scale",
                                    NULL};
  static const int64_t s21[][5] = {{320, 320, -1},   {320, 320, -1},  {640, 1024, -1},  {77, 1024, -1},
                                   {3072, 1024, -1}, {1024, 4096, -1}, {1024, 1024, -1}, {-1}};
  check_full_keys("sd21", sd21, 3, 865910724LL + 354032641 + 83653863 + 3000, n21, s21);
}

static void write_load_full(const char *arch, const char *dir, const sd_unet_config *want, int hw) {
  sd_synth_arch a;
  sd_error err = {{0}};
  sd_synth_arch_get(arch, &a, &err);
  char path[4096];
  snprintf(path, sizeof path, "%s/%s.safetensors", dir, arch);
  double t0 = now();
  int count = 0;
  uint64_t bytes = 0;
  int rc = sd_synth_write(path, &a, SD_DTYPE_F16, 1, NULL, NULL, &count, &bytes, &err);
  CHECK(rc == 0, "%s: write: %s", arch, err.msg);
  printf("%s: wrote %d tensors, %.2f GB f16 in %.1f s\n", arch, count, bytes / 1e9, now() - t0);
  if (rc == 0) check_load_and_run(arch, path, want, 1, hw);
  unlink(path);
}

int main(void) {
  const char *refdir = test_reference_dir();
  char path[4096];
  snprintf(path, sizeof path, "%s/tiny-sd1/model.safetensors", refdir);
  sd_tensor_store *ref = NULL;
  sd_error err = {{0}};
  CHECK(sd_store_open(path, &ref, &err) == 0, "%s", err.msg);
  if (!ref) return test_finish();
  sd_synth_arch a;
  CHECK(sd_synth_arch_get("sd3", &a, &err) != 0 && strstr(err.msg, "sd3") && strstr(err.msg, "tiny-sd1"),
        "unknown arch message: %s", err.msg);
  check_tiny_keys(ref);
  check_buffers(ref);
  char dir[] = "/tmp/sdprune-test-synth-XXXXXX";
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  check_tiny_files(ref, dir);
  check_sd15_sd21_keys();
  const char *quick = getenv("SDPRUNE_SYNTH_QUICK");
  if (quick && strcmp(quick, "1") == 0) {
    printf("SDPRUNE_SYNTH_QUICK=1: not writing or running the full-size sd15/sd21 files\n");
  } else {
    sd_unet_config c15, c21;
    sd_unet_config_sd15(&c15);
    sd_unet_config_sd21(&c21);
    write_load_full("sd15", dir, &c15, 64);
    write_load_full("sd21", dir, &c21, 0);
  }
  rmdir(dir);
  sd_store_close(ref);
  return test_finish();
}
