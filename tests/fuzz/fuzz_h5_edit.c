/* Fuzzes the stats and mask readers (stats/stats_io.c, prune/mask_io.c) with well-formed HDF5 files of wrong
 * content, as h5py could write them: raw-byte mutation (fuzz_stats_h5, fuzz_mask_h5) mostly exercises libhdf5's
 * own parser, while this harness starts from a valid file written by sdprune and applies edits that keep the
 * file readable by HDF5: delete an object, replace an attribute or a dataset with another type or shape, put
 * a group or a link (hard, soft, external) where a dataset was, drop or retype a table column, poke a value
 * (0, -1, extremes, NaN) into a dataset or a table cell. Input: byte 0 picks the file (stats.h5, an MPI
 * shard = stats written uncompressed, mask.h5); then 8-byte edit records. What reads must then be usable:
 * stats go through the three mask methods (the scores), masks are applied to a weight of their shape.
 * Uses hdf5.h directly: it is a test of the readers, not a part of the engine. */
#include <hdf5.h>
#include <math.h>

#include "fuzz_common.h"

#include "prune/mask_io.h"
#include "prune/scores.h"
#include "stats/stats_io.h"

enum { BASE_STATS, BASE_SHARD, BASE_MASK, N_BASES };

typedef struct {
  char *obj, *name; /* name NULL: the object itself */
  int is_dataset;
} h5_item;

typedef struct {
  char path[600];
  h5_item *objs, *attrs;
  int n_objs, n_attrs;
} base_file;

static base_file bases[N_BASES];

static char *dup_str(const char *s) {
  char *d = strdup(s);
  if (!d)
    abort();
  return d;
}

static void push(h5_item **v, int *n, const char *obj, const char *name, int is_dataset) {
  *v = realloc(*v, sizeof **v * (size_t)(*n + 1));
  if (!*v)
    abort();
  (*v)[(*n)++] = (h5_item){dup_str(obj), name ? dup_str(name) : NULL, is_dataset};
}

/* ---- the valid files the edits start from ------------------------------------------------------------ */

static void make_stats(sd_stats *s) {
  memset(s, 0, sizeof *s);
  sd_stats_settings *st = &s->settings;
  st->model = dup_str("tiny.safetensors"), st->model_hash = dup_str("0123456789abcdef");
  st->sampler = dup_str("ddim"), st->hooks = dup_str("ff");
  st->steps = 2, st->max_steps = 0, st->eta = 0;
  st->sdprune_version = dup_str("0"), st->git_revision = dup_str("x"), st->command_line = dup_str("fuzz");
  st->created_utc = dup_str("2026-01-01T00:00:00Z");
  s->n_steps = 2;
  s->timesteps = calloc(2, sizeof(float));
  s->timesteps[0] = 981, s->timesteps[1] = 1;
  s->n_layers = 2;
  s->layers = calloc(2, sizeof *s->layers);
  const char *blocks[] = {"input_blocks.1.1.transformer_blocks.0", "output_blocks.3.1.transformer_blocks.0"};
  for (int l = 0; l < 2; l++) {
    char name[200];
    snprintf(name, sizeof name, "%s.ff.net.2", blocks[l]);
    s->layers[l] = (sd_stats_layer){dup_str(name), dup_str(blocks[l]), dup_str(name), SD_HOOK_FF_NEURONS, 3 + l, l};
  }
  const char *names[] = {"target", "anchor", "adv"}, *roles[] = {"target", "anchor", "adversarial"};
  s->n_sets = 3;
  s->sets = calloc(3, sizeof *s->sets);
  for (int k = 0; k < 3; k++)
    s->sets[k] =
        (sd_stats_set){dup_str(names[k]), dup_str(roles[k]), dup_str("p.csv"), dup_str("ab"), NULL, 2, 1, NULL};
  sd_error err;
  if (sd_stats_alloc_totals(s, &err) != 0)
    abort();
  for (int k = 0; k < 3; k++)
    for (int l = 0; l < 2; l++) {
      sd_stats_acc *a = &s->sets[k].layers[l];
      int w = s->layers[l].width;
      for (int c = 0; c < 4; c++)
        a->count[c] = 2 + c;
      for (int q = 0; q < SD_STATS_NQ; q++)
        for (int i = 0; i < 4 * w; i++)
          a->q[q][i] = ((int64_t)(i + k + q) << 20) * (q == SD_Q_SUM && i % 3 ? -1 : 1);
      for (int i = 0; i < 4 * w; i++)
        a->max[i] = (float)(i + k);
    }
  s->n_items = 3;
  s->items = calloc(3, sizeof *s->items);
  for (int i = 0; i < 3; i++)
    s->items[i] = (sd_stats_item){i,
                                  0,
                                  i,
                                  dup_str("a photo"),
                                  (uint64_t)i,
                                  7.5,
                                  512,
                                  512,
                                  i == 2 ? SD_ITEM_FAILED : SD_ITEM_DONE,
                                  1.0,
                                  i == 2 ? dup_str("oom") : NULL,
                                  NULL};
}

