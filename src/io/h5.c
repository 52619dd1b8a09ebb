/* HDF5 behind io/h5.h (with h5_table.c and h5_copy.c, the only files that include hdf5.h): atomic
 * create/commit, datasets, scalar attributes, listing and external links, with HDF5's error stack turned
 * into one-line messages. Not a general binding: no partial I/O, no extendible datasets, no MPI-IO; not
 * the compound tables (h5_table.c) nor copying between files (h5_copy.c). */
#include "io/h5.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "io/h5_internal.h"

/* Chunks of about 1 MiB: large enough for deflate to work well, small enough for the default 1 MiB
 * chunk cache to hold one whole. Datasets up to 4096 elements stay contiguous (filters cost more than
 * they save there). */
#define H5_CHUNK_BYTES ((hsize_t)1 << 20)
#define H5_COMPRESS_MIN_NUMEL 4096

/* ---- error messages ---------------------------------------------------------------------------- */

typedef struct {
  char desc[512];  /* innermost non-empty description */
  char minor[256]; /* innermost minor message, when no frame has a description */
} h5_stack_text;

static herr_t innermost_cb(unsigned n, const H5E_error2_t *e, void *data) {
  h5_stack_text *t = data;
  if (t->desc[0] == '\0' && e->desc && e->desc[0])
    snprintf(t->desc, sizeof t->desc, "%s", e->desc);
  if (t->minor[0] == '\0' && H5Eget_msg(e->min_num, NULL, t->minor, sizeof t->minor) < 0)
    t->minor[0] = '\0';
  return 0;
}

/* The most specific message of the current error stack (walked upward: the innermost frame first),
 * "" when the stack is empty. The stack is taken (and so cleared) before it is walked, so the calls made
 * here cannot disturb it. */
static void h5_stack_message(char *buf, size_t size) {
  buf[0] = '\0';
  hid_t stack = H5Eget_current_stack();
  if (stack < 0)
    return;
  h5_stack_text t = {{0}, {0}};
  if (H5Ewalk2(stack, H5E_WALK_UPWARD, innermost_cb, &t) >= 0)
    snprintf(buf, size, "%s", t.desc[0] ? t.desc : t.minor);
  /* The POSIX driver's write failures are a multi-line dump (time, descriptor, buffer...): keep the
   * reason, "file write failed: File too large", and always one line. */
  const char *em = strstr(buf, "error message = '");
  if (em) {
    char reason[256];
    const char *colon = strchr(buf, ':');
    snprintf(reason, sizeof reason, "%.*s: %.*s", colon ? (int)(colon - buf) : 0, buf, (int)strcspn(em + 17, "'"),
             em + 17);
    snprintf(buf, size, "%s", reason);
  }
  for (char *p = buf; *p; p++)
    if (*p == '\n' || *p == '\r')
      *p = ' ';
  if (H5Eclose_stack(stack) < 0)
    return;
}

