/* Compound tables behind io/h5.h: a C struct's fields as the members of a 1-D compound dataset that
 * pandas reads in one line, written whole and read back by member name. Not the files, datasets or
 * attributes (h5.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5_internal.h"

#define H5_TABLE_CHUNK_ROWS 1024

static int check_fields(sd_h5 *f, const char *path, const sd_h5_field *fields, int n_fields, size_t row_size,
                        sd_error *err) {
  if (n_fields < 1 || row_size == 0)
    return sd_fail(err, "%s: %s: a table needs at least one field and a row size", f->path, path);
  for (int i = 0; i < n_fields; i++) {
    size_t size = h5_mem_size(fields[i].type);
    if (!fields[i].name || !fields[i].name[0])
      return sd_fail(err, "%s: %s: field %d has no name", f->path, path, i);
    if (size == 0 || fields[i].offset > row_size || size > row_size - fields[i].offset)
      return sd_fail(err, "%s: %s: field '%s' (%s at offset %zu) does not fit a row of %zu bytes", f->path, path,
                     fields[i].name, h5_type_name(fields[i].type), fields[i].offset, row_size);
  }
  return 0;
}

/* Compound type with every field at its struct offset: native members (file == 0) or little-endian
 * standard ones, packed afterwards (file != 0). Strings are variable-length UTF-8 either way. */
static hid_t new_table_type(sd_h5 *f, const char *path, const sd_h5_field *fields, int n_fields, size_t row_size,
                            int file, sd_error *err) {
  int rc = 0;
  hid_t t = H5I_INVALID_HID, member = H5I_INVALID_HID;
  H5_CHECK(t = H5Tcreate(H5T_COMPOUND, row_size), path, "cannot create a compound type");
  for (int i = 0; i < n_fields; i++) {
    if ((member = h5_new_type(f, path, fields[i].type, file, err)) < 0) {
      rc = -1;
      goto cleanup;
    }
    H5_CHECK(H5Tinsert(t, fields[i].name, fields[i].offset, member), path, "field '%s': cannot add it to the type",
             fields[i].name);
    H5_CLOSE(H5Tclose, member, path);
    if (rc != 0)
      goto cleanup;
  }
  if (file)
    H5_CHECK(H5Tpack(t), path, "cannot pack the compound type");
  return t;
cleanup:
  if (member >= 0 && H5Tclose(member) < 0)
    rc = -1;
  if (t >= 0 && H5Tclose(t) < 0)
    rc = -1;
  return H5I_INVALID_HID;
}

int sd_h5_write_table(sd_h5 *f, const char *path, const sd_h5_field *fields, int n_fields, size_t row_size,
                      const void *rows, int64_t n_rows, sd_error *err) {
  if (h5_bad_handle(f, err))
    return -1;
  int rc = 0;
  hid_t ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID, space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
  hid_t lcpl = H5I_INVALID_HID, ds = H5I_INVALID_HID;
  char *patched = NULL;
  if (check_fields(f, path, fields, n_fields, row_size, err) != 0)
    return -1;
  if (n_rows < 0 || (n_rows > 0 && !rows) || (uint64_t)n_rows > SIZE_MAX / row_size) {
    rc = sd_fail(err, "%s: %s: bad row count %lld or no rows", f->path, path, (long long)n_rows);
    goto cleanup;
  }
  if (sd_h5_exists(f, path)) {
    rc = sd_fail(err, "%s: %s: already exists", f->path, path);
    goto cleanup;
  }
  if (h5_check_parents(f, path, err) != 0) {
    rc = -1;
    goto cleanup;
  }
  /* NULL strings are written as "": patch a copy of the rows only when there is one. */
  const void *buf = rows;
  for (int i = 0; i < n_fields; i++) {
    if (fields[i].type != SD_H5_STR)
      continue;
    for (int64_t r = 0; r < n_rows; r++) {
      char *const *s = (char *const *)((const char *)rows + (size_t)r * row_size + fields[i].offset);
      if (*s)
        continue;
      if (!patched) {
        if (!(patched = sd_malloc((size_t)n_rows * row_size, err))) {
          rc = sd_fail_prefix(err, "%s: %s", f->path, path);
          goto cleanup;
        }
        memcpy(patched, rows, (size_t)n_rows * row_size);
        buf = patched;
      }
      static const char empty[] = "";
      const char *e = empty;
      memcpy(patched + (size_t)r * row_size + fields[i].offset, &e, sizeof e);
    }
  }
  if ((ftype = new_table_type(f, path, fields, n_fields, row_size, 1, err)) < 0 ||
      (mtype = new_table_type(f, path, fields, n_fields, row_size, 0, err)) < 0 ||
      (lcpl = h5_new_lcpl(f, path, err)) < 0) {
    rc = -1;
    goto cleanup;
  }
  /* A chunk may not exceed a fixed maximum dim, so a table of 0 rows gets an unlimited one. */
  hsize_t dims[1] = {(hsize_t)n_rows}, maxdims[1] = {n_rows > 0 ? (hsize_t)n_rows : H5S_UNLIMITED};
  hsize_t chunk[1] = {n_rows > H5_TABLE_CHUNK_ROWS ? H5_TABLE_CHUNK_ROWS : n_rows > 0 ? (hsize_t)n_rows : 1};
  H5_CHECK(space = H5Screate_simple(1, dims, maxdims), path, "cannot create a dataspace");
  H5_CHECK(dcpl = H5Pcreate(H5P_DATASET_CREATE), path, "cannot create a dataset property list");
  H5_CHECK(H5Pset_chunk(dcpl, 1, chunk), path, "cannot set the chunk shape");
  H5_CHECK(H5Pset_shuffle(dcpl), path, "cannot enable the shuffle filter");
  H5_CHECK(H5Pset_deflate(dcpl, H5_DEFLATE_LEVEL), path, "cannot enable deflate");
  H5_CHECK(ds = H5Dcreate2(f->file, path, ftype, space, lcpl, dcpl, H5P_DEFAULT), path, "cannot create table");
  if (n_rows > 0)
    H5_CHECK(H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), path, "cannot write");
