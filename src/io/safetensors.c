/* safetensors reading (mmap, every header field bounds-checked) and writing (temp file + rename).
 * Format: u64 little-endian header length N, N bytes of JSON {name: {dtype, shape, data_offsets}},
 * then the data block; offsets are relative to the data block. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "io/tensor_store.h"

#define MAX_HEADER_BYTES (100u * 1024u * 1024u)

typedef struct {
  uint64_t begin, end;
  const char *name;
} byte_range;

static int compare_ranges(const void *a, const void *b) {
  const byte_range *x = a, *y = b;
  return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static int parse_entry(sd_tensor_store *s, const char *name, json_t *entry, const unsigned char *data,
                       uint64_t data_size, byte_range *range, sd_error *err) {
  if (!json_is_object(entry)) return sd_fail(err, "tensor '%s': header entry is not an object", name);
  json_t *jdtype = json_object_get(entry, "dtype"), *jshape = json_object_get(entry, "shape"),
         *joffs = json_object_get(entry, "data_offsets");
  if (!json_is_string(jdtype) || !json_is_array(jshape) || !json_is_array(joffs) || json_array_size(joffs) != 2)
    return sd_fail(err, "tensor '%s': header entry needs dtype, shape and two data_offsets", name);
  sd_dtype dtype;
  if (sd_dtype_from_name(json_string_value(jdtype), &dtype) != 0)
    return sd_fail(err, "tensor '%s': unknown dtype '%s'", name, json_string_value(jdtype));
  int ndim = (int)json_array_size(jshape);
  if (ndim > SD_MAX_DIMS) return sd_fail(err, "tensor '%s': %d dimensions", name, ndim);
  int64_t shape[SD_MAX_DIMS];
  uint64_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    json_t *d = json_array_get(jshape, (size_t)i);
    if (!json_is_integer(d) || json_integer_value(d) < 0)
      return sd_fail(err, "tensor '%s': shape entry %d is not a non-negative integer", name, i);
    shape[i] = json_integer_value(d);
    if (shape[i] && numel > UINT64_MAX / (uint64_t)shape[i]) return sd_fail(err, "tensor '%s': shape overflows", name);
    numel *= (uint64_t)shape[i];
  }
  json_t *jb = json_array_get(joffs, 0), *je = json_array_get(joffs, 1);
  if (!json_is_integer(jb) || !json_is_integer(je) || json_integer_value(jb) < 0 ||
      json_integer_value(je) < json_integer_value(jb))
    return sd_fail(err, "tensor '%s': bad data_offsets", name);
  uint64_t begin = (uint64_t)json_integer_value(jb), end = (uint64_t)json_integer_value(je);
  if (end > data_size)
    return sd_fail(err, "tensor '%s': data_offsets [%llu, %llu] run past the end of the data (%llu bytes; truncated file?)",
                   name, (unsigned long long)begin, (unsigned long long)end, (unsigned long long)data_size);
  size_t esize = sd_dtype_size(dtype);
  if (numel > UINT64_MAX / esize || numel * esize != end - begin) {
    char sbuf[128];
    return sd_fail(err, "tensor '%s': %s %s needs %llu bytes but data_offsets give %llu", name, sd_dtype_name(dtype),
                   sd_shape_str(shape, ndim, sbuf, sizeof sbuf), (unsigned long long)(numel * esize),
                   (unsigned long long)(end - begin));
  }
  range->begin = begin;
  range->end = end;
  return sd_store_add(s, name, dtype, ndim, shape, data + begin, (size_t)(end - begin), err);
}

static int parse_header(sd_tensor_store *s, const char *text, size_t len, const unsigned char *data,
                        uint64_t data_size, sd_error *err) {
  json_error_t jerr;
  json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!root) return sd_fail(err, "header is not valid JSON (%s at byte %d)", jerr.text, jerr.position);
  int rc = -1;
  byte_range *ranges = NULL;
  if (!json_is_object(root)) {
    sd_fail(err, "header is not a JSON object");
    goto done;
  }
  ranges = sd_calloc(json_object_size(root) + 1, sizeof *ranges, err);
  if (!ranges) goto done;
  int n = 0;
  const char *key;
  json_t *value;
  json_object_foreach(root, key, value) {
    if (strcmp(key, "__metadata__") == 0) {
      s->metadata_json = json_dumps(value, JSON_COMPACT);
      continue;
    }
    if (parse_entry(s, key, value, data, data_size, &ranges[n], err) != 0) goto done;
    ranges[n].name = s->tensors[s->count - 1].name;
    n++;
  }
  qsort(ranges, (size_t)n, sizeof *ranges, compare_ranges);
  for (int i = 1; i < n; i++) {
    if (ranges[i].begin < ranges[i - 1].end && ranges[i].end > ranges[i].begin)
      {
      sd_fail(err, "tensors '%s' and '%s' overlap in the data block", ranges[i - 1].name, ranges[i].name);
      goto done;
    }
  }
  rc = 0;
done:
  free(ranges);
  json_decref(root);
  return rc;
}

int sd_store_open_safetensors(const char *path, sd_tensor_store **out, sd_error *err) {
  *out = NULL;
  int fd = open(path, O_RDONLY);
  if (fd < 0) return sd_fail(err, "%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return sd_fail(err, "%s: not a regular file", path);
  }
  size_t size = (size_t)st.st_size;
  if (size < 8) {
    close(fd);
    return sd_fail(err, "%s: file is %zu bytes, too short for a safetensors header (truncated?)", path, size);
  }
  void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  close(fd);
  if (map == MAP_FAILED) return sd_fail(err, "%s: cannot mmap: %s", path, strerror(errno));
  sd_tensor_store *s = sd_store_new(path, "safetensors", err);
  if (!s) {
    munmap(map, size);
    return -1;
  }
  s->map = map;
  s->map_size = size;
  const unsigned char *bytes = map;
  uint64_t header_len = 0;
  for (int i = 7; i >= 0; i--) header_len = (header_len << 8) | bytes[i];
  if (header_len > MAX_HEADER_BYTES || header_len > size - 8) {
    sd_store_close(s);
    return sd_fail(err, "%s: header length %llu exceeds the file size %zu (truncated or not safetensors)", path,
                   (unsigned long long)header_len, size);
  }
  if (parse_header(s, (const char *)bytes + 8, (size_t)header_len, bytes + 8 + header_len,
                   size - 8 - header_len, err) != 0) {
    sd_store_close(s);
    return sd_fail_prefix(err, "%s", path);
  }
  *out = s;
  return 0;
}

int sd_store_open(const char *path, sd_tensor_store **out, sd_error *err) {
  unsigned char magic[4] = {0};
  FILE *f = fopen(path, "rb");
  if (!f) return sd_fail(err, "%s: cannot open: %s", path, strerror(errno));
  size_t got = fread(magic, 1, 4, f);
  fclose(f);
  if (got == 4 && magic[0] == 'P' && magic[1] == 'K' && magic[2] == 3 && magic[3] == 4)
    return sd_store_open_torch(path, out, err);
  return sd_store_open_safetensors(path, out, err);
}

/* ---- writing ---- */

