/* Applying a pruning mask (apply.h): in memory to a built UNet, and to checkpoint files, with a restore
 * file that gives the original bytes back. On disk only bytes of the input's own container are
 * patched (safetensors data, torch zip storages and their CRC-32 fields, one file of a diffusers
 * folder copy): no dtype is converted and no tensor re-encoded. Not the choice of the weights
 * (scores.c) nor the mask file (mask_io.c).
 *
 * Restore file (HDF5 through io/h5.h), readable with h5py:
 *   /                 attrs format="sdprune-restore", format_version=1, layout, checkpoint_format,
 *                     source, pruned, mask, mask_sha256, mask_method, pruned_weights, total_weights,
 *                     sdprune_version, git_revision, command_line, created_utc
 *   /files            table: file, role ("patched"|"copied"), original_size, original_sha256,
 *                     pruned_size, pruned_sha256 (a folder lists every file)
 *   /tensors          table: key, file, dtype, shape, original_offset, pruned_offset, nbytes, n_pruned
 *                     (offsets: of the tensor's first byte in each file)
 *   /patches/<key>/indices   int64 [n] pruned flat element indices of the tensor, increasing
 *   /patches/<key>/original  uint8 [n * element size] their original little-endian bytes
 *   /header           uint8: the original file's first 8 + N bytes (safetensors formats)
 *   /zip_fields       table: file, pruned_offset, size, original, pruned (CRC-32 fields of a torch zip) */
#include "prune/apply.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zip.h>

#include "core/files.h"
#include "core/provenance.h"
#include "core/sha256.h"
#include "io/h5.h"
#include "io/pickle.h"

#define RESTORE_FORMAT "sdprune-restore"
#define RESTORE_FORMAT_VERSION 1
#define COPY_CHUNK ((size_t)8 << 20)
#define MAX_TREE_DEPTH 32

/* ---- mask checks shared by both paths ---- */

/* The walk and the patching rely on indices that increase and lie inside the weight. */
static int check_layer(const char *mask_path, const sd_mask_layer *l, sd_error *err) {
  if (l->rows <= 0 || l->cols <= 0)
    return sd_fail(err, "%s: layer '%s' has shape [%d, %d]", mask_path, l->layer, l->rows, l->cols);
  if ((l->n_weights && !l->weights) || (l->n_neurons && !l->neurons) || l->n_weights < 0 || l->n_neurons < 0)
    return sd_fail(err, "%s: layer '%s': index counts without indices", mask_path, l->layer);
  int64_t size = (int64_t)l->rows * l->cols;
  for (int64_t k = 0; k < l->n_weights; k++)
    if (l->weights[k] < 0 || l->weights[k] >= size || (k && l->weights[k] <= l->weights[k - 1]))
      return sd_fail(err, "%s: layer '%s': weight index %lld (position %lld) is out of [0, %lld) or not increasing",
                     mask_path, l->layer, (long long)l->weights[k], (long long)k, (long long)size);
  for (int k = 0; k < l->n_neurons; k++)
    if (l->neurons[k] < 0 || l->neurons[k] >= l->cols || (k && l->neurons[k] <= l->neurons[k - 1]))
      return sd_fail(err, "%s: layer '%s': neuron %d (position %d) is out of [0, %d) or not increasing", mask_path,
                     l->layer, (int)l->neurons[k], k, l->cols);
  return 0;
}

/* ---- in memory ---- */

static sd_unet_tblock *find_tblock(sd_unet *u, const char *layer) {
  sd_unet_block *groups[3] = {u->input_blocks, &u->middle, u->output_blocks};
  int counts[3] = {u->n_input_blocks, 1, u->n_output_blocks};
  char name[200];
  for (int g = 0; g < 3; g++)
    for (int i = 0; groups[g] && i < counts[g]; i++) {
      sd_unet_block *blk = &groups[g][i];
      for (int l = 0; l < blk->n_layers; l++) {
        if (blk->layers[l].kind != SD_LAYER_ATTN)
          continue;
        sd_unet_transformer *tr = &blk->layers[l].attn;
        for (int d = 0; tr->blocks && d < tr->depth; d++) {
          snprintf(name, sizeof name, "%s.ff.net.2", tr->blocks[d].site);
          if (strcmp(name, layer) == 0)
            return &tr->blocks[d];
        }
      }
    }
  return NULL;
}

int sd_mask_apply_unet(sd_unet *unet, const sd_mask *mask, sd_mask_unet_copies *owned, sd_error *err) {
  memset(owned, 0, sizeof *owned);
  int n = mask->n_layers, rc = -1;
  if (n == 0)
    return 0;
  sd_unet_tblock **blocks = sd_calloc((size_t)n, sizeof *blocks, err);
  float **copies = sd_calloc((size_t)n, sizeof *copies, err);
  if (!blocks || !copies)
    goto done;
  for (int i = 0; i < n; i++) {
    const sd_mask_layer *l = &mask->layers[i];
    if (check_layer("mask", l, err) != 0)
      goto done;
    sd_unet_tblock *tb = find_tblock(unet, l->layer);
    if (!tb) {
      sd_fail(
          err,
          "mask layer '%s' is not the ff.net.2 of a transformer block of this UNet (mask from another architecture?)",
          l->layer);
      goto done;
    }
    if (tb->ff_out.out != l->rows || tb->ff_out.in != l->cols) {
      sd_fail(err, "mask layer '%s' is [%d, %d] but the UNet's weight is [%d, %d] (mask from another architecture?)",
              l->layer, l->rows, l->cols, tb->ff_out.out, tb->ff_out.in);
      goto done;
    }
    for (int j = 0; j < i; j++)
      if (blocks[j] == tb) {
        sd_fail(err, "mask layer '%s' is listed twice", l->layer);
        goto done;
      }
    blocks[i] = tb;
  }
  /* all copies first, so that a failure leaves the UNet as it was */
  for (int i = 0; i < n; i++) {
    const sd_mask_layer *l = &mask->layers[i];
    size_t numel = (size_t)l->rows * (size_t)l->cols;
    if (!(copies[i] = sd_malloc(numel * sizeof(float), err)))
      goto done;
    memcpy(copies[i], blocks[i]->ff_out.w, numel * sizeof(float));
    sd_mask_layer_apply_f32(l, copies[i]);
  }
  for (int i = 0; i < n; i++)
    blocks[i]->ff_out.w = copies[i];
  owned->copies = copies;
  owned->n = n;
  copies = NULL;
  rc = 0;
done:
  if (copies) {
    for (int i = 0; i < n; i++)
      free(copies[i]);
    free(copies);
  }
  free(blocks);
  return rc;
}

void sd_mask_unet_copies_free(sd_mask_unet_copies *owned) {
  if (!owned)
    return;
  for (int i = 0; i < owned->n; i++)
    free(owned->copies[i]);
  free(owned->copies);
  owned->copies = NULL;
  owned->n = 0;
}

/* ---- small helpers ---- */

static uint16_t rd16(const unsigned char *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) {
  return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}
static void wr_le(unsigned char *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

static int ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

static const char *const weight_exts[] = {".safetensors", ".ckpt", ".pt", ".pth", ".bin", NULL};

void sd_restore_path_for(const char *out, char *buf, size_t size) {
  size_t n = strlen(out);
  while (n > 1 && out[n - 1] == '/')
    n--;
  for (int i = 0; weight_exts[i]; i++) {
    size_t e = strlen(weight_exts[i]);
    if (n > e && strncmp(out + n - e, weight_exts[i], e) == 0 && out[n - e - 1] != '/') {
      n -= e;
      break;
    }
  }
  snprintf(buf, size, "%.*s.restore.h5", (int)n, out);
}

static int path_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

static int same_file(const char *a, const char *b) {
  struct stat x, y;
  return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/* 1 if `inner` is `outer` or lies below it (both resolved; inner need not exist, its parent must). */
static int path_inside(const char *inner, const char *outer) {
  char ri[PATH_MAX], ro[PATH_MAX], parent[PATH_MAX];
  if (!realpath(outer, ro))
    return 0;
  if (!realpath(inner, ri)) {
    snprintf(parent, sizeof parent, "%s", inner);
    char *slash = strrchr(parent, '/');
    if (slash == parent)
      slash[1] = 0;
    else if (slash)
      *slash = 0;
    else
      snprintf(parent, sizeof parent, ".");
    if (!realpath(parent, ri))
      return 0;
    const char *base = strrchr(inner, '/') ? strrchr(inner, '/') + 1 : inner;
    size_t n = strlen(ri);
    snprintf(ri + n, sizeof ri - n, "%s%s", n && ri[n - 1] == '/' ? "" : "/", base);
  }
  size_t n = strlen(ro);
  return strncmp(ri, ro, n) == 0 && (ri[n] == 0 || ri[n] == '/' || (n && ro[n - 1] == '/'));
}

static void remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st) != 0)
    return;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (d) {
      struct dirent *e;
      char child[4200];
      while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
          continue;
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        remove_tree(child);
      }
      closedir(d);
    }
    rmdir(path);
  } else {
    unlink(path);
  }
}

/* Moves a finished temporary folder to its final name, replacing an existing one (moved aside first,
 * put back if the move fails, removed after). */
static int replace_dir(const char *tmp, const char *final, sd_error *err) {
  if (!path_exists(final)) {
    if (rename(tmp, final) != 0)
      return sd_fail(err, "%s: cannot rename %s to it: %s", final, tmp, strerror(errno));
    return 0;
  }
  char old[4200];
  snprintf(old, sizeof old, "%s.old-%ld", final, (long)getpid());
  if (rename(final, old) != 0)
    return sd_fail(err, "%s: cannot move the existing output aside: %s", final, strerror(errno));
  if (rename(tmp, final) != 0) {
    int e = errno;
    rename(old, final);
    return sd_fail(err, "%s: cannot rename %s to it: %s", final, tmp, strerror(e));
  }
  remove_tree(old);
  return 0;
}

static int map_file(const char *path, unsigned char **map, uint64_t *size, sd_error *err) {
  *map = NULL;
  *size = 0;
  int fd = open(path, O_RDONLY);
  if (fd < 0)
    return sd_fail(err, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return sd_fail(err, "%s: not a regular file", path);
  }
  *size = (uint64_t)st.st_size;
  if (*size == 0) {
    close(fd);
    return 0;
  }
  void *m = mmap(NULL, (size_t)*size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (m == MAP_FAILED)
    return sd_fail(err, "%s: cannot mmap: %s", path, strerror(errno));
  madvise(m, (size_t)*size, MADV_SEQUENTIAL);
  *map = m;
  return 0;
}

static void unmap_file(unsigned char *map, uint64_t size) {
  if (map && size)
    munmap(map, (size_t)size);
}

/* CRC-32 (ISO-HDLC, the zip one), bytewise table: only the patched storages are hashed. */
static uint32_t crc32_bytes(const unsigned char *p, uint64_t n) {
  static uint32_t table[256];
  static int ready;
  if (!ready) {
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++)
        c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      table[i] = c;
    }
    ready = 1;
  }
  uint32_t c = 0xFFFFFFFFu;
  for (uint64_t i = 0; i < n; i++)
    c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

