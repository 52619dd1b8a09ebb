/* Model loading on bad input: every failure is one message naming the file and the tensor or key,
 * never a crash. Inputs are derived from the tiny reference model by dropping, reshaping or
 * truncating tensors. */
#include <unistd.h>

#include "io/safetensors.h"
#include "model/model.h"
#include "model/parts.h"
#include "test_util.h"

static char dir[256];
static sd_tensor_store *base;

/* Writes the base model's tensors to path, skipping names containing `drop` and giving tensors named
 * `reshape` the shape [n] instead (n = element count, so the data still fits). */
static void write_variant(const char *path, const char *drop, const char *reshape, const char *only_prefix) {
  sd_st_entry *e = calloc((size_t)base->count, sizeof *e);
  int n = 0;
  for (int i = 0; i < base->count; i++) {
    sd_tensor *t = &base->tensors[i];
    if (drop && strstr(t->name, drop)) continue;
    if (only_prefix && strncmp(t->name, only_prefix, strlen(only_prefix)) != 0) continue;
    e[n].name = t->name;
    e[n].dtype = t->dtype;
    e[n].ndim = t->ndim;
    memcpy(e[n].shape, t->shape, sizeof t->shape);
    if (reshape && strcmp(t->name, reshape) == 0) {
      e[n].ndim = 1;
      e[n].shape[0] = sd_tensor_numel(t);
    }
    e[n].data = t->data;
    n++;
  }
  sd_error err;
  if (sd_safetensors_write(path, e, n, base->metadata_json, &err) != 0) fprintf(stderr, "write: %s\n", err.msg);
  free(e);
}

/* Opens the model (and builds its UNet); returns the error message of the first failing step. */
static int load(const sd_model_options *o, sd_error *err) {
  sd_model *m = NULL;
  if (sd_model_open(o, &m, err) != 0) return -1;
  sd_unet u;
  int rc = sd_parts_unet(m, NULL, &u, err);
  if (rc == 0) sd_unet_free(&u);
  sd_model_close(m);
  return rc;
}

static void expect(const char *what, const sd_model_options *o, const char *needle1, const char *needle2) {
  sd_error err = {{0}};
  int rc = load(o, &err);
  CHECK(rc != 0, "%s: expected failure", what);
  CHECK(strstr(err.msg, needle1) != NULL, "%s: message has '%s': %s", what, needle1, err.msg);
  if (needle2) CHECK(strstr(err.msg, needle2) != NULL, "%s: message has '%s': %s", what, needle2, err.msg);
  CHECK(strchr(err.msg, '\n') == NULL, "%s: one line", what);
}

