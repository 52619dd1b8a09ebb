/* Tests of the torch zip reader (io/torch_zip.c + io/pickle.c):
 * - tiny-sd1/model.ckpt holds exactly the tensors of tiny-sd1/model.safetensors (names, dtype, shape, bytes);
 * - the erased UNets (.pt, diffusers and original naming, F32) equal tiny-sd1's UNet except attn2;
 * - hand-built archives (pickle bytes written here, zipped with libzip): views, nested dicts, and every
 *   hostile input (foreign globals, REDUCE on a non-callable, missing storage, out-of-bounds views,
 *   zip bomb, truncated file, non-zip file, bad pickles) is refused with a message naming the problem. */
#include <stdint.h>
#include <unistd.h>
#include <zip.h>

#include "io/pickle.h"
#include "io/tensor_store.h"
#include "test_util.h"

/* ---- reference checkpoints ---- */

static void test_ckpt_matches_safetensors(const char *ref) {
  char a[4096], b[4096];
  snprintf(a, sizeof a, "%s/tiny-sd1/model.ckpt", ref);
  snprintf(b, sizeof b, "%s/tiny-sd1/model.safetensors", ref);
  sd_error err = {{0}};
  sd_tensor_store *ck = NULL, *st = NULL;
  int rc = sd_store_open(a, &ck, &err);
  CHECK(rc == 0, "open ckpt: %s", err.msg);
  rc = sd_store_open(b, &st, &err);
  CHECK(rc == 0, "open safetensors: %s", err.msg);
  if (!ck || !st) return;
  CHECK(strcmp(ck->format, "torch") == 0, "format %s", ck->format);
  CHECK(ck->count == st->count, "ckpt has %d tensors, safetensors %d", ck->count, st->count);
  int same = 0, f16 = 0, bf16 = 0;
  for (int i = 0; i < st->count; i++) {
    sd_tensor *s = &st->tensors[i], *c = sd_store_find(ck, s->name);
    if (!c) {
      CHECK(c != NULL, "ckpt lacks '%s'", s->name);
      continue;
    }
    int ok = c->dtype == s->dtype && c->ndim == s->ndim && c->nbytes == s->nbytes &&
             memcmp(c->shape, s->shape, sizeof(int64_t) * (size_t)s->ndim) == 0 &&
             (s->nbytes == 0 || memcmp(c->data, s->data, s->nbytes) == 0);
    CHECK(ok, "tensor '%s' differs (dtype %s/%s, %zu/%zu bytes)", s->name, sd_dtype_name(c->dtype),
          sd_dtype_name(s->dtype), c->nbytes, s->nbytes);
    same += ok;
    f16 += c->dtype == SD_DTYPE_F16;
    bf16 += c->dtype == SD_DTYPE_BF16;
  }
  printf("model.ckpt: %d tensors, %d identical to model.safetensors (%d F16, %d BF16)\n", ck->count, same, f16, bf16);
  CHECK(f16 > 0 && bf16 > 0, "expected F16 and BF16 storages, got %d and %d", f16, bf16);
  CHECK(ck->metadata_json && strstr(ck->metadata_json, "\"global_step\"") && strstr(ck->metadata_json, "\"epoch\""),
        "metadata %s", ck->metadata_json ? ck->metadata_json : "(null)");
  sd_store_close(ck);
  sd_store_close(st);
}

/* Every tensor of the erased .pt (F32) has the shape of the base one; values equal except attn2 weights. */
static void test_erased(const char *ref, const char *pt, const char *base, const char *prefix) {
  char a[4096], b[4096];
  snprintf(a, sizeof a, "%s/tiny-sd1-erased/%s", ref, pt);
  snprintf(b, sizeof b, "%s/%s", ref, base);
  sd_error err = {{0}};
  sd_tensor_store *e = NULL, *s = NULL;
  CHECK(sd_store_open(a, &e, &err) == 0, "open %s: %s", pt, err.msg);
  CHECK(sd_store_open(b, &s, &err) == 0, "open %s: %s", base, err.msg);
  if (!e || !s) return;
  int matched = 0, equal = 0, attn2_diff = 0, other_diff = 0;
  for (int i = 0; i < e->count; i++) {
    sd_tensor *t = &e->tensors[i];
    CHECK(t->dtype == SD_DTYPE_F32, "%s: '%s' is %s", pt, t->name, sd_dtype_name(t->dtype));
    char name[512];
    snprintf(name, sizeof name, "%s%s", prefix, t->name);
    sd_tensor *u = sd_store_find(s, name);
    if (!u) {
      CHECK(u != NULL, "%s: '%s' has no counterpart '%s'", pt, t->name, name);
      continue;
    }
    matched++;
    CHECK(t->ndim == u->ndim && memcmp(t->shape, u->shape, sizeof(int64_t) * (size_t)t->ndim) == 0, "shape of %s",
          t->name);
    const float *x = sd_tensor_f32(t, &err), *y = sd_tensor_f32(u, &err);
    long n = (long)sd_tensor_numel(t), diff = 0;
    for (long k = 0; k < n; k++) diff += x[k] != y[k];
    if (!diff) equal++;
    else if (strstr(t->name, "attn2")) attn2_diff++;
    else other_diff++;
  }
  printf("%s: %d tensors, %d matched, %d equal, %d attn2 differ, %d others differ\n", pt, e->count, matched, equal,
         attn2_diff, other_diff);
  CHECK(matched == e->count && e->count > 0, "%d of %d matched", matched, e->count);
  CHECK(other_diff == 0 && attn2_diff > 0, "%d non-attn2 tensors differ, %d attn2", other_diff, attn2_diff);
  sd_store_close(e);
  sd_store_close(s);
}