/* ---- output stream: writes the new bytes and hashes both the new and the original ones ---- */

typedef struct {
  FILE *f;
  char path[4200]; /* the temporary name, removed by stream_abort */
  int hash_in;
  sd_sha256_ctx in, out;
  uint64_t in_bytes, bytes;
} out_stream;

static int stream_open(out_stream *s, const char *path, int hash_in, sd_error *err) {
  memset(s, 0, sizeof *s);
  snprintf(s->path, sizeof s->path, "%s", path);
  s->hash_in = hash_in;
  sd_sha256_init(&s->in);
  sd_sha256_init(&s->out);
  if (!(s->f = fopen(path, "wb"))) {
    s->path[0] = 0;
    return sd_fail(err, "%s: cannot create: %s", path, strerror(errno));
  }
  setvbuf(s->f, NULL, _IOFBF, (size_t)1 << 20);
  return 0;
}

static void feed_in(out_stream *s, const void *in, size_t n) {
  if (!s->hash_in)
    return;
  sd_sha256_update(&s->in, in, n);
  s->in_bytes += n;
}

/* Writes `out` (n bytes) in place of `in` (the original bytes, or NULL when there are none). */
static int emit(out_stream *s, const void *in, const void *out, size_t n, sd_error *err) {
  if (!n)
    return 0;
  if (s->hash_in && in) {
#pragma omp parallel sections num_threads(2) if (n >= ((size_t)1 << 20))
    {
#pragma omp section
      sd_sha256_update(&s->in, in, n);
#pragma omp section
      sd_sha256_update(&s->out, out, n);
    }
    s->in_bytes += n;
  } else {
    sd_sha256_update(&s->out, out, n);
  }
  if (fwrite(out, 1, n, s->f) != n)
    return sd_fail(err, "%s: write failed: %s", s->path, strerror(errno));
  s->bytes += n;
  return 0;
}

static int stream_close(out_stream *s, sd_error *err) {
  int ok = fflush(s->f) == 0, e = errno;
  if (ok && fsync(fileno(s->f)) != 0)
    ok = 0, e = errno;
  if (fclose(s->f) != 0 && ok)
    ok = 0, e = errno;
  s->f = NULL;
  if (!ok)
    return sd_fail(err, "%s: write failed: %s", s->path, strerror(e));
  return 0;
}

static void stream_abort(out_stream *s) {
  if (s->f)
    fclose(s->f);
  s->f = NULL;
  if (s->path[0])
    unlink(s->path);
  s->path[0] = 0;
}

static void hex_digest(sd_sha256_ctx *ctx, char out[65]) {
  uint8_t d[32];
  sd_sha256_final(ctx, d);
  sd_sha256_hex(d, out);
}

/* ---- byte edits over a source file ---- */

typedef struct {
  uint64_t offset, nbytes;
  size_t esize;                /* > 0: elements of a tensor; 0: a field replaced whole */
  int64_t n;                   /* elements */
  const int64_t *index;        /* [n] increasing element indices within the tensor */
  const unsigned char *values; /* elements: n * esize bytes to put (NULL: zeros); field: nbytes bytes */
} edit;