/* The message goes to err; see h5_internal.h. */
int h5_fail(sd_error *err, const char *file, const char *obj, const char *fmt, ...) {
  char what[512], hdf5[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  h5_stack_message(hdf5, sizeof hdf5);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-truncation"
  if (!err)
    return -1;
  if (obj && hdf5[0])
    snprintf(err->msg, sizeof err->msg, "%s: %s: %s (HDF5: %s)", file, obj, what, hdf5);
  else if (obj)
    snprintf(err->msg, sizeof err->msg, "%s: %s: %s", file, obj, what);
  else if (hdf5[0])
    snprintf(err->msg, sizeof err->msg, "%s: %s (HDF5: %s)", file, what, hdf5);
  else
    snprintf(err->msg, sizeof err->msg, "%s: %s", file, what);
#pragma GCC diagnostic pop
  return -1;
}

/* HDF5 prints every error stack to stderr by default; messages go through sd_error instead. */
static int h5_quiet_done;
static void h5_quiet(void) {
  if (h5_quiet_done)
    return;
  /* No library shutdown at exit: after a failed close (disk full) HDF5 1.10's own atexit handler
   * dereferences the half-closed file and crashes; the OS reclaims everything anyway. */
  H5dont_atexit();
  if (H5Eset_auto2(H5E_DEFAULT, NULL, NULL) >= 0)
    h5_quiet_done = 1;
}

int h5_bad_handle(const sd_h5 *f, sd_error *err) {
  if (f && f->file >= 0)
    return 0;
  return sd_fail(err, "HDF5: no open file");
}

/* ---- types ------------------------------------------------------------------------------------- */

const char *h5_type_name(sd_h5_type t) {
  switch (t) {
  case SD_H5_I64:
    return "int64";
  case SD_H5_I32:
    return "int32";
  case SD_H5_U8:
    return "uint8";
  case SD_H5_F32:
    return "float32";
  case SD_H5_F64:
    return "float64";
  case SD_H5_STR:
    return "string";
  }
  return "unknown type";
}

/* Size of one element in memory, 0 for an unknown type. */
size_t h5_mem_size(sd_h5_type t) {
  switch (t) {
  case SD_H5_I64:
    return sizeof(int64_t);
  case SD_H5_I32:
    return sizeof(int32_t);
  case SD_H5_U8:
    return sizeof(uint8_t);
  case SD_H5_F32:
    return sizeof(float);
  case SD_H5_F64:
    return sizeof(double);
  case SD_H5_STR:
    return sizeof(char *);
  }
  return 0;
}

/* A new type id (the caller closes it): the little-endian standard type stored in the file
 * (file != 0) or the native type of memory; strings are variable-length UTF-8 in both. On failure the
 * message is left for `obj` and H5I_INVALID_HID returned. */
hid_t h5_new_type(sd_h5 *f, const char *obj, sd_h5_type t, int file, sd_error *err) {
  int rc = 0;
  hid_t id = H5I_INVALID_HID, base;
  switch (t) {
  case SD_H5_I64:
    base = file ? H5T_STD_I64LE : H5T_NATIVE_INT64;
    break;
  case SD_H5_I32:
    base = file ? H5T_STD_I32LE : H5T_NATIVE_INT32;
    break;
  case SD_H5_U8:
    base = file ? H5T_STD_U8LE : H5T_NATIVE_UINT8;
    break;
  case SD_H5_F32:
    base = file ? H5T_IEEE_F32LE : H5T_NATIVE_FLOAT;
    break;
  case SD_H5_F64:
    base = file ? H5T_IEEE_F64LE : H5T_NATIVE_DOUBLE;
    break;
  case SD_H5_STR:
    base = H5T_C_S1;
    break;
  default:
    sd_fail(err, "%s: %s: unknown element type %d", f->path, obj, (int)t);
    return H5I_INVALID_HID;
  }
  H5_CHECK(id = H5Tcopy(base), obj, "cannot copy a datatype");
  if (t == SD_H5_STR) {
    H5_CHECK(H5Tset_size(id, H5T_VARIABLE), obj, "cannot make a variable-length string type");
    H5_CHECK(H5Tset_cset(id, H5T_CSET_UTF8), obj, "cannot set UTF-8 on a string type");
  }
  return id;
cleanup:
  (void)rc; /* the message is in err */
  if (id >= 0 && H5Tclose(id) < 0)
    return H5I_INVALID_HID;
  return H5I_INVALID_HID;
}

static void *vlen_malloc(size_t size, void *info) {
  return malloc(size);
}
static void vlen_free(void *mem, void *info) {
  free(mem);
}

/* A transfer property list under which HDF5 allocates variable-length strings with malloc, so that they
 * can be handed to the caller as they are. */
hid_t h5_new_malloc_xfer(sd_h5 *f, const char *obj, sd_error *err) {
  int rc = 0;
  hid_t xfer = H5I_INVALID_HID;
  H5_CHECK(xfer = H5Pcreate(H5P_DATASET_XFER), obj, "cannot create a transfer property list");
  H5_CHECK(H5Pset_vlen_mem_manager(xfer, vlen_malloc, NULL, vlen_free, NULL), obj, "cannot set the string allocator");
  return xfer;
cleanup:
  (void)rc; /* the message is in err */
  if (xfer >= 0 && H5Pclose(xfer) < 0)
    return H5I_INVALID_HID;
  return H5I_INVALID_HID;
}

/* A link creation property list that creates missing parent groups. */
hid_t h5_new_lcpl(sd_h5 *f, const char *obj, sd_error *err) {
  int rc = 0;
  hid_t lcpl = H5I_INVALID_HID;
  H5_CHECK(lcpl = H5Pcreate(H5P_LINK_CREATE), obj, "cannot create a link property list");
  H5_CHECK(H5Pset_create_intermediate_group(lcpl, 1), obj, "cannot enable parent group creation");
  return lcpl;
cleanup:
  (void)rc; /* the message is in err */
  if (lcpl >= 0 && H5Pclose(lcpl) < 0)
    return H5I_INVALID_HID;
  return H5I_INVALID_HID;
}

/* A copy of s with trailing pad removed (fixed-length strings: NUL padding, or spaces for SPACEPAD). */
char *h5_copy_fixed(const char *s, size_t n, int space_pad) {
  size_t len = strnlen(s, n);
  if (space_pad)
    while (len > 0 && s[len - 1] == ' ')
      len--;
  char *d = malloc(len + 1);
  if (!d)
    return NULL;
  memcpy(d, s, len);
  d[len] = '\0';
  return d;
}

/* ---- files ------------------------------------------------------------------------------------- */

/* File access: STRONG close degree (closing the file really closes it, even if an object leaked), and
 * file locks that are skipped where the filesystem has none (Lustre/NFS on clusters). */
static hid_t new_fapl(const char *path, sd_error *err) {
  hid_t fapl = H5I_INVALID_HID;
  if ((fapl = H5Pcreate(H5P_FILE_ACCESS)) < 0) {
    h5_fail(err, path, NULL, "cannot create a file access property list");
    return H5I_INVALID_HID;
  }
  if (H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG) < 0) {
    h5_fail(err, path, NULL, "cannot set the file close degree");
    goto fail;
  }
#if H5_VERSION_GE(1, 10, 7)
  if (H5Pset_file_locking(fapl, 1, 1) < 0) {
    h5_fail(err, path, NULL, "cannot set file locking");
    goto fail;
  }
#endif
  return fapl;
fail:
  if (H5Pclose(fapl) < 0)
    return H5I_INVALID_HID;
  return H5I_INVALID_HID;
}