static void make_mask(sd_mask *m) {
  memset(m, 0, sizeof *m);
  m->method = dup_str("wanda"), m->params_json = dup_str("{\"ratio\":0.25}"), m->model_hash = dup_str("0123");
  m->n_sources = 1;
  m->source_files = calloc(1, sizeof(char *)), m->source_sha256 = calloc(1, sizeof(char *));
  m->source_files[0] = dup_str("stats.h5"), m->source_sha256[0] = dup_str("aa");
  m->sdprune_version = dup_str("0"), m->git_revision = dup_str("x"), m->command_line = dup_str("fuzz");
  m->created_utc = dup_str("2026-01-01T00:00:00Z");
  m->n_layers = 2;
  m->layers = calloc(2, sizeof *m->layers);
  sd_mask_layer *a = &m->layers[0], *b = &m->layers[1];
  a->layer = dup_str("input_blocks.1.1.transformer_blocks.0.ff.net.2");
  a->weight = dup_str("input_blocks.1.1.transformer_blocks.0.ff.net.2.weight");
  a->rows = 3, a->cols = 4, a->n_weights = 3, a->n_neurons = 1;
  a->weights = malloc(3 * sizeof(int64_t)), a->neurons = malloc(sizeof(int32_t));
  a->weights[0] = 1, a->weights[1] = 6, a->weights[2] = 11, a->neurons[0] = 2;
  b->layer = dup_str("output_blocks.3.1.transformer_blocks.0.ff.net.2");
  b->weight = dup_str("output_blocks.3.1.transformer_blocks.0.ff.net.2.weight");
  b->rows = 2, b->cols = 5, b->n_neurons = 2;
  b->neurons = malloc(2 * sizeof(int32_t));
  b->neurons[0] = 0, b->neurons[1] = 4;
}

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
  (void)loc, (void)info;
  base_file *b = data;
  push(&b->attrs, &b->n_attrs, b->objs[b->n_objs - 1].obj, name, 0);
  return 0;
}

static herr_t visit_cb(hid_t root, const char *name, const H5O_info_t *info, void *data) {
  base_file *b = data;
  char path[600];
  snprintf(path, sizeof path, "/%s", strcmp(name, ".") == 0 ? "" : name);
  push(&b->objs, &b->n_objs, path, NULL, info->type == H5O_TYPE_DATASET);
  hid_t o = H5Oopen(root, name, H5P_DEFAULT);
  hsize_t idx = 0;
  H5Aiterate2(o, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_cb, b);
  H5Oclose(o);
  return 0;
}

static void make_bases(void) {
  static int done;
  if (done)
    return;
  done = 1;
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  sd_error err;
  sd_stats s;
  make_stats(&s);
  sd_mask m;
  make_mask(&m);
  snprintf(bases[BASE_STATS].path, sizeof bases[0].path, "%s/base-stats.h5", fuzz_dir());
  snprintf(bases[BASE_SHARD].path, sizeof bases[0].path, "%s/base-shard.h5", fuzz_dir());
  snprintf(bases[BASE_MASK].path, sizeof bases[0].path, "%s/base-mask.h5", fuzz_dir());
  if (sd_stats_write(bases[BASE_STATS].path, &s, &err) || sd_stats_write_ex(bases[BASE_SHARD].path, &s, 0, &err) ||
      sd_mask_write(bases[BASE_MASK].path, &m, &err)) {
    fprintf(stderr, "fuzz_h5_edit: %s\n", err.msg);
    abort();
  }
  sd_stats_free(&s);
  sd_mask_free(&m);
  /* FUZZ_H5_BASES=DIR: leave a copy of the three files there (the raw-byte harnesses' seeds, see run.sh). */
  const char *keep = getenv("FUZZ_H5_BASES");
  static const char *const keep_names[N_BASES] = {"stats.h5", "shard.h5", "mask.h5"};
  for (int i = 0; keep && i < N_BASES; i++) {
    char dst[4096];
    snprintf(dst, sizeof dst, "%s/%s", keep, keep_names[i]);
    FILE *in = fopen(bases[i].path, "rb"), *out = fopen(dst, "wb");
    char chunk[8192];
    size_t n;
    while (in && out && (n = fread(chunk, 1, sizeof chunk, in)) > 0)
      fwrite(chunk, 1, n, out);
    if (in)
      fclose(in);
    if (out)
      fclose(out);
  }
  for (int i = 0; i < N_BASES; i++) {
    hid_t f = H5Fopen(bases[i].path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
      abort();
    H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, visit_cb, &bases[i], H5O_INFO_BASIC);
    H5Fclose(f);
  }
}