static int compare_edits(const void *a, const void *b) {
  const edit *x = a, *y = b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int apply_elements(unsigned char *buf, const edit *e, const char *name, sd_error *err) {
  uint64_t count = e->nbytes / e->esize;
  for (int64_t k = 0; k < e->n; k++) {
    if (e->index[k] < 0 || (uint64_t)e->index[k] >= count || (k && e->index[k] <= e->index[k - 1]))
      return sd_fail(err, "%s: element index %lld of the tensor at byte %llu is out of range or not increasing", name,
                     (long long)e->index[k], (unsigned long long)e->offset);
    unsigned char *dst = buf + (size_t)e->index[k] * e->esize;
    if (e->values)
      memcpy(dst, e->values + (size_t)k * e->esize, e->esize);
    else
      memset(dst, 0, e->esize); /* zero is all-zero bytes in F32, F16, BF16 and F64 */
  }
  return 0;
}

static int copy_plain(out_stream *s, const unsigned char *p, uint64_t n, sd_error *err) {
  while (n) {
    size_t k = n > COPY_CHUNK ? COPY_CHUNK : (size_t)n;
    if (emit(s, p, p, k, err) != 0)
      return -1;
    p += k;
    n -= k;
  }
  return 0;
}

/* Streams src[from, to) with the edits (sorted by offset) applied. */
static int copy_edited(out_stream *s, const char *name, const unsigned char *src, uint64_t from, uint64_t to,
                       const edit *e, int n, sd_error *err) {
  uint64_t pos = from;
  for (int i = 0; i < n; i++) {
    if (e[i].offset < pos || e[i].offset > to || e[i].nbytes > to - e[i].offset)
      return sd_fail(err, "%s: a patch at byte %llu (%llu bytes) lies outside the data or overlaps another", name,
                     (unsigned long long)e[i].offset, (unsigned long long)e[i].nbytes);
    if (copy_plain(s, src + pos, e[i].offset - pos, err) != 0)
      return -1;
    const unsigned char *orig = src + e[i].offset;
    int rc;
    if (e[i].esize) {
      unsigned char *buf = sd_malloc(e[i].nbytes ? (size_t)e[i].nbytes : 1, err);
      if (!buf)
        return -1;
      memcpy(buf, orig, (size_t)e[i].nbytes);
      rc = apply_elements(buf, &e[i], name, err);
      if (rc == 0)
        rc = emit(s, orig, buf, (size_t)e[i].nbytes, err);
      free(buf);
    } else {
      rc = emit(s, orig, e[i].values, (size_t)e[i].nbytes, err);
    }
    if (rc != 0)
      return -1;
    pos = e[i].offset + e[i].nbytes;
  }
  return copy_plain(s, src + pos, to - pos, err);
}

/* ---- the tensors a mask patches ---- */

typedef struct {
  const sd_mask_layer *layer;
  const sd_tensor *src; /* the tensor in its source store */
  size_t esize;
  int64_t n;                /* pruned elements */
  int64_t *index;           /* [n] increasing flat indices */
  unsigned char *original;  /* [n * esize] original element bytes */
  uint64_t original_offset; /* of the tensor's first byte in the input file */
  uint64_t pruned_offset;   /* ... and in the output file */
} patch;

typedef struct {
  int64_t *index;
  int64_t n, cap;
} index_sink;

static int collect_index(void *ctx, int64_t i) {
  index_sink *s = ctx;
  if (s->n >= s->cap)
    return 1;
  s->index[s->n++] = i;
  return 0;
}

static void free_patches(patch *p, int n) {
  if (!p)
    return;
  for (int i = 0; i < n; i++) {
    free(p[i].index);
    free(p[i].original);
  }
  free(p);
}

/* Finds, for every mask layer, the weight in the UNet view, checks its shape, and the tensor of the
 * source file it is a view of (same data pointer): that gives the file and the key in its own naming. */
static int locate_patches(const sd_model *m, const sd_mask *mask, const char *mask_path, patch **out,
                          const sd_tensor_store **store, sd_error *err) {
  const char *ckpt = m->unet_view->path;
  patch *p = sd_calloc((size_t)mask->n_layers + 1, sizeof *p, err);
  if (!p)
    return -1;
  *store = NULL;
  for (int i = 0; i < mask->n_layers; i++) {
    const sd_mask_layer *l = &mask->layers[i];
    if (check_layer(mask_path, l, err) != 0)
      goto fail;
    char wname[600];
    if (l->weight && *l->weight)
      snprintf(wname, sizeof wname, "%s", l->weight);
    else
      snprintf(wname, sizeof wname, "%s.weight", l->layer);
    const sd_tensor *vt = sd_store_find(m->unet_view, wname);
    if (!vt) {
      sd_fail(err, "%s: layer '%s' is not in %s (mask from another architecture?)", mask_path, l->layer, ckpt);
      goto fail;
    }
    if (vt->ndim != 2 || vt->shape[0] != l->rows || vt->shape[1] != l->cols) {
      char sb[96];
      sd_fail(err, "%s: layer '%s' is [%d, %d] in the mask but %s in %s (mask from another architecture?)", mask_path,
              l->layer, l->rows, l->cols, sd_shape_str(vt->shape, vt->ndim, sb, sizeof sb), ckpt);
      goto fail;
    }
    if (vt->dtype != SD_DTYPE_F32 && vt->dtype != SD_DTYPE_F16 && vt->dtype != SD_DTYPE_BF16 &&
        vt->dtype != SD_DTYPE_F64) {
      sd_fail(err, "%s: tensor '%s' is %s, not a floating-point weight", ckpt, wname, sd_dtype_name(vt->dtype));
      goto fail;
    }
    const sd_tensor *found = NULL;
    const sd_tensor_store *fs = NULL;
    for (int f = 0; f < m->n_files; f++)
      for (int t = 0; t < m->files[f]->count; t++) {
        const sd_tensor *c = &m->files[f]->tensors[t];
        if (c->data != vt->data || c->nbytes != vt->nbytes || c->dtype != vt->dtype)
          continue;
        if (!found || (ends_with(c->name, wname) && !ends_with(found->name, wname)))
          found = c, fs = m->files[f];
      }
    if (!found) {
      sd_fail(err, "%s: cannot find the file holding '%s' (weights replaced by a cache?)", ckpt, wname);
      goto fail;
    }
    if (*store && *store != fs) {
      sd_fail(err, "%s: the masked UNet weights come from two files (%s, %s)", ckpt, (*store)->path, fs->path);
      goto fail;
    }
    *store = fs;
    for (int j = 0; j < i; j++)
      if (p[j].src == found) {
        sd_fail(err, "%s: layers '%s' and '%s' prune the same tensor", mask_path, p[j].layer->layer, l->layer);
        goto fail;
      }
    p[i].layer = l;
    p[i].src = found;
    p[i].esize = sd_dtype_size(found->dtype);
    int64_t n = sd_mask_layer_pruned(l);
    index_sink sink = {sd_malloc((size_t)(n ? n : 1) * sizeof(int64_t), err), 0, n};
    p[i].index = sink.index;
    p[i].original = sd_malloc((size_t)(n ? n : 1) * p[i].esize, err);
    if (!p[i].index || !p[i].original)
      goto fail;
    if (sd_mask_layer_foreach(l, collect_index, &sink) != 0 || sink.n != n) {
      sd_fail(err, "%s: layer '%s': the pruned count does not match its indices", mask_path, l->layer);
      goto fail;
    }
    p[i].n = n;
    const unsigned char *data = found->data;
    for (int64_t k = 0; k < n; k++)
      memcpy(p[i].original + (size_t)k * p[i].esize, data + (size_t)p[i].index[k] * p[i].esize, p[i].esize);
  }
  *out = p;
  return 0;
fail:
  free_patches(p, mask->n_layers);
  return -1;
}

/* ---- safetensors ---- */

/* The original header with __metadata__["sdprune_mask"] set, __metadata__ first, every tensor entry
 * as it was (same order, dtype, shape, data_offsets); padded with spaces to a multiple of 8. */
static int st_patched_header(const char *path, const unsigned char *map, uint64_t header_len, const char *meta,
                             unsigned char **out, size_t *out_len, sd_error *err) {
  json_error_t jerr;
  json_t *old = json_loadb((const char *)map + 8, (size_t)header_len, 0, &jerr);
  if (!old || !json_is_object(old)) {
    json_decref(old);
    return sd_fail(err, "%s: header is not a JSON object", path);
  }
  json_t *md = json_object_get(old, "__metadata__");
  if (md && !json_is_object(md)) {
    json_decref(old);
    return sd_fail(err, "%s: __metadata__ is not an object", path);
  }
  json_t *root = json_object(), *nmd = md ? json_deep_copy(md) : json_object(), *value = json_string(meta);
  int rc = -1;
  char *text = NULL;
  if (!root || !nmd || !value) {
    json_decref(nmd);
    json_decref(value);
    sd_fail(err, "%s: cannot build the new header (a path that is not UTF-8?)", path);
    goto done;
  }
  json_object_set_new(nmd, "sdprune_mask", value);
  json_object_set_new(root, "__metadata__", nmd);
  const char *key;
  json_t *v;
  json_object_foreach(old, key, v) { /* jansson keeps insertion order: the file's order */
    if (strcmp(key, "__metadata__") != 0)
      json_object_set(root, key, v);
  }
  if (!(text = json_dumps(root, JSON_COMPACT))) {
    sd_fail(err, "%s: cannot encode the new header", path);
    goto done;
  }
  size_t n = strlen(text), padded = (n + 7) & ~(size_t)7;
  unsigned char *h = sd_malloc(8 + padded, err);
  if (!h)
    goto done;
  wr_le(h, padded, 8);
  memcpy(h + 8, text, n);
  memset(h + 8 + n, ' ', padded - n);
  *out = h;
  *out_len = 8 + padded;
  rc = 0;
done:
  free(text);
  json_decref(root);
  json_decref(old);
  return rc;
}

/* A safetensors input: new header, then the data section byte for byte with the pruned elements zero. */
static int write_st_patched(const sd_tensor_store *st, patch *p, int np, const char *meta, out_stream *s,
                            unsigned char **orig_header, size_t *orig_header_len, sd_error *err) {
  const unsigned char *map = st->map;
  uint64_t size = st->map_size, header_len = map && size >= 8 ? rd64(map) : 0;
  if (!map || size < 8 || header_len > size - 8)
    return sd_fail(err, "%s: not a mapped safetensors file", st->path);
  uint64_t data_start = 8 + header_len;
  unsigned char *hdr = NULL;
  size_t hdr_len = 0;
  if (st_patched_header(st->path, map, header_len, meta, &hdr, &hdr_len, err) != 0)
    return -1;
  edit *edits = sd_calloc((size_t)np + 1, sizeof *edits, err);
  int rc = -1;
  if (!edits)
    goto done;
  for (int i = 0; i < np; i++) {
    const unsigned char *d = p[i].src->data;
    if (d < map + data_start || d > map + size || p[i].src->nbytes > (size_t)(map + size - d)) {
      sd_fail(err, "%s: tensor '%s' does not lie in the file's data section", st->path, p[i].src->name);
      goto done;
    }
    p[i].original_offset = (uint64_t)(d - map);
    p[i].pruned_offset = p[i].original_offset - data_start + hdr_len;
    edits[i] = (edit){p[i].original_offset, p[i].src->nbytes, p[i].esize, p[i].n, p[i].index, NULL};
  }
  qsort(edits, (size_t)np, sizeof *edits, compare_edits);
  feed_in(s, map, (size_t)data_start);
  if (emit(s, NULL, hdr, hdr_len, err) != 0)
    goto done;
  if (copy_edited(s, st->path, map, data_start, size, edits, np, err) != 0)
    goto done;
  if (!(*orig_header = sd_malloc((size_t)data_start, err)))
    goto done;
  memcpy(*orig_header, map, (size_t)data_start);
  *orig_header_len = (size_t)data_start;
  rc = 0;
done:
  free(edits);
  free(hdr);
  return rc;
}

/* A torch zip written as safetensors with the same keys, dtypes and shapes (the fallback). The
 * "original" hashed alongside is this same file unpruned: what restore gives back. */
static int write_st_from_store(const sd_tensor_store *st, patch *p, int np, const char *meta, out_stream *s,
                               unsigned char **orig_header, size_t *orig_header_len, sd_error *err) {
  json_t *root = json_object(), *md = json_object();
  json_t *jm = json_string(meta), *jfrom = json_string(st->path);
  char *text = NULL;
  unsigned char *hdr = NULL;
  int rc = -1;
  if (!root || !md || !jm || !jfrom) {
    json_decref(md);
    json_decref(jm);
    json_decref(jfrom);
    sd_fail(err, "%s: cannot build a safetensors header (a path that is not UTF-8?)", st->path);
    goto done;
  }
  json_object_set_new(md, "sdprune_mask", jm);
  json_object_set_new(md, "sdprune_converted_from", jfrom);
  json_object_set_new(root, "__metadata__", md);
  uint64_t offset = 0;
  for (int i = 0; i < st->count; i++) {
    const sd_tensor *t = &st->tensors[i];
    json_t *e = json_object(), *shape = json_array(), *offs = json_array();
    for (int d = 0; d < t->ndim; d++)
      json_array_append_new(shape, json_integer(t->shape[d]));
    json_array_append_new(offs, json_integer((json_int_t)offset));
    json_array_append_new(offs, json_integer((json_int_t)(offset + t->nbytes)));
    json_object_set_new(e, "dtype", json_string(sd_dtype_name(t->dtype)));
    json_object_set_new(e, "shape", shape);
    json_object_set_new(e, "data_offsets", offs);
    if (json_object_set_new(root, t->name, e) != 0) {
      sd_fail(err, "%s: tensor name '%s' cannot be a safetensors key", st->path, t->name);
      goto done;
    }
    offset += t->nbytes;
  }
  if (!(text = json_dumps(root, JSON_COMPACT))) {
    sd_fail(err, "%s: cannot encode a safetensors header", st->path);
    goto done;
  }
  size_t n = strlen(text), padded = (n + 7) & ~(size_t)7, hdr_len = 8 + padded;
  if (!(hdr = sd_malloc(hdr_len, err)))
    goto done;
  wr_le(hdr, padded, 8);
  memcpy(hdr + 8, text, n);
  memset(hdr + 8 + n, ' ', padded - n);
  if (emit(s, hdr, hdr, hdr_len, err) != 0)
    goto done;
  offset = hdr_len;
  for (int i = 0; i < st->count; i++) {
    const sd_tensor *t = &st->tensors[i];
    int j = 0;
    while (j < np && p[j].src != t)
      j++;
    if (j == np) {
      if (copy_plain(s, t->data, t->nbytes, err) != 0)
        goto done;
    } else {
      p[j].original_offset = p[j].pruned_offset = offset;
      edit e = {0, t->nbytes, p[j].esize, p[j].n, p[j].index, NULL};
      if (copy_edited(s, st->path, t->data, 0, t->nbytes, &e, 1, err) != 0)
        goto done;
    }
    offset += t->nbytes;
  }
  *orig_header = hdr;
  *orig_header_len = hdr_len;
  hdr = NULL;
  rc = 0;
done:
  free(hdr);
  free(text);
  json_decref(root);
  return rc;
}

/* ---- torch zip: the central directory, read here because libzip does not expose data offsets ---- */

typedef struct {
  char *name;
  uint16_t flags, method;
  uint32_t crc;
  uint64_t comp, size, local, record; /* record: offset of the central directory record */
} zip_entry;

typedef struct {
  zip_entry *e;
  int n;
} zip_dir;

static void zip_dir_free(zip_dir *d) {
  for (int i = 0; i < d->n; i++)
    free(d->e[i].name);
  free(d->e);
  memset(d, 0, sizeof *d);
}

static int zip_dir_read(const char *path, const unsigned char *map, uint64_t size, zip_dir *d, sd_error *err) {
  memset(d, 0, sizeof *d);
  if (size < 22)
    return sd_fail(err, "%s: too short for a zip file", path);
  uint64_t eocd = UINT64_MAX, lowest = size > 22 + 65535 ? size - 22 - 65535 : 0;
  for (uint64_t q = size - 22 + 1; q-- > lowest;)
    if (rd32(map + q) == 0x06054b50) {
      eocd = q;
      break;
    }
  if (eocd == UINT64_MAX)
    return sd_fail(err, "%s: no zip end-of-central-directory record (truncated?)", path);
  uint64_t count = rd16(map + eocd + 10), cd_size = rd32(map + eocd + 12), cd_off = rd32(map + eocd + 16);
  if (eocd >= 20 && rd32(map + eocd - 20) == 0x07064b50) { /* zip64: the real values are in its own record */
    uint64_t e64 = rd64(map + eocd - 20 + 8);
    if (e64 > size - 56 || rd32(map + e64) != 0x06064b50)
      return sd_fail(err, "%s: bad zip64 end record", path);
    count = rd64(map + e64 + 32);
    cd_size = rd64(map + e64 + 40);
    cd_off = rd64(map + e64 + 48);
  }
  if (cd_off > size || cd_size > size - cd_off || count > cd_size / 46)
    return sd_fail(err, "%s: the zip central directory lies outside the file (truncated?)", path);
  if (!(d->e = sd_calloc((size_t)count + 1, sizeof *d->e, err)))
    return -1;
  uint64_t q = cd_off, end = cd_off + cd_size;
  for (uint64_t i = 0; i < count; i++) {
    if (q + 46 > end || rd32(map + q) != 0x02014b50) {
      zip_dir_free(d);
      return sd_fail(err, "%s: bad zip central directory record %llu", path, (unsigned long long)i);
    }
    zip_entry *e = &d->e[d->n];
    e->flags = rd16(map + q + 8);
    e->method = rd16(map + q + 10);
    e->crc = rd32(map + q + 16);
    e->comp = rd32(map + q + 20);
    e->size = rd32(map + q + 24);
    e->local = rd32(map + q + 42);
    e->record = q;
    uint64_t nl = rd16(map + q + 28), el = rd16(map + q + 30), cl = rd16(map + q + 32);
    if (q + 46 + nl + el + cl > end || !(e->name = strndup((const char *)map + q + 46, (size_t)nl))) {
      zip_dir_free(d);
      return sd_fail(err, "%s: bad zip central directory record %llu", path, (unsigned long long)i);
    }
    d->n++;
    const unsigned char *x = map + q + 46 + nl, *xe = x + el;
    while (x + 4 <= xe) {
      uint16_t id = rd16(x), len = rd16(x + 2);
      if (x + 4 + len > xe)
        break;
      if (id == 1) { /* zip64 extra: 8-byte values for the fields that hold 0xFFFFFFFF, in this order */
        const unsigned char *v = x + 4, *ve = v + len;
        if (e->size == 0xFFFFFFFFu && v + 8 <= ve)
          e->size = rd64(v), v += 8;
        if (e->comp == 0xFFFFFFFFu && v + 8 <= ve)
          e->comp = rd64(v), v += 8;
        if (e->local == 0xFFFFFFFFu && v + 8 <= ve)
          e->local = rd64(v);
      }
      x += 4 + len;
    }
    q += 46 + nl + el + cl;
  }
  return 0;
}

static int zip_data_offset(const char *path, const unsigned char *map, uint64_t size, const zip_entry *e,
                           uint64_t *data, sd_error *err) {
  if (size < 30 || e->local > size - 30 || rd32(map + e->local) != 0x04034b50)
    return sd_fail(err, "%s: entry '%s' has no local header where the central directory says", path, e->name);
  uint64_t d = e->local + 30 + rd16(map + e->local + 26) + rd16(map + e->local + 28);
  if (d > size || e->comp > size - d)
    return sd_fail(err, "%s: entry '%s' runs past the end of the file (truncated?)", path, e->name);
  *data = d;
  return 0;
}

/* data.pkl through libzip (it may be compressed, storages never are in torch.save files). */
static int zip_read_whole(const char *path, const char *name, unsigned char **out, size_t *n, sd_error *err) {
  int zerr = 0;
  zip_t *za = zip_open(path, ZIP_RDONLY, &zerr);
  if (!za)
    return sd_fail(err, "%s: cannot read the zip archive", path);
  zip_stat_t st;
  zip_stat_init(&st);
  int rc = -1;
  zip_file_t *zf = NULL;
  unsigned char *buf = NULL;
  if (zip_stat(za, name, 0, &st) != 0 || !(st.valid & ZIP_STAT_SIZE) || st.size > ((uint64_t)1 << 30)) {
    sd_fail(err, "%s: cannot stat entry '%s'", path, name);
    goto done;
  }
  if (!(buf = sd_malloc((size_t)st.size + 1, err)) || !(zf = zip_fopen(za, name, 0))) {
    if (buf)
      sd_fail(err, "%s: cannot open entry '%s': %s", path, name, zip_strerror(za));
    goto done;
  }
  uint64_t got = 0;
  while (got < st.size) {
    zip_int64_t k = zip_fread(zf, buf + got, st.size - got);
    if (k <= 0)
      break;
    got += (uint64_t)k;
  }
  if (got != st.size) {
    sd_fail(err, "%s: entry '%s': read %llu of %llu bytes", path, name, (unsigned long long)got,
            (unsigned long long)st.size);
    goto done;
  }
  *out = buf;
  *n = (size_t)st.size;
  buf = NULL;
  rc = 0;
done:
  if (zf)
    zip_fclose(zf);
  free(buf);
  zip_discard(za);
  return rc;
}

/* The tensor under `key` as torch_zip.c names it: nested dicts joined with '.'. */
static const pk_value *find_pk_tensor(const pk_value *d, const char *key, int depth) {
  if (depth > 16 || !d || d->kind != PK_DICT)
    return NULL;
  size_t klen = strlen(key);
  for (int i = 0; i + 1 < d->n; i += 2) {
    const pk_value *k = d->items[i], *v = d->items[i + 1];
    if (k->kind != PK_STR || k->len > klen || memchr(k->s, 0, k->len) || strncmp(key, k->s, k->len) != 0)
      continue;
    if (v->kind == PK_TENSOR && key[k->len] == 0)
      return v;
    if (v->kind == PK_DICT && key[k->len] == '.') {
      const pk_value *r = find_pk_tensor(v, key + k->len + 1, depth + 1);
      if (r)
        return r;
    }
  }
  return NULL;
}

typedef struct {
  uint64_t offset;
  uint32_t original, pruned;
  unsigned char bytes[4];
} crc_field;

typedef struct {
  edit *edits;
  int n_edits;
  crc_field *fields;
  int n_fields;
} zip_plan;

static void zip_plan_free(zip_plan *z) {
  free(z->edits);
  free(z->fields);
  memset(z, 0, sizeof *z);
}

static void add_field(zip_plan *z, uint64_t offset, uint32_t original, uint32_t pruned) {
  crc_field *f = &z->fields[z->n_fields++];
  f->offset = offset;
  f->original = original;
  f->pruned = pruned;
  wr_le(f->bytes, pruned, 4);
}

/* Plans the in-place patch of a torch zip: each pruned tensor's bytes inside its storage entry, and the
 * entry's CRC-32 in the central directory, the local header (unless deferred to the data descriptor)
 * and the data descriptor. Returns 1 (why set) when the zip cannot be patched in place. */
static int plan_zip(const char *path, const unsigned char *map, uint64_t size, patch *p, int np, zip_plan *z, char *why,
                    size_t why_size, sd_error *err) {
  zip_dir dir;
  memset(z, 0, sizeof *z);
  if (zip_dir_read(path, map, size, &dir, err) != 0)
    return -1;
  int rc = -1, *entry_of = NULL;
  uint64_t *data_of = NULL;
  pk_doc doc = {0};
  unsigned char *pkl = NULL;
  size_t pkl_len = 0;
  char prefix[512] = "", name[1200];
  int found = 0;
  for (int i = 0; i < dir.n && !found; i++) { /* "<archive>/data.pkl", as torch_zip.c looks for it */
    const char *nm = dir.e[i].name, *slash = strchr(nm, '/');
    size_t len = strlen(nm);
    if (len >= 8 && strcmp(nm + len - 8, "data.pkl") == 0 && (slash == NULL ? len == 8 : slash == nm + len - 9) &&
        len - 8 < sizeof prefix) {
      memcpy(prefix, nm, len - 8);
      prefix[len - 8] = 0;
      found = 1;
    }
  }
  if (!found) {
    sd_fail(err, "%s: no <name>/data.pkl entry (not a torch.save checkpoint)", path);
    goto done;
  }
  snprintf(name, sizeof name, "%sdata.pkl", prefix);
  if (zip_read_whole(path, name, &pkl, &pkl_len, err) != 0)
    goto done;
  if (pk_load(pkl, pkl_len, &doc, err) != 0) {
    sd_fail_prefix(err, "%s: %s", path, name);
    goto done;
  }
  const pk_value *sd = doc.root;
  static const char *const nested[] = {"state_dict", "model", "module"};
  for (int i = 0; i < 3; i++) {
    const pk_value *v = pk_dict_get(doc.root, nested[i]);
    if (v && v->kind == PK_DICT) {
      sd = v;
      break;
    }
  }
  entry_of = sd_calloc((size_t)np + 1, sizeof *entry_of, err);
  data_of = sd_calloc((size_t)np + 1, sizeof *data_of, err);
  z->edits = sd_calloc((size_t)np * 4 + 1, sizeof *z->edits, err);
  z->fields = sd_calloc((size_t)np * 3 + 1, sizeof *z->fields, err);
  if (!entry_of || !data_of || !z->edits || !z->fields)
    goto done;
  for (int i = 0; i < np; i++) {
    const char *key = p[i].src->name;
    const pk_value *t = find_pk_tensor(sd, key, 0);
    if (!t || !t->storage || !t->storage->s) {
      sd_fail(err, "%s: tensor '%s' is not in %sdata.pkl", path, key, prefix);
      goto done;
    }
    snprintf(name, sizeof name, "%sdata/%s", prefix, t->storage->s);
    int k = 0;
    while (k < dir.n && strcmp(dir.e[k].name, name) != 0)
      k++;
    if (k == dir.n) {
      sd_fail(err, "%s: no entry '%s' for the storage of '%s'", path, name, key);
      goto done;
    }
    const zip_entry *e = &dir.e[k];
    if (e->flags & 1) {
      sd_fail(err, "%s: entry '%s' is encrypted", path, name);
      goto done;
    }
    if (e->method != 0) {
      snprintf(why, why_size, "%s: the storage of '%s' is compressed (zip method %u)", path, key, e->method);
      rc = 1;
      goto done;
    }
    int64_t expect = 1;
    int contiguous = 1;
    for (int dd = t->ndim - 1; dd >= 0; dd--) {
      if (t->size[dd] != 1 && t->stride[dd] != expect)
        contiguous = 0;
      expect *= t->size[dd];
    }
    if (!contiguous) {
      snprintf(why, why_size, "%s: '%s' is not contiguous in its storage", path, key);
      rc = 1;
      goto done;
    }
    uint64_t data = 0;
    if (zip_data_offset(path, map, size, e, &data, err) != 0)
      goto done;
    if (e->comp != e->size || sd_dtype_size(t->storage->dtype) != p[i].esize || t->offset < 0) {
      sd_fail(err, "%s: entry '%s' does not hold '%s' as data.pkl describes it", path, name, key);
      goto done;
    }
    uint64_t off = data + (uint64_t)t->offset * p[i].esize;
    if (off > data + e->comp || p[i].src->nbytes > data + e->comp - off ||
        memcmp(map + off, p[i].src->data, p[i].src->nbytes) != 0) {
      sd_fail(err, "%s: the bytes of '%s' are not where data.pkl says in entry '%s'", path, key, name);
      goto done;
    }
    p[i].original_offset = p[i].pruned_offset = off;
    entry_of[i] = k;
    data_of[i] = data;
    z->edits[z->n_edits++] = (edit){off, p[i].src->nbytes, p[i].esize, p[i].n, p[i].index, NULL};
  }
  for (int i = 0; i < np; i++) { /* one new CRC per patched entry */
    int first = 1;
    for (int j = 0; j < i; j++)
      first &= entry_of[j] != entry_of[i];
    if (!first)
      continue;
    const zip_entry *e = &dir.e[entry_of[i]];
    uint64_t data = data_of[i];
    uint32_t old = crc32_bytes(map + data, e->comp);
    if (old != e->crc) {
      sd_fail(err, "%s: entry '%s': CRC-32 %08x does not match the recorded %08x (corrupt file?)", path, e->name, old,
              e->crc);
      goto done;
    }
    unsigned char *buf = sd_malloc(e->comp ? (size_t)e->comp : 1, err);
    if (!buf)
      goto done;
    memcpy(buf, map + data, (size_t)e->comp);
    for (int j = i; j < np; j++) {
      if (entry_of[j] != entry_of[i])
        continue;
      edit sub = {p[j].original_offset - data, p[j].src->nbytes, p[j].esize, p[j].n, p[j].index, NULL};
      apply_elements(buf + sub.offset, &sub, path, err);
    }
    uint32_t now = crc32_bytes(buf, e->comp);
    free(buf);
    add_field(z, e->record + 16, old, now);
    uint32_t local_crc = rd32(map + e->local + 14);
    if (local_crc == old && (old != 0 || !(e->flags & 8)))
      add_field(z, e->local + 14, old, now);
    if (e->flags & 8) { /* data descriptor: optional signature, then the CRC */
      uint64_t dd = data + e->comp;
      if (dd + 8 <= size && rd32(map + dd) == 0x08074b50 && rd32(map + dd + 4) == old)
        add_field(z, dd + 4, old, now);
      else if (dd + 4 <= size && rd32(map + dd) == old)
        add_field(z, dd, old, now);
      else {
        sd_fail(err, "%s: entry '%s': no data descriptor after its data", path, e->name);
        goto done;
      }
    }
  }
  for (int i = 0; i < z->n_fields; i++)
    z->edits[z->n_edits++] = (edit){z->fields[i].offset, 4, 0, 0, NULL, z->fields[i].bytes};
  qsort(z->edits, (size_t)z->n_edits, sizeof *z->edits, compare_edits);
  for (int i = 1; i < z->n_edits; i++)
    if (z->edits[i].offset < z->edits[i - 1].offset + z->edits[i - 1].nbytes) {
      sd_fail(err, "%s: two patched regions overlap at byte %llu (tensors sharing a storage?)", path,
              (unsigned long long)z->edits[i].offset);
      goto done;
    }
  rc = 0;
done:
  if (rc != 0)
    zip_plan_free(z);
  free(entry_of);
  free(data_of);
  pk_free(&doc);
  free(pkl);
  zip_dir_free(&dir);
  return rc;
}

/* ---- restore file tables ---- */

typedef struct {
  char *file, *role, *original_sha256, *pruned_sha256;
  int64_t original_size, pruned_size;
} file_row;

static const sd_h5_field file_fields[] = {
    {"file", SD_H5_STR, offsetof(file_row, file)},
    {"role", SD_H5_STR, offsetof(file_row, role)},
    {"original_size", SD_H5_I64, offsetof(file_row, original_size)},
    {"original_sha256", SD_H5_STR, offsetof(file_row, original_sha256)},
    {"pruned_size", SD_H5_I64, offsetof(file_row, pruned_size)},
    {"pruned_sha256", SD_H5_STR, offsetof(file_row, pruned_sha256)},
};

typedef struct {
  char *key, *file, *dtype, *shape;
  int64_t original_offset, pruned_offset, nbytes, n_pruned;
} tensor_row;

static const sd_h5_field tensor_fields[] = {
    {"key", SD_H5_STR, offsetof(tensor_row, key)},
    {"file", SD_H5_STR, offsetof(tensor_row, file)},
    {"dtype", SD_H5_STR, offsetof(tensor_row, dtype)},
    {"shape", SD_H5_STR, offsetof(tensor_row, shape)},
    {"original_offset", SD_H5_I64, offsetof(tensor_row, original_offset)},
    {"pruned_offset", SD_H5_I64, offsetof(tensor_row, pruned_offset)},
    {"nbytes", SD_H5_I64, offsetof(tensor_row, nbytes)},
    {"n_pruned", SD_H5_I64, offsetof(tensor_row, n_pruned)},
};

typedef struct {
  char *file;
  int64_t pruned_offset, size, original, pruned;
} field_row;

static const sd_h5_field zip_field_fields[] = {
    {"file", SD_H5_STR, offsetof(field_row, file)},
    {"pruned_offset", SD_H5_I64, offsetof(field_row, pruned_offset)},
    {"size", SD_H5_I64, offsetof(field_row, size)},
    {"original", SD_H5_I64, offsetof(field_row, original)},
    {"pruned", SD_H5_I64, offsetof(field_row, pruned)},
};

#define N_FIELDS(a) ((int)(sizeof(a) / sizeof *(a)))

typedef struct {
  file_row *rows;
  int n, cap;
} file_list;

static int file_list_add(file_list *l, const char *file, const char *role, uint64_t osize, const char *osha,
                         uint64_t psize, const char *psha, sd_error *err) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 16;
    file_row *r = realloc(l->rows, (size_t)cap * sizeof *r);
    if (!r)
      return sd_fail(err, "out of memory");
    l->rows = r;
    l->cap = cap;
  }
  file_row *r = &l->rows[l->n];
  r->file = sd_strdup(file);
  r->role = sd_strdup(role);
  r->original_sha256 = sd_strdup(osha);
  r->pruned_sha256 = sd_strdup(psha);
  r->original_size = (int64_t)osize;
  r->pruned_size = (int64_t)psize;
  l->n++;
  if (!r->file || !r->role || !r->original_sha256 || !r->pruned_sha256)
    return sd_fail(err, "out of memory");
  return 0;
}

