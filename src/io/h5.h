/* The one interface to HDF5: files written under a temporary name and renamed when complete,
 * n-dimensional datasets (chunked and compressed when large), attributes, compound tables that
 * pandas reads in one line, group listing and external links. Everything else in sdprune (stats,
 * masks, restore files, the MPI driver) goes through this; no other file includes hdf5.h.
 * Every failure leaves a message "file: object: what (HDF5: innermost error-stack message)". */
#ifndef SD_H5_H
#define SD_H5_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

#define SD_H5_MAX_DIMS 8

typedef struct sd_h5 sd_h5; /* an open file */

typedef enum {
  SD_H5_I64,
  SD_H5_I32,
  SD_H5_U8,
  SD_H5_F32,
  SD_H5_F64,
  SD_H5_STR, /* variable-length UTF-8 string; in memory a `char *` (NULL written as "") */
} sd_h5_type;

/* Creates `final_path` atomically: the file is written as "<final_path>.tmp-<pid>" and only
 * sd_h5_commit renames it over final_path (after flushing and fsync), so a reader or a crash never
 * sees a half-written file under the final name. */
int sd_h5_create(const char *final_path, sd_h5 **out, sd_error *err);
/* Closes, fsyncs and renames the temporary file to its final name. Frees f in every case; on failure
 * the temporary file is removed and any earlier file under the final name is untouched. */
int sd_h5_commit(sd_h5 *f, sd_error *err);
/* Closes and removes the temporary file of sd_h5_create (on an error path). NULL is a no-op. */
void sd_h5_abort(sd_h5 *f);

/* Opens an existing file read-only; err says "path: not an HDF5 file" etc. */
int sd_h5_open(const char *path, sd_h5 **out, sd_error *err);
/* Closes a file opened with sd_h5_open. NULL is a no-op. */
void sd_h5_close(sd_h5 *f);
const char *sd_h5_path(const sd_h5 *f); /* the final path */

/* 1 if an object (group, dataset or link) exists at path ("/a/b"), else 0. */
int sd_h5_exists(sd_h5 *f, const char *path);
/* Creates a group and any missing parents (no error if it exists). */
int sd_h5_group(sd_h5 *f, const char *path, sd_error *err);
/* Names of the direct children of a group in name order: *names is a malloc'ed array of malloc'ed
 * strings; free with sd_h5_free_strings(*names, *n). */
int sd_h5_list(sd_h5 *f, const char *group, char ***names, int *n, sd_error *err);
void sd_h5_free_strings(char **strings, int64_t n);

/* Writes a dataset of `ndim` dims (ndim 0: a scalar) from data in row-major order, creating missing
 * parent groups. compress != 0: chunked (about 1 MiB chunks along the leading dims), shuffle + deflate
 * level 1 (reduce and checkpoints are bound by deflate; level 4 saved ~1%), when the dataset has more
 * than 4096 elements; contiguous otherwise. For SD_H5_STR data is `char **`. Fails if the dataset exists. */
int sd_h5_write(sd_h5 *f, const char *path, sd_h5_type type, int ndim, const int64_t *shape, const void *data,
                int compress, sd_error *err);
/* Shape of a dataset: *ndim and shape[SD_H5_MAX_DIMS]. Fails with "file: path: no such dataset". */
int sd_h5_shape(sd_h5 *f, const char *path, int *ndim, int64_t *shape, sd_error *err);
/* Reads a whole dataset converted to `type` into a malloc'ed buffer (*data; strings: char ** of
 * malloc'ed strings, free with sd_h5_free_strings). ndim/shape may be NULL. Numeric conversion follows
 * HDF5 (int <-> float allowed); string <-> number is an error naming the dataset. */
int sd_h5_read(sd_h5 *f, const char *path, sd_h5_type type, int *ndim, int64_t *shape, void **data, sd_error *err);
/* Reads a dataset into a caller buffer that must hold exactly `numel` elements of `type` (numeric only);
 * a different element count is an error giving got/expected. */
int sd_h5_read_into(sd_h5 *f, const char *path, sd_h5_type type, void *buf, int64_t numel, sd_error *err);

