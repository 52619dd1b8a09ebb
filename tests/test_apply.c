/* Applying a mask on the tiny reference model, in memory and to checkpoints:
 * - the pruned safetensors file and torch zip hold every tensor of the input with the same name, dtype
 *   and shape; untouched tensors and elements are byte-identical, pruned elements are zero bytes; the
 *   safetensors header stays a multiple of 8 and gains __metadata__["sdprune_mask"];
 * - restore gives back the input byte for byte; a wrong restore file is refused;
 * - sd_mask_apply_unet gives the same ff.net.2 weights and the same eps, bit for bit, as the UNet built
 *   from the pruned checkpoint; masks of another architecture are refused and leave the UNet as it was;
 * - an existing output is refused without force.
 * With `--write-mask OUT MODEL [CONFIG] [seed|bad-layer|bad-shape]` it writes a deterministic mask file
 * for the shell test (tests/test_apply.sh) instead. */
#include <unistd.h>

#include "model/model.h"
#include "model/parts.h"
#include "prune/apply.h"
#include "prune/mask_io.h"
#include "test_util.h"

/* A deterministic mask over every ff.net.2 weight of the view: whole neurons j % 5 == seed % 5 and single
 * weights whose flat index i has (7 i + seed) % 11 == 0. */
static int build_mask(const sd_tensor_store *view, int seed, sd_mask *m) {
  memset(m, 0, sizeof *m);
  m->method = strdup("test");
  m->params_json = strdup("{}");
  m->model_hash = strdup("");
  m->layers = calloc((size_t)view->count, sizeof *m->layers);
  for (int i = 0; i < view->count; i++) {
    const sd_tensor *t = &view->tensors[i];
    const char *suffix = ".ff.net.2.weight";
    size_t n = strlen(t->name), k = strlen(suffix);
    if (n < k || strcmp(t->name + n - k, suffix) != 0 || t->ndim != 2)
      continue;
    sd_mask_layer *l = &m->layers[m->n_layers++];
    l->weight = strdup(t->name);
    l->layer = strndup(t->name, n - 7);
    l->rows = (int)t->shape[0];
    l->cols = (int)t->shape[1];
    l->neurons = malloc(sizeof(int32_t) * (size_t)l->cols);
    for (int j = 0; j < l->cols; j++)
      if (j % 5 == seed % 5)
        l->neurons[l->n_neurons++] = j;
    int64_t size = (int64_t)l->rows * l->cols;
    l->weights = malloc(sizeof(int64_t) * (size_t)size);
    for (int64_t w = 0; w < size; w++)
      if ((7 * w + seed) % 11 == 0)
        l->weights[l->n_weights++] = w;
  }
  return m->n_layers;
}

static int open_model(const char *path, const char *config, const char *unet, sd_model **m) {
  sd_model_options o = {.path = path, .config_path = config, .unet_path = unet};
  sd_error err;
  if (sd_model_open(&o, m, &err) != 0) {
    fprintf(stderr, "%s\n", err.msg);
    return -1;
  }
  return 0;
}

static int write_mask_main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: test_apply --write-mask OUT MODEL [CONFIG] [SEED|bad-layer|bad-shape]\n");
    return 2;
  }
  const char *config = argc > 4 && strcmp(argv[4], "-") ? argv[4] : NULL, *mode = argc > 5 ? argv[5] : "0";
  sd_model *model;
  if (open_model(argv[3], config, NULL, &model) != 0)
    return 1;
  sd_mask m;
  build_mask(model->unet_view, atoi(mode), &m);
  if (!strcmp(mode, "bad-layer")) {
    free(m.layers[0].layer);
    m.layers[0].layer = strdup("input_blocks.9.1.transformer_blocks.0.ff.net.2");
    free(m.layers[0].weight);
    m.layers[0].weight = strdup("input_blocks.9.1.transformer_blocks.0.ff.net.2.weight");
  } else if (!strcmp(mode, "bad-shape")) { /* a wider layer: as if from a model with a larger FFN */
    sd_mask_layer *l = &m.layers[m.n_layers - 1];
    l->cols *= 2;
    l->n_weights = 0;
  }
  sd_error err;
  int rc = sd_mask_write(argv[2], &m, &err);
  if (rc != 0)
    fprintf(stderr, "%s\n", err.msg);
  sd_mask_free(&m);
  sd_model_close(model);
  return rc ? 1 : 0;
}