static void file_list_free(file_list *l) {
  for (int i = 0; i < l->n; i++) {
    free(l->rows[i].file);
    free(l->rows[i].role);
    free(l->rows[i].original_sha256);
    free(l->rows[i].pruned_sha256);
  }
  free(l->rows);
  memset(l, 0, sizeof *l);
}

typedef struct {
  const sd_apply_options *opt;
  const sd_mask *mask;
  const char *layout, *format, *source, *out_path;
  const char *patched_file; /* the patched file's name in the output (relative for folders) */
  patch *p;
  int np;
  unsigned char *header; /* original safetensors header bytes */
  size_t header_len;
  zip_plan zip;
  file_list files;
  int64_t pruned, total;
} apply_ctx;

static int write_restore(const char *path, const apply_ctx *c, sd_h5 **out, sd_error *err) {
  sd_h5 *f = NULL;
  tensor_row *rows = NULL;
  field_row *frows = NULL;
  char **shapes = NULL;
  if (sd_h5_create(path, &f, err) != 0)
    return -1;
  char utc[32];
  sd_utc_now(utc, sizeof utc);
  const char *mask_path = c->opt->mask_path ? c->opt->mask_path : "";
  const char *strs[][2] = {
      {"format", RESTORE_FORMAT},
      {"layout", c->layout},
      {"checkpoint_format", c->format},
      {"source", c->source},
      {"pruned", c->out_path},
      {"mask", mask_path},
      {"mask_sha256", c->opt->mask_sha256 ? c->opt->mask_sha256 : ""},
      {"mask_method", c->mask->method ? c->mask->method : ""},
      {"sdprune_version", sd_version()},
      {"git_revision", sd_git_revision()},
      {"command_line", c->opt->command_line ? c->opt->command_line : ""},
      {"created_utc", utc},
  };
  for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
    if (sd_h5_attr_set_str(f, "/", strs[i][0], strs[i][1], err) != 0)
      goto fail;
  if (sd_h5_attr_set_i64(f, "/", "format_version", RESTORE_FORMAT_VERSION, err) != 0 ||
      sd_h5_attr_set_i64(f, "/", "pruned_weights", c->pruned, err) != 0 ||
      sd_h5_attr_set_i64(f, "/", "total_weights", c->total, err) != 0)
    goto fail;
  if (sd_h5_write_table(f, "/files", file_fields, N_FIELDS(file_fields), sizeof(file_row), c->files.rows, c->files.n,
                        err) != 0)
    goto fail;
  if (!(rows = sd_calloc((size_t)c->np + 1, sizeof *rows, err)) ||
      !(shapes = sd_calloc((size_t)c->np + 1, sizeof *shapes, err)))
    goto fail;
  for (int i = 0; i < c->np; i++) {
    const patch *p = &c->p[i];
    char sb[128];
    sd_shape_str(p->src->shape, p->src->ndim, sb, sizeof sb);
    if (!(shapes[i] = sd_strdup(sb)))
      goto fail;
    rows[i] = (tensor_row){(char *)p->src->name,
                           (char *)c->patched_file,
                           (char *)sd_dtype_name(p->src->dtype),
                           shapes[i],
                           (int64_t)p->original_offset,
                           (int64_t)p->pruned_offset,
                           (int64_t)p->src->nbytes,
                           p->n};
  }
  if (sd_h5_write_table(f, "/tensors", tensor_fields, N_FIELDS(tensor_fields), sizeof(tensor_row), rows, c->np, err) !=
      0)
    goto fail;
  for (int i = 0; i < c->np; i++) {
    static const unsigned char none[8];
    const patch *p = &c->p[i];
    char ds[800];
    if (strchr(p->src->name, '/') || !strcmp(p->src->name, ".")) {
      sd_fail(err, "%s: tensor key '%s' cannot name an HDF5 group", path, p->src->name);
      goto fail;
    }
    int64_t n = p->n, nb = p->n * (int64_t)p->esize;
    snprintf(ds, sizeof ds, "/patches/%s/indices", p->src->name);
    if (sd_h5_write(f, ds, SD_H5_I64, 1, &n, n ? (const void *)p->index : none, 1, err) != 0)
      goto fail;
    snprintf(ds, sizeof ds, "/patches/%s/original", p->src->name);
    if (sd_h5_write(f, ds, SD_H5_U8, 1, &nb, nb ? (const void *)p->original : none, 1, err) != 0)
      goto fail;
  }
  if (c->header) {
    int64_t n = (int64_t)c->header_len;
    if (sd_h5_write(f, "/header", SD_H5_U8, 1, &n, c->header, 1, err) != 0)
      goto fail;
  }
  if (c->zip.n_fields) {
    if (!(frows = sd_calloc((size_t)c->zip.n_fields, sizeof *frows, err)))
      goto fail;
    for (int i = 0; i < c->zip.n_fields; i++)
      frows[i] = (field_row){(char *)c->patched_file, (int64_t)c->zip.fields[i].offset, 4, c->zip.fields[i].original,
                             c->zip.fields[i].pruned};
    if (sd_h5_write_table(f, "/zip_fields", zip_field_fields, N_FIELDS(zip_field_fields), sizeof(field_row), frows,
                          c->zip.n_fields, err) != 0)
      goto fail;
  }
  for (int i = 0; shapes && i < c->np; i++)
    free(shapes[i]);
  free(shapes);
  free(rows);
  free(frows);
  *out = f;
  return 0;
fail:
  for (int i = 0; shapes && i < c->np; i++)
    free(shapes[i]);
  free(shapes);
  free(rows);
  free(frows);
  sd_h5_abort(f);
  return -1;
}

