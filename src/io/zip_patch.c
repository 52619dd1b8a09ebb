/* Zip archives patched in place (zip_patch.h): the central directory read straight from the mapped
 * bytes, because libzip does not expose data offsets, and the CRC-32 fields of an entry. Not the
 * reading of torch checkpoints (torch_zip.c) nor what to patch (prune/apply_formats.c). */
#include "io/zip_patch.h"

#include <stdlib.h>
#include <string.h>
#include <zip.h>

static uint16_t rd16(const unsigned char *p) {
  return (uint16_t)(p[0] | p[1] << 8);
}
static uint32_t rd32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t rd64(const unsigned char *p) {
  return (uint64_t)rd32(p) | (uint64_t)rd32(p + 4) << 32;
}

/* Bytewise table: only the patched storages are hashed. */
uint32_t sd_crc32(const unsigned char *p, uint64_t n) {
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

void sd_zip_dir_free(sd_zip_dir *d) {
  for (int i = 0; i < d->n; i++)
    free(d->e[i].name);
  free(d->e);
  memset(d, 0, sizeof *d);
}

int sd_zip_dir_read(const char *path, const unsigned char *map, uint64_t size, sd_zip_dir *d, sd_error *err) {
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
      sd_zip_dir_free(d);
      return sd_fail(err, "%s: bad zip central directory record %llu", path, (unsigned long long)i);
    }
    sd_zip_entry *e = &d->e[d->n];
    e->flags = rd16(map + q + 8);
    e->method = rd16(map + q + 10);
    e->crc = rd32(map + q + 16);
    e->comp = rd32(map + q + 20);
    e->size = rd32(map + q + 24);
    e->local = rd32(map + q + 42);
    e->record = q;
    uint64_t nl = rd16(map + q + 28), el = rd16(map + q + 30), cl = rd16(map + q + 32);
    if (q + 46 + nl + el + cl > end || !(e->name = strndup((const char *)map + q + 46, (size_t)nl))) {
      sd_zip_dir_free(d);
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

int sd_zip_data_offset(const char *path, const unsigned char *map, uint64_t size, const sd_zip_entry *e, uint64_t *data,
                       sd_error *err) {
  if (size < 30 || e->local > size - 30 || rd32(map + e->local) != 0x04034b50)
    return sd_fail(err, "%s: entry '%s' has no local header where the central directory says", path, e->name);
  uint64_t d = e->local + 30 + rd16(map + e->local + 26) + rd16(map + e->local + 28);
  if (d > size || e->comp > size - d)
    return sd_fail(err, "%s: entry '%s' runs past the end of the file (truncated?)", path, e->name);
  *data = d;
  return 0;
}

/* data.pkl through libzip (it may be compressed, storages never are in torch.save files). */
int sd_zip_read_entry(const char *path, const char *name, unsigned char **out, size_t *n, sd_error *err) {
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

int sd_zip_crc_fields(const char *path, const unsigned char *map, uint64_t size, const sd_zip_entry *e, uint64_t data,
                      uint64_t offsets[3], int *n, sd_error *err) {
  uint32_t old = e->crc;
  *n = 0;
  offsets[(*n)++] = e->record + 16;
  uint32_t local_crc = rd32(map + e->local + 14);
  if (local_crc == old && (old != 0 || !(e->flags & 8)))
    offsets[(*n)++] = e->local + 14;
  if (e->flags & 8) { /* data descriptor: optional signature, then the CRC */
    uint64_t dd = data + e->comp;
    if (dd + 8 <= size && rd32(map + dd) == 0x08074b50 && rd32(map + dd + 4) == old)
      offsets[(*n)++] = dd + 4;
    else if (dd + 4 <= size && rd32(map + dd) == old)
      offsets[(*n)++] = dd;
    else
      return sd_fail(err, "%s: entry '%s': no data descriptor after its data", path, e->name);
  }
  return 0;
}