static unsigned char *read_all(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return NULL;
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)size + 1);
  *n = fread(buf, 1, (size_t)size, f);
  fclose(f);
  return buf;
}

static int same_bytes(const char *a, const char *b) {
  size_t na, nb;
  unsigned char *x = read_all(a, &na), *y = read_all(b, &nb);
  int same = x && y && na == nb && memcmp(x, y, na) == 0;
  free(x);
  free(y);
  return same;
}

static const sd_mask_layer *layer_for_key(const sd_mask *m, const char *key, const char *prefix) {
  for (int i = 0; i < m->n_layers; i++) {
    char full[700];
    snprintf(full, sizeof full, "%s%s", prefix, m->layers[i].weight);
    if (!strcmp(full, key))
      return &m->layers[i];
  }
  return NULL;
}

static int mark(void *ctx, int64_t index) {
  ((unsigned char *)ctx)[index] = 1;
  return 0;
}

/* Every tensor of the input is in the output with the same dtype and shape; masked elements are zero
 * bytes, all other bytes equal. Returns the pruned elements seen. */
static int64_t compare_checkpoints(const char *orig_path, const char *pruned_path, const sd_mask *m, const char *prefix,
                                   const char *what) {
  sd_tensor_store *a, *b;
  sd_error err;
  if (sd_store_open(orig_path, &a, &err) != 0 || sd_store_open(pruned_path, &b, &err) != 0) {
    CHECK(0, "%s: open: %s", what, err.msg);
    return -1;
  }
  CHECK(a->count == b->count, "%s: %d tensors in, %d out", what, a->count, b->count);
  int64_t zeros = 0, bad_untouched = 0, bad_pruned = 0, bad_kept = 0, patched_tensors = 0;
  for (int i = 0; i < a->count; i++) {
    const sd_tensor *x = &a->tensors[i], *y = sd_store_find(b, x->name);
    if (!y) {
      CHECK(0, "%s: '%s' missing in the output", what, x->name);
      continue;
    }
    int same_meta = x->dtype == y->dtype && x->ndim == y->ndim && x->nbytes == y->nbytes;
    for (int d = 0; same_meta && d < x->ndim; d++)
      same_meta = x->shape[d] == y->shape[d];
    CHECK(same_meta, "%s: '%s' changed dtype or shape", what, x->name);
    if (!same_meta)
      continue;
    const sd_mask_layer *l = layer_for_key(m, x->name, prefix);
    if (!l) {
      if (memcmp(x->data, y->data, x->nbytes) != 0)
        bad_untouched++;
      continue;
    }
    patched_tensors++;
    size_t es = sd_dtype_size(x->dtype);
    int64_t numel = (int64_t)l->rows * l->cols;
    unsigned char *pruned = calloc((size_t)numel, 1);
    sd_mask_layer_foreach(l, mark, pruned);
    const unsigned char *px = x->data, *py = y->data;
    static const unsigned char zero[8];
    for (int64_t e = 0; e < numel; e++) {
      if (pruned[e]) {
        zeros++;
        if (memcmp(py + e * es, zero, es) != 0)
          bad_pruned++;
      } else if (memcmp(px + e * es, py + e * es, es) != 0) {
        bad_kept++;
      }
    }
    free(pruned);
  }
  CHECK(patched_tensors == m->n_layers, "%s: %lld patched tensors found, the mask has %d layers", what,
        (long long)patched_tensors, m->n_layers);
  CHECK(bad_untouched == 0, "%s: %lld untouched tensors differ", what, (long long)bad_untouched);
  CHECK(bad_pruned == 0, "%s: %lld pruned elements are not zero", what, (long long)bad_pruned);
  CHECK(bad_kept == 0, "%s: %lld kept elements changed", what, (long long)bad_kept);
  sd_store_close(a);
  sd_store_close(b);
  return zeros;
}

static int apply_to(const sd_model *model, const sd_mask *m, const char *out, int force, int override,
                    sd_apply_result *res, sd_error *err) {
  sd_apply_options opt = {.out = out,
                          .force = force,
                          .unet_override = override,
                          .mask_path = "in-memory.h5",
                          .mask_sha256 = "00",
                          .command_line = "test_apply"};
  return sd_apply_mask_checkpoint(model, m, &opt, res, err);
}