/* ---- folders ---- */

/* Copies one file, hashing it on the way. */
static int copy_file(const char *src, const char *dst, uint64_t *size, char sha_hex[65], sd_error *err) {
  int in = open(src, O_RDONLY);
  if (in < 0)
    return sd_fail(err, "%s: cannot open: %s", src, strerror(errno));
  int out = open(dst, O_WRONLY | O_CREAT | O_EXCL, 0666);
  if (out < 0) {
    close(in);
    return sd_fail(err, "%s: cannot create: %s", dst, strerror(errno));
  }
  unsigned char *buf = sd_malloc(COPY_CHUNK, err);
  sd_sha256_ctx ctx;
  sd_sha256_init(&ctx);
  uint64_t total = 0;
  int rc = buf ? 0 : -1;
  while (rc == 0) {
    ssize_t n = read(in, buf, COPY_CHUNK);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      rc = sd_fail(err, "%s: read failed: %s", src, strerror(errno));
    if (n <= 0)
      break;
    sd_sha256_update(&ctx, buf, (size_t)n);
    total += (uint64_t)n;
    for (ssize_t done = 0; rc == 0 && done < n;) {
      ssize_t w = write(out, buf + done, (size_t)(n - done));
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        rc = sd_fail(err, "%s: write failed: %s", dst, strerror(w < 0 ? errno : ENOSPC));
      else
        done += w;
    }
  }
  if (rc == 0 && fsync(out) != 0)
    rc = sd_fail(err, "%s: write failed: %s", dst, strerror(errno));
  if (close(out) != 0 && rc == 0)
    rc = sd_fail(err, "%s: write failed: %s", dst, strerror(errno));
  close(in);
  free(buf);
  if (rc == 0) {
    *size = total;
    hex_digest(&ctx, sha_hex);
  }
  return rc;
}

