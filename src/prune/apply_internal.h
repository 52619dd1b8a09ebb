/* Shared between the files of prune/ that write and restore checkpoints (apply.c, apply_files.c,
 * apply_formats.c, restore_file.c, restore.c): the patch records, the byte-edit output stream, the
 * filesystem steps and the restore file's rows. Internal: nothing outside those files includes it. */
#ifndef SD_APPLY_INTERNAL_H
#define SD_APPLY_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "core/error.h"
#include "core/sha256.h"
#include "io/h5.h"
#include "io/tensor_store.h"
#include "prune/apply.h"

/* Little-endian integers of n bytes (safetensors header length, zip CRC fields). */
static inline uint64_t ap_rd_le(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n; i-- > 0;)
    v = v << 8 | p[i];
  return v;
}
static inline void ap_wr_le(unsigned char *p, uint64_t v, int n) {
  for (int i = 0; i < n; i++)
    p[i] = (unsigned char)(v >> (8 * i));
}

int ap_ends_with(const char *s, const char *suffix);

/* ---- filesystem steps (apply_files.c) ---- */

int ap_path_exists(const char *path);
int ap_same_file(const char *a, const char *b);
/* 1 if `inner` is `outer` or lies below it (both resolved; inner need not exist, its parent must). */
int ap_path_inside(const char *inner, const char *outer);
void ap_remove_tree(const char *path);
/* Moves a finished temporary folder to its final name, replacing an existing one (moved aside first,
 * put back if the move fails, removed after). */
int ap_replace_dir(const char *tmp, const char *final, sd_error *err);
/* Maps a regular file read-only (*map NULL for an empty one). */
int ap_map_file(const char *path, unsigned char **map, uint64_t *size, sd_error *err);
void ap_unmap_file(unsigned char *map, uint64_t size);
/* Copies one file, hashing it on the way. */
int ap_copy_file(const char *src, const char *dst, uint64_t *size, char sha_hex[65], sd_error *err);
/* Walks the regular files under root (symlinks followed, names in sorted order); for each folder and
 * file calls fn with the path relative to root. */
typedef int (*ap_tree_fn)(void *ctx, const char *rel, const char *full, int is_dir, sd_error *err);
int ap_walk_tree(const char *root, const char *rel, int depth, ap_tree_fn fn, void *ctx, sd_error *err);

/* ---- output stream: writes the new bytes and hashes both the new and the original ones ---- */

typedef struct {
  FILE *f;
  char path[4200]; /* the temporary name, removed by ap_stream_abort */
  int hash_in;
  sd_sha256_ctx in, out;
  uint64_t in_bytes, bytes;
} out_stream;

int ap_stream_open(out_stream *s, const char *path, int hash_in, sd_error *err);
/* Hashes original bytes that have no counterpart in the output. */
void ap_feed_in(out_stream *s, const void *in, size_t n);
/* Writes `out` (n bytes) in place of `in` (the original bytes, or NULL when there are none). */
int ap_emit(out_stream *s, const void *in, const void *out, size_t n, sd_error *err);
int ap_stream_close(out_stream *s, sd_error *err);
/* Closes and removes the temporary file unless s->path was cleared (the file was kept). */
void ap_stream_abort(out_stream *s);
void ap_hex_digest(sd_sha256_ctx *ctx, char out[65]);

/* ---- byte edits over a source file ---- */

typedef struct {
  uint64_t offset, nbytes;
  size_t esize;                /* > 0: elements of a tensor; 0: a field replaced whole */
  int64_t n;                   /* elements */
  const int64_t *index;        /* [n] increasing element indices within the tensor */
  const unsigned char *values; /* elements: n * esize bytes to put (NULL: zeros); field: nbytes bytes */
} edit;

/* qsort order of edits: by offset. */
int ap_compare_edits(const void *a, const void *b);
/* Puts the elements of e into buf, the tensor's bytes. */
int ap_apply_elements(unsigned char *buf, const edit *e, const char *name, sd_error *err);
int ap_copy_plain(out_stream *s, const unsigned char *p, uint64_t n, sd_error *err);
/* Streams src[from, to) with the edits (sorted by offset) applied. */
int ap_copy_edited(out_stream *s, const char *name, const unsigned char *src, uint64_t from, uint64_t to, const edit *e,
                   int n, sd_error *err);

/* ---- the tensors a mask patches (apply.c) ---- */

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

/* ---- torch zip in place (apply_formats.c) ---- */

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

/* Plans the in-place patch of a torch zip: each pruned tensor's bytes inside its storage entry, and the
 * entry's CRC-32 fields. Returns 1 (why set) when the zip cannot be patched in place. */
int ap_plan_zip(const char *path, const unsigned char *map, uint64_t size, patch *p, int np, zip_plan *z, char *why,
                size_t why_size, sd_error *err);
void ap_zip_plan_free(zip_plan *z);

/* ---- restore file rows (restore_file.c) ---- */

typedef struct {
  char *file, *role, *original_sha256, *pruned_sha256;
  int64_t original_size, pruned_size;
} file_row;

typedef struct {
  char *key, *file, *dtype, *shape;
  int64_t original_offset, pruned_offset, nbytes, n_pruned;
} tensor_row;

typedef struct {
  char *file;
  int64_t pruned_offset, size, original, pruned;
} field_row;

typedef struct {
  file_row *rows;
  int n, cap;
} file_list;

int ap_file_list_add(file_list *l, const char *file, const char *role, uint64_t osize, const char *osha, uint64_t psize,
                     const char *psha, sd_error *err);
void ap_file_list_free(file_list *l);

/* What one apply run writes, gathered for the patched file and the restore file. */
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

/* Writes the patched file (format per c->format; zmap: the mapped torch zip) through s (apply_formats.c). */
int ap_write_patched(apply_ctx *c, const sd_tensor_store *store, const unsigned char *zmap, uint64_t zsize,
                     const char *meta, out_stream *s, sd_error *err);

/* Writes the restore file under its temporary name; sd_h5_commit puts it in place. */
int ap_write_restore(const char *path, const apply_ctx *c, sd_h5 **out, sd_error *err);

/* A restore file read back whole. */
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

int ap_read_restore(const char *path, restore_data *r, sd_error *err);
void ap_restore_data_free(restore_data *r);

#endif