/* Attributes of the object at obj ("/" for the file). Scalars; setting replaces an existing one. */
int sd_h5_attr_set_str(sd_h5 *f, const char *obj, const char *name, const char *value, sd_error *err);
int sd_h5_attr_set_i64(sd_h5 *f, const char *obj, const char *name, int64_t value, sd_error *err);
int sd_h5_attr_set_f64(sd_h5 *f, const char *obj, const char *name, double value, sd_error *err);
/* Getters: a missing attribute is an error "file: obj: no attribute 'name'"; *value of _str is malloc'ed.
 * Integer and float attributes convert into each other; strings (fixed or variable length) only to str. */
int sd_h5_attr_get_str(sd_h5 *f, const char *obj, const char *name, char **value, sd_error *err);
int sd_h5_attr_get_i64(sd_h5 *f, const char *obj, const char *name, int64_t *value, sd_error *err);
int sd_h5_attr_get_f64(sd_h5 *f, const char *obj, const char *name, double *value, sd_error *err);
int sd_h5_attr_exists(sd_h5 *f, const char *obj, const char *name);

/* Compound tables (one HDF5 compound dataset, 1-D): `pd.DataFrame(h5py.File(p)[path][:])` reads it.
 * A field is a member of a C struct of size row_size at `offset`; SD_H5_STR members are `char *`.
 * Written chunked + compressed (extendible is not needed: tables are written whole). */
typedef struct {
  const char *name;
  sd_h5_type type;
  size_t offset;
} sd_h5_field;

int sd_h5_write_table(sd_h5 *f, const char *path, const sd_h5_field *fields, int n_fields, size_t row_size,
                      const void *rows, int64_t n_rows, sd_error *err);
/* Reads the named fields of a table (matched by name; a missing field is an error naming it; extra
 * members in the file are ignored) into a malloc'ed array of rows (*rows, zero-filled first). String
 * members are malloc'ed: free them with sd_h5_free_table. */
int sd_h5_read_table(sd_h5 *f, const char *path, const sd_h5_field *fields, int n_fields, size_t row_size,
                     void **rows, int64_t *n_rows, sd_error *err);
void sd_h5_free_table(const sd_h5_field *fields, int n_fields, size_t row_size, void *rows, int64_t n_rows);

/* Rewriting a file: a new one from sd_h5_create with some objects replaced and the rest copied over. */
/* Copies the object at src_path (a dataset, or a group with everything under it, attributes included) to
 * dst_path of dst, creating missing parents; soft and external links are recreated, not followed. Fails if
 * dst_path exists. */
int sd_h5_copy(sd_h5 *src, const char *src_path, sd_h5 *dst, const char *dst_path, sd_error *err);
/* Copies every attribute of src_obj onto dst_obj ("/" for the file), any type and shape, replacing ones of
 * the same name. */
int sd_h5_copy_attrs(sd_h5 *src, const char *src_obj, sd_h5 *dst, const char *dst_obj, sd_error *err);
/* The members of a table as fields of a generic row (member i at offset i * SD_H5_FIELD_SLOT), so that a
 * table with columns the caller does not know can be read with sd_h5_read_table and written again: strings
 * (fixed or variable length) as SD_H5_STR, uint8 as SD_H5_U8, other integers as SD_H5_I32 when they fit in
 * it, else SD_H5_I64, floats as SD_H5_F32/F64; any other member type is an error naming it. Names are
 * malloc'ed: free with sd_h5_free_fields. */
#define SD_H5_FIELD_SLOT 8
int sd_h5_table_fields(sd_h5 *f, const char *path, sd_h5_field **fields, int *n_fields, sd_error *err);
void sd_h5_free_fields(sd_h5_field *fields, int n_fields);

/* An external link at link_path to object target_obj of file target_file (a path relative to the
 * directory of this file, as h5py resolves it), creating parent groups. */
int sd_h5_link_external(sd_h5 *f, const char *link_path, const char *target_file, const char *target_obj,
                        sd_error *err);

#endif