/* Walks the regular files under root (symlinks followed, names in sorted order); for each folder and
 * file calls fn with the path relative to root. */
typedef int (*tree_fn)(void *ctx, const char *rel, const char *full, int is_dir, sd_error *err);

static int walk_tree(const char *root, const char *rel, int depth, tree_fn fn, void *ctx, sd_error *err) {
  char dir[4200];
  snprintf(dir, sizeof dir, "%s%s%s", root, *rel ? "/" : "", rel);
  if (depth > MAX_TREE_DEPTH)
    return sd_fail(err, "%s: folders nested too deep (a symlink loop?)", dir);
  struct dirent **names = NULL;
  int n = scandir(dir, &names, NULL, alphasort), rc = 0;
  if (n < 0)
    return sd_fail(err, "%s: cannot read the folder: %s", dir, strerror(errno));
  for (int i = 0; i < n; i++) {
    const char *nm = names[i]->d_name;
    if (rc != 0 || !strcmp(nm, ".") || !strcmp(nm, ".."))
      continue;
    char crel[4200], full[8500];
    snprintf(crel, sizeof crel, "%s%s%s", rel, *rel ? "/" : "", nm);
    snprintf(full, sizeof full, "%s/%s", root, crel);
    struct stat st;
    if (strlen(crel) >= 4096 || strlen(full) >= 4096)
      rc = sd_fail(err, "%s/%s: path too long", dir, nm);
    else if (stat(full, &st) != 0)
      rc = sd_fail(err, "%s: cannot stat: %s", full, strerror(errno));
    else if (S_ISDIR(st.st_mode))
      rc = fn(ctx, crel, full, 1, err) || walk_tree(root, crel, depth + 1, fn, ctx, err) ? -1 : 0;
    else if (S_ISREG(st.st_mode))
      rc = fn(ctx, crel, full, 0, err);
  }
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return rc;
}

typedef struct {
  const char *dst, *skip; /* skip: the patched file, written apart */
  file_list *files;
  uint64_t bytes;
  char note[512];
} copy_ctx;

static int copy_one(void *vctx, const char *rel, const char *full, int is_dir, sd_error *err) {
  copy_ctx *c = vctx;
  char dst[4200];
  snprintf(dst, sizeof dst, "%s/%s", c->dst, rel);
  if (is_dir)
    return mkdir(dst, 0777) == 0 ? 0 : sd_fail(err, "%s: cannot create: %s", dst, strerror(errno));
  if (strcmp(rel, c->skip) == 0)
    return 0;
  /* another weights file beside the patched one (a .bin or fp16 variant) stays unpruned: say so */
  const char *slash = strrchr(c->skip, '/'), *rslash = strrchr(rel, '/');
  size_t dlen = slash ? (size_t)(slash - c->skip) : 0;
  if ((rslash ? (size_t)(rslash - rel) : 0) == dlen && strncmp(rel, c->skip, dlen) == 0 && !c->note[0] &&
      (ends_with(rel, ".safetensors") || ends_with(rel, ".bin")))
    snprintf(c->note, sizeof c->note, "%s copied unpruned (the model is read from %s)", rel, c->skip);
  uint64_t size;
  char sha[65];
  if (copy_file(full, dst, &size, sha, err) != 0)
    return -1;
  c->bytes += size;
  return file_list_add(c->files, rel, "copied", size, sha, size, sha, err);
}

/* ---- apply ---- */

static int has_ext(const char *s, const char *const *exts) {
  for (int i = 0; exts[i]; i++)
    if (ends_with(s, exts[i]))
      return 1;
  return 0;
}

static char *mask_meta_json(const sd_apply_options *opt, const sd_mask *mask, int64_t pruned, int64_t total,
                            const char *restore_path) {
  json_t *j = json_object();
  json_object_set_new(j, "mask", json_string(opt->mask_path ? opt->mask_path : ""));
  json_object_set_new(j, "method", json_string(mask->method ? mask->method : ""));
  json_object_set_new(j, "mask_sha256", json_string(opt->mask_sha256 ? opt->mask_sha256 : ""));
  json_object_set_new(j, "pruned_weights", json_integer(pruned));
  json_object_set_new(j, "total_weights", json_integer(total));
  const char *slash = strrchr(restore_path, '/');
  json_object_set_new(j, "restore_file", json_string(slash ? slash + 1 : restore_path));
  json_object_set_new(j, "sdprune_version", json_string(sd_version()));
  json_object_set_new(j, "git_revision", json_string(sd_git_revision()));
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return s;
}

/* Writes the patched file (format per c->format) through s. */
static int write_patched(apply_ctx *c, const sd_tensor_store *store, const unsigned char *zmap, uint64_t zsize,
                         const char *meta, out_stream *s, sd_error *err) {
  if (!strcmp(c->format, "safetensors"))
    return write_st_patched(store, c->p, c->np, meta, s, &c->header, &c->header_len, err);
  if (!strcmp(c->format, "safetensors-from-torch"))
    return write_st_from_store(store, c->p, c->np, meta, s, &c->header, &c->header_len, err);
  return copy_edited(s, store->path, zmap, 0, zsize, c->zip.edits, c->zip.n_edits, err);
}

