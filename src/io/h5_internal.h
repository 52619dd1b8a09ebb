/* Shared by the files behind io/h5.h (h5.c, h5_dataset.c, h5_attr.c, h5_table.c, h5_copy.c), and with
 * them the only place that includes hdf5.h: the handle struct, the error and check helpers, and the type
 * and property-list builders. Internal: nothing else includes it. */
#ifndef SD_H5_INTERNAL_H
#define SD_H5_INTERNAL_H

#include <hdf5.h>

#include "io/h5.h"

struct sd_h5 {
  hid_t file;
  char *path;     /* the final name: every message names it */
  char *tmp_path; /* "<path>.tmp-<pid>" for a file from sd_h5_create; NULL for sd_h5_open */
};

#define H5_DEFLATE_LEVEL 1 /* level 4 took 10% longer for 1% smaller statistics files */

/* "file: obj: what (HDF5: innermost message)"; obj NULL leaves it out. Call it right after the failing
 * HDF5 call: any later HDF5 API call clears the stack. */
__attribute__((format(printf, 4, 5))) int h5_fail(sd_error *err, const char *file, const char *obj, const char *fmt,
                                                  ...);

/* Checks one HDF5 call (negative hid_t/herr_t/htri_t is failure): on failure leaves the message for
 * object `obj` of file f and jumps to `cleanup`, with rc -1. Needs locals f, err and rc. */
#define H5_CHECK(call, obj, ...)                                                                                       \
  do {                                                                                                                 \
    if ((call) < 0) {                                                                                                  \
      rc = h5_fail(err, f->path, (obj), __VA_ARGS__);                                                                  \
      goto cleanup;                                                                                                    \
    }                                                                                                                  \
  } while (0)

/* Closes id if valid; a failing close on an otherwise successful path becomes the error (closing a
 * dataset may be what writes its last chunk). */
#define H5_CLOSE(closer, id, obj)                                                                                      \
  do {                                                                                                                 \
    if ((id) >= 0) {                                                                                                   \
      if (closer(id) < 0 && rc == 0)                                                                                   \
        rc = h5_fail(err, f->path, (obj), "cannot close (%s)", #closer);                                               \
      (id) = H5I_INVALID_HID;                                                                                          \
    }                                                                                                                  \
  } while (0)

/* Frees the variable-length data HDF5 allocated in buf (H5Dvlen_reclaim was renamed in 1.12). */
#if H5_VERSION_GE(1, 12, 0)
#define H5_RECLAIM(type, space, plist, buf) H5Treclaim((type), (space), (plist), (buf))
#else
#define H5_RECLAIM(type, space, plist, buf) H5Dvlen_reclaim((type), (space), (plist), (buf))
#endif

/* 0 when f is an open file, else -1 with "HDF5: no open file". */
int h5_bad_handle(const sd_h5 *f, sd_error *err);

const char *h5_type_name(sd_h5_type t);
/* Size of one element in memory, 0 for an unknown type. */
size_t h5_mem_size(sd_h5_type t);
/* A new type id (the caller closes it): the little-endian standard type stored in the file
 * (file != 0) or the native type of memory; strings are variable-length UTF-8 in both. On failure the
 * message is left for `obj` and H5I_INVALID_HID returned. */
hid_t h5_new_type(sd_h5 *f, const char *obj, sd_h5_type t, int file, sd_error *err);
/* A transfer property list under which HDF5 allocates variable-length strings with malloc. */
hid_t h5_new_malloc_xfer(sd_h5 *f, const char *obj, sd_error *err);
/* A link creation property list that creates missing parent groups. */
hid_t h5_new_lcpl(sd_h5 *f, const char *obj, sd_error *err);
/* A malloc'ed copy of s with trailing pad removed (fixed-length strings: NUL padding, or spaces for SPACEPAD). */
char *h5_copy_fixed(const char *s, size_t n, int space_pad);
/* Fails with "parent 'p' is not a group" when an existing parent of path is something else. */
int h5_check_parents(sd_h5 *f, const char *path, sd_error *err);
/* Opens a dataset; "no such dataset" when nothing is at path. */
hid_t h5_open_dataset(sd_h5 *f, const char *path, sd_error *err);
/* Dimensions and element count of a dataset's dataspace (scalar: ndim 0, one element). Refuses an extent that
 * overflows, or that the bytes stored in the file cannot hold (h5_dataset.c): callers allocate from it. */
int h5_dataset_extent(sd_h5 *f, const char *path, hid_t ds, int *ndim, hsize_t *dims, int64_t *numel, sd_error *err);

#endif