cleanup:
  free(patched);
  H5_CLOSE(H5Dclose, ds, path);
  H5_CLOSE(H5Pclose, lcpl, path);
  H5_CLOSE(H5Pclose, dcpl, path);
  H5_CLOSE(H5Sclose, space, path);
  H5_CLOSE(H5Tclose, mtype, path);
  H5_CLOSE(H5Tclose, ftype, path);
  return rc;
}

/* Reads one fixed-length string member into the char * at `offset` of each row. */
static int read_fixed_member(sd_h5 *f, const char *path, hid_t ds, hid_t member, const char *name, char *rows,
                             size_t row_size, size_t offset, int64_t n_rows, sd_error *err) {
  int rc = 0;
  hid_t one = H5I_INVALID_HID;
  char *raw = NULL;
  size_t n;
  H5T_str_t pad;
  H5_CHECK((n = H5Tget_size(member)) == 0 ? -1 : 0, path, "field '%s': cannot get its size", name);
  H5_CHECK(pad = H5Tget_strpad(member), path, "field '%s': cannot get its padding", name);
  if ((uint64_t)n_rows > SIZE_MAX / n || !(raw = sd_malloc((size_t)n_rows * n, err))) {
    rc = sd_fail(err, "%s: %s: field '%s': out of memory", f->path, path, name);
    goto cleanup;
  }
  H5_CHECK(one = H5Tcreate(H5T_COMPOUND, n), path, "cannot create a compound type");
  H5_CHECK(H5Tinsert(one, name, 0, member), path, "field '%s': cannot add it to the type", name);
  H5_CHECK(H5Dread(ds, one, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw), path, "field '%s': cannot read", name);
  for (int64_t r = 0; r < n_rows; r++) {
    char *s = h5_copy_fixed(raw + (size_t)r * n, n, pad == H5T_STR_SPACEPAD);
    if (!s) {
      rc = sd_fail(err, "%s: %s: field '%s': out of memory", f->path, path, name);
      goto cleanup;
    }
    memcpy(rows + (size_t)r * row_size + offset, &s, sizeof s);
  }
cleanup:
  free(raw);
  H5_CLOSE(H5Tclose, one, path);
  return rc;
}

