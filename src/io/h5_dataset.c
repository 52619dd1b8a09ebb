/* Datasets behind io/h5.h: whole-dataset writes (chunked, shuffle + deflate, the chunks compressed in
 * parallel) and reads with their type and shape checks. */
#include "io/h5.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "io/h5_internal.h"

/* Chunks of about 1 MiB: large enough for deflate to work well, small enough for the default 1 MiB
 * chunk cache to hold one whole. Datasets up to 4096 elements stay contiguous (filters cost more than
 * they save there). */
#define H5_CHUNK_BYTES ((hsize_t)1 << 20)
#define H5_COMPRESS_MIN_NUMEL 4096

/* ---- datasets ---------------------------------------------------------------------------------- */

/* Chunk of about H5_CHUNK_BYTES: trailing dims whole while they fit, the first one that does not fit cut
 * to what does, the leading ones 1. dims are all >= 1. */
static void choose_chunk(int ndim, const hsize_t *dims, size_t elem_size, hsize_t *chunk) {
  hsize_t target = H5_CHUNK_BYTES / elem_size, prod = 1;
  if (target < 1)
    target = 1;
  int i;
  for (i = ndim - 1; i >= 0; i--) {
    if (dims[i] <= target / prod) {
      chunk[i] = dims[i];
      prod *= dims[i];
    } else {
      chunk[i] = target / prod > 0 ? target / prod : 1;
      break;
    }
  }
  for (int j = i - 1; j >= 0; j--)
    chunk[j] = 1;
}

/* Element count of shape, with the checks a caller's shape deserves; -1 (message left) on nonsense. */
static int64_t checked_numel(sd_h5 *f, const char *path, int ndim, const int64_t *shape, size_t elem, sd_error *err) {
  if (ndim < 0 || ndim > SD_H5_MAX_DIMS) {
    sd_fail(err, "%s: %s: %d dims (at most %d)", f->path, path, ndim, SD_H5_MAX_DIMS);
    return -1;
  }
  if (ndim > 0 && !shape) {
    sd_fail(err, "%s: %s: no shape given", f->path, path);
    return -1;
  }
  uint64_t limit = SIZE_MAX / elem;
  if (limit > INT64_MAX)
    limit = INT64_MAX;
  int64_t numel = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] < 0) {
      sd_fail(err, "%s: %s: negative dim %d (%lld)", f->path, path, i, (long long)shape[i]);
      return -1;
    }
    if (shape[i] > 0 && (uint64_t)numel > limit / (uint64_t)shape[i]) {
      sd_fail(err, "%s: %s: shape too large", f->path, path);
      return -1;
    }
    numel *= shape[i];
  }
  return numel;
}

/* Writes a numeric dataset whose layout is chunked with shuffle + deflate by compressing every chunk
 * on all threads (HDF5's own filter pipeline runs one chunk at a time on one thread, which bounded
 * checkpoints and the reduce) and handing the results to H5Dwrite_chunk. The bytes are what HDF5's
 * filters would produce: the shuffle filter's byte transpose over the whole chunk, then zlib's
 * compress2 at the same level; edge chunks are padded with zeros to the full chunk, as HDF5 stores them.
 * Memory and file types must be the same (little-endian standard types on a little-endian host). */
