/* PyTorch zip checkpoints (torch.save since 1.6: .ckpt/.pt/.pth/.bin) read into an sd_tensor_store.
 *
 * Layout: <archive>/data.pkl (the pickled object), <archive>/data/<key> (one uncompressed entry per
 * storage), <archive>/version, maybe <archive>/byteorder. The zip is read with libzip; data.pkl goes
 * through the restricted unpickler in pickle.c, which never executes anything. The state dict is the
 * top-level dict, or its 'state_dict' / 'model' / 'module' entry; only tensors are kept (nested dicts
 * flattened with '.'), other top-level scalars (global_step, epoch) go to metadata_json.
 * Not handled: the legacy pre-1.6 tar/pickle format, TorchScript archives, big-endian storages. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zip.h>

#include "io/pickle.h"
#include "io/tensor_store.h"

#define MAX_PICKLE_BYTES (1ull << 30)
#define MAX_EXPANSION 16 /* uncompressed bytes may be at most this many times the file size */
#define MAX_NAME_DEPTH 16

typedef struct {
  const char *key; /* NULL = empty slot */
  unsigned char *data;
  size_t nbytes;
} loaded_storage;

typedef struct {
  const char *path;
  zip_t *za;
  char prefix[512]; /* "<archive>/" */
  uint64_t file_size, expanded; /* bytes decompressed so far */
  sd_tensor_store *store;
  loaded_storage *cache;
  size_t cache_size, cache_used;
  sd_error *err;
} reader;

/* Reads one entry fully after checking its claimed sizes; *out is malloc'ed (caller owns). */
static int read_entry(reader *r, const char *name, unsigned char **out, size_t *nbytes, int *missing) {
  *out = NULL;
  if (missing) *missing = 0;
  zip_int64_t idx = zip_name_locate(r->za, name, 0);
  if (idx < 0) {
    if (missing) *missing = 1;
    return sd_fail(r->err, "%s: archive has no entry '%s'", r->path, name);
  }
  zip_stat_t st;
  zip_stat_init(&st);
  if (zip_stat_index(r->za, (zip_uint64_t)idx, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE) ||
      !(st.valid & ZIP_STAT_COMP_SIZE))
    return sd_fail(r->err, "%s: cannot stat entry '%s': %s", r->path, name, zip_strerror(r->za));
  uint64_t limit = r->file_size * MAX_EXPANSION;
  if (st.size > limit || st.size > limit - r->expanded)
    return sd_fail(r->err, "%s: entry '%s' claims %llu uncompressed bytes from a %llu-byte file (zip bomb?)", r->path,
                   name, (unsigned long long)st.size, (unsigned long long)r->file_size);
  if ((st.valid & ZIP_STAT_COMP_METHOD) && st.comp_method == ZIP_CM_STORE && st.comp_size != st.size)
    return sd_fail(r->err, "%s: stored entry '%s' has compressed size %llu but uncompressed size %llu", r->path, name,
                   (unsigned long long)st.comp_size, (unsigned long long)st.size);
  if (st.comp_size > r->file_size)
    return sd_fail(r->err, "%s: entry '%s' claims %llu bytes, more than the whole file (truncated?)", r->path, name,
                   (unsigned long long)st.comp_size);
  if (st.size > SIZE_MAX - 1) return sd_fail(r->err, "%s: entry '%s' is too large", r->path, name);
  unsigned char *buf = sd_malloc((size_t)st.size + 1, r->err);
  if (!buf) return -1;
  zip_file_t *zf = zip_fopen_index(r->za, (zip_uint64_t)idx, 0);
  if (!zf) {
    free(buf);
    return sd_fail(r->err, "%s: cannot open entry '%s': %s", r->path, name, zip_strerror(r->za));
  }
  uint64_t got = 0;
  while (got < st.size) {
    zip_int64_t n = zip_fread(zf, buf + got, st.size - got);
    if (n <= 0) break;
    got += (uint64_t)n;
  }
  unsigned char extra;
  zip_int64_t tail = got == st.size ? zip_fread(zf, &extra, 1) : -1; /* reaching EOF makes libzip check the CRC */
  int bad = got != st.size || tail != 0;
  char why[256];
  snprintf(why, sizeof why, "%s", zip_error_strerror(zip_file_get_error(zf)));
  zip_fclose(zf);
  r->expanded += got;
  if (bad) {
    free(buf);
    return sd_fail(r->err, "%s: entry '%s': read %llu of %llu bytes (%s; truncated or corrupt file?)", r->path, name,
                   (unsigned long long)got, (unsigned long long)st.size, tail > 0 ? "entry is longer than claimed" : why);
  }
  buf[st.size] = 0;
  *out = buf;
  *nbytes = (size_t)st.size;
  return 0;
}