int sd_safetensors_write(const char *path, const sd_st_entry *entries, int count, const char *metadata_json,
                         sd_error *err) {
  json_t *root = json_object();
  if (metadata_json) {
    json_error_t jerr;
    json_t *md = json_loads(metadata_json, 0, &jerr);
    if (!md || !json_is_object(md)) {
      json_decref(md);
      json_decref(root);
      return sd_fail(err, "%s: metadata is not a JSON object", path);
    }
    json_object_set_new(root, "__metadata__", md);
  }
  uint64_t offset = 0;
  for (int i = 0; i < count; i++) {
    json_t *e = json_object(), *shape = json_array();
    uint64_t numel = 1;
    for (int d = 0; d < entries[i].ndim; d++) {
      json_array_append_new(shape, json_integer(entries[i].shape[d]));
      numel *= (uint64_t)entries[i].shape[d];
    }
    uint64_t nbytes = numel * sd_dtype_size(entries[i].dtype);
    json_object_set_new(e, "dtype", json_string(sd_dtype_name(entries[i].dtype)));
    json_object_set_new(e, "shape", shape);
    json_t *offs = json_array();
    json_array_append_new(offs, json_integer((json_int_t)offset));
    json_array_append_new(offs, json_integer((json_int_t)(offset + nbytes)));
    json_object_set_new(e, "data_offsets", offs);
    json_object_set_new(root, entries[i].name, e);
    offset += nbytes;
  }
  char *header = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(root);
  if (!header) return sd_fail(err, "%s: cannot encode header", path);
  size_t hlen = strlen(header), padded = (hlen + 7) & ~(size_t)7; /* keeps tensor data 8-byte aligned */
  char tmp[4096];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f) {
    free(header);
    return sd_fail(err, "%s: cannot create: %s", tmp, strerror(errno));
  }
  unsigned char lenbytes[8];
  for (int i = 0; i < 8; i++) lenbytes[i] = (unsigned char)((uint64_t)padded >> (8 * i));
  int ok = fwrite(lenbytes, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
  for (size_t i = hlen; ok && i < padded; i++) ok = fputc(' ', f) != EOF;
  free(header);
  for (int i = 0; ok && i < count; i++) {
    if (entries[i].write) {
      ok = entries[i].write(f, &entries[i]) == 0;
    } else {
      uint64_t numel = 1;
      for (int d = 0; d < entries[i].ndim; d++) numel *= (uint64_t)entries[i].shape[d];
      size_t nbytes = (size_t)(numel * sd_dtype_size(entries[i].dtype));
      ok = fwrite(entries[i].data, 1, nbytes, f) == nbytes;
    }
  }
  if (fflush(f) != 0) ok = 0;
  if (fclose(f) != 0) ok = 0;
  if (!ok) {
    unlink(tmp);
    return sd_fail(err, "%s: write failed: %s", path, strerror(errno));
  }
  if (rename(tmp, path) != 0) {
    unlink(tmp);
    return sd_fail(err, "%s: cannot rename from temporary file: %s", path, strerror(errno));
  }
  return 0;
}