int sd_apply_mask_checkpoint(const sd_model *m, const sd_mask *mask, const sd_apply_options *opt, sd_apply_result *res,
                             sd_error *err) {
  memset(res, 0, sizeof *res);
  apply_ctx c = {.opt = opt, .mask = mask};
  const sd_tensor_store *store = NULL;
  const char *mask_path = opt->mask_path ? opt->mask_path : "mask";
  unsigned char *zmap = NULL;
  uint64_t zsize = 0;
  out_stream s = {0};
  sd_h5 *h5 = NULL;
  char tmp[4300] = "", tmp_dir[4300] = "", *meta = NULL, sha_in[65], sha_out[65];
  char root[PATH_MAX], src[PATH_MAX]; /* resolved model folder and UNet file; c.patched_file points into src */
  int rc = -1, committed_restore = 0;
  if (!m->unet_view)
    return sd_fail(err, "%s: the model has no UNet", m->path);
  if (mask->n_layers == 0)
    return sd_fail(err, "%s: the mask has no layers", mask_path);
  if (locate_patches(m, mask, mask_path, &c.p, &store, err) != 0)
    return -1;
  c.np = mask->n_layers;
  for (int i = 0; i < c.np; i++) {
    c.pruned += c.p[i].n;
    c.total += (int64_t)c.p[i].layer->rows * c.p[i].layer->cols;
  }
  c.layout = opt->unet_override ? "unet-override" : !strcmp(m->layout, "diffusers") ? "diffusers" : "single-file";
  int folder = !strcmp(c.layout, "diffusers"), is_zip = !strcmp(store->format, "torch");
  c.format = is_zip ? "torch-zip" : "safetensors";
  c.source = store->path;
  snprintf(res->out_path, sizeof res->out_path, "%s", opt->out);
  for (size_t n = strlen(res->out_path); n > 1 && res->out_path[n - 1] == '/'; n--)
    res->out_path[n - 1] = 0;
  static const char *const st_ext[] = {".safetensors", NULL}, *const torch_ext[] = {".ckpt", ".pt", ".pth", ".bin",
                                                                                    NULL};
  if (!folder) {
    if (sd_is_dir(res->out_path)) {
      sd_fail(err, "%s: is a folder; a single checkpoint file gives a file (name it)", res->out_path);
      goto done;
    }
    if (is_zip && has_ext(res->out_path, st_ext))
      c.format = "safetensors-from-torch";
    if (!is_zip && has_ext(res->out_path, torch_ext)) {
      sd_fail(err, "%s: the input %s is safetensors and stays so: name the output .safetensors", res->out_path,
              store->path);
      goto done;
    }
  } else if (path_exists(res->out_path) && !sd_is_dir(res->out_path)) {
    sd_fail(err, "%s: exists and is not a folder; a diffusers model gives a folder", res->out_path);
    goto done;
  }
  if (is_zip && map_file(store->path, &zmap, &zsize, err) != 0)
    goto done;
  if (!strcmp(c.format, "torch-zip")) {
    char why[700] = "";
    int r = plan_zip(store->path, zmap, zsize, c.p, c.np, &c.zip, why, sizeof why, err);
    if (r < 0)
      goto done;
    if (r > 0 && folder) {
      sd_fail(err, "%s; the torch file of a diffusers folder can only be patched in place", why);
      goto done;
    }
    if (r > 0) {
      c.format = "safetensors-from-torch";
      size_t n = strlen(res->out_path);
      for (int i = 0; torch_ext[i]; i++)
        if (ends_with(res->out_path, torch_ext[i])) {
          n -= strlen(torch_ext[i]);
          break;
        }
      if (n + 13 > sizeof res->out_path) {
        sd_fail(err, "%s: path too long", res->out_path);
        goto done;
      }
      memcpy(res->out_path + n, ".safetensors", 13);
      if (snprintf(res->note, sizeof res->note, "%s: wrote a safetensors file with the same keys instead: %s", why,
                   res->out_path) >= (int)sizeof res->note)
        memcpy(res->note + sizeof res->note - 4, "...", 4); /* a note may be cut; the paths above are checked */
    }
  }
  sd_restore_path_for(res->out_path, res->restore_path, sizeof res->restore_path);
  c.out_path = res->out_path;
  if (same_file(res->out_path, store->path) || same_file(res->out_path, m->path) ||
      (folder && (path_inside(res->out_path, m->path) || path_inside(m->path, res->out_path)))) {
    sd_fail(err, "%s: the output would replace or lie inside the input %s", res->out_path,
            folder ? m->path : store->path);
    goto done;
  }
  if (!opt->force && (path_exists(res->out_path) || path_exists(res->restore_path))) {
    sd_fail(err, "%s: exists (use --force to replace it)",
            path_exists(res->out_path) ? res->out_path : res->restore_path);
    goto done;
  }
  if (!(meta = mask_meta_json(opt, mask, c.pruned, c.total, res->restore_path))) {
    sd_fail(err, "%s: cannot encode the mask provenance (a path that is not UTF-8?)", mask_path);
    goto done;
  }
  if (!folder) {
    const char *slash = strrchr(res->out_path, '/');
    c.patched_file = slash ? slash + 1 : res->out_path;
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", res->out_path, (long)getpid());
    if (stream_open(&s, tmp, 1, err) != 0 || write_patched(&c, store, zmap, zsize, meta, &s, err) != 0 ||
        stream_close(&s, err) != 0)
      goto done;
    hex_digest(&s.in, sha_in);
    hex_digest(&s.out, sha_out);
    if (file_list_add(&c.files, c.patched_file, "patched", s.in_bytes, sha_in, s.bytes, sha_out, err) != 0)
      goto done;
    res->bytes = s.bytes;
  } else {
    if (!realpath(m->path, root) || !realpath(store->path, src) || strncmp(src, root, strlen(root)) != 0 ||
        src[strlen(root)] != '/') {
      sd_fail(err, "%s: the UNet file %s is not inside the model folder", m->path, store->path);
      goto done;
    }
    c.patched_file = src + strlen(root) + 1;
    snprintf(tmp_dir, sizeof tmp_dir, "%s.tmp-%ld", res->out_path, (long)getpid());
    if (mkdir(tmp_dir, 0777) != 0) {
      sd_fail(err, "%s: cannot create: %s", tmp_dir, strerror(errno));
      tmp_dir[0] = 0;
      goto done;
    }
    copy_ctx cc = {.dst = tmp_dir, .skip = c.patched_file, .files = &c.files};
    if (walk_tree(m->path, "", 0, copy_one, &cc, err) != 0)
      goto done;
    if (snprintf(tmp, sizeof tmp, "%s/%s", tmp_dir, c.patched_file) >= (int)sizeof tmp) {
      sd_fail(err, "%s/%s: path too long", tmp_dir, c.patched_file);
      goto done;
    }
    if (stream_open(&s, tmp, 1, err) != 0 || write_patched(&c, store, zmap, zsize, meta, &s, err) != 0 ||
        stream_close(&s, err) != 0)
      goto done;
    hex_digest(&s.in, sha_in);
    hex_digest(&s.out, sha_out);
    if (file_list_add(&c.files, c.patched_file, "patched", s.in_bytes, sha_in, s.bytes, sha_out, err) != 0)
      goto done;
    res->bytes = cc.bytes + s.bytes;
    if (cc.note[0])
      snprintf(res->note, sizeof res->note, "%s", cc.note);
  }
  /* the restore file first: a checkpoint under its final name always has one */
  if (write_restore(res->restore_path, &c, &h5, err) != 0)
    goto done;
  sd_h5 *restore_file = h5;
  h5 = NULL; /* commit frees it in every case */
  if (sd_h5_commit(restore_file, err) != 0)
    goto done;
  committed_restore = 1;
  if (!folder) {
    if (rename(tmp, res->out_path) != 0) {
      sd_fail(err, "%s: cannot rename %s to it: %s", res->out_path, tmp, strerror(errno));
      goto done;
    }
    s.path[0] = 0;
  } else {
    if (replace_dir(tmp_dir, res->out_path, err) != 0)
      goto done;
    tmp_dir[0] = 0;
    s.path[0] = 0;
  }
  res->layout = c.layout;
  res->format = c.format;
  snprintf(res->source, sizeof res->source, "%s", store->path);
  res->n_layers = c.np;
  res->pruned = c.pruned;
  res->total = c.total;
  rc = 0;
done:
  if (rc != 0) {
    stream_abort(&s);
    sd_h5_abort(h5);
    if (tmp_dir[0])
      remove_tree(tmp_dir);
    if (committed_restore)
      unlink(res->restore_path);
  }
  free(meta);
  free(c.header);
  zip_plan_free(&c.zip);
  file_list_free(&c.files);
  free_patches(c.p, c.np);
  unmap_file(zmap, zsize);
  return rc;
}

/* ---- restore ---- */

typedef struct {
  tensor_row *tensors;
  int64_t n_tensors;
  int64_t **index;
  unsigned char **original;
  int64_t *n_original;
  file_row *files;
  int64_t n_files;
  field_row *fields;
  int64_t n_fields;
  unsigned char *header;
  int64_t header_len;
  char *layout, *format;
} restore_data;

static void restore_data_free(restore_data *r) {
  for (int64_t i = 0; i < r->n_tensors; i++) {
    if (r->index)
      free(r->index[i]);
    if (r->original)
      free(r->original[i]);
  }
  free(r->index);
  free(r->original);
  free(r->n_original);
  if (r->tensors)
    sd_h5_free_table(tensor_fields, N_FIELDS(tensor_fields), sizeof(tensor_row), r->tensors, r->n_tensors);
  if (r->files)
    sd_h5_free_table(file_fields, N_FIELDS(file_fields), sizeof(file_row), r->files, r->n_files);
  if (r->fields)
    sd_h5_free_table(zip_field_fields, N_FIELDS(zip_field_fields), sizeof(field_row), r->fields, r->n_fields);
  free(r->header);
  free(r->layout);
  free(r->format);
  memset(r, 0, sizeof *r);
}

static int read_restore(const char *path, restore_data *r, sd_error *err) {
  memset(r, 0, sizeof *r);
  sd_h5 *f;
  if (sd_h5_open(path, &f, err) != 0)
    return -1;
  char *fmt = NULL;
  int64_t version = 0;
  int rc = -1;
  if (sd_h5_attr_get_str(f, "/", "format", &fmt, err) != 0)
    goto done;
  if (strcmp(fmt, RESTORE_FORMAT) != 0) {
    sd_fail(err, "%s: not an sdprune restore file (format '%s')", path, fmt);
    goto done;
  }
  if (sd_h5_attr_get_i64(f, "/", "format_version", &version, err) != 0)
    goto done;
  if (version != RESTORE_FORMAT_VERSION) {
    sd_fail(err, "%s: restore file format version %lld; this sdprune reads %d", path, (long long)version,
            RESTORE_FORMAT_VERSION);
    goto done;
  }
  if (sd_h5_attr_get_str(f, "/", "layout", &r->layout, err) != 0 ||
      sd_h5_attr_get_str(f, "/", "checkpoint_format", &r->format, err) != 0)
    goto done;
  if (sd_h5_read_table(f, "/files", file_fields, N_FIELDS(file_fields), sizeof(file_row), (void **)&r->files,
                       &r->n_files, err) != 0 ||
      sd_h5_read_table(f, "/tensors", tensor_fields, N_FIELDS(tensor_fields), sizeof(tensor_row), (void **)&r->tensors,
                       &r->n_tensors, err) != 0)
    goto done;
  if (!(r->index = sd_calloc((size_t)r->n_tensors + 1, sizeof *r->index, err)) ||
      !(r->original = sd_calloc((size_t)r->n_tensors + 1, sizeof *r->original, err)) ||
      !(r->n_original = sd_calloc((size_t)r->n_tensors + 1, sizeof *r->n_original, err)))
    goto done;
  for (int64_t i = 0; i < r->n_tensors; i++) {
    char ds[800];
    int nd;
    int64_t shape[SD_H5_MAX_DIMS];
    snprintf(ds, sizeof ds, "/patches/%s/indices", r->tensors[i].key);
    if (sd_h5_read(f, ds, SD_H5_I64, &nd, shape, (void **)&r->index[i], err) != 0)
      goto done;
    if (nd != 1 || shape[0] != r->tensors[i].n_pruned) {
      sd_fail(err, "%s: %s holds %lld indices, the tensors table says %lld", path, ds,
              (long long)(nd == 1 ? shape[0] : -1), (long long)r->tensors[i].n_pruned);
      goto done;
    }
    snprintf(ds, sizeof ds, "/patches/%s/original", r->tensors[i].key);
    if (sd_h5_read(f, ds, SD_H5_U8, &nd, shape, (void **)&r->original[i], err) != 0)
      goto done;
    r->n_original[i] = nd == 1 ? shape[0] : -1;
  }
  if (sd_h5_exists(f, "/header")) {
    int nd;
    int64_t shape[SD_H5_MAX_DIMS];
    if (sd_h5_read(f, "/header", SD_H5_U8, &nd, shape, (void **)&r->header, err) != 0)
      goto done;
    r->header_len = nd == 1 ? shape[0] : 0;
  }
  if (sd_h5_exists(f, "/zip_fields") &&
      sd_h5_read_table(f, "/zip_fields", zip_field_fields, N_FIELDS(zip_field_fields), sizeof(field_row),
                       (void **)&r->fields, &r->n_fields, err) != 0)
    goto done;
  rc = 0;
done:
  free(fmt);
  sd_h5_close(f);
  if (rc != 0)
    restore_data_free(r);
  return rc;
}