static uint64_t hash_key(const char *s) {
  uint64_t h = 1469598103934665603ull;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
  return h;
}

/* A storage reference says how many elements of its dtype the entry holds; every reference must agree with the
 * entry's size, not only the first one read: the bounds of a tensor's view are checked against that count. */
static int check_storage_size(reader *r, const pk_value *st, const char *tensor, size_t nbytes) {
  size_t esize = sd_dtype_size(st->dtype);
  if ((uint64_t)st->numel > SIZE_MAX / esize || (size_t)st->numel * esize != nbytes)
    return sd_fail(r->err, "%s: storage '%s' (tensor '%s') should hold %lld %s elements but its entry has %zu bytes",
                   r->path, st->s, tensor, (long long)st->numel, sd_dtype_name(st->dtype), nbytes);
  return 0;
}

/* The bytes of storage `st`, read once per key and owned by the store. */
static int get_storage(reader *r, const pk_value *st, const char *tensor, loaded_storage **out) {
  if (r->cache_used * 2 >= r->cache_size) {
    size_t n = r->cache_size ? r->cache_size * 2 : 1024;
    loaded_storage *c = sd_calloc(n, sizeof *c, r->err);
    if (!c) return -1;
    for (size_t i = 0; i < r->cache_size; i++) {
      if (!r->cache[i].key) continue;
      size_t k = hash_key(r->cache[i].key) & (n - 1);
      while (c[k].key) k = (k + 1) & (n - 1);
      c[k] = r->cache[i];
    }
    free(r->cache);
    r->cache = c;
    r->cache_size = n;
  }
  size_t k = hash_key(st->s) & (r->cache_size - 1);
  while (r->cache[k].key) {
    if (strcmp(r->cache[k].key, st->s) == 0) {
      *out = &r->cache[k];
      return check_storage_size(r, st, tensor, r->cache[k].nbytes);
    }
    k = (k + 1) & (r->cache_size - 1);
  }
  char name[1024];
  if ((size_t)snprintf(name, sizeof name, "%sdata/%s", r->prefix, st->s) >= sizeof name)
    return sd_fail(r->err, "%s: storage key of tensor '%s' is too long", r->path, tensor);
  unsigned char *buf;
  size_t nbytes;
  int missing;
  if (read_entry(r, name, &buf, &nbytes, &missing)) {
    if (missing)
      return sd_fail(r->err, "%s: tensor '%s' refers to storage '%s', but the archive has no entry '%s'", r->path, tensor,
                     st->s, name);
    return -1;
  }
  if (check_storage_size(r, st, tensor, nbytes)) {
    free(buf);
    return -1;
  }
  if (sd_store_own(r->store, buf, r->err)) return -1;
  r->cache[k] = (loaded_storage){st->s, buf, nbytes};
  r->cache_used++;
  *out = &r->cache[k];
  return 0;
}

