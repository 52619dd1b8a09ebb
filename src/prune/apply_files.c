/* The file mechanics of writing and restoring checkpoints (apply_internal.h): a hashed output stream
 * that copies a source with byte edits applied, file mapping and copying, folder walks and atomic
 * folder replacement. Knows nothing of masks or of the formats the edits come from. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "prune/apply_internal.h"

#define COPY_CHUNK ((size_t)8 << 20)
#define MAX_TREE_DEPTH 32

int ap_ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

int ap_path_exists(const char *path) {
  struct stat st;
  return lstat(path, &st) == 0;
}

int ap_same_file(const char *a, const char *b) {
  struct stat x, y;
  return stat(a, &x) == 0 && stat(b, &y) == 0 && x.st_dev == y.st_dev && x.st_ino == y.st_ino;
}

/* 1 if `inner` is `outer` or lies below it (both resolved; inner need not exist, its parent must). */
int ap_path_inside(const char *inner, const char *outer) {
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

void ap_remove_tree(const char *path) {
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
        ap_remove_tree(child);
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
int ap_replace_dir(const char *tmp, const char *final, sd_error *err) {
  if (!ap_path_exists(final)) {
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
  ap_remove_tree(old);
  return 0;
}

int ap_map_file(const char *path, unsigned char **map, uint64_t *size, sd_error *err) {
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

void ap_unmap_file(unsigned char *map, uint64_t size) {
  if (map && size)
    munmap(map, (size_t)size);
}
/* ---- output stream ---- */

int ap_stream_open(out_stream *s, const char *path, int hash_in, sd_error *err) {
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

void ap_feed_in(out_stream *s, const void *in, size_t n) {
  if (!s->hash_in)
    return;
  sd_sha256_update(&s->in, in, n);
  s->in_bytes += n;
}

/* Writes `out` (n bytes) in place of `in` (the original bytes, or NULL when there are none). */
int ap_emit(out_stream *s, const void *in, const void *out, size_t n, sd_error *err) {
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

int ap_stream_close(out_stream *s, sd_error *err) {
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

void ap_stream_abort(out_stream *s) {
  if (s->f)
    fclose(s->f);
  s->f = NULL;
  if (s->path[0])
    unlink(s->path);
  s->path[0] = 0;
}

void ap_hex_digest(sd_sha256_ctx *ctx, char out[65]) {
  uint8_t d[32];
  sd_sha256_final(ctx, d);
  sd_sha256_hex(d, out);
}

/* ---- byte edits over a source file ---- */

int ap_compare_edits(const void *a, const void *b) {
  const edit *x = a, *y = b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

int ap_apply_elements(unsigned char *buf, const edit *e, const char *name, sd_error *err) {
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

int ap_copy_plain(out_stream *s, const unsigned char *p, uint64_t n, sd_error *err) {
  while (n) {
    size_t k = n > COPY_CHUNK ? COPY_CHUNK : (size_t)n;
    if (ap_emit(s, p, p, k, err) != 0)
      return -1;
    p += k;
    n -= k;
  }
  return 0;
}

/* Streams src[from, to) with the edits (sorted by offset) applied. */
int ap_copy_edited(out_stream *s, const char *name, const unsigned char *src, uint64_t from, uint64_t to, const edit *e,
                   int n, sd_error *err) {
  uint64_t pos = from;
  for (int i = 0; i < n; i++) {
    if (e[i].offset < pos || e[i].offset > to || e[i].nbytes > to - e[i].offset)
      return sd_fail(err, "%s: a patch at byte %llu (%llu bytes) lies outside the data or overlaps another", name,
                     (unsigned long long)e[i].offset, (unsigned long long)e[i].nbytes);
    if (ap_copy_plain(s, src + pos, e[i].offset - pos, err) != 0)
      return -1;
    const unsigned char *orig = src + e[i].offset;
    int rc;
    if (e[i].esize) {
      unsigned char *buf = sd_malloc(e[i].nbytes ? (size_t)e[i].nbytes : 1, err);
      if (!buf)
        return -1;
      memcpy(buf, orig, (size_t)e[i].nbytes);
      rc = ap_apply_elements(buf, &e[i], name, err);
      if (rc == 0)
        rc = ap_emit(s, orig, buf, (size_t)e[i].nbytes, err);
      free(buf);
    } else {
      rc = ap_emit(s, orig, e[i].values, (size_t)e[i].nbytes, err);
    }
    if (rc != 0)
      return -1;
    pos = e[i].offset + e[i].nbytes;
  }
  return ap_copy_plain(s, src + pos, to - pos, err);
}

/* ---- copies and folders ---- */

/* Copies one file, hashing it on the way. */
int ap_copy_file(const char *src, const char *dst, uint64_t *size, char sha_hex[65], sd_error *err) {
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
    ap_hex_digest(&ctx, sha_hex);
  }
  return rc;
}

int ap_walk_tree(const char *root, const char *rel, int depth, ap_tree_fn fn, void *ctx, sd_error *err) {
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
      rc = fn(ctx, crel, full, 1, err) || ap_walk_tree(root, crel, depth + 1, fn, ctx, err) ? -1 : 0;
    else if (S_ISREG(st.st_mode))
      rc = fn(ctx, crel, full, 0, err);
  }
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return rc;
}