/* ---- hand-built archives ---- */

typedef struct {
  unsigned char b[8192];
  size_t n;
} pbuf;

static void op(pbuf *p, int c) { p->b[p->n++] = (unsigned char)c; }
static void raw(pbuf *p, const void *d, size_t n) {
  memcpy(p->b + p->n, d, n);
  p->n += n;
}
static void str(pbuf *p, const char *s) { /* BINUNICODE */
  uint32_t n = (uint32_t)strlen(s);
  op(p, 'X');
  raw(p, &n, 4);
  raw(p, s, n);
}
static void i32(pbuf *p, int32_t v) {
  op(p, 'J');
  raw(p, &v, 4);
}
static void global(pbuf *p, const char *mod, const char *name) {
  op(p, 'c');
  raw(p, mod, strlen(mod));
  op(p, '\n');
  raw(p, name, strlen(name));
  op(p, '\n');
}
static void ints(pbuf *p, const int *v, int n) {
  op(p, '(');
  for (int i = 0; i < n; i++) i32(p, v[i]);
  op(p, 't');
}
/* _rebuild_tensor_v2(('storage', torch.<type>, key, 'cpu', numel), offset, size, stride, False, OrderedDict()) */
static void tensor(pbuf *p, const char *type, const char *key, int numel, int offset, const int *size,
                   const int *stride, int ndim) {
  global(p, "torch._utils", "_rebuild_tensor_v2");
  op(p, '(');
  op(p, '(');
  str(p, "storage");
  global(p, "torch", type);
  str(p, key);
  str(p, "cpu");
  i32(p, numel);
  op(p, 't');
  op(p, 'Q');
  i32(p, offset);
  ints(p, size, ndim);
  ints(p, stride, ndim);
  op(p, 0x89);
  global(p, "collections", "OrderedDict");
  op(p, ')');
  op(p, 'R');
  op(p, 't');
  op(p, 'R');
}

static void begin(pbuf *p) {
  p->n = 0;
  op(p, 0x80);
  op(p, 2);
  op(p, '}');
  op(p, '(');
}
static void end(pbuf *p) {
  op(p, 'u');
  op(p, '.');
}

typedef struct {
  const char *name;
  const void *data;
  size_t n;
  int deflate;
} entry;

static const char *tmp_path(const char *tag) {
  static char path[256];
  snprintf(path, sizeof path, "/tmp/sdprune_test_torch_zip_%d_%s.pt", (int)getpid(), tag);
  return path;
}

static int write_zip(const char *path, const pbuf *pkl, const entry *extra, int n_extra) {
  unlink(path);
  int zerr;
  zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
  if (!z) return -1;
  zip_source_t *s = zip_source_buffer(z, pkl->b, pkl->n, 0);
  zip_int64_t i = zip_file_add(z, "archive/data.pkl", s, 0);
  zip_set_file_compression(z, (zip_uint64_t)i, ZIP_CM_STORE, 0);
  s = zip_source_buffer(z, "3\n", 2, 0);
  i = zip_file_add(z, "archive/version", s, 0);
  for (int k = 0; k < n_extra; k++) {
    s = zip_source_buffer(z, extra[k].data, extra[k].n, 0);
    i = zip_file_add(z, extra[k].name, s, 0);
    zip_set_file_compression(z, (zip_uint64_t)i, extra[k].deflate ? ZIP_CM_DEFLATE : ZIP_CM_STORE, 0);
  }
  return zip_close(z);
}