/* Adds one tensor: bounds-checks the view and copies it when it is not contiguous. */
static int add_tensor(reader *r, const char *name, const pk_value *t) {
  const pk_value *st = t->storage;
  size_t esize = sd_dtype_size(st->dtype);
  char sbuf[160];
  int64_t numel = 1, last = t->offset; /* last: index of the furthest element */
  int empty = 0;
  if (t->offset < 0) return sd_fail(r->err, "%s: tensor '%s' has a negative storage offset", r->path, name);
  for (int i = 0; i < t->ndim; i++) {
    if (t->size[i] < 0 || t->stride[i] < 0)
      return sd_fail(r->err, "%s: tensor '%s' has a negative size or stride", r->path, name);
    if (t->size[i] == 0) empty = 1;
    if (t->size[i] && numel > INT64_MAX / t->size[i]) return sd_fail(r->err, "%s: tensor '%s': size overflows", r->path, name);
    numel *= t->size[i];
  }
  if (!empty) {
    for (int i = 0; i < t->ndim; i++) {
      if (t->stride[i] && t->size[i] - 1 > (INT64_MAX - last) / t->stride[i])
        return sd_fail(r->err, "%s: tensor '%s': extent overflows", r->path, name);
      last += (t->size[i] - 1) * t->stride[i];
    }
    if (last >= st->numel)
      return sd_fail(r->err, "%s: tensor '%s' %s at offset %lld reaches element %lld, past the end of storage '%s' (%lld elements)",
                     r->path, name, sd_shape_str(t->size, t->ndim, sbuf, sizeof sbuf), (long long)t->offset,
                     (long long)last, st->s, (long long)st->numel);
  }
  loaded_storage *ls = NULL;
  if (get_storage(r, st, name, &ls)) return -1;
  size_t nbytes = (size_t)numel * esize;
  if (empty) return sd_store_add(r->store, name, st->dtype, t->ndim, t->size, ls->data, 0, r->err);
  int contiguous = 1;
  int64_t expect = 1;
  for (int i = t->ndim - 1; i >= 0; i--) {
    if (t->size[i] != 1 && t->stride[i] != expect) contiguous = 0;
    expect *= t->size[i];
  }
  const unsigned char *base = ls->data + (size_t)t->offset * esize;
  if (contiguous) return sd_store_add(r->store, name, st->dtype, t->ndim, t->size, base, nbytes, r->err);
  /* A copy counts against the zip-bomb budget: a view with stride 0 can claim any number of elements of a
   * one-element storage (and numel * esize can wrap around). */
  uint64_t limit = r->file_size * MAX_EXPANSION;
  if ((uint64_t)numel > limit / esize || (uint64_t)numel * esize > limit - r->expanded)
    return sd_fail(r->err, "%s: tensor '%s' %s is a strided view of %lld elements, more than a %llu-byte file can hold (malformed?)",
                   r->path, name, sd_shape_str(t->size, t->ndim, sbuf, sizeof sbuf), (long long)numel,
                   (unsigned long long)r->file_size);
  r->expanded += nbytes;
  unsigned char *copy = sd_malloc(nbytes, r->err);
  if (!copy || sd_store_own(r->store, copy, r->err)) return -1;
  int64_t idx[SD_MAX_DIMS] = {0};
  for (int64_t e = 0; e < numel; e++) {
    int64_t src = 0;
    for (int i = 0; i < t->ndim; i++) src += idx[i] * t->stride[i];
    memcpy(copy + (size_t)e * esize, base + (size_t)src * esize, esize);
    for (int i = t->ndim - 1; i >= 0; i--) {
      if (++idx[i] < t->size[i]) break;
      idx[i] = 0;
    }
  }
  return sd_store_add(r->store, name, st->dtype, t->ndim, t->size, copy, nbytes, r->err);
}

/* Adds every tensor of dict `d`, flattening nested dicts with '.'; other values are skipped. */
static int add_dict(reader *r, pk_value *d, const char *prefix, int depth) {
  if (depth > MAX_NAME_DEPTH) return 0;
  if (d->visited) /* torch never shares a dict; a cycle or a shared dict would blow up the walk */
    return sd_fail(r->err, "%s: dict '%s' appears twice in the state dict (recursive or shared; malformed)", r->path,
                   prefix[0] ? prefix : "(top level)");
  d->visited = 1;
  for (int i = 0; i + 1 < d->n; i += 2) {
    const pk_value *k = d->items[i];
    pk_value *v = d->items[i + 1];
    if (k->kind != PK_STR || (v->kind != PK_TENSOR && v->kind != PK_DICT)) continue;
    if (memchr(k->s, 0, k->len)) return sd_fail(r->err, "%s: a state dict key contains a NUL byte", r->path);
    size_t n = strlen(prefix) + k->len + 2;
    char *name = sd_malloc(n, r->err);
    if (!name) return -1;
    snprintf(name, n, "%s%s%s", prefix, k->s, v->kind == PK_DICT ? "." : "");
    int rc = v->kind == PK_TENSOR ? add_tensor(r, name, v) : add_dict(r, v, name, depth + 1);
    free(name);
    if (rc) return -1;
  }
  return 0;
}

/* Top-level scalars beside the state dict (global_step, epoch, ...) as a JSON object text, or NULL. */
static char *scalars_json(const pk_value *root, const pk_value *sd) {
  if (root == sd) return NULL;
  json_t *o = json_object();
  for (int i = 0; i + 1 < root->n; i += 2) {
    const pk_value *k = root->items[i], *v = root->items[i + 1];
    if (k->kind != PK_STR || memchr(k->s, 0, k->len)) continue;
    json_t *j = v->kind == PK_INT ? json_integer(v->i)
                : v->kind == PK_FLOAT ? json_real(v->f)
                : v->kind == PK_BOOL ? json_boolean(v->i)
                : v->kind == PK_STR && !memchr(v->s, 0, v->len) ? json_string(v->s)
                                                                : NULL;
    if (j) json_object_set_new(o, k->s, j);
  }
  char *text = json_object_size(o) ? json_dumps(o, JSON_COMPACT) : NULL;
  json_decref(o);
  return text;
}