static sd_h5 *new_handle(const char *path, int writing, sd_error *err) {
  sd_h5 *f = sd_calloc(1, sizeof *f, err);
  if (!f)
    return NULL;
  f->file = H5I_INVALID_HID;
  f->path = sd_strdup(path);
  if (writing) {
    size_t n = strlen(path) + 32;
    f->tmp_path = malloc(n);
    if (f->tmp_path)
      snprintf(f->tmp_path, n, "%s.tmp-%ld", path, (long)getpid());
  }
  if (!f->path || (writing && !f->tmp_path)) {
    free(f->path);
    free(f->tmp_path);
    free(f);
    sd_fail(err, "%s: out of memory", path);
    return NULL;
  }
  return f;
}

static void free_handle(sd_h5 *f) {
  free(f->path);
  free(f->tmp_path);
  free(f);
}

int sd_h5_create(const char *final_path, sd_h5 **out, sd_error *err) {
  *out = NULL;
  h5_quiet();
  sd_h5 *f = new_handle(final_path, 1, err);
  if (!f)
    return -1;
  hid_t fapl = new_fapl(final_path, err);
  if (fapl < 0) {
    free_handle(f);
    return -1;
  }
  f->file = H5Fcreate(f->tmp_path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  int rc = 0;
  if (f->file < 0)
    rc = h5_fail(err, final_path, NULL, "cannot create the temporary file %s", f->tmp_path);
  if (H5Pclose(fapl) < 0 && rc == 0)
    rc = h5_fail(err, final_path, NULL, "cannot close a property list");
  if (rc != 0) {
    sd_h5_abort(f);
    return -1;
  }
  *out = f;
  return 0;
}

/* fsync of a file or a directory by name. Directories on filesystems that cannot sync them (EINVAL)
 * count as synced. */
static int fsync_path(const char *path, int directory) {
  int fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
  if (fd < 0)
    return -1;
  int rc = fsync(fd);
  if (rc != 0 && directory && errno == EINVAL)
    rc = 0;
  int saved = errno;
  if (close(fd) != 0 && rc == 0)
    return -1;
  errno = saved;
  return rc;
}

int sd_h5_commit(sd_h5 *f, sd_error *err) {
  if (!f)
    return sd_fail(err, "HDF5: commit of no file");
  if (!f->tmp_path) {
    sd_h5_close(f);
    return sd_fail(err, "HDF5: commit of a file opened read-only");
  }
  int rc = 0;
  char *dir = NULL;
  if (f->file < 0) {
    rc = sd_fail(err, "%s: commit of a file that is not open", f->path);
    goto cleanup;
  }
  H5_CHECK(H5Fflush(f->file, H5F_SCOPE_GLOBAL), NULL, "cannot flush");
  hid_t file = f->file;
  f->file = H5I_INVALID_HID;
  H5_CHECK(H5Fclose(file), NULL, "cannot close");
  if (fsync_path(f->tmp_path, 0) != 0) {
    rc = sd_fail(err, "%s: cannot fsync %s: %s", f->path, f->tmp_path, strerror(errno));
    goto cleanup;
  }
  if (rename(f->tmp_path, f->path) != 0) {
    rc = sd_fail(err, "%s: cannot rename %s to it: %s", f->path, f->tmp_path, strerror(errno));
    goto cleanup;
  }
  free(f->tmp_path);
  f->tmp_path = NULL; /* renamed: nothing left to remove */
  dir = sd_strdup(f->path);
  if (!dir) {
    rc = sd_fail(err, "%s: out of memory", f->path);
    goto cleanup;
  }
  char *slash = strrchr(dir, '/');
  const char *dir_name = !slash ? "." : slash == dir ? "/" : (*slash = '\0', dir);
  if (fsync_path(dir_name, 1) != 0)
    rc = sd_fail(err, "%s: written and renamed, but fsync of directory %s failed: %s", f->path, dir_name,
                 strerror(errno));
cleanup:
  free(dir);
  if (f->file >= 0 && H5Fclose(f->file) < 0)
    H5Eclear2(H5E_DEFAULT);
  f->file = H5I_INVALID_HID;
  if (f->tmp_path)
    unlink(f->tmp_path);
  free_handle(f);
  return rc;
}

void sd_h5_abort(sd_h5 *f) {
  if (!f)
    return;
  if (f->file >= 0 && H5Fclose(f->file) < 0)
    H5Eclear2(H5E_DEFAULT);
  f->file = H5I_INVALID_HID;
  if (f->tmp_path)
    unlink(f->tmp_path); /* never the final file: a read-only handle has no tmp_path */
  free_handle(f);
}

int sd_h5_open(const char *path, sd_h5 **out, sd_error *err) {
  *out = NULL;
  h5_quiet();
  sd_h5 *f = new_handle(path, 0, err);
  if (!f)
    return -1;
  hid_t fapl = new_fapl(path, err);
  if (fapl < 0) {
    free_handle(f);
    return -1;
  }
  int rc = 0;
  f->file = H5Fopen(path, H5F_ACC_RDONLY, fapl);
  if (f->file < 0) {
    char hdf5[512];
    h5_stack_message(hdf5, sizeof hdf5);
    struct stat st;
    if (stat(path, &st) != 0)
      rc = sd_fail(err, "%s: %s", path, strerror(errno));
    else if (S_ISDIR(st.st_mode))
      rc = sd_fail(err, "%s: is a directory, not an HDF5 file", path);
    else if (H5Fis_hdf5(path) == 0)
      rc = sd_fail(err, "%s: not an HDF5 file (HDF5: %s)", path, hdf5);
    else
      rc = sd_fail(err, "%s: cannot open (HDF5: %s)", path, hdf5);
    H5Eclear2(H5E_DEFAULT);
  }
  if (H5Pclose(fapl) < 0 && rc == 0)
    rc = h5_fail(err, path, NULL, "cannot close a property list");
  if (rc != 0) {
    sd_h5_close(f);
    return -1;
  }
  *out = f;
  return 0;
}

void sd_h5_close(sd_h5 *f) {
  sd_h5_abort(f);
}

const char *sd_h5_path(const sd_h5 *f) {
  return f ? f->path : "";
}

/* ---- groups and links -------------------------------------------------------------------------- */

int sd_h5_exists(sd_h5 *f, const char *path) {
  if (!f || f->file < 0 || !path)
    return 0;
  char *p = sd_strdup(path);
  if (!p)
    return 0;
  int found = 1;
  size_t i = 0;
  while (p[i] == '/')
    i++;
  /* H5Lexists fails (rather than answering 0) when a parent is missing: test each prefix in turn. */
  while (p[i]) {
    size_t j = i;
    while (p[j] && p[j] != '/')
      j++;
    char saved = p[j];
    p[j] = '\0';
    htri_t e = H5Lexists(f->file, p, H5P_DEFAULT);
    p[j] = saved;
    if (e <= 0) {
      found = 0;
      break;
    }
    while (p[j] == '/')
      j++;
    i = j;
  }
  free(p);
  if (!found)
    H5Eclear2(H5E_DEFAULT);
  return found;
}

/* Fails with "parent 'p' is not a group" when an existing parent of path is something else: HDF5's own
 * innermost message for that case ("message type not found") says little. */
int h5_check_parents(sd_h5 *f, const char *path, sd_error *err) {
  int rc = 0;
  hid_t g = H5I_INVALID_HID;
  char *p = sd_strdup(path);
  if (!p)
    return sd_fail(err, "%s: %s: out of memory", f->path, path);
  size_t i = 0;
  while (p[i] == '/')
    i++;
  for (;;) {
    while (p[i] && p[i] != '/')
      i++;
    size_t end = i; /* of this component */
    while (p[i] == '/')
      i++;
    if (!p[i])
      break; /* the last component is not a parent */
    p[end] = '\0';
    if (!sd_h5_exists(f, p))
      break; /* missing parents get created */
    H5_CHECK(g = H5Gopen2(f->file, p, H5P_DEFAULT), path, "parent '%s' is not a group", p);
    H5_CLOSE(H5Gclose, g, path);
    if (rc != 0)
      break;
    p[end] = '/';
  }
cleanup:
  H5_CLOSE(H5Gclose, g, path);
  free(p);
  return rc;
}

int sd_h5_group(sd_h5 *f, const char *path, sd_error *err) {
  if (h5_bad_handle(f, err))
    return -1;
  int rc = 0;
  hid_t lcpl = H5I_INVALID_HID, g = H5I_INVALID_HID;
  if (sd_h5_exists(f, path)) {
    H5_CHECK(g = H5Gopen2(f->file, path, H5P_DEFAULT), path, "exists but is not a group");
    goto cleanup;
  }
  if (h5_check_parents(f, path, err) != 0 || (lcpl = h5_new_lcpl(f, path, err)) < 0) {
    rc = -1;
    goto cleanup;
  }
  H5_CHECK(g = H5Gcreate2(f->file, path, lcpl, H5P_DEFAULT, H5P_DEFAULT), path, "cannot create group");
cleanup:
  H5_CLOSE(H5Gclose, g, path);
  H5_CLOSE(H5Pclose, lcpl, path);
  return rc;
}

typedef struct {
  char **names;
  int n, cap;
} name_list;

static herr_t collect_name(hid_t group, const char *name, const H5L_info_t *info, void *data) {
  name_list *l = data;
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 16;
    char **names = realloc(l->names, (size_t)cap * sizeof *names);
    if (!names)
      return -1;
    l->names = names;
    l->cap = cap;
  }
  if (!(l->names[l->n] = sd_strdup(name)))
    return -1;
  l->n++;
  return 0;
}