/* Opens path and expects failure with all the given fragments in the message (and the file name). */
static void expect_error(const char *path, const char *what, const char *frag1, const char *frag2) {
  sd_error err = {{0}};
  sd_tensor_store *s = (sd_tensor_store *)1;
  int rc = sd_store_open(path, &s, &err);
  CHECK(rc == -1 && s == NULL, "%s: accepted", what);
  CHECK(strstr(err.msg, path) != NULL, "%s: message does not name the file: %s", what, err.msg);
  CHECK(strstr(err.msg, frag1) != NULL, "%s: message lacks '%s': %s", what, frag1, err.msg);
  if (frag2) CHECK(strstr(err.msg, frag2) != NULL, "%s: message lacks '%s': %s", what, frag2, err.msg);
  CHECK(strchr(err.msg, '\n') == NULL, "%s: message is not one line", what);
  printf("  refused %-28s %s\n", what, err.msg);
  if (rc == 0) sd_store_close(s);
}

static void test_built(void) {
  float data[12];
  for (int i = 0; i < 12; i++) data[i] = (float)i;
  entry storage0 = {"archive/data/0", data, sizeof data, 0};
  pbuf p;
  const char *path = tmp_path("good");

  /* {'state_dict': {'w': [3,4] contiguous, 'wt': its transpose (a view), 'sub': {'b': [2] at offset 10},
   *                 'p': Parameter(w)}, 'epoch': 7} */
  begin(&p);
  str(&p, "state_dict");
  op(&p, '}');
  op(&p, '(');
  str(&p, "w");
  tensor(&p, "FloatStorage", "0", 12, 0, (int[]){3, 4}, (int[]){4, 1}, 2);
  op(&p, 'q');
  op(&p, 1);
  str(&p, "wt");
  tensor(&p, "FloatStorage", "0", 12, 0, (int[]){4, 3}, (int[]){1, 4}, 2);
  str(&p, "sub");
  op(&p, '}');
  str(&p, "b");
  tensor(&p, "FloatStorage", "0", 12, 10, (int[]){2}, (int[]){1}, 1);
  op(&p, 's');
  str(&p, "p");
  global(&p, "torch._utils", "_rebuild_parameter");
  op(&p, '(');
  op(&p, 'h');
  op(&p, 1);
  op(&p, 0x88);
  global(&p, "collections", "OrderedDict");
  op(&p, ')');
  op(&p, 'R');
  op(&p, 't');
  op(&p, 'R');
  op(&p, 'u');
  str(&p, "epoch");
  i32(&p, 7);
  end(&p);
  CHECK(write_zip(path, &p, &storage0, 1) == 0, "write %s", path);
  sd_error err = {{0}};
  sd_tensor_store *s = NULL;
  CHECK(sd_store_open(path, &s, &err) == 0, "open built archive: %s", err.msg);
  if (s) {
    CHECK(s->count == 4, "count %d", s->count);
    sd_tensor *w = sd_store_find(s, "w"), *wt = sd_store_find(s, "wt"), *b = sd_store_find(s, "sub.b"),
              *pp = sd_store_find(s, "p");
    CHECK(w && wt && b && pp, "missing tensors");
    if (w && wt && b && pp) {
      const float *fw = w->data, *ft = wt->data, *fb = b->data;
      int ok = 1;
      for (int i = 0; i < 3; i++)
        for (int j = 0; j < 4; j++) ok &= fw[i * 4 + j] == data[i * 4 + j] && ft[j * 3 + i] == data[i * 4 + j];
      CHECK(ok, "w or its transpose has wrong values");
      CHECK(wt->shape[0] == 4 && wt->shape[1] == 3 && wt->nbytes == 48, "wt shape");
      CHECK(b->ndim == 1 && b->shape[0] == 2 && fb[0] == 10.0f && fb[1] == 11.0f, "offset view");
      CHECK(pp->nbytes == 48 && memcmp(pp->data, data, 48) == 0, "parameter");
    }
    CHECK(s->metadata_json && strstr(s->metadata_json, "\"epoch\":7"), "metadata %s",
          s->metadata_json ? s->metadata_json : "(null)");
    sd_store_close(s);
  }

  /* GLOBAL os.system, called with a shell command */
  begin(&p);
  str(&p, "x");
  global(&p, "os", "system");
  op(&p, '(');
  str(&p, "touch /tmp/pwned");
  op(&p, 't');
  op(&p, 'R');
  end(&p);
  write_zip(path, &p, NULL, 0);
  expect_error(path, "GLOBAL os.system", "refusing global 'os.system'", "nothing was executed");

  /* STACK_GLOBAL builtins.eval */
  begin(&p);
  str(&p, "x");
  op(&p, 0x8c);
  op(&p, 8);
  raw(&p, "builtins", 8);
  op(&p, 0x8c);
  op(&p, 4);
  raw(&p, "eval", 4);
  op(&p, 0x93);
  end(&p);
  write_zip(path, &p, NULL, 0);
  expect_error(path, "STACK_GLOBAL builtins.eval", "builtins.eval", NULL);

  /* REDUCE on something that is not an allowlisted callable (a storage class, then a string) */
  begin(&p);
  str(&p, "x");
  global(&p, "torch", "FloatStorage");
  op(&p, ')');
  op(&p, 'R');
  end(&p);
  write_zip(path, &p, NULL, 0);
  expect_error(path, "REDUCE on a storage class", "refusing REDUCE", "torch.FloatStorage");
  begin(&p);
  str(&p, "x");
  str(&p, "posix.system");
  op(&p, ')');
  op(&p, 'R');
  end(&p);
  write_zip(path, &p, NULL, 0);
  expect_error(path, "REDUCE on a string", "refusing REDUCE", NULL);

  /* NEWOBJ */
  begin(&p);
  str(&p, "x");
  global(&p, "collections", "OrderedDict");
  op(&p, ')');
  op(&p, 0x81);
  end(&p);
  write_zip(path, &p, NULL, 0);
  expect_error(path, "NEWOBJ", "refusing object construction", NULL);

  /* storage key not in the archive */
  begin(&p);
  str(&p, "w");
  tensor(&p, "FloatStorage", "7", 12, 0, (int[]){12}, (int[]){1}, 1);
  end(&p);
  write_zip(path, &p, &storage0, 1);
  expect_error(path, "missing storage", "'w'", "no entry 'archive/data/7'");

  /* views past the end of the storage: offset, and size x stride */
  begin(&p);
  str(&p, "late");
  tensor(&p, "FloatStorage", "0", 12, 11, (int[]){2}, (int[]){1}, 1);
  end(&p);
  write_zip(path, &p, &storage0, 1);
  expect_error(path, "offset past the end", "'late'", "past the end of storage '0'");
  begin(&p);
  str(&p, "wide");
  tensor(&p, "FloatStorage", "0", 12, 0, (int[]){3, 4}, (int[]){5, 1}, 2);
  end(&p);
  write_zip(path, &p, &storage0, 1);
  expect_error(path, "strides past the end", "'wide'", "past the end");

  /* storage numel disagrees with the entry's size */
  begin(&p);
  str(&p, "w");
  tensor(&p, "FloatStorage", "0", 6, 0, (int[]){6}, (int[]){1}, 1);
  end(&p);
  write_zip(path, &p, &storage0, 1);
  expect_error(path, "storage size mismatch", "should hold 6 F32 elements", "48 bytes");

  /* zip bomb: 4 MiB of zeros deflated into a few KiB, declared as a 1M-element storage */
  size_t bomb_n = 4u << 20;
  void *zeros = calloc(1, bomb_n);
  entry bomb = {"archive/data/0", zeros, bomb_n, 1};
  begin(&p);
  str(&p, "w");
  tensor(&p, "FloatStorage", "0", (int)(bomb_n / 4), 0, (int[]){(int)(bomb_n / 4)}, (int[]){1}, 1);
  end(&p);
  write_zip(path, &p, &bomb, 1);
  expect_error(path, "zip bomb", "zip bomb", "archive/data/0");
  free(zeros);

  /* truncated pickle (no STOP), and a pickle that is not a dict */
  begin(&p);
  str(&p, "w");
  write_zip(path, &p, &storage0, 1);
  expect_error(path, "truncated pickle", "truncated pickle", NULL);
  p.n = 0;
  op(&p, 0x80);
  op(&p, 2);
  op(&p, ']');
  op(&p, '.');
  write_zip(path, &p, &storage0, 1);
  expect_error(path, "list at top level", "not a dict", NULL);

  /* a dict that contains itself */
  begin(&p);
  p.n = 2;
  op(&p, '}');
  op(&p, 'q');
  op(&p, 0);
  op(&p, '(');
  str(&p, "loop");
  op(&p, 'h');
  op(&p, 0);
  end(&p);
  write_zip(path, &p, &storage0, 1);
  expect_error(path, "recursive dict", "appears twice", NULL);

  /* no data.pkl at all */
  unlink(path);
  {
    int zerr;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    zip_file_add(z, "archive/other", zip_source_buffer(z, "x", 1, 0), 0);
    zip_close(z);
  }
  expect_error(path, "zip without data.pkl", "no <name>/data.pkl", NULL);
  unlink(path);
}