/* Finds "<archive>/data.pkl" and sets r->prefix; checks byteorder. */
static int find_archive(reader *r) {
  zip_int64_t n = zip_get_num_entries(r->za, 0);
  for (zip_int64_t i = 0; i < n; i++) {
    const char *name = zip_get_name(r->za, (zip_uint64_t)i, 0);
    if (!name) continue;
    size_t len = strlen(name);
    const char *slash = strchr(name, '/');
    if (len >= 8 && strcmp(name + len - 8, "data.pkl") == 0 && (slash == NULL ? len == 8 : slash == name + len - 9) &&
        len - 8 < sizeof r->prefix) {
      memcpy(r->prefix, name, len - 8);
      r->prefix[len - 8] = 0;
      char bo[600];
      snprintf(bo, sizeof bo, "%sbyteorder", r->prefix);
      if (zip_name_locate(r->za, bo, 0) >= 0) {
        unsigned char *b;
        size_t nb;
        if (read_entry(r, bo, &b, &nb, NULL)) return -1;
        int little = nb >= 6 && memcmp(b, "little", 6) == 0;
        free(b);
        if (!little) return sd_fail(r->err, "%s: storages are big-endian (byteorder entry); not supported", r->path);
      }
      return 0;
    }
  }
  return sd_fail(r->err, "%s: zip archive has no <name>/data.pkl entry (not a torch.save checkpoint)", r->path);
}

int sd_store_open_torch(const char *path, sd_tensor_store **out, sd_error *err) {
  *out = NULL;
  struct stat fst;
  if (stat(path, &fst) != 0) return sd_fail(err, "%s: cannot open: %s", path, strerror(errno));
  if (!S_ISREG(fst.st_mode)) return sd_fail(err, "%s: not a regular file", path);
  unsigned char magic[4] = {0};
  FILE *f = fopen(path, "rb");
  int pk = f && fread(magic, 1, 4, f) == 4 && memcmp(magic, "PK\003\004", 4) == 0;
  if (f) fclose(f);
  int zerr = 0;
  zip_t *za = zip_open(path, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
  if (!za) {
    zip_error_t ze;
    zip_error_init_with_code(&ze, zerr);
    sd_fail(err, "%s: %s (%s)", path,
            zerr != ZIP_ER_NOZIP ? "cannot read the zip archive (truncated or corrupt?)"
            : pk ? "starts like a zip but has no readable central directory (truncated file?)"
                 : "not a zip archive; torch checkpoints from torch.save >= 1.6 are zip files",
            zip_error_strerror(&ze));
    zip_error_fini(&ze);
    return -1;
  }
  reader r = {.path = path, .za = za, .file_size = (uint64_t)fst.st_size, .err = err};
  pk_doc doc = {0};
  unsigned char *pkl = NULL;
  size_t pkl_len = 0;
  int rc = -1;
  if (!(r.store = sd_store_new(path, "torch", err))) goto done;
  if (find_archive(&r)) goto done;
  char name[600];
  snprintf(name, sizeof name, "%sdata.pkl", r.prefix);
  if (read_entry(&r, name, &pkl, &pkl_len, NULL)) goto done;
  if (pkl_len > MAX_PICKLE_BYTES) {
    sd_fail(err, "%s: %s is %zu bytes, larger than any state dict pickle", path, name, pkl_len);
    goto done;
  }
  if (pk_load(pkl, pkl_len, &doc, err)) {
    sd_fail_prefix(err, "%s: %s", path, name);
    goto done;
  }
  pk_value *root = doc.root, *sd = root;
  if (root->kind != PK_DICT) {
    sd_fail(err, "%s: the pickled object is not a dict (a whole pickled model? only state dicts are read)", path);
    goto done;
  }
  static const char *const nested[] = {"state_dict", "model", "module"};
  for (size_t i = 0; i < sizeof nested / sizeof *nested; i++) {
    pk_value *v = pk_dict_get(root, nested[i]);
    if (v && v->kind == PK_DICT) {
      sd = v;
      break;
    }
  }
  if (add_dict(&r, sd, "", 0)) goto done;
  if (r.store->count == 0) {
    sd_fail(err, "%s: no tensors found in the state dict", path);
    goto done;
  }
  r.store->metadata_json = scalars_json(root, sd);
  rc = 0;
done:
  pk_free(&doc);
  free(pkl);
  free(r.cache);
  zip_discard(za);
  if (rc == 0) *out = r.store;
  else sd_store_close(r.store);
  return rc;
}