/* ---- edits ------------------------------------------------------------------------------------------- */

typedef struct {
  const uint8_t *p;
  size_t n;
} cursor;

static unsigned u8(cursor *c) {
  if (!c->n)
    return 0;
  c->n--;
  return *c->p++;
}

static const char *const words[] = {"",
                                    "x",
                                    "target",
                                    "anchor",
                                    "adversarial",
                                    "done",
                                    "failed",
                                    "pending",
                                    "sdprune-stats",
                                    "sdprune-mask",
                                    "ff",
                                    "ff,attn2",
                                    "attn2",
                                    "../../x",
                                    "/etc/x",
                                    "a/b",
                                    "0123456789abcdef",
                                    "ddim",
                                    "wanda",
                                    "{\"ratio\":1}",
                                    "nan"};
#define N_WORDS (sizeof words / sizeof *words)

static int64_t pick_i64(unsigned k, unsigned v) {
  switch (k % 8) {
  case 0:
    return 0;
  case 1:
    return -1;
  case 2:
    return INT64_MAX;
  case 3:
    return INT64_MIN;
  case 4:
    return INT32_MAX;
  case 5:
    return (int64_t)INT32_MAX + 1;
  case 6:
    return (int64_t)v - 128;
  default:
    return (int64_t)v << 24;
  }
}

static double pick_f64(unsigned k, unsigned v) {
  switch (k % 8) {
  case 0:
    return NAN;
  case 1:
    return INFINITY;
  case 2:
    return -INFINITY;
  case 3:
    return 1e300;
  case 4:
    return -0.0;
  default:
    return (double)pick_i64(k, v);
  }
}

static void delete_path(hid_t f, const char *path) {
  if (strcmp(path, "/") != 0 && H5Lexists(f, path, H5P_DEFAULT) > 0)
    H5Ldelete(f, path, H5P_DEFAULT);
}

static hid_t str_type(int vlen, size_t n) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, vlen ? H5T_VARIABLE : (n ? n : 1));
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

/* Writes an attribute of kind k (scalar i64, f64, vlen string, fixed string, i64[2], null dataspace). */
static void set_attr(hid_t f, const char *obj, const char *name, unsigned k, unsigned a, unsigned b) {
  hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
  if (o < 0)
    return;
  if (H5Aexists(o, name) > 0)
    H5Adelete(o, name);
  hsize_t two = 2;
  hid_t space = k % 6 == 4 ? H5Screate_simple(1, &two, NULL) : H5Screate(k % 6 == 5 ? H5S_NULL : H5S_SCALAR);
  int64_t iv[2] = {pick_i64(a, b), pick_i64(b, a)};
  double dv = pick_f64(a, b);
  const char *sv = words[b % N_WORDS];
  hid_t t = k % 6 == 1   ? H5Tcopy(H5T_NATIVE_DOUBLE)
            : k % 6 == 2 ? str_type(1, 0)
            : k % 6 == 3 ? str_type(0, strlen(sv))
                         : H5Tcopy(H5T_NATIVE_INT64);
  hid_t at = H5Acreate2(o, name, t, space, H5P_DEFAULT, H5P_DEFAULT);
  if (at >= 0 && k % 6 != 5)
    H5Awrite(at, t,
             k % 6 == 1   ? (const void *)&dv
             : k % 6 == 2 ? (const void *)&sv
             : k % 6 == 3 ? (const void *)sv
                          : iv);
  if (at >= 0)
    H5Aclose(at);
  H5Tclose(t);
  H5Sclose(space);
  H5Oclose(o);
}

/* Replaces a dataset with one of another type and shape: type t (i64, i32, f32, f64, u8, vlen string), ndim
 * 0..3 with dims 0..5, values from the edit record. */
