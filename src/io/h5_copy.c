/* Copying behind io/h5.h: objects and attributes from one open file into another (to rewrite a file under
 * sd_h5_create with some datasets replaced), and the description of a table's members as generic fields
 * (to rewrite a table whose columns this program does not know). Not the files or datasets themselves
 * (h5.c), nor table reading and writing (h5_table.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5_internal.h"

/* Recreates the soft or external link at path of src in dst (H5Lcopy cannot cross files). */
static int copy_link(sd_h5 *src, const char *path, const H5L_info_t *info, sd_h5 *dst, const char *dst_path,
                     sd_error *err) {
  sd_h5 *f = src;
  int rc = 0;
  hid_t lcpl = H5I_INVALID_HID;
  char *val = NULL;
  if (!(val = sd_malloc(info->u.val_size + 1, err))) {
    rc = sd_fail_prefix(err, "%s: %s", src->path, path);
    goto cleanup;
  }
  H5_CHECK(H5Lget_val(src->file, path, val, info->u.val_size, H5P_DEFAULT), path, "cannot read the link");
  val[info->u.val_size] = '\0';
  f = dst;
  if ((lcpl = h5_new_lcpl(dst, dst_path, err)) < 0) {
    rc = -1;
    goto cleanup;
  }
  if (info->type == H5L_TYPE_SOFT) {
    H5_CHECK(H5Lcreate_soft(val, dst->file, dst_path, lcpl, H5P_DEFAULT), dst_path, "cannot create the soft link");
  } else {
    const char *file_name = NULL, *obj_name = NULL;
    unsigned flags = 0;
    f = src;
    H5_CHECK(H5Lunpack_elink_val(val, info->u.val_size, &flags, &file_name, &obj_name), path,
             "cannot unpack the external link");
    f = dst;
    H5_CHECK(H5Lcreate_external(file_name, obj_name, dst->file, dst_path, lcpl, H5P_DEFAULT), dst_path,
             "cannot create the external link to %s:%s", file_name, obj_name);
  }
cleanup:
  free(val);
  H5_CLOSE(H5Pclose, lcpl, dst_path);
  return rc;
}

int sd_h5_copy(sd_h5 *src, const char *src_path, sd_h5 *dst, const char *dst_path, sd_error *err) {
  if (h5_bad_handle(src, err) || h5_bad_handle(dst, err))
    return -1;
  sd_h5 *f = src;
  int rc = 0;
  hid_t lcpl = H5I_INVALID_HID;
  H5L_info_t info;
  if (!sd_h5_exists(src, src_path))
    return sd_fail(err, "%s: %s: no such object", src->path, src_path);
  if (sd_h5_exists(dst, dst_path))
    return sd_fail(err, "%s: %s: already exists", dst->path, dst_path);
  if (h5_check_parents(dst, dst_path, err) != 0)
    return -1;
  /* The root has no link of its own; everything else is reached through one, and links other than hard
   * ones are recreated rather than followed (H5Ocopy would copy what an external link points at). */
  if (strcmp(src_path, "/") != 0) {
    H5_CHECK(H5Lget_info(src->file, src_path, &info, H5P_DEFAULT), src_path, "cannot get the link");
    if (info.type == H5L_TYPE_SOFT || info.type == H5L_TYPE_EXTERNAL)
      return copy_link(src, src_path, &info, dst, dst_path, err);
  }
  f = dst;
  if ((lcpl = h5_new_lcpl(dst, dst_path, err)) < 0)
    return -1;
  f = src;
  H5_CHECK(H5Ocopy(src->file, src_path, dst->file, dst_path, H5P_DEFAULT, lcpl), src_path, "cannot copy it to %s:%s",
           dst->path, dst_path);
cleanup:
  f = dst;
  H5_CLOSE(H5Pclose, lcpl, dst_path);
  return rc;
}

/* ---- attributes ---------------------------------------------------------------------------------------- */

typedef struct {
  sd_h5 *src, *dst;
  const char *src_obj, *dst_obj;
  hid_t to; /* the destination object */
  sd_error *err;
  int rc;
} attr_copy;

/* Copies one attribute whatever its type and shape: read in the native form of its file type (HDF5
 * allocates variable-length data), written under the file type, the variable-length memory reclaimed. */
