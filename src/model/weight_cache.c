/* Float32 weight cache shared between processes, and release of converted source pages. */
#include "core/files.h"
#include "model/weight_cache.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "io/store_view.h"

static const char *const part_prefix[3] = {"unet.", "text.", "vae."};

static sd_tensor_store **part_view(sd_model *m, int i) {
  return i == 0 ? &m->unet_view : i == 1 ? &m->text_view : &m->vae_view;
}

/* Streams a tensor as float32, converting 64K elements at a time. */
static int write_as_f32(FILE *f, const sd_st_entry *e) {
  const sd_tensor *t = e->user;
  int64_t n = sd_tensor_numel(t), chunk = 65536;
  size_t esize = sd_dtype_size(t->dtype);
  float *buf = malloc(sizeof(float) * (size_t)chunk);
  if (!buf) return -1;
  int rc = 0;
  for (int64_t i = 0; i < n && rc == 0; i += chunk) {
    int64_t m = n - i < chunk ? n - i : chunk;
    sd_dtype_to_f32(t->dtype, (const unsigned char *)t->data + (size_t)i * esize, buf, m);
    if (fwrite(buf, sizeof(float), (size_t)m, f) != (size_t)m) rc = -1;
  }
  free(buf);
  return rc;
}

static int write_cache(sd_model *m, const char *path, sd_error *err) {
  int total = 0;
  for (int p = 0; p < 3; p++)
    if (*part_view(m, p)) total += (*part_view(m, p))->count;
  sd_st_entry *e = sd_calloc((size_t)total, sizeof *e, err);
  char **names = sd_calloc((size_t)total, sizeof *names, err);
  if (!e || !names) {
    free(e);
    free(names);
    return -1;
  }
  int n = 0, rc = 0;
  for (int p = 0; p < 3; p++) {
    sd_tensor_store *v = *part_view(m, p);
    for (int i = 0; v && i < v->count; i++) {
      sd_tensor *t = &v->tensors[i];
      size_t len = strlen(part_prefix[p]) + strlen(t->name) + 1;
      names[n] = malloc(len);
      if (!names[n]) {
        rc = sd_fail(err, "out of memory");
        break;
      }
      snprintf(names[n], len, "%s%s", part_prefix[p], t->name);
      e[n] = (sd_st_entry){.name = names[n], .dtype = SD_DTYPE_F32, .ndim = t->ndim, .write = write_as_f32, .user = t};
      memcpy(e[n].shape, t->shape, sizeof t->shape);
      n++;
    }
  }
  char metadata[256];
  snprintf(metadata, sizeof metadata, "{\"sdprune_weight_cache\":\"%s\",\"sdprune_version\":\"%s\"}", m->hash,
           SDPRUNE_VERSION);
  if (rc == 0) rc = sd_safetensors_write(path, e, n, metadata, err);
  for (int i = 0; i < n; i++) free(names[i]);
  free(names);
  free(e);
  return rc;
}

/* Replaces the part views by views into the cache file (which must hold every tensor). */
static int use_cache(sd_model *m, const char *path, sd_error *err) {
  sd_tensor_store *cache;
  if (sd_store_open_safetensors(path, &cache, err) != 0) return -1;
  sd_tensor_store *views[3] = {NULL, NULL, NULL};
  int expected = 0;
  for (int p = 0; p < 3; p++) {
    if (!*part_view(m, p)) continue;
    expected += (*part_view(m, p))->count;
    views[p] = sd_view_of_prefix(cache, part_prefix[p], err);
    if (!views[p] || views[p]->count != (*part_view(m, p))->count) {
      for (int q = 0; q <= p; q++) sd_store_close(views[q]);
      sd_store_close(cache);
      return sd_fail(err, "%s: weight cache does not match the model (%d tensors expected)", path, expected);
    }
  }
  if (m->n_files == SD_MODEL_MAX_FILES) {
    for (int p = 0; p < 3; p++) sd_store_close(views[p]);
    sd_store_close(cache);
    return sd_fail(err, "%s: too many files open for the model", path);
  }
  m->files[m->n_files++] = cache;
  for (int p = 0; p < 3; p++) {
    if (!views[p]) continue;
    sd_store_close(*part_view(m, p));
    *part_view(m, p) = views[p];
  }
  /* The cache is used read-only by every rank; nothing else of the source files is needed now. */
  for (int i = 0; i < m->n_files - 1; i++)
    if (m->files[i]->map) madvise(m->files[i]->map, m->files[i]->map_size, MADV_DONTNEED);
  return 0;
}


int sd_weight_cache_apply(sd_model *m, const char *dir, int wait_seconds, char *note, size_t note_size) {
  char path[4200], lock[4300];
  snprintf(path, sizeof path, "%s/sdprune-%s.f32.safetensors", dir, m->hash);
  snprintf(lock, sizeof lock, "%s.lock", path);
  struct stat st;
  sd_error e;
  if (stat(path, &st) == 0) {
    if (use_cache(m, path, &e) == 0) return 0;
    snprintf(note, note_size, "weight cache not used: %s", e.msg);
    return 1;
  }
  if (sd_mkdir_p(dir) != 0) {
    snprintf(note, note_size, "weight cache not used: %s: cannot create: %s", dir, strerror(errno));
    return 1;
  }
  int fd = open(lock, O_CREAT | O_EXCL | O_WRONLY, 0644);
  if (fd >= 0) { /* we write it */
    close(fd);
    int rc = write_cache(m, path, &e);
    unlink(lock);
    if (rc != 0) {
      snprintf(note, note_size, "weight cache not written: %s", e.msg);
      return 1;
    }
  } else if (errno == EEXIST) { /* another process writes it: wait */
    time_t start = time(NULL);
    while (stat(path, &st) != 0 && stat(lock, &st) == 0 && time(NULL) - start < wait_seconds) usleep(200000);
    if (stat(path, &st) != 0) {
      snprintf(note, note_size, "weight cache not used: %s still locked after %d s (stale lock? remove it)", lock,
               wait_seconds);
      return 1;
    }
  } else {
    snprintf(note, note_size, "weight cache not used: %s: %s", lock, strerror(errno));
    return 1;
  }
  if (use_cache(m, path, &e) != 0) {
    snprintf(note, note_size, "weight cache not used: %s", e.msg);
    return 1;
  }
  return 0;
}

void sd_model_release_source_pages(sd_model *m) {
  for (int f = 0; f < m->n_files; f++) {
    sd_tensor_store *s = m->files[f];
    if (!s->map) continue;
    const char *lo = s->map, *hi = lo + s->map_size;
    int in_use = 0;
    for (int p = 0; p < 3 && !in_use; p++) {
      sd_tensor_store *v = *part_view(m, p);
      for (int i = 0; v && i < v->count && !in_use; i++) {
        const sd_tensor *t = &v->tensors[i];
        const char *d = t->data;
        /* zero-copy float32 tensors are read from the mapping at every evaluation; unconverted ones are
         * read once more when converted, which a dropped page survives (it is faulted in again) */
        if (d >= lo && d < hi && t->f32 && (const void *)t->f32 == t->data) in_use = 1;
      }
    }
    if (!in_use) madvise(s->map, s->map_size, MADV_DONTNEED);
  }
}