static void test_damaged_files(const char *ref) {
  char src[4096];
  snprintf(src, sizeof src, "%s/tiny-sd1/model.ckpt", ref);
  FILE *f = fopen(src, "rb");
  CHECK(f != NULL, "open %s", src);
  if (!f) return;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  unsigned char *buf = malloc((size_t)n);
  CHECK(fread(buf, 1, (size_t)n, f) == (size_t)n, "read");
  fclose(f);
  const char *path = tmp_path("damaged");
  long cuts[] = {n / 2, n - 30, 64};
  for (int i = 0; i < 3; i++) {
    f = fopen(path, "wb");
    fwrite(buf, 1, (size_t)cuts[i], f);
    fclose(f);
    char what[64];
    snprintf(what, sizeof what, "truncated to %ld bytes", cuts[i]);
    expect_error(path, what, cuts[i] == 64 ? "zip" : "truncated", NULL);
  }
  /* a stored storage whose bytes were altered: the CRC check must catch it */
  unsigned char *copy = malloc((size_t)n);
  memcpy(copy, buf, (size_t)n);
  copy[70000] ^= 0x55; /* inside model/data/... entries (data.pkl is 65864 bytes at offset 0) */
  f = fopen(path, "wb");
  fwrite(copy, 1, (size_t)n, f);
  fclose(f);
  expect_error(path, "corrupted storage bytes", "CRC", NULL);
  free(copy);
  f = fopen(path, "wb");
  fputs("PK\003\004 this is not really a zip file\n", f);
  fclose(f);
  expect_error(path, "PK magic, not a zip", "zip", NULL);
  f = fopen(path, "wb");
  fputs("just some text\n", f);
  fclose(f);
  sd_error err = {{0}};
  sd_tensor_store *s = NULL;
  CHECK(sd_store_open_torch(path, &s, &err) == -1 && strstr(err.msg, "not a zip archive"), "text file: %s", err.msg);
  printf("  refused %-28s %s\n", "text file", err.msg);
  unlink(path);
  free(buf);
}