/* A file name from the restore file used under a folder: relative, no "..". */
static int safe_rel(const char *rel) {
  if (!*rel || rel[0] == '/')
    return 0;
  for (const char *p = rel; *p;) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (n == 0 || (n == 2 && p[0] == '.' && p[1] == '.'))
      return 0;
    p += n + (slash ? 1 : 0);
  }
  return 1;
}

static int check_hash(const char *path, uint64_t want_size, const char *want_sha, const char *what, sd_error *err) {
  struct stat st;
  if (stat(path, &st) != 0)
    return sd_fail(err, "%s: cannot open: %s", path, strerror(errno));
  uint8_t d[32];
  char hex[65];
  if ((uint64_t)st.st_size == want_size) {
    if (sd_sha256_file(path, d, err) != 0)
      return -1;
    sd_sha256_hex(d, hex);
    if (strcmp(hex, want_sha) == 0)
      return 0;
  }
  return sd_fail(err,
                 "%s: SHA-256 does not match the restore file's record of the %s (not the file it was written for, or "
                 "changed since)",
                 path, what);
}

/* Rebuilds one patched file from the pruned one into out (a temporary name). */
static int rebuild_file(const restore_data *r, const file_row *row, const char *pruned, const char *tmp,
                        sd_restore_result *res, sd_error *err) {
  unsigned char *map = NULL;
  uint64_t size = 0;
  edit *edits = NULL;
  unsigned char(*fbytes)[8] = NULL; /* original bytes of the zip fields */
  out_stream s = {0};
  int rc = -1, n = 0;
  int st = !strcmp(r->format, "safetensors") || !strcmp(r->format, "safetensors-from-torch");
  if (!st && strcmp(r->format, "torch-zip") != 0)
    return sd_fail(err, "unknown checkpoint format '%s' in the restore file", r->format);
  if (st && (!r->header || r->header_len < 8))
    return sd_fail(err, "the restore file has no original header");
  if (map_file(pruned, &map, &size, err) != 0)
    return -1;
  if (!(edits = sd_calloc((size_t)(r->n_tensors + r->n_fields) + 1, sizeof *edits, err)))
    goto done;
  for (int64_t i = 0; i < r->n_tensors; i++) {
    const tensor_row *t = &r->tensors[i];
    if (strcmp(t->file, row->file) != 0)
      continue;
    sd_dtype dt;
    if (sd_dtype_from_name(t->dtype, &dt) != 0 || t->nbytes < 0 || t->pruned_offset < 0 ||
        r->n_original[i] != t->n_pruned * (int64_t)sd_dtype_size(dt)) {
      sd_fail(err, "%s: tensor '%s': inconsistent record in the restore file", pruned, t->key);
      goto done;
    }
    edits[n++] = (edit){
        (uint64_t)t->pruned_offset, (uint64_t)t->nbytes, sd_dtype_size(dt), t->n_pruned, r->index[i], r->original[i]};
    res->n_tensors++;
    res->restored += t->n_pruned;
  }
  if (r->n_fields && !(fbytes = sd_calloc((size_t)r->n_fields, 8, err)))
    goto done;
  for (int64_t i = 0; i < r->n_fields; i++) {
    const field_row *fr = &r->fields[i];
    if (strcmp(fr->file, row->file) != 0)
      continue;
    if (fr->size < 1 || fr->size > 8 || fr->pruned_offset < 0) {
      sd_fail(err, "%s: inconsistent zip field record in the restore file", pruned);
      goto done;
    }
    wr_le(fbytes[i], (uint64_t)fr->original, (int)fr->size);
    edits[n++] = (edit){(uint64_t)fr->pruned_offset, (uint64_t)fr->size, 0, 0, NULL, fbytes[i]};
  }
  qsort(edits, (size_t)n, sizeof *edits, compare_edits);
  uint64_t from = 0;
  if (st) {
    uint64_t hl = size >= 8 ? rd64(map) : UINT64_MAX;
    if (hl > size - 8) {
      sd_fail(err, "%s: not a safetensors file", pruned);
      goto done;
    }
    from = 8 + hl;
  }
  int wrc = stream_open(&s, tmp, 0, err);
  if (wrc == 0 && st)
    wrc = emit(&s, NULL, r->header, (size_t)r->header_len, err);
  if (wrc == 0)
    wrc = copy_edited(&s, pruned, map, from, size, edits, n, err);
  if (wrc == 0)
    wrc = stream_close(&s, err);
  if (wrc != 0)
    goto done;
  char hex[65];
  hex_digest(&s.out, hex);
  if (s.bytes != (uint64_t)row->original_size || strcmp(hex, row->original_sha256) != 0) {
    sd_fail(err, "%s: the restored bytes' SHA-256 does not match the original's (damaged restore file?)", pruned);
    goto done;
  }
  res->bytes += s.bytes;
  s.path[0] = 0; /* complete: the caller renames or removes it */
  rc = 0;
done:
  stream_abort(&s);
  free(fbytes);
  free(edits);
  unmap_file(map, size);
  return rc;
}

typedef struct {
  const restore_data *r;
  const char *root;
} extra_ctx;

static int check_listed(void *vctx, const char *rel, const char *full, int is_dir, sd_error *err) {
  extra_ctx *c = vctx;
  if (is_dir)
    return 0;
  for (int64_t i = 0; i < c->r->n_files; i++)
    if (!strcmp(c->r->files[i].file, rel))
      return 0;
  return sd_fail(err, "%s: not in the restore file (added to the pruned folder after apply?)", full);
}

int sd_restore_checkpoint(const char *pruned, const char *restore_path, const char *out, int force,
                          sd_restore_result *res, sd_error *err) {
  memset(res, 0, sizeof *res);
  restore_data r;
  if (read_restore(restore_path, &r, err) != 0)
    return -1;
  char tmp[4300] = "", tmp_dir[4300] = "";
  int rc = -1;
  snprintf(res->out_path, sizeof res->out_path, "%s", out);
  for (size_t n = strlen(res->out_path); n > 1 && res->out_path[n - 1] == '/'; n--)
    res->out_path[n - 1] = 0;
  int folder = !strcmp(r.layout, "diffusers");
  const file_row *patched = NULL;
  for (int64_t i = 0; i < r.n_files; i++) {
    if (!strcmp(r.files[i].role, "patched")) {
      if (patched) {
        sd_fail(err, "%s: more than one patched file recorded", restore_path);
        goto done;
      }
      patched = &r.files[i];
    }
    if (folder && !safe_rel(r.files[i].file)) {
      sd_fail(err, "%s: file name '%s' is not a path inside a folder", restore_path, r.files[i].file);
      goto done;
    }
  }
  if (!patched) {
    sd_fail(err, "%s: no patched file recorded", restore_path);
    goto done;
  }
  if (folder ? !sd_is_dir(pruned) : !sd_is_file(pruned)) {
    sd_fail(err, "%s: not a %s; %s was written for a %s", pruned, folder ? "folder" : "file", restore_path,
            folder ? "diffusers folder" : "single checkpoint file");
    goto done;
  }
  if (same_file(res->out_path, pruned) ||
      (folder && (path_inside(res->out_path, pruned) || path_inside(pruned, res->out_path)))) {
    sd_fail(err, "%s: the output would replace or lie inside the input %s", res->out_path, pruned);
    goto done;
  }
  if (!force && path_exists(res->out_path)) {
    sd_fail(err, "%s: exists (use --force to replace it)", res->out_path);
    goto done;
  }
  char src[4200];
  if (folder)
    snprintf(src, sizeof src, "%s/%s", pruned, patched->file);
  else
    snprintf(src, sizeof src, "%s", pruned);
  if (check_hash(src, (uint64_t)patched->pruned_size, patched->pruned_sha256, "pruned file", err) != 0)
    goto done;
  res->format = !strcmp(r.format, "torch-zip")     ? "torch-zip"
                : !strcmp(r.format, "safetensors") ? "safetensors"
                                                   : "safetensors-from-torch";
  if (!folder) {
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", res->out_path, (long)getpid());
    if (rebuild_file(&r, patched, src, tmp, res, err) != 0) {
      tmp[0] = 0;
      goto done;
    }
    if (rename(tmp, res->out_path) != 0) {
      sd_fail(err, "%s: cannot rename %s to it: %s", res->out_path, tmp, strerror(errno));
      goto done;
    }
    tmp[0] = 0;
    res->n_files = 1;
  } else {
    extra_ctx ec = {&r, pruned};
    if (walk_tree(pruned, "", 0, check_listed, &ec, err) != 0)
      goto done;
    snprintf(tmp_dir, sizeof tmp_dir, "%s.tmp-%ld", res->out_path, (long)getpid());
    if (mkdir(tmp_dir, 0777) != 0) {
      sd_fail(err, "%s: cannot create: %s", tmp_dir, strerror(errno));
      tmp_dir[0] = 0;
      goto done;
    }
    for (int64_t i = 0; i < r.n_files; i++) {
      const file_row *fr = &r.files[i];
      char from[4200], to[4200];
      if (snprintf(from, sizeof from, "%s/%s", pruned, fr->file) >= (int)sizeof from ||
          snprintf(to, sizeof to, "%s/%s", tmp_dir, fr->file) >= (int)sizeof to) {
        sd_fail(err, "%s/%s: path too long", tmp_dir, fr->file);
        goto done;
      }
      char *slash = strrchr(to, '/');
      *slash = 0;
      if (sd_mkdir_p(to) != 0) {
        sd_fail(err, "%s: cannot create: %s", to, strerror(errno));
        goto done;
      }
      *slash = '/';
      if (fr == patched) {
        if (rebuild_file(&r, fr, from, to, res, err) != 0)
          goto done;
      } else {
        uint64_t size;
        char sha[65];
        if (copy_file(from, to, &size, sha, err) != 0)
          goto done;
        if (size != (uint64_t)fr->pruned_size || strcmp(sha, fr->pruned_sha256) != 0) {
          sd_fail(err, "%s: SHA-256 does not match the restore file's record (changed since apply?)", from);
          goto done;
        }
        res->bytes += size;
      }
      res->n_files++;
    }
    if (replace_dir(tmp_dir, res->out_path, err) != 0)
      goto done;
    tmp_dir[0] = 0;
  }
  rc = 0;
done:
  if (tmp[0])
    unlink(tmp);
  if (tmp_dir[0])
    remove_tree(tmp_dir);
  restore_data_free(&r);
  return rc;
}