static herr_t copy_one_attr(hid_t from, const char *name, const H5A_info_t *ainfo, void *data) {
  attr_copy *c = data;
  sd_h5 *f = c->src;
  sd_error *err = c->err;
  int rc = 0, have_data = 0;
  hid_t a = H5I_INVALID_HID, ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID, space = H5I_INVALID_HID;
  hid_t out = H5I_INVALID_HID;
  hssize_t npoints;
  size_t size;
  char *buf = NULL;
  htri_t exists;
  const char *obj = c->src_obj;
  H5_CHECK(a = H5Aopen(from, name, H5P_DEFAULT), obj, "attribute '%s': cannot open", name);
  H5_CHECK(ftype = H5Aget_type(a), obj, "attribute '%s': cannot get its type", name);
  H5_CHECK(mtype = H5Tget_native_type(ftype, H5T_DIR_ASCEND), obj, "attribute '%s': no native type", name);
  H5_CHECK(space = H5Aget_space(a), obj, "attribute '%s': cannot get its dataspace", name);
  H5_CHECK(npoints = H5Sget_simple_extent_npoints(space), obj, "attribute '%s': cannot count its elements", name);
  H5_CHECK((size = H5Tget_size(mtype)) == 0 ? -1 : 0, obj, "attribute '%s': cannot get its size", name);
  if (!(buf = sd_calloc((size_t)(npoints > 0 ? npoints : 1), size, err))) {
    rc = sd_fail_prefix(err, "%s: %s: attribute '%s'", f->path, obj, name);
    goto cleanup;
  }
  if (npoints > 0) {
    H5_CHECK(H5Aread(a, mtype, buf), obj, "attribute '%s': cannot read", name);
    have_data = 1;
  }
  f = c->dst;
  obj = c->dst_obj;
  H5_CHECK(exists = H5Aexists(c->to, name), obj, "attribute '%s': cannot test for it", name);
  if (exists)
    H5_CHECK(H5Adelete(c->to, name), obj, "attribute '%s': cannot delete the old one", name);
  H5_CHECK(out = H5Acreate2(c->to, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT), obj, "attribute '%s': cannot create",
           name);
  if (npoints > 0)
    H5_CHECK(H5Awrite(out, mtype, buf), obj, "attribute '%s': cannot write", name);
cleanup:
  if (have_data && H5_RECLAIM(mtype, space, H5P_DEFAULT, buf) < 0 && rc == 0)
    rc = h5_fail(err, c->src->path, c->src_obj, "attribute '%s': cannot free its data", name);
  free(buf);
  H5_CLOSE(H5Aclose, out, obj);
  H5_CLOSE(H5Sclose, space, obj);
  H5_CLOSE(H5Tclose, mtype, obj);
  H5_CLOSE(H5Tclose, ftype, obj);
  H5_CLOSE(H5Aclose, a, obj);
  c->rc = rc;
  return rc == 0 ? 0 : -1;
}

int sd_h5_copy_attrs(sd_h5 *src, const char *src_obj, sd_h5 *dst, const char *dst_obj, sd_error *err) {
  if (h5_bad_handle(src, err) || h5_bad_handle(dst, err))
    return -1;
  sd_h5 *f = src;
  int rc = 0;
  hid_t from = H5I_INVALID_HID, to = H5I_INVALID_HID;
  if (!sd_h5_exists(src, src_obj) && strcmp(src_obj, "/") != 0)
    return sd_fail(err, "%s: %s: no such object", src->path, src_obj);
  if (!sd_h5_exists(dst, dst_obj) && strcmp(dst_obj, "/") != 0)
    return sd_fail(err, "%s: %s: no such object", dst->path, dst_obj);
  H5_CHECK(from = H5Oopen(src->file, src_obj, H5P_DEFAULT), src_obj, "cannot open object");
  f = dst;
  H5_CHECK(to = H5Oopen(dst->file, dst_obj, H5P_DEFAULT), dst_obj, "cannot open object");
  attr_copy c = {src, dst, src_obj, dst_obj, to, err, 0};
  hsize_t idx = 0;
  /* Creation order is not tracked by default; name order is always indexed. */
  if (H5Aiterate2(from, H5_INDEX_NAME, H5_ITER_INC, &idx, copy_one_attr, &c) < 0) {
    rc = c.rc != 0 ? c.rc : h5_fail(err, src->path, src_obj, "cannot list the attributes");
    goto cleanup;
  }
cleanup:
  f = dst;
  H5_CLOSE(H5Oclose, to, dst_obj);
  f = src;
  H5_CLOSE(H5Oclose, from, src_obj);
  return rc;
}