int main(void) {
  const char *ref = test_reference_dir();
  char model[512], path[512];
  snprintf(model, sizeof model, "%s/tiny-sd1/model.safetensors", ref);
  sd_error err;
  if (sd_store_open(model, &base, &err) != 0) {
    fprintf(stderr, "%s\n", err.msg);
    return 1;
  }
  snprintf(dir, sizeof dir, "/tmp/sdprune_test_model_%d", (int)getpid());
  mkdir(dir, 0755);

  sd_model_options o = {.path = model};
  CHECK(load(&o, &err) == 0, "reference model loads: %s", err.msg);

  /* Two UNet tensors missing: both named in one message. */
  snprintf(path, sizeof path, "%s/missing.safetensors", dir);
  write_variant(path, "input_blocks.1.0.in_layers", NULL, NULL);
  o.path = path;
  expect("missing tensors", &o, "input_blocks.1.0.in_layers.0.weight", "input_blocks.1.0.in_layers.2.bias");
  expect("missing tensors names file", &o, path, "missing");

  /* A tensor with the wrong shape: got/expected. */
  snprintf(path, sizeof path, "%s/reshaped.safetensors", dir);
  write_variant(path, NULL, "model.diffusion_model.out.2.weight", NULL);
  o.path = path;
  expect("wrong shape", &o, "out.2.weight", "expected [4, 32, 3, 3]");

  /* A file with no UNet at all. */
  snprintf(path, sizeof path, "%s/vae_only.safetensors", dir);
  write_variant(path, NULL, NULL, "first_stage_model.");
  o.path = path;
  expect("no unet", &o, path, "no UNet tensors");

  /* Truncated checkpoint. */
  snprintf(path, sizeof path, "%s/truncated.safetensors", dir);
  {
    FILE *in = fopen(model, "rb"), *out = fopen(path, "wb");
    char buf[65536];
    size_t total = 0, n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0 && total < 3000000) {
      fwrite(buf, 1, n, out);
      total += n;
    }
    fclose(in);
    fclose(out);
  }
  o.path = path;
  expect("truncated", &o, path, "past the end");

  /* UNet override whose tensor has another shape than the base. */
  snprintf(path, sizeof path, "%s/override_shape.safetensors", dir);
  write_variant(path, NULL, "model.diffusion_model.middle_block.1.proj_in.bias", "model.diffusion_model.");
  sd_model_options ov = {.path = model, .unet_path = path};
  CHECK(load(&ov, &err) == 0, "override with same shapes (a [n] bias is [n]) loads: %s", err.msg);
  write_variant(path, NULL, "model.diffusion_model.middle_block.1.proj_in.weight", "model.diffusion_model.");
  expect("override shape", &ov, "middle_block.1.proj_in.weight", "base model has [64, 64, 1, 1]");

  /* UNet override missing keys: named. */
  snprintf(path, sizeof path, "%s/override_missing.safetensors", dir);
  write_variant(path, "attn2.to_k", NULL, "model.diffusion_model.");
  ov.unet_path = path;
  expect("override missing", &ov, "7 missing keys", "attn2.to_k.weight");

  /* Override without any UNet key. */
  snprintf(path, sizeof path, "%s/override_none.safetensors", dir);
  write_variant(path, NULL, NULL, "first_stage_model.");
  ov.unet_path = path;
  expect("override without unet", &ov, path, "no UNet tensors");

  /* Diffusers folder without unet/, and a missing path. */
  snprintf(path, sizeof path, "%s/emptydir", dir);
  mkdir(path, 0755);
  o.path = path;
  expect("empty folder", &o, path, "unet/diffusion_pytorch_model.safetensors");
  o.path = "/nonexistent/model.safetensors";
  expect("missing file", &o, "/nonexistent/model.safetensors", "cannot open");

  /* Bad --config. */
  snprintf(path, sizeof path, "%s/bad.json", dir);
  FILE *f = fopen(path, "w");
  fputs("{\"unet\": {\"model_channels\": 32,", f);
  fclose(f);
  sd_model_options oc = {.path = model, .config_path = path};
  expect("bad config", &oc, path, "not a JSON object");
  f = fopen(path, "w");
  fputs("{\"model_channels\": 32, \"channel_mult\": [1, 2], \"num_res_blocks\": 1, \"attention_resolutions\": [1, 2], "
        "\"num_heads\": 2, \"context_dim\": 64}",
        f);
  fclose(f);
  expect("config with the wrong context", &oc, "attn2.to_k.weight", "expected [32, 64]");

  /* The model hash covers every byte: one changed byte in the middle of a tensor changes it. */
  {
    char copy[512];
    snprintf(copy, sizeof copy, "%s/onebyte.safetensors", dir);
    FILE *in = fopen(model, "rb"), *out = fopen(copy, "wb");
    fseek(in, 0, SEEK_END);
    long n = ftell(in);
    fseek(in, 0, SEEK_SET);
    unsigned char *bytes = malloc((size_t)n);
    CHECK(fread(bytes, 1, (size_t)n, in) == (size_t)n, "read model");
    sd_tensor *t = sd_store_find(base, "model.diffusion_model.middle_block.1.transformer_blocks.0.ff.net.2.weight");
    size_t off = (size_t)((const unsigned char *)t->data - (const unsigned char *)base->map) + t->nbytes / 2 + 1;
    bytes[off] ^= 0x01;
    fwrite(bytes, 1, (size_t)n, out);
    fclose(in);
    fclose(out);
    free(bytes);
    sd_model *a = NULL, *b = NULL, *c = NULL;
    sd_model_options oa = {.path = model}, ob = {.path = copy};
    CHECK(sd_model_open(&oa, &a, &err) == 0 && sd_model_open(&oa, &c, &err) == 0 && sd_model_open(&ob, &b, &err) == 0,
          "open: %s", err.msg);
    if (a && b && c) {
      CHECK(strcmp(a->hash, c->hash) == 0, "same file, same hash");
      CHECK(strcmp(a->hash, b->hash) != 0, "one byte changed, another hash (%s)", a->hash);
    }
    sd_model_close(a);
    sd_model_close(b);
    sd_model_close(c);
  }

  sd_store_close(base);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
  return test_finish();
}