/* Mutated and truncated copies of a real data.pkl: each is either unpickled or refused with a message;
 * nothing may crash (run under valgrind/ASan to see memory errors). */
static void test_pickle_mutations(const char *ref) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tiny-sd1/model.ckpt", ref);
  int zerr;
  zip_t *z = zip_open(path, ZIP_RDONLY, &zerr);
  CHECK(z != NULL, "open %s", path);
  if (!z) return;
  zip_stat_t st;
  zip_stat(z, "model/data.pkl", 0, &st);
  unsigned char *orig = malloc(st.size), *buf = malloc(st.size);
  zip_file_t *f = zip_fopen(z, "model/data.pkl", 0);
  CHECK(f && zip_fread(f, orig, st.size) == (zip_int64_t)st.size, "read data.pkl");
  zip_fclose(f);
  zip_close(z);
  uint64_t rng = 12345;
  int accepted = 0, refused = 0, silent = 0;
  for (int it = 0; it < 3000; it++) {
    memcpy(buf, orig, st.size);
    size_t len = st.size;
    int nmut = 1 + it % 4;
    for (int m = 0; m < nmut; m++) {
      rng = rng * 6364136223846793005ull + 1442695040888963407ull;
      size_t at = (size_t)(rng >> 33) % st.size;
      if (it % 10 == 9) len = at; /* truncation */
      else buf[at] = (unsigned char)(rng >> 17);
    }
    pk_doc doc;
    sd_error err = {{0}};
    if (pk_load(buf, len, &doc, &err) == 0) {
      accepted++;
      pk_free(&doc);
    } else {
      refused++;
      silent += err.msg[0] == 0;
    }
  }
  printf("data.pkl mutations: %d unpickled, %d refused\n", accepted, refused);
  CHECK(silent == 0, "%d refusals without a message", silent);
  CHECK(refused > 0, "no mutation was refused");
  pk_doc doc;
  sd_error err = {{0}};
  CHECK(pk_load(orig, st.size, &doc, &err) == 0, "original data.pkl: %s", err.msg);
  pk_free(&doc);
  free(orig);
  free(buf);
}

int main(void) {
  const char *ref = test_reference_dir();
  test_ckpt_matches_safetensors(ref);
  test_erased(ref, "unet-erased-diffusers.pt", "tiny-sd1-diffusers/unet/diffusion_pytorch_model.safetensors", "");
  test_erased(ref, "unet-erased-compvis.pt", "tiny-sd1/model.safetensors", "");
  test_built();
  test_damaged_files(ref);
  test_pickle_mutations(ref);
  return test_finish();
}