/* ---- table members as generic fields ------------------------------------------------------------------- */

/* The sd_h5 type that holds a member of class cls and size bytes without loss, or -1 (not supported). */
static int field_type_of(H5T_class_t cls, size_t size, H5T_sign_t sign) {
  if (cls == H5T_STRING)
    return SD_H5_STR;
  if (cls == H5T_FLOAT)
    return size <= 4 ? SD_H5_F32 : SD_H5_F64;
  if (cls != H5T_INTEGER)
    return -1;
  if (size == 1 && sign == H5T_SGN_NONE)
    return SD_H5_U8;
  /* uint32 needs 64 bits to stay exact; int8/int16/uint16 widen to int32. */
  if (size < 4 || (size == 4 && sign != H5T_SGN_NONE))
    return SD_H5_I32;
  return SD_H5_I64;
}

int sd_h5_table_fields(sd_h5 *f, const char *path, sd_h5_field **fields, int *n_fields, sd_error *err) {
  *fields = NULL;
  *n_fields = 0;
  if (h5_bad_handle(f, err))
    return -1;
  int rc = 0, nd = 0, n = 0;
  hid_t ds = H5I_INVALID_HID, ftype = H5I_INVALID_HID, member = H5I_INVALID_HID;
  hsize_t dims[SD_H5_MAX_DIMS];
  int64_t numel;
  sd_h5_field *out = NULL;
  char *name = NULL;
  if ((ds = h5_open_dataset(f, path, err)) < 0 || h5_dataset_extent(f, path, ds, &nd, dims, &numel, err) != 0) {
    rc = -1;
    goto cleanup;
  }
  H5_CHECK(ftype = H5Dget_type(ds), path, "cannot get the datatype");
  if (H5Tget_class(ftype) != H5T_COMPOUND || nd != 1) {
    rc = sd_fail(err, "%s: %s: not a table (a 1-D compound dataset)", f->path, path);
    goto cleanup;
  }
  H5_CHECK(n = H5Tget_nmembers(ftype), path, "cannot count the fields");
  if (!(out = sd_calloc((size_t)(n > 0 ? n : 1), sizeof *out, err))) {
    rc = sd_fail_prefix(err, "%s: %s", f->path, path);
    goto cleanup;
  }
  for (int i = 0; i < n; i++) {
    H5_CHECK((name = H5Tget_member_name(ftype, (unsigned)i)) ? 0 : -1, path, "field %d: cannot get its name", i);
    H5_CHECK(member = H5Tget_member_type(ftype, (unsigned)i), path, "field '%s': cannot get its type", name);
    H5T_class_t cls = H5Tget_class(member);
    int type = field_type_of(cls, H5Tget_size(member), cls == H5T_INTEGER ? H5Tget_sign(member) : H5T_SGN_ERROR);
    if (type < 0) {
      rc = sd_fail(err, "%s: %s: field '%s' is neither a number nor a string", f->path, path, name);
      goto cleanup;
    }
    char *copy = sd_strdup(name);
    if (!copy) {
      rc = sd_fail(err, "%s: %s: out of memory", f->path, path);
      goto cleanup;
    }
    out[i] = (sd_h5_field){copy, (sd_h5_type)type, (size_t)i * SD_H5_FIELD_SLOT};
    H5free_memory(name);
    name = NULL;
    H5_CLOSE(H5Tclose, member, path);
    if (rc != 0)
      goto cleanup;
  }
cleanup:
  if (name)
    H5free_memory(name);
  H5_CLOSE(H5Tclose, member, path);
  H5_CLOSE(H5Tclose, ftype, path);
  H5_CLOSE(H5Dclose, ds, path);
  if (rc != 0) {
    sd_h5_free_fields(out, n);
    return rc;
  }
  *fields = out;
  *n_fields = n;
  return 0;
}

void sd_h5_free_fields(sd_h5_field *fields, int n_fields) {
  if (!fields)
    return;
  for (int i = 0; i < n_fields; i++)
    free((char *)fields[i].name);
  free(fields);
}
