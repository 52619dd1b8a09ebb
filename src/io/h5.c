/* HDF5 behind io/h5.h: atomic create/commit, open and close, groups, listing and external links, with
 * HDF5's error stack turned into one-line messages, and the type and property-list builders the other
 * parts share (h5_internal.h). The datasets are h5_dataset.c, the scalar attributes h5_attr.c, the
 * compound tables h5_table.c, copying between files h5_copy.c: those five are the only files that
 * include hdf5.h. Not a general binding: no partial I/O, no extendible datasets, no MPI-IO. */
#include "io/h5.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/h5_internal.h"

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
