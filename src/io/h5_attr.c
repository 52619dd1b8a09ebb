/* Scalar attributes behind io/h5.h: set (replacing) and get with their type checks. */
#include "io/h5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/h5_internal.h"

/* ---- attributes -------------------------------------------------------------------------------- */

static hid_t open_object(sd_h5 *f, const char *obj, sd_error *err) {
  if (!sd_h5_exists(f, obj)) {
    sd_fail(err, "%s: %s: no such object", f->path, obj);
    return H5I_INVALID_HID;
  }
  hid_t o = H5Oopen(f->file, obj, H5P_DEFAULT);
  if (o < 0)
    h5_fail(err, f->path, obj, "cannot open object");
  return o;
}

/* Writes a scalar attribute of `type` from value (for strings, a `const char *const *`), replacing one
 * of the same name. */
static int attr_set(sd_h5 *f, const char *obj, const char *name, sd_h5_type type, const void *value, sd_error *err) {
  if (h5_bad_handle(f, err))
    return -1;
  int rc = 0;
  hid_t o = H5I_INVALID_HID, ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID, space = H5I_INVALID_HID;
  hid_t a = H5I_INVALID_HID;
  htri_t exists;
  if ((o = open_object(f, obj, err)) < 0 || (ftype = h5_new_type(f, obj, type, 1, err)) < 0 ||
      (mtype = h5_new_type(f, obj, type, 0, err)) < 0) {
    rc = -1;
    goto cleanup;
  }
  H5_CHECK(exists = H5Aexists(o, name), obj, "attribute '%s': cannot test for it", name);
  if (exists)
    H5_CHECK(H5Adelete(o, name), obj, "attribute '%s': cannot delete the old one", name);
  H5_CHECK(space = H5Screate(H5S_SCALAR), obj, "cannot create a scalar dataspace");
  H5_CHECK(a = H5Acreate2(o, name, ftype, space, H5P_DEFAULT, H5P_DEFAULT), obj, "attribute '%s': cannot create", name);
  H5_CHECK(H5Awrite(a, mtype, value), obj, "attribute '%s': cannot write", name);
cleanup:
  H5_CLOSE(H5Aclose, a, obj);
  H5_CLOSE(H5Sclose, space, obj);
  H5_CLOSE(H5Tclose, mtype, obj);
  H5_CLOSE(H5Tclose, ftype, obj);
  H5_CLOSE(H5Oclose, o, obj);
  return rc;
}

int sd_h5_attr_set_str(sd_h5 *f, const char *obj, const char *name, const char *value, sd_error *err) {
  const char *v = value ? value : "";
  return attr_set(f, obj, name, SD_H5_STR, &v, err);
}
int sd_h5_attr_set_i64(sd_h5 *f, const char *obj, const char *name, int64_t value, sd_error *err) {
  return attr_set(f, obj, name, SD_H5_I64, &value, err);
}
int sd_h5_attr_set_f64(sd_h5 *f, const char *obj, const char *name, double value, sd_error *err) {
  return attr_set(f, obj, name, SD_H5_F64, &value, err);
}

/* Reads a one-element attribute as int64 (type I64), double (F64) or a malloc'ed string (STR, out is
 * `char **`). */
