/* A zip archive read from its mapped bytes for patching in place: the central directory (with the
 * data offsets libzip does not expose), one entry read whole, CRC-32, and where an entry's CRC-32 is
 * recorded. An io concern: knows nothing of tensors or masks (prune/apply_formats.c plans the patch). */
#ifndef SD_ZIP_PATCH_H
#define SD_ZIP_PATCH_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct {
  char *name;
  uint16_t flags, method;
  uint32_t crc;
  uint64_t comp, size, local, record; /* record: offset of the central directory record */
} sd_zip_entry;

typedef struct {
  sd_zip_entry *e;
  int n;
} sd_zip_dir;

/* Reads the central directory of the zip mapped at map[0, size) (zip64 records understood). */
int sd_zip_dir_read(const char *path, const unsigned char *map, uint64_t size, sd_zip_dir *d, sd_error *err);
void sd_zip_dir_free(sd_zip_dir *d);
/* The offset of the entry's data, checked against the local header and the file's size. */
int sd_zip_data_offset(const char *path, const unsigned char *map, uint64_t size, const sd_zip_entry *e, uint64_t *data,
                       sd_error *err);
/* The entry `name` decompressed through libzip (at most 1 GiB); *out is the caller's. */
int sd_zip_read_entry(const char *path, const char *name, unsigned char **out, size_t *n, sd_error *err);
/* CRC-32 (ISO-HDLC, the zip one). */
uint32_t sd_crc32(const unsigned char *p, uint64_t n);
/* The byte offsets of the 4-byte fields that hold entry e's CRC-32 (e->crc): the central directory
 * record, the local header (unless deferred to the data descriptor) and the data descriptor after
 * the data at `data`. *n gets 1 to 3. */
int sd_zip_crc_fields(const char *path, const unsigned char *map, uint64_t size, const sd_zip_entry *e, uint64_t data,
                      uint64_t offsets[3], int *n, sd_error *err);

#endif