static void replace_dataset(hid_t f, const char *path, unsigned t, unsigned shape, unsigned a, unsigned b) {
  delete_path(f, path);
  int ndim = shape % 4;
  hsize_t dims[3];
  size_t n = 1;
  for (int i = 0; i < ndim; i++)
    n *= (dims[i] = (shape >> (2 + 2 * i)) % 6);
  hid_t space = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
  hid_t type = t % 6 == 0   ? H5Tcopy(H5T_NATIVE_INT64)
               : t % 6 == 1 ? H5Tcopy(H5T_NATIVE_INT32)
               : t % 6 == 2 ? H5Tcopy(H5T_NATIVE_FLOAT)
               : t % 6 == 3 ? H5Tcopy(H5T_NATIVE_DOUBLE)
               : t % 6 == 4 ? H5Tcopy(H5T_NATIVE_UINT8)
                            : str_type(1, 0);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t d = H5Dcreate2(f, path, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  if (d >= 0 && n) {
    if (t % 6 == 5) {
      const char **s = calloc(n, sizeof *s);
      for (size_t i = 0; i < n; i++)
        s[i] = words[(a + i) % N_WORDS];
      H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, s);
      free(s);
    } else {
      double *v = calloc(n, sizeof *v);
      for (size_t i = 0; i < n; i++)
        v[i] = (double)pick_i64(a + (unsigned)i, b + (unsigned)i);
      H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
      free(v);
    }
  }
  if (d >= 0)
    H5Dclose(d);
  H5Pclose(lcpl);
  H5Tclose(type);
  H5Sclose(space);
}

/* Sets element `at` (mod the size) of a numeric dataset, or of numeric member `member` of a table. */
static void poke(hid_t f, const char *path, unsigned member, unsigned at, unsigned k, unsigned v) {
  hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
  if (d < 0)
    return;
  hid_t ft = H5Dget_type(d), space = H5Dget_space(d);
  hssize_t n = H5Sget_simple_extent_npoints(space);
  hid_t mt = -1;
  int is_float = 0;
  if (H5Tget_class(ft) == H5T_COMPOUND) {
    int nm = H5Tget_nmembers(ft);
    if (nm > 0) {
      int m = (int)(member % (unsigned)nm);
      hid_t mft = H5Tget_member_type(ft, (unsigned)m);
      H5T_class_t c = H5Tget_class(mft);
      if (c == H5T_INTEGER || c == H5T_FLOAT) {
        char *name = H5Tget_member_name(ft, (unsigned)m);
        is_float = c == H5T_FLOAT;
        mt = H5Tcreate(H5T_COMPOUND, 8);
        H5Tinsert(mt, name, 0, is_float ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64);
        H5free_memory(name);
      }
      H5Tclose(mft);
    }
  } else if (H5Tget_class(ft) == H5T_INTEGER || H5Tget_class(ft) == H5T_FLOAT) {
    is_float = H5Tget_class(ft) == H5T_FLOAT;
    mt = H5Tcopy(is_float ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64);
  }
  if (mt >= 0 && n > 0 && n <= 65536) {
    int64_t *buf = calloc((size_t)n, 8);
    if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0) {
      size_t i = at % (size_t)n;
      if (is_float) {
        double x = pick_f64(k, v);
        memcpy(&buf[i], &x, 8);
      } else {
        buf[i] = pick_i64(k, v);
      }
      H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
    }
    free(buf);
  }
  if (mt >= 0)
    H5Tclose(mt);
  H5Tclose(ft);
  H5Sclose(space);
  H5Dclose(d);
}