/* eps of the tiny UNet on a fixed input. */
static int unet_eps(sd_unet *u, float *eps) {
  enum { N = 2 * 4 * 8 * 8 };
  static float x[N], ctx[2 * 77 * 32];
  float t[2] = {250, 999};
  for (int i = 0; i < N; i++)
    x[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
  for (int i = 0; i < 2 * 77 * 32; i++)
    ctx[i] = (float)((i * 13) % 97) / 97.0f - 0.5f;
  sd_error err;
  int rc = sd_unet_forward(u, x, 2, 8, 8, t, ctx, 77, eps, &err);
  CHECK(rc == 0, "forward: %s", err.msg);
  return rc;
}

/* ff.net.2 of the transformer block whose site + ".ff.net.2" is layer. */
static const sd_linear *ff_out_of(sd_unet *u, const char *layer) {
  sd_unet_block *groups[3] = {u->input_blocks, &u->middle, u->output_blocks};
  int counts[3] = {u->n_input_blocks, 1, u->n_output_blocks};
  char name[200];
  for (int g = 0; g < 3; g++)
    for (int i = 0; i < counts[g]; i++)
      for (int l = 0; l < groups[g][i].n_layers; l++) {
        if (groups[g][i].layers[l].kind != SD_LAYER_ATTN)
          continue;
        sd_unet_transformer *tr = &groups[g][i].layers[l].attn;
        for (int d = 0; d < tr->depth; d++) {
          snprintf(name, sizeof name, "%s.ff.net.2", tr->blocks[d].site);
          if (!strcmp(name, layer))
            return &tr->blocks[d].ff_out;
        }
      }
  return NULL;
}

static void test_in_memory(const char *model_path, const char *pruned_path, const sd_mask *m) {
  sd_model *a, *b;
  if (open_model(model_path, NULL, NULL, &a) != 0 || open_model(pruned_path, NULL, NULL, &b) != 0) {
    CHECK(0, "open models");
    return;
  }
  sd_unet ua, ub;
  sd_error err;
  if (sd_parts_unet(a, NULL, &ua, &err) != 0 || sd_parts_unet(b, NULL, &ub, &err) != 0) {
    CHECK(0, "unet: %s", err.msg);
    return;
  }
  enum { N = 2 * 4 * 8 * 8 };
  static float eps_orig[N], eps_mem[N], eps_file[N];
  unet_eps(&ua, eps_orig);

  /* another architecture: an unknown layer, a wrong shape; the UNet is left as it was */
  sd_mask bad = *m;
  sd_mask_layer layers[2] = {m->layers[0], m->layers[0]};
  layers[1].layer = "input_blocks.9.1.transformer_blocks.0.ff.net.2";
  bad.layers = layers;
  bad.n_layers = 2;
  sd_mask_unet_copies owned;
  const float *before = ua.input_blocks[1].layers[1].attn.blocks[0].ff_out.w;
  CHECK(sd_mask_apply_unet(&ua, &bad, &owned, &err) != 0 && strstr(err.msg, "another architecture") &&
            strstr(err.msg, "input_blocks.9.1"),
        "unknown layer refused: %s", err.msg);
  layers[1] = m->layers[0];
  layers[1].cols *= 2;
  layers[1].n_weights = 0;
  CHECK(sd_mask_apply_unet(&ua, &bad, &owned, &err) != 0 && strstr(err.msg, "another architecture"),
        "wrong shape refused: %s", err.msg);
  CHECK(ua.input_blocks[1].layers[1].attn.blocks[0].ff_out.w == before, "UNet untouched after a refused mask");

  CHECK(sd_mask_apply_unet(&ua, m, &owned, &err) == 0, "apply in memory: %s", err.msg);
  CHECK(owned.n == m->n_layers, "%d copies for %d layers", owned.n, m->n_layers);
  int64_t differ = 0, weights_differ = 0;
  for (int i = 0; i < m->n_layers; i++) {
    const sd_linear *la = ff_out_of(&ua, m->layers[i].layer), *lb = ff_out_of(&ub, m->layers[i].layer);
    CHECK(la && lb, "site of %s", m->layers[i].layer);
    if (la && lb)
      weights_differ += memcmp(la->w, lb->w, sizeof(float) * (size_t)la->out * (size_t)la->in) != 0;
  }
  CHECK(weights_differ == 0, "%lld ff.net.2 weights differ between the masked and the pruned UNet",
        (long long)weights_differ);
  unet_eps(&ua, eps_mem);
  unet_eps(&ub, eps_file);
  for (int i = 0; i < N; i++)
    differ += memcmp(&eps_mem[i], &eps_file[i], sizeof(float)) != 0;
  CHECK(differ == 0, "in-memory mask vs pruned checkpoint: %lld of %d eps values differ (want bit-identical)",
        (long long)differ, N);
  int64_t changed = 0;
  for (int i = 0; i < N; i++)
    changed += eps_orig[i] != eps_mem[i];
  CHECK(changed > 0, "pruning changed eps (%lld values)", (long long)changed);
  sd_unet_free(&ua);
  sd_unet_free(&ub);
  sd_mask_unet_copies_free(&owned);
  sd_model_close(a);
  sd_model_close(b);
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "--write-mask"))
    return write_mask_main(argc, argv);
  const char *ref = test_reference_dir();
  char tmpl[] = "/tmp/test_apply.XXXXXX", model_path[600], ckpt_path[600], config[600], out[700], out2[700], back[700],
       restore[700];
  char *tmp = mkdtemp(tmpl);
  snprintf(model_path, sizeof model_path, "%s/tiny-sd1/model.safetensors", ref);
  snprintf(ckpt_path, sizeof ckpt_path, "%s/tiny-sd1/model.ckpt", ref);
  snprintf(config, sizeof config, "%s/tiny-sd1-diffusers", ref);
  sd_model *model;
  if (!tmp || open_model(model_path, NULL, NULL, &model) != 0)
    return 1;
  sd_mask m;
  CHECK(build_mask(model->unet_view, 1, &m) == 7, "7 ff.net.2 layers in tiny-sd1 (got %d)", m.n_layers);
  sd_error err;
  sd_apply_result res;

  /* single safetensors file */
  snprintf(out, sizeof out, "%s/pruned.safetensors", tmp);
  CHECK(apply_to(model, &m, out, 0, 0, &res, &err) == 0, "apply: %s", err.msg);
  snprintf(restore, sizeof restore, "%s/pruned.restore.h5", tmp);
  CHECK(!strcmp(res.restore_path, restore), "restore file name %s", res.restore_path);
  CHECK(!strcmp(res.format, "safetensors") && !strcmp(res.layout, "single-file"), "format %s, layout %s", res.format,
        res.layout);
  int64_t want = 0;
  for (int i = 0; i < m.n_layers; i++)
    want += sd_mask_layer_pruned(&m.layers[i]);
  CHECK(res.pruned == want && res.n_layers == 7, "pruned %lld, want %lld", (long long)res.pruned, (long long)want);
  int64_t zeros = compare_checkpoints(model_path, out, &m, "model.diffusion_model.", "safetensors");
  CHECK(zeros == want, "safetensors: %lld pruned elements seen, want %lld", (long long)zeros, (long long)want);
  {
    size_t n;
    unsigned char *bytes = read_all(out, &n);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--)
      hl = hl << 8 | bytes[i];
    CHECK(hl % 8 == 0, "header length %llu is a multiple of 8", (unsigned long long)hl);
    CHECK(memmem(bytes + 8, hl, "\"sdprune_mask\"", 14) != NULL, "header has __metadata__ sdprune_mask");
    CHECK(memmem(bytes + 8, hl, "\"config\"", 8) != NULL, "header keeps the original metadata");
    free(bytes);
  }
  CHECK(apply_to(model, &m, out, 0, 0, &res, &err) != 0 && strstr(err.msg, "exists") && strstr(err.msg, "--force"),
        "existing output refused: %s", err.msg);
  CHECK(apply_to(model, &m, out, 1, 0, &res, &err) == 0, "--force replaces: %s", err.msg);
  snprintf(back, sizeof back, "%s/back.safetensors", tmp);
  sd_restore_result rr;
  CHECK(sd_restore_checkpoint(out, restore, back, 0, &rr, &err) == 0, "restore: %s", err.msg);
  CHECK(same_bytes(back, model_path), "restored safetensors equals the original byte for byte");
  CHECK(rr.restored == want, "restored %lld elements", (long long)rr.restored);
  CHECK(sd_restore_checkpoint(out, restore, back, 0, &rr, &err) != 0 && strstr(err.msg, "exists"),
        "restore refuses an existing output: %s", err.msg);

  /* a restore file of another mask is refused, and nothing is written */
  sd_mask m2;
  build_mask(model->unet_view, 3, &m2);
  snprintf(out2, sizeof out2, "%s/other.safetensors", tmp);
  CHECK(apply_to(model, &m2, out2, 0, 0, &res, &err) == 0, "apply other mask: %s", err.msg);
  snprintf(back, sizeof back, "%s/wrong.safetensors", tmp);
  CHECK(sd_restore_checkpoint(out, res.restore_path, back, 0, &rr, &err) != 0 && strstr(err.msg, out) &&
            strstr(err.msg, "SHA-256"),
        "wrong restore file refused, naming the pruned file: %s", err.msg);
  CHECK(access(back, F_OK) != 0, "nothing written after a refused restore");

  /* a mask of another architecture: one line naming the first offending layer and the checkpoint */
  sd_mask bad = m;
  sd_mask_layer layers[2] = {m.layers[0], m.layers[1]};
  layers[1].layer = "output_blocks.9.1.transformer_blocks.0.ff.net.2";
  layers[1].weight = "output_blocks.9.1.transformer_blocks.0.ff.net.2.weight";
  bad.layers = layers;
  bad.n_layers = 2;
  snprintf(out2, sizeof out2, "%s/bad.safetensors", tmp);
  CHECK(apply_to(model, &bad, out2, 0, 0, &res, &err) != 0 && strstr(err.msg, "output_blocks.9.1") &&
            strstr(err.msg, "another architecture") && strstr(err.msg, "model.safetensors"),
        "unknown layer refused: %s", err.msg);
  layers[1] = m.layers[1];
  layers[1].rows += 1;
  layers[1].n_weights = 0;
  CHECK(apply_to(model, &bad, out2, 0, 0, &res, &err) != 0 && strstr(err.msg, m.layers[1].layer) &&
            strstr(err.msg, "another architecture"),
        "wrong shape refused: %s", err.msg);
  CHECK(access(out2, F_OK) != 0, "nothing written for a refused mask");

  test_in_memory(model_path, out, &m);

  /* torch zip: patched in place, read back by the torch reader (libzip checks every CRC) */
  sd_model *zm;
  if (open_model(ckpt_path, config, NULL, &zm) == 0) {
    snprintf(out, sizeof out, "%s/zpruned.ckpt", tmp);
    int zrc = apply_to(zm, &m, out, 0, 0, &res, &err);
    CHECK(zrc == 0, "apply to .ckpt: %s", err.msg);
    CHECK(zrc == 0 && !strcmp(res.format, "torch-zip") && !res.note[0], "zip patched in place (%s; %s)", res.format,
          res.note);
    zeros = compare_checkpoints(ckpt_path, out, &m, "model.diffusion_model.", "torch zip");
    CHECK(zeros == want, "torch zip: %lld pruned elements seen, want %lld", (long long)zeros, (long long)want);
    snprintf(back, sizeof back, "%s/back.ckpt", tmp);
    snprintf(restore, sizeof restore, "%s/zpruned.restore.h5", tmp);
    CHECK(sd_restore_checkpoint(out, restore, back, 0, &rr, &err) == 0, "restore .ckpt: %s", err.msg);
    CHECK(same_bytes(back, ckpt_path), "restored .ckpt equals the original byte for byte");
    /* --out NAME.safetensors converts on purpose */
    snprintf(out, sizeof out, "%s/converted.safetensors", tmp);
    zrc = apply_to(zm, &m, out, 0, 0, &res, &err);
    CHECK(zrc == 0 && !strcmp(res.format, "safetensors-from-torch"), "convert to safetensors: %s", err.msg);
    zeros = compare_checkpoints(ckpt_path, out, &m, "model.diffusion_model.", "converted");
    CHECK(zeros == want, "converted: %lld pruned elements seen", (long long)zeros);
    sd_model_close(zm);
  } else {
    CHECK(0, "open %s", ckpt_path);
  }

  sd_mask_free(&m);
  sd_mask_free(&m2);
  sd_model_close(model);
  char cmd[800];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmp);
  return test_finish();
}