static int write_chunks_parallel(sd_h5 *f, const char *path, hid_t ds, int ndim, const hsize_t *dims,
                                 const hsize_t *chunk, size_t elem, const unsigned char *data, sd_error *err) {
  enum { BATCH = 32 };
  int rc = 0;
  hsize_t nch[SD_H5_MAX_DIMS], n_chunks = 1;
  size_t chunk_elems = 1;
  for (int i = 0; i < ndim; i++) {
    nch[i] = (dims[i] + chunk[i] - 1) / chunk[i];
    n_chunks *= nch[i];
    chunk_elems *= (size_t)chunk[i];
  }
  size_t chunk_bytes = chunk_elems * elem;
  uLong bound = compressBound((uLong)chunk_bytes);
  unsigned char *raw = malloc((size_t)BATCH * chunk_bytes), *shuf = malloc((size_t)BATCH * chunk_bytes);
  unsigned char *comp = malloc((size_t)BATCH * bound);
  uLongf clen[BATCH];
  int zrc[BATCH];
  hsize_t offs[BATCH][SD_H5_MAX_DIMS];
  if (!raw || !shuf || !comp) {
    rc = sd_fail(err, "%s: %s: out of memory for %zu-byte chunks", f->path, path, chunk_bytes);
    goto cleanup;
  }
  for (hsize_t c0 = 0; c0 < n_chunks; c0 += BATCH) {
    int nb = (int)(n_chunks - c0 < BATCH ? n_chunks - c0 : BATCH);
#pragma omp parallel for schedule(dynamic, 1)
    for (int k = 0; k < nb; k++) {
      hsize_t idx = c0 + (hsize_t)k, *off = offs[k];
      for (int i = ndim - 1; i >= 0; i--) {
        off[i] = (idx % nch[i]) * chunk[i];
        idx /= nch[i];
      }
      unsigned char *r = raw + (size_t)k * chunk_bytes, *sh = shuf + (size_t)k * chunk_bytes;
      memset(r, 0, chunk_bytes);
      /* copy the chunk's rows (runs along the last dim) from the row-major data */
      size_t run =
          (size_t)(dims[ndim - 1] - off[ndim - 1] < chunk[ndim - 1] ? dims[ndim - 1] - off[ndim - 1] : chunk[ndim - 1]);
      size_t rows = chunk_elems / (size_t)chunk[ndim - 1];
      for (size_t q = 0; q < rows; q++) {
        hsize_t pos[SD_H5_MAX_DIMS], rem = q;
        int inside = 1;
        for (int i = ndim - 2; i >= 0; i--) {
          pos[i] = off[i] + rem % chunk[i];
          rem /= chunk[i];
          inside &= pos[i] < dims[i];
        }
        if (!inside)
          continue;
        size_t src = 0;
        for (int i = 0; i < ndim - 1; i++)
          src = src * (size_t)dims[i] + (size_t)pos[i];
        src = src * (size_t)dims[ndim - 1] + (size_t)off[ndim - 1];
        memcpy(r + q * (size_t)chunk[ndim - 1] * elem, data + src * elem, run * elem);
      }
      for (size_t b = 0; b < elem; b++)
        for (size_t i = 0; i < chunk_elems; i++)
          sh[b * chunk_elems + i] = r[i * elem + b];
      clen[k] = bound;
      zrc[k] = compress2(comp + (size_t)k * bound, &clen[k], sh, (uLong)chunk_bytes, H5_DEFLATE_LEVEL);
    }
    for (int k = 0; k < nb; k++) {
      if (zrc[k] != Z_OK) {
        rc = sd_fail(err, "%s: %s: zlib could not compress a chunk (%d)", f->path, path, zrc[k]);
        goto cleanup;
      }
      H5_CHECK(H5Dwrite_chunk(ds, H5P_DEFAULT, 0, offs[k], (size_t)clen[k], comp + (size_t)k * bound), path,
               "cannot write a chunk");
    }
  }
cleanup:
  free(raw);
  free(shuf);
  free(comp);
  return rc;
}