/* Rewrites a table without member `drop` (mod the count), or with it retyped (string <-> number). */
static void edit_table(hid_t f, const char *path, unsigned drop, unsigned retype) {
  hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
  if (d < 0)
    return;
  hid_t ft = H5Dget_type(d), space = H5Dget_space(d);
  hssize_t n = H5Sget_simple_extent_npoints(space);
  int nm = H5Tget_class(ft) == H5T_COMPOUND ? H5Tget_nmembers(ft) : 0;
  if (nm <= 0 || n < 0 || n > 4096) {
    H5Tclose(ft), H5Sclose(space), H5Dclose(d);
    return;
  }
  int target = (int)(drop % (unsigned)nm);
  /* The new table: every member as a vlen string or an int64/double in 8-byte slots, read by conversion. */
  hid_t mt = H5Tcreate(H5T_COMPOUND, 8 * (size_t)nm), vs = str_type(1, 0);
  int kind[64];
  for (int m = 0; m < nm && m < 64; m++) {
    hid_t mft = H5Tget_member_type(ft, (unsigned)m);
    H5T_class_t c = H5Tget_class(mft);
    kind[m] = c == H5T_STRING ? 2 : c == H5T_FLOAT ? 1 : 0;
    if (m == target && retype % 2)
      kind[m] = kind[m] == 2 ? (int)(retype / 2 % 2) : 2;
    H5Tclose(mft);
    if (m == target && retype % 2 == 0)
      continue; /* dropped */
    char *name = H5Tget_member_name(ft, (unsigned)m);
    H5Tinsert(mt, name, 8 * (size_t)m, kind[m] == 2 ? vs : kind[m] == 1 ? H5T_NATIVE_DOUBLE : H5T_NATIVE_INT64);
    H5free_memory(name);
  }
  H5Dclose(d);
  H5Ldelete(f, path, H5P_DEFAULT);
  /* Values: numbers 1..n, strings from the word list (the table's own values are not kept). */
  unsigned char *rows = calloc((size_t)(n ? n : 1), 8 * (size_t)nm);
  for (hssize_t r = 0; r < n; r++)
    for (int m = 0; m < nm && m < 64; m++) {
      unsigned char *slot = rows + ((size_t)r * (size_t)nm + (size_t)m) * 8;
      if (kind[m] == 2) {
        const char *w = words[(size_t)(r + m) % N_WORDS];
        memcpy(slot, &w, sizeof w);
      } else if (kind[m] == 1) {
        double x = (double)r;
        memcpy(slot, &x, 8);
      } else {
        int64_t x = r;
        memcpy(slot, &x, 8);
      }
    }
  hid_t nd = H5Dcreate2(f, path, mt, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (nd >= 0) {
    H5Dwrite(nd, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows);
    H5Dclose(nd);
  }
  free(rows);
  H5Tclose(vs), H5Tclose(mt), H5Tclose(ft), H5Sclose(space);
}

/* External links point at `target` (a fresh copy of the base, rewritten every run: the edits are made read-write
 * and libhdf5 follows a link with the parent's access, so a link to the base itself let later edits grow the
 * base from run to run) or at `text` (a file that is not HDF5). */
static void apply_edit(hid_t f, const base_file *b, cursor *c, const char *target, const char *text) {
  unsigned op = u8(c), i = u8(c), j = u8(c), k = u8(c), v = u8(c), w = u8(c);
  const h5_item *o = &b->objs[i % (unsigned)b->n_objs], *o2 = &b->objs[j % (unsigned)b->n_objs];
  const h5_item *a = b->n_attrs ? &b->attrs[j % (unsigned)b->n_attrs] : NULL;
  switch (op % 10) {
  case 0:
    delete_path(f, o->obj);
    break;
  case 1:
    if (a)
      set_attr(f, a->obj, a->name, k, v, w);
    break;
  case 2:
    set_attr(f, o->obj, words[j % N_WORDS][0] ? words[j % N_WORDS] : "format", k, v, w);
    break;
  case 3:
    if (o->is_dataset)
      replace_dataset(f, o->obj, k, v, w, i);
    break;
  case 4:
    delete_path(f, o->obj);
    H5Gclose(H5Gcreate2(f, o->obj, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    break;
  case 5:
    if (strcmp(o->obj, o2->obj) != 0 && strncmp(o->obj, o2->obj, strlen(o2->obj)) != 0) {
      delete_path(f, o2->obj);
      H5Lcreate_hard(f, o->obj, f, o2->obj, H5P_DEFAULT, H5P_DEFAULT);
    }
    break;
  case 6:
    delete_path(f, o->obj);
    H5Lcreate_soft(k % 2 ? o2->obj : words[k % N_WORDS], f, o->obj, H5P_DEFAULT, H5P_DEFAULT);
    break;
  case 7:
    delete_path(f, o->obj);
    H5Lcreate_external(k % 3 == 0   ? "missing.h5"
                       : k % 3 == 1 ? text
                                    : target,
                       k % 2 ? "/" : o2->obj, f, o->obj, H5P_DEFAULT, H5P_DEFAULT);
    break;
  case 8:
    if (o->is_dataset)
      poke(f, o->obj, j, w, k, v);
    break;
  default:
    if (o->is_dataset)
      edit_table(f, o->obj, k, v);
    break;
  }
}

/* ---- what must hold of what reads ------------------------------------------------------------------ */

static void use_stats(const sd_stats *s) {
  static const char *const methods[] = {"wanda", "actdiff", "sensitivity"};
  sd_ff_weight w2[16];
  float ones[4096];
  for (int i = 0; i < 4096; i++)
    ones[i] = 1;
  if (s->n_layers > 16)
    return;
  for (int l = 0; l < s->n_layers; l++) {
    if ((int64_t)s->layers[l].width * 2 > 4096)
      return;
    w2[l] = (sd_ff_weight){2, ones};
  }
  for (int k = 0; k < 3; k++) {
    sd_score_params p;
    sd_score_params_default(&p);
    p.ratio = 0.5;
    p.tau = 0;
    sd_mask m;
    memset(&m, 0, sizeof m);
    sd_error err = {{0}};
    if (sd_score_mask(methods[k], s, w2, &p, &m, &err) == 0) {
      for (int l = 0; l < m.n_layers; l++) {
        const sd_mask_layer *ml = &m.layers[l];
        for (int64_t x = 0; x < ml->n_weights; x++)
          FUZZ_ASSERT(ml->weights[x] >= 0 && ml->weights[x] < (int64_t)ml->rows * ml->cols, "%s: weight index",
                      methods[k]);
        for (int x = 0; x < ml->n_neurons; x++)
          FUZZ_ASSERT(ml->neurons[x] >= 0 && ml->neurons[x] < ml->cols, "%s: neuron index", methods[k]);
      }
    }
    sd_mask_free(&m);
  }
}

/* A reader must close every HDF5 object it opened, on its error paths too: a leaked read-only handle would
 * make the next read-write open of the same file fail (and keeps the file locked). */
static void assert_all_closed(const char *reader) {
  long open_objs = fuzz_h5_open_objects();
  FUZZ_ASSERT(open_objs == 0, "%s left %ld HDF5 objects open", reader, open_objs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  make_bases();
  if (size < 1)
    return 0;
  const base_file *b = &bases[data[0] % N_BASES];
  cursor c = {data + 1, size - 1};
  /* The edited copy. */
  FILE *in = fopen(b->path, "rb");
  if (!in)
    abort();
  static unsigned char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf, in);
  FUZZ_ASSERT(n > 0 && n < sizeof buf && !ferror(in), "%s: the base file changed (%zu bytes read)", b->path, n);
  fclose(in);
  const char *path = fuzz_file(0, "edited.h5", buf, n);
  const char *target = fuzz_file(1, "target.h5", buf, n);
  static const char not_hdf5[] = "root:x:0:0:root:/root:/bin/bash\n";
  const char *text = fuzz_file(2, "passwd", not_hdf5, sizeof not_hdf5 - 1);
  hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
  FUZZ_ASSERT(f >= 0, "%s: cannot open the fresh copy of %s", path, b->path);
  for (int e = 0; e < 16 && c.n > 0; e++)
    apply_edit(f, b, &c, target, text);
  H5Fclose(f);
  FUZZ_ASSERT(fuzz_h5_open_objects() == 0, "the harness's edits left HDF5 objects open");
  sd_error err = {{0}};
  if (b == &bases[BASE_MASK]) {
    sd_mask m;
    if (sd_mask_read(path, &m, &err) == 0) {
      for (int i = 0; i < m.n_layers; i++) {
        const sd_mask_layer *l = &m.layers[i];
        if ((int64_t)l->rows * l->cols > (1 << 22))
          continue;
        float *w = calloc((size_t)l->rows * (size_t)l->cols, sizeof *w);
        sd_mask_layer_apply_f32(l, w);
        free(w);
      }
      sd_mask_free(&m);
    } else {
      FUZZ_ASSERT(err.msg[0], "mask refused without a message");
    }
    assert_all_closed("sd_mask_read");
    return 0;
  }
  sd_stats s;
  if (sd_stats_read(path, &s, 1, &err) == 0) {
    for (int64_t i = 0; i < s.n_items; i++)
      FUZZ_ASSERT(s.items[i].set >= 0 && s.items[i].set < s.n_sets, "item set");
    use_stats(&s);
    sd_stats again;
    if (sd_stats_read(path, &again, 0, &err) == 0) {
      sd_stats_merge(&s, &again, path, &err);
      sd_stats_free(&again);
    }
    sd_stats_free(&s);
  } else {
    FUZZ_ASSERT(err.msg[0], "stats refused without a message");
  }
  assert_all_closed("sd_stats_read");
  return 0;
}