int sd_h5_list(sd_h5 *f, const char *group, char ***names, int *n, sd_error *err) {
  *names = NULL;
  *n = 0;
  if (h5_bad_handle(f, err))
    return -1;
  int rc = 0;
  hid_t g = H5I_INVALID_HID;
  name_list list = {NULL, 0, 0};
  if (!sd_h5_exists(f, group)) {
    rc = sd_fail(err, "%s: %s: no such group", f->path, group);
    goto cleanup;
  }
  H5_CHECK(g = H5Gopen2(f->file, group, H5P_DEFAULT), group, "not a group");
  hsize_t idx = 0;
  /* Name order, increasing: the name index exists for every group, old or new format. */
  H5_CHECK(H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_name, &list), group,
           "cannot list the group (or out of memory)");
cleanup:
  H5_CLOSE(H5Gclose, g, group);
  if (rc == 0) {
    *names = list.names;
    *n = list.n;
  } else {
    sd_h5_free_strings(list.names, list.n);
  }
  return rc;
}

void sd_h5_free_strings(char **strings, int64_t n) {
  if (!strings)
    return;
  for (int64_t i = 0; i < n; i++)
    free(strings[i]);
  free(strings);
}

int sd_h5_link_external(sd_h5 *f, const char *link_path, const char *target_file, const char *target_obj,
                        sd_error *err) {
  if (h5_bad_handle(f, err))
    return -1;
  int rc = 0;
  hid_t lcpl = H5I_INVALID_HID;
  if (!target_file || !target_obj || !target_file[0] || !target_obj[0]) {
    rc = sd_fail(err, "%s: %s: external link needs a target file and object", f->path, link_path);
    goto cleanup;
  }
  if (h5_check_parents(f, link_path, err) != 0 || (lcpl = h5_new_lcpl(f, link_path, err)) < 0) {
    rc = -1;
    goto cleanup;
  }
  H5_CHECK(H5Lcreate_external(target_file, target_obj, f->file, link_path, lcpl, H5P_DEFAULT), link_path,
           "cannot create external link to %s:%s", target_file, target_obj);
cleanup:
  H5_CLOSE(H5Pclose, lcpl, link_path);
  return rc;
}

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
      size_t run = (size_t)(dims[ndim - 1] - off[ndim - 1] < chunk[ndim - 1] ? dims[ndim - 1] - off[ndim - 1]
                                                                               : chunk[ndim - 1]);
      size_t rows = chunk_elems / (size_t)chunk[ndim - 1];
      for (size_t q = 0; q < rows; q++) {
        hsize_t pos[SD_H5_MAX_DIMS], rem = q;
        int inside = 1;
        for (int i = ndim - 2; i >= 0; i--) {
          pos[i] = off[i] + rem % chunk[i];
          rem /= chunk[i];
          inside &= pos[i] < dims[i];
        }
        if (!inside) continue;
        size_t src = 0;
        for (int i = 0; i < ndim - 1; i++) src = src * (size_t)dims[i] + (size_t)pos[i];
        src = src * (size_t)dims[ndim - 1] + (size_t)off[ndim - 1];
        memcpy(r + q * (size_t)chunk[ndim - 1] * elem, data + src * elem, run * elem);
      }
      for (size_t b = 0; b < elem; b++)
        for (size_t i = 0; i < chunk_elems; i++) sh[b * chunk_elems + i] = r[i * elem + b];
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
  for (int i = 0; i < *ndim; i++)
    *numel *= (int64_t)dims[i];
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