int sd_h5_write(sd_h5 *f, const char *path, sd_h5_type type, int ndim, const int64_t *shape, const void *data,
                int compress, sd_error *err) {
  if (h5_bad_handle(f, err))
    return -1;
  int rc = 0;
  hid_t ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID, space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
  hid_t lcpl = H5I_INVALID_HID, ds = H5I_INVALID_HID;
  const char **strings = NULL;
  size_t elem = h5_mem_size(type);
  if (elem == 0) {
    rc = sd_fail(err, "%s: %s: unknown element type %d", f->path, path, (int)type);
    goto cleanup;
  }
  int64_t numel = checked_numel(f, path, ndim, shape, elem, err);
  if (numel < 0) {
    rc = -1;
    goto cleanup;
  }
  if (numel > 0 && !data) {
    rc = sd_fail(err, "%s: %s: no data for %lld elements", f->path, path, (long long)numel);
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
  hsize_t dims[SD_H5_MAX_DIMS], chunk[SD_H5_MAX_DIMS];
  for (int i = 0; i < ndim; i++)
    dims[i] = (hsize_t)shape[i];
  if ((ftype = h5_new_type(f, path, type, 1, err)) < 0 || (mtype = h5_new_type(f, path, type, 0, err)) < 0 ||
      (lcpl = h5_new_lcpl(f, path, err)) < 0) {
    rc = -1;
    goto cleanup;
  }
  /* A zero-sized simple dataspace with a contiguous layout reads back in h5py as an empty array of
   * that shape; zero-sized data is never chunked (it has fewer than H5_COMPRESS_MIN_NUMEL elements). */
  if (ndim == 0)
    H5_CHECK(space = H5Screate(H5S_SCALAR), path, "cannot create a scalar dataspace");
  else
    H5_CHECK(space = H5Screate_simple(ndim, dims, NULL), path, "cannot create a dataspace");
  H5_CHECK(dcpl = H5Pcreate(H5P_DATASET_CREATE), path, "cannot create a dataset property list");
  if (compress && ndim > 0 && numel > H5_COMPRESS_MIN_NUMEL) {
    /* In the file a variable-length string is a 16-byte global-heap reference. */
    choose_chunk(ndim, dims, type == SD_H5_STR ? 16 : elem, chunk);
    H5_CHECK(H5Pset_chunk(dcpl, ndim, chunk), path, "cannot set the chunk shape");
    H5_CHECK(H5Pset_shuffle(dcpl), path, "cannot enable the shuffle filter");
    H5_CHECK(H5Pset_deflate(dcpl, H5_DEFLATE_LEVEL), path, "cannot enable deflate");
  }
  H5_CHECK(ds = H5Dcreate2(f->file, path, ftype, space, lcpl, dcpl, H5P_DEFAULT), path, "cannot create dataset");
  const void *buf = data;
  if (type == SD_H5_STR && numel > 0) {
    const char *const *in = data;
    if (!(strings = sd_malloc((size_t)numel * sizeof *strings, err))) {
      rc = sd_fail_prefix(err, "%s: %s", f->path, path);
      goto cleanup;
    }
    for (int64_t i = 0; i < numel; i++)
      strings[i] = in[i] ? in[i] : "";
    buf = strings;
  }
  int filtered = compress && ndim > 0 && numel > H5_COMPRESS_MIN_NUMEL && type != SD_H5_STR;
  htri_t same = filtered ? H5Tequal(ftype, mtype) : 0;
  if (filtered && same > 0) {
    if (write_chunks_parallel(f, path, ds, ndim, dims, chunk, elem, buf, err) != 0) {
      rc = -1;
      goto cleanup;
    }
  } else if (numel > 0) {
    H5_CHECK(H5Dwrite(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), path, "cannot write");
  }
cleanup:
  free(strings);
  H5_CLOSE(H5Dclose, ds, path);
  H5_CLOSE(H5Pclose, lcpl, path);
  H5_CLOSE(H5Pclose, dcpl, path);
  H5_CLOSE(H5Sclose, space, path);
  H5_CLOSE(H5Tclose, mtype, path);
  H5_CLOSE(H5Tclose, ftype, path);
  return rc;
}

/* Opens a dataset; "no such dataset" when nothing is at path. */
hid_t h5_open_dataset(sd_h5 *f, const char *path, sd_error *err) {
  if (!sd_h5_exists(f, path)) {
    sd_fail(err, "%s: %s: no such dataset", f->path, path);
    return H5I_INVALID_HID;
  }
  hid_t ds = H5Dopen2(f->file, path, H5P_DEFAULT);
  if (ds < 0)
    h5_fail(err, f->path, path, "not a dataset");
  return ds;
}

/* Dimensions and element count of a dataset's dataspace (scalar: ndim 0, one element). */
/* Deflate shrinks data at most ~1032:1, and sdprune writes every element of its datasets: one whose extent
 * needs more than 1032 x the bytes the file stores for it is damaged (or hostile), and is refused here, before
 * a reader allocates from the extent. Datasets up to 64 MiB are let through: reading them tells. */
#define H5_MAX_DEFLATE_RATIO 1032
#define H5_EXTENT_FREE_BYTES ((uint64_t)64 << 20)

static int check_stored(sd_h5 *f, const char *path, hid_t ds, int64_t numel, sd_error *err) {
  int rc = 0;
  hid_t type = H5I_INVALID_HID;
  size_t elem;
  H5_CHECK(type = H5Dget_type(ds), path, "cannot get the datatype");
  if ((elem = H5Tget_size(type)) == 0) {
    rc = h5_fail(err, f->path, path, "cannot get the datatype's size");
    goto cleanup;
  }
  /* Saturated at UINT64_MAX: no file stores UINT64_MAX / 1032 bytes, so an overflow is refused too. */
  uint64_t bytes = (uint64_t)numel > UINT64_MAX / elem ? UINT64_MAX : (uint64_t)numel * elem;
  if (bytes > H5_EXTENT_FREE_BYTES) {
    uint64_t stored = H5Dget_storage_size(ds); /* 0 also when it fails: then nothing is readable anyway */
    if (bytes / H5_MAX_DEFLATE_RATIO > stored)
      rc = sd_fail(err, "%s: %s: %lld elements of %zu bytes, but the file stores only %llu bytes for them (damaged)",
                   f->path, path, (long long)numel, elem, (unsigned long long)stored);
  }
cleanup:
  H5_CLOSE(H5Tclose, type, path);
  return rc;
}

int h5_dataset_extent(sd_h5 *f, const char *path, hid_t ds, int *ndim, hsize_t *dims, int64_t *numel, sd_error *err) {
  int rc = 0;
  hid_t space = H5I_INVALID_HID;
  H5S_class_t cls;
  H5_CHECK(space = H5Dget_space(ds), path, "cannot get the dataspace");
  H5_CHECK(cls = H5Sget_simple_extent_type(space), path, "cannot get the dataspace class");
  if (cls == H5S_NULL) {
    rc = sd_fail(err, "%s: %s: dataset has a null dataspace (no data)", f->path, path);
    goto cleanup;
  }
  H5_CHECK(*ndim = H5Sget_simple_extent_ndims(space), path, "cannot get the rank");
  if (*ndim > SD_H5_MAX_DIMS) {
    rc = sd_fail(err, "%s: %s: %d dims (at most %d)", f->path, path, *ndim, SD_H5_MAX_DIMS);
    goto cleanup;
  }
  H5_CHECK(H5Sget_simple_extent_dims(space, dims, NULL), path, "cannot get the dims");
  *numel = 1;
  for (int i = 0; i < *ndim; i++) {
    if (dims[i] > 0 && (uint64_t)*numel > (uint64_t)INT64_MAX / dims[i]) {
      rc = sd_fail(err, "%s: %s: the dims overflow a 64-bit element count (damaged)", f->path, path);
      goto cleanup;
    }
    *numel *= (int64_t)dims[i];
  }
  rc = check_stored(f, path, ds, *numel, err);
cleanup:
  H5_CLOSE(H5Sclose, space, path);
  return rc;
}

int sd_h5_shape(sd_h5 *f, const char *path, int *ndim, int64_t *shape, sd_error *err) {
  if (h5_bad_handle(f, err))
    return -1;
  int rc = 0, nd = 0;
  hid_t ds = H5I_INVALID_HID;
  hsize_t dims[SD_H5_MAX_DIMS];
  int64_t numel;
  if ((ds = h5_open_dataset(f, path, err)) < 0 || h5_dataset_extent(f, path, ds, &nd, dims, &numel, err) != 0) {
    rc = -1;
    goto cleanup;
  }
  *ndim = nd;
  for (int i = 0; i < nd; i++)
    shape[i] = (int64_t)dims[i];
cleanup:
  H5_CLOSE(H5Dclose, ds, path);
  return rc;
}

/* Reads numel numeric elements converted to `type` into buf; the dataset must be integer or float. */
static int read_numeric(sd_h5 *f, const char *path, hid_t ds, sd_h5_type type, void *buf, int64_t numel,
                        sd_error *err) {
  int rc = 0;
  hid_t ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID;
  H5T_class_t cls;
  H5_CHECK(ftype = H5Dget_type(ds), path, "cannot get the datatype");
  H5_CHECK(cls = H5Tget_class(ftype), path, "cannot get the type class");
  if (cls != H5T_INTEGER && cls != H5T_FLOAT) {
    rc = sd_fail(err, "%s: %s: %s, not a number: cannot read as %s", f->path, path,
                 cls == H5T_STRING ? "a string" : "neither integer nor float", h5_type_name(type));
    goto cleanup;
  }
  if ((mtype = h5_new_type(f, path, type, 0, err)) < 0) {
    rc = -1;
    goto cleanup;
  }
  if (numel > 0)
    H5_CHECK(H5Dread(ds, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), path, "cannot read");
cleanup:
  H5_CLOSE(H5Tclose, mtype, path);
  H5_CLOSE(H5Tclose, ftype, path);
  return rc;
}

/* Reads a string dataset (variable or fixed length) as numel malloc'ed strings into out (zeroed). */
static int read_strings(sd_h5 *f, const char *path, hid_t ds, char **out, int64_t numel, sd_error *err) {
  int rc = 0;
  hid_t ftype = H5I_INVALID_HID, xfer = H5I_INVALID_HID;
  char *raw = NULL;
  H5T_class_t cls;
  htri_t is_vlen;
  H5_CHECK(ftype = H5Dget_type(ds), path, "cannot get the datatype");
  H5_CHECK(cls = H5Tget_class(ftype), path, "cannot get the type class");
  if (cls != H5T_STRING) {
    rc = sd_fail(err, "%s: %s: not a string dataset: cannot read as string", f->path, path);
    goto cleanup;
  }
  if (numel == 0)
    goto cleanup;
  H5_CHECK(is_vlen = H5Tis_variable_str(ftype), path, "cannot inspect the string type");
  if (is_vlen) {
    /* The type from H5Dget_type is already a memory type; HDF5 mallocs each string straight into out. */
    if ((xfer = h5_new_malloc_xfer(f, path, err)) < 0) {
      rc = -1;
      goto cleanup;
    }
    H5_CHECK(H5Dread(ds, ftype, H5S_ALL, H5S_ALL, xfer, out), path, "cannot read");
    for (int64_t i = 0; i < numel; i++)
      if (!out[i] && !(out[i] = sd_strdup(""))) {
        rc = sd_fail(err, "%s: %s: out of memory", f->path, path);
        goto cleanup;
      }
  } else {
    size_t n;
    H5T_str_t pad;
    H5_CHECK((n = H5Tget_size(ftype)) == 0 ? -1 : 0, path, "cannot get the string size");
    H5_CHECK(pad = H5Tget_strpad(ftype), path, "cannot get the string padding");
    if (n == 0 || (size_t)numel > SIZE_MAX / n || !(raw = sd_malloc((size_t)numel * n, err))) {
      rc = sd_fail(err, "%s: %s: out of memory for %lld strings of %zu bytes", f->path, path, (long long)numel, n);
      goto cleanup;
    }
    H5_CHECK(H5Dread(ds, ftype, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw), path, "cannot read");
    for (int64_t i = 0; i < numel; i++)
      if (!(out[i] = h5_copy_fixed(raw + (size_t)i * n, n, pad == H5T_STR_SPACEPAD))) {
        rc = sd_fail(err, "%s: %s: out of memory", f->path, path);
        goto cleanup;
      }
  }
cleanup:
  free(raw);
  H5_CLOSE(H5Pclose, xfer, path);
  H5_CLOSE(H5Tclose, ftype, path);
  return rc;
}

int sd_h5_read(sd_h5 *f, const char *path, sd_h5_type type, int *ndim, int64_t *shape, void **data, sd_error *err) {
  *data = NULL;
  if (h5_bad_handle(f, err))
    return -1;
  int rc = 0, nd = 0;
  hid_t ds = H5I_INVALID_HID;
  hsize_t dims[SD_H5_MAX_DIMS];
  int64_t numel = 0;
  void *buf = NULL;
  size_t elem = h5_mem_size(type);
  if (elem == 0) {
    rc = sd_fail(err, "%s: %s: unknown element type %d", f->path, path, (int)type);
    goto cleanup;
  }
  if ((ds = h5_open_dataset(f, path, err)) < 0 || h5_dataset_extent(f, path, ds, &nd, dims, &numel, err) != 0) {
    rc = -1;
    goto cleanup;
  }
  if ((uint64_t)numel > SIZE_MAX / elem || !(buf = sd_calloc((size_t)numel, elem, err))) {
    rc = sd_fail(err, "%s: %s: out of memory for %lld elements", f->path, path, (long long)numel);
    goto cleanup;
  }
  if (type == SD_H5_STR)
    rc = read_strings(f, path, ds, buf, numel, err);
  else
    rc = read_numeric(f, path, ds, type, buf, numel, err);
cleanup:
  H5_CLOSE(H5Dclose, ds, path);
  if (rc != 0) {
    if (type == SD_H5_STR && buf)
      sd_h5_free_strings(buf, numel);
    else
      free(buf);
    return rc;
  }
  if (ndim)
    *ndim = nd;
  if (shape)
    for (int i = 0; i < nd; i++)
      shape[i] = (int64_t)dims[i];
  *data = buf;
  return 0;
}

int sd_h5_read_into(sd_h5 *f, const char *path, sd_h5_type type, void *buf, int64_t numel, sd_error *err) {
  if (h5_bad_handle(f, err))
    return -1;
  int rc = 0, nd = 0;
  hid_t ds = H5I_INVALID_HID;
  hsize_t dims[SD_H5_MAX_DIMS];
  int64_t got = 0;
  if (type == SD_H5_STR || h5_mem_size(type) == 0) {
    rc = sd_fail(err, "%s: %s: read_into takes a numeric type, not %s", f->path, path, h5_type_name(type));
    goto cleanup;
  }
  if ((ds = h5_open_dataset(f, path, err)) < 0 || h5_dataset_extent(f, path, ds, &nd, dims, &got, err) != 0) {
    rc = -1;
    goto cleanup;
  }
  if (got != numel) {
    rc = sd_fail(err, "%s: %s: has %lld elements, expected %lld", f->path, path, (long long)got, (long long)numel);
    goto cleanup;
  }
  rc = read_numeric(f, path, ds, type, buf, numel, err);
cleanup:
  H5_CLOSE(H5Dclose, ds, path);
  return rc;
}