int sd_h5_read_table(sd_h5 *f, const char *path, const sd_h5_field *fields, int n_fields, size_t row_size, void **rows,
                     int64_t *n_rows, sd_error *err) {
  *rows = NULL;
  *n_rows = 0;
  if (h5_bad_handle(f, err))
    return -1;
  int rc = 0, nd = 0, n_mem = 0;
  hid_t ds = H5I_INVALID_HID, ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID, member = H5I_INVALID_HID;
  hid_t mem_member = H5I_INVALID_HID, xfer = H5I_INVALID_HID;
  hsize_t dims[SD_H5_MAX_DIMS];
  int64_t n = 0;
  char *buf = NULL;
  H5T_class_t cls;
  if (check_fields(f, path, fields, n_fields, row_size, err) != 0)
    return -1;
  if ((ds = h5_open_dataset(f, path, err)) < 0 || h5_dataset_extent(f, path, ds, &nd, dims, &n, err) != 0) {
    rc = -1;
    goto cleanup;
  }
  H5_CHECK(ftype = H5Dget_type(ds), path, "cannot get the datatype");
  H5_CHECK(cls = H5Tget_class(ftype), path, "cannot get the type class");
  if (cls != H5T_COMPOUND || nd != 1) {
    rc = sd_fail(err, "%s: %s: not a table (a 1-D compound dataset)", f->path, path);
    goto cleanup;
  }
  if ((uint64_t)n > SIZE_MAX / row_size || !(buf = sd_calloc((size_t)n, row_size, err))) {
    rc = sd_fail(err, "%s: %s: out of memory for %lld rows", f->path, path, (long long)n);
    goto cleanup;
  }
  H5_CHECK(mtype = H5Tcreate(H5T_COMPOUND, row_size), path, "cannot create a compound type");
  for (int i = 0; i < n_fields; i++) {
    int idx = H5Tget_member_index(ftype, fields[i].name);
    if (idx < 0) {
      H5Eclear2(H5E_DEFAULT);
      rc = sd_fail(err, "%s: %s: no field '%s'", f->path, path, fields[i].name);
      goto cleanup;
    }
    H5_CHECK(member = H5Tget_member_type(ftype, (unsigned)idx), path, "field '%s': cannot get its type",
             fields[i].name);
    H5_CHECK(cls = H5Tget_class(member), path, "field '%s': cannot get its type class", fields[i].name);
    if (fields[i].type == SD_H5_STR) {
      htri_t is_vlen;
      if (cls != H5T_STRING) {
        rc = sd_fail(err, "%s: %s: field '%s' is not a string", f->path, path, fields[i].name);
        goto cleanup;
      }
      H5_CHECK(is_vlen = H5Tis_variable_str(member), path, "field '%s': cannot inspect its type", fields[i].name);
      if (!is_vlen) { /* read on its own after the others, below */
        H5_CLOSE(H5Tclose, member, path);
        if (rc != 0)
          goto cleanup;
        continue;
      }
      /* Member types of H5Dget_type are memory types already: the file's own cset, char * sized. */
      H5_CHECK(mem_member = H5Tcopy(member), path, "field '%s': cannot copy its type", fields[i].name);
    } else {
      if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
        rc = sd_fail(err, "%s: %s: field '%s' is not a number", f->path, path, fields[i].name);
        goto cleanup;
      }
      if ((mem_member = h5_new_type(f, path, fields[i].type, 0, err)) < 0) {
        rc = -1;
        goto cleanup;
      }
    }
    H5_CHECK(H5Tinsert(mtype, fields[i].name, fields[i].offset, mem_member), path,
             "field '%s': cannot add it to the type", fields[i].name);
    n_mem++;
    H5_CLOSE(H5Tclose, mem_member, path);
    H5_CLOSE(H5Tclose, member, path);
    if (rc != 0)
      goto cleanup;
  }
  if (n_mem > 0 && n > 0) {
    if ((xfer = h5_new_malloc_xfer(f, path, err)) < 0) {
      rc = -1;
      goto cleanup;
    }
    H5_CHECK(H5Dread(ds, mtype, H5S_ALL, H5S_ALL, xfer, buf), path, "cannot read");
  }
  /* HDF5 has no fixed -> variable-length string conversion, so fixed-length string members are read one
   * by one. After the main read, because a compound read rewrites whole rows, members it lacks included. */
  for (int i = 0; i < n_fields; i++) {
    if (fields[i].type != SD_H5_STR)
      continue;
    htri_t is_vlen;
    int idx = H5Tget_member_index(ftype, fields[i].name);
    H5_CHECK(idx, path, "field '%s': cannot find it again", fields[i].name);
    H5_CHECK(member = H5Tget_member_type(ftype, (unsigned)idx), path, "field '%s': cannot get its type",
             fields[i].name);
    H5_CHECK(is_vlen = H5Tis_variable_str(member), path, "field '%s': cannot inspect its type", fields[i].name);
    if (!is_vlen && n > 0 &&
        read_fixed_member(f, path, ds, member, fields[i].name, buf, row_size, fields[i].offset, n, err) != 0) {
      rc = -1;
      goto cleanup;
    }
    H5_CLOSE(H5Tclose, member, path);
    if (rc != 0)
      goto cleanup;
    for (int64_t r = 0; r < n; r++) {
      char **s = (char **)(buf + (size_t)r * row_size + fields[i].offset);
      if (!*s && !(*s = sd_strdup(""))) {
        rc = sd_fail(err, "%s: %s: out of memory", f->path, path);
        goto cleanup;
      }
    }
  }
cleanup:
  H5_CLOSE(H5Pclose, xfer, path);
  H5_CLOSE(H5Tclose, mem_member, path);
  H5_CLOSE(H5Tclose, member, path);
  H5_CLOSE(H5Tclose, mtype, path);
  H5_CLOSE(H5Tclose, ftype, path);
  H5_CLOSE(H5Dclose, ds, path);
  if (rc != 0) {
    sd_h5_free_table(fields, n_fields, row_size, buf, n);
    return rc;
  }
  *rows = buf;
  *n_rows = n;
  return 0;
}

void sd_h5_free_table(const sd_h5_field *fields, int n_fields, size_t row_size, void *rows, int64_t n_rows) {
  if (!rows)
    return;
  for (int i = 0; i < n_fields; i++) {
    if (fields[i].type != SD_H5_STR)
      continue;
    for (int64_t r = 0; r < n_rows; r++) {
      char *s;
      memcpy(&s, (char *)rows + (size_t)r * row_size + fields[i].offset, sizeof s);
      free(s);
    }
  }
  free(rows);
}