static int attr_get(sd_h5 *f, const char *obj, const char *name, sd_h5_type type, void *out, sd_error *err) {
  if (h5_bad_handle(f, err))
    return -1;
  int rc = 0;
  hid_t o = H5I_INVALID_HID, a = H5I_INVALID_HID, atype = H5I_INVALID_HID, space = H5I_INVALID_HID;
  char *fixed = NULL;
  htri_t exists, is_vlen;
  H5T_class_t cls;
  hssize_t npoints;
  if ((o = open_object(f, obj, err)) < 0) {
    rc = -1;
    goto cleanup;
  }
  H5_CHECK(exists = H5Aexists(o, name), obj, "attribute '%s': cannot test for it", name);
  if (!exists) {
    rc = sd_fail(err, "%s: %s: no attribute '%s'", f->path, obj, name);
    goto cleanup;
  }
  H5_CHECK(a = H5Aopen(o, name, H5P_DEFAULT), obj, "attribute '%s': cannot open", name);
  H5_CHECK(atype = H5Aget_type(a), obj, "attribute '%s': cannot get its type", name);
  H5_CHECK(cls = H5Tget_class(atype), obj, "attribute '%s': cannot get its type class", name);
  H5_CHECK(space = H5Aget_space(a), obj, "attribute '%s': cannot get its dataspace", name);
  H5_CHECK(npoints = H5Sget_simple_extent_npoints(space), obj, "attribute '%s': cannot count elements", name);
  if (npoints != 1) {
    rc = sd_fail(err, "%s: %s: attribute '%s' has %lld elements, not one", f->path, obj, name, (long long)npoints);
    goto cleanup;
  }
  if (type != SD_H5_STR) {
    if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
      rc = sd_fail(err, "%s: %s: attribute '%s' is not a number", f->path, obj, name);
      goto cleanup;
    }
    H5_CHECK(H5Aread(a, type == SD_H5_I64 ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, out), obj,
             "attribute '%s': cannot read", name);
    goto cleanup;
  }
  if (cls != H5T_STRING) {
    rc = sd_fail(err, "%s: %s: attribute '%s' is not a string", f->path, obj, name);
    goto cleanup;
  }
  char *copy = NULL;
  H5_CHECK(is_vlen = H5Tis_variable_str(atype), obj, "attribute '%s': cannot inspect its type", name);
  if (is_vlen) {
    char *s = NULL;
    H5_CHECK(H5Aread(a, atype, &s), obj, "attribute '%s': cannot read", name);
    *(char **)out = copy = sd_strdup(s ? s : "");
    H5_CHECK(H5_RECLAIM(atype, space, H5P_DEFAULT, &s), obj, "attribute '%s': cannot free the string", name);
  } else {
    size_t n;
    H5T_str_t pad;
    H5_CHECK((n = H5Tget_size(atype)) == 0 ? -1 : 0, obj, "attribute '%s': cannot get its size", name);
    H5_CHECK(pad = H5Tget_strpad(atype), obj, "attribute '%s': cannot get its padding", name);
    if (!(fixed = sd_calloc(n + 1, 1, err))) {
      rc = sd_fail_prefix(err, "%s: %s", f->path, obj);
      goto cleanup;
    }
    H5_CHECK(H5Aread(a, atype, fixed), obj, "attribute '%s': cannot read", name);
    *(char **)out = copy = h5_copy_fixed(fixed, n, pad == H5T_STR_SPACEPAD);
  }
  if (!copy) {
    rc = sd_fail(err, "%s: %s: attribute '%s': out of memory", f->path, obj, name);
    goto cleanup;
  }
cleanup:
  free(fixed);
  H5_CLOSE(H5Sclose, space, obj);
  H5_CLOSE(H5Tclose, atype, obj);
  H5_CLOSE(H5Aclose, a, obj);
  H5_CLOSE(H5Oclose, o, obj);
  if (rc != 0 && type == SD_H5_STR && *(char **)out) {
    free(*(char **)out);
    *(char **)out = NULL;
  }
  return rc;
}

int sd_h5_attr_get_str(sd_h5 *f, const char *obj, const char *name, char **value, sd_error *err) {
  *value = NULL;
  return attr_get(f, obj, name, SD_H5_STR, value, err);
}
int sd_h5_attr_get_i64(sd_h5 *f, const char *obj, const char *name, int64_t *value, sd_error *err) {
  return attr_get(f, obj, name, SD_H5_I64, value, err);
}
int sd_h5_attr_get_f64(sd_h5 *f, const char *obj, const char *name, double *value, sd_error *err) {
  return attr_get(f, obj, name, SD_H5_F64, value, err);
}

int sd_h5_attr_exists(sd_h5 *f, const char *obj, const char *name) {
  if (!f || f->file < 0 || !name || !sd_h5_exists(f, obj))
    return 0;
  htri_t e = H5Aexists_by_name(f->file, obj, name, H5P_DEFAULT);
  if (e < 0)
    H5Eclear2(H5E_DEFAULT);
  return e > 0;
}
