/* The restore file (apply_internal.h): its name beside a pruned checkpoint, and its schema written
 * and read back through io/h5.h. Not the bytes it restores (restore.c) nor the apply run (apply.c).
 *
 * Restore file, readable with h5py:
 *   /                 attrs format="sdprune-restore", format_version=1, layout, checkpoint_format,
 *                     source, pruned, mask, mask_sha256, mask_method, pruned_weights, total_weights,
 *                     sdprune_version, git_revision, command_line, created_utc
 *   /files            table: file, role ("patched"|"copied"), original_size, original_sha256,
 *                     pruned_size, pruned_sha256 (a folder lists every file)
 *   /tensors          table: key, file, dtype, shape, original_offset, pruned_offset, nbytes, n_pruned
 *                     (offsets: of the tensor's first byte in each file)
 *   /patches/<key>/indices   int64 [n] pruned flat element indices of the tensor, increasing
 *   /patches/<key>/original  uint8 [n * element size] their original little-endian bytes
 *   /header           uint8: the original file's first 8 + N bytes (safetensors formats)
 *   /zip_fields       table: file, pruned_offset, size, original, pruned (CRC-32 fields of a torch zip) */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/provenance.h"
#include "prune/apply_internal.h"

#define RESTORE_FORMAT "sdprune-restore"
#define RESTORE_FORMAT_VERSION 1

static const char *const weight_exts[] = {".safetensors", ".ckpt", ".pt", ".pth", ".bin", NULL};

void sd_restore_path_for(const char *out, char *buf, size_t size) {
  size_t n = strlen(out);
  while (n > 1 && out[n - 1] == '/')
    n--;
  for (int i = 0; weight_exts[i]; i++) {
    size_t e = strlen(weight_exts[i]);
    if (n > e && strncmp(out + n - e, weight_exts[i], e) == 0 && out[n - e - 1] != '/') {
      n -= e;
      break;
    }
  }
  snprintf(buf, size, "%.*s.restore.h5", (int)n, out);
}

/* ---- tables ---- */

static const sd_h5_field file_fields[] = {
    {"file", SD_H5_STR, offsetof(file_row, file)},
    {"role", SD_H5_STR, offsetof(file_row, role)},
    {"original_size", SD_H5_I64, offsetof(file_row, original_size)},
    {"original_sha256", SD_H5_STR, offsetof(file_row, original_sha256)},
    {"pruned_size", SD_H5_I64, offsetof(file_row, pruned_size)},
    {"pruned_sha256", SD_H5_STR, offsetof(file_row, pruned_sha256)},
};

static const sd_h5_field tensor_fields[] = {
    {"key", SD_H5_STR, offsetof(tensor_row, key)},
    {"file", SD_H5_STR, offsetof(tensor_row, file)},
    {"dtype", SD_H5_STR, offsetof(tensor_row, dtype)},
    {"shape", SD_H5_STR, offsetof(tensor_row, shape)},
    {"original_offset", SD_H5_I64, offsetof(tensor_row, original_offset)},
    {"pruned_offset", SD_H5_I64, offsetof(tensor_row, pruned_offset)},
    {"nbytes", SD_H5_I64, offsetof(tensor_row, nbytes)},
    {"n_pruned", SD_H5_I64, offsetof(tensor_row, n_pruned)},
};

static const sd_h5_field zip_field_fields[] = {
    {"file", SD_H5_STR, offsetof(field_row, file)},
    {"pruned_offset", SD_H5_I64, offsetof(field_row, pruned_offset)},
    {"size", SD_H5_I64, offsetof(field_row, size)},
    {"original", SD_H5_I64, offsetof(field_row, original)},
    {"pruned", SD_H5_I64, offsetof(field_row, pruned)},
};

#define N_FIELDS(a) ((int)(sizeof(a) / sizeof *(a)))

int ap_file_list_add(file_list *l, const char *file, const char *role, uint64_t osize, const char *osha, uint64_t psize,
                     const char *psha, sd_error *err) {
  if (l->n == l->cap) {
    int cap = l->cap ? 2 * l->cap : 16;
    file_row *r = realloc(l->rows, (size_t)cap * sizeof *r);
    if (!r)
      return sd_fail(err, "out of memory");
    l->rows = r;
    l->cap = cap;
  }
  file_row *r = &l->rows[l->n];
  r->file = sd_strdup(file);
  r->role = sd_strdup(role);
  r->original_sha256 = sd_strdup(osha);
  r->pruned_sha256 = sd_strdup(psha);
  r->original_size = (int64_t)osize;
  r->pruned_size = (int64_t)psize;
  l->n++;
  if (!r->file || !r->role || !r->original_sha256 || !r->pruned_sha256)
    return sd_fail(err, "out of memory");
  return 0;
}

void ap_file_list_free(file_list *l) {
  for (int i = 0; i < l->n; i++) {
    free(l->rows[i].file);
    free(l->rows[i].role);
    free(l->rows[i].original_sha256);
    free(l->rows[i].pruned_sha256);
  }
  free(l->rows);
  memset(l, 0, sizeof *l);
}

/* ---- write ---- */

int ap_write_restore(const char *path, const apply_ctx *c, sd_h5 **out, sd_error *err) {
  sd_h5 *f = NULL;
  tensor_row *rows = NULL;
  field_row *frows = NULL;
  char **shapes = NULL;
  if (sd_h5_create(path, &f, err) != 0)
    return -1;
  char utc[32];
  sd_utc_now(utc, sizeof utc);
  const char *mask_path = c->opt->mask_path ? c->opt->mask_path : "";
  const char *strs[][2] = {
      {"format", RESTORE_FORMAT},
      {"layout", c->layout},
      {"checkpoint_format", c->format},
      {"source", c->source},
      {"pruned", c->out_path},
      {"mask", mask_path},
      {"mask_sha256", c->opt->mask_sha256 ? c->opt->mask_sha256 : ""},
      {"mask_method", c->mask->method ? c->mask->method : ""},
      {"sdprune_version", sd_version()},
      {"git_revision", sd_git_revision()},
      {"command_line", c->opt->command_line ? c->opt->command_line : ""},
      {"created_utc", utc},
  };
  for (size_t i = 0; i < sizeof strs / sizeof *strs; i++)
    if (sd_h5_attr_set_str(f, "/", strs[i][0], strs[i][1], err) != 0)
      goto fail;
  if (sd_h5_attr_set_i64(f, "/", "format_version", RESTORE_FORMAT_VERSION, err) != 0 ||
      sd_h5_attr_set_i64(f, "/", "pruned_weights", c->pruned, err) != 0 ||
      sd_h5_attr_set_i64(f, "/", "total_weights", c->total, err) != 0)
    goto fail;
  if (sd_h5_write_table(f, "/files", file_fields, N_FIELDS(file_fields), sizeof(file_row), c->files.rows, c->files.n,
                        err) != 0)
    goto fail;
  if (!(rows = sd_calloc((size_t)c->np + 1, sizeof *rows, err)) ||
      !(shapes = sd_calloc((size_t)c->np + 1, sizeof *shapes, err)))
    goto fail;
  for (int i = 0; i < c->np; i++) {
    const patch *p = &c->p[i];
    char sb[128];
    sd_shape_str(p->src->shape, p->src->ndim, sb, sizeof sb);
    if (!(shapes[i] = sd_strdup(sb)))
      goto fail;
    rows[i] = (tensor_row){(char *)p->src->name,
                           (char *)c->patched_file,
                           (char *)sd_dtype_name(p->src->dtype),
                           shapes[i],
                           (int64_t)p->original_offset,
                           (int64_t)p->pruned_offset,
                           (int64_t)p->src->nbytes,
                           p->n};
  }
  if (sd_h5_write_table(f, "/tensors", tensor_fields, N_FIELDS(tensor_fields), sizeof(tensor_row), rows, c->np, err) !=
      0)
    goto fail;
  for (int i = 0; i < c->np; i++) {
    static const unsigned char none[8];
    const patch *p = &c->p[i];
    char ds[800];
    if (strchr(p->src->name, '/') || !strcmp(p->src->name, ".")) {
      sd_fail(err, "%s: tensor key '%s' cannot name an HDF5 group", path, p->src->name);
      goto fail;
    }
    int64_t n = p->n, nb = p->n * (int64_t)p->esize;
    snprintf(ds, sizeof ds, "/patches/%s/indices", p->src->name);
    if (sd_h5_write(f, ds, SD_H5_I64, 1, &n, n ? (const void *)p->index : none, 1, err) != 0)
      goto fail;
    snprintf(ds, sizeof ds, "/patches/%s/original", p->src->name);
    if (sd_h5_write(f, ds, SD_H5_U8, 1, &nb, nb ? (const void *)p->original : none, 1, err) != 0)
      goto fail;
  }
  if (c->header) {
    int64_t n = (int64_t)c->header_len;
    if (sd_h5_write(f, "/header", SD_H5_U8, 1, &n, c->header, 1, err) != 0)
      goto fail;
  }
  if (c->zip.n_fields) {
    if (!(frows = sd_calloc((size_t)c->zip.n_fields, sizeof *frows, err)))
      goto fail;
    for (int i = 0; i < c->zip.n_fields; i++)
      frows[i] = (field_row){(char *)c->patched_file, (int64_t)c->zip.fields[i].offset, 4, c->zip.fields[i].original,
                             c->zip.fields[i].pruned};
    if (sd_h5_write_table(f, "/zip_fields", zip_field_fields, N_FIELDS(zip_field_fields), sizeof(field_row), frows,
                          c->zip.n_fields, err) != 0)
      goto fail;
  }
  for (int i = 0; shapes && i < c->np; i++)
    free(shapes[i]);
  free(shapes);
  free(rows);
  free(frows);
  *out = f;
  return 0;
fail:
  for (int i = 0; shapes && i < c->np; i++)
    free(shapes[i]);
  free(shapes);
  free(rows);
  free(frows);
  sd_h5_abort(f);
  return -1;
}

/* ---- read ---- */

void ap_restore_data_free(restore_data *r) {
  for (int64_t i = 0; i < r->n_tensors; i++) {
    if (r->index)
      free(r->index[i]);
    if (r->original)
      free(r->original[i]);
  }
  free(r->index);
  free(r->original);
  free(r->n_original);
  if (r->tensors)
    sd_h5_free_table(tensor_fields, N_FIELDS(tensor_fields), sizeof(tensor_row), r->tensors, r->n_tensors);
  if (r->files)
    sd_h5_free_table(file_fields, N_FIELDS(file_fields), sizeof(file_row), r->files, r->n_files);
  if (r->fields)
    sd_h5_free_table(zip_field_fields, N_FIELDS(zip_field_fields), sizeof(field_row), r->fields, r->n_fields);
  free(r->header);
  free(r->layout);
  free(r->format);
  memset(r, 0, sizeof *r);
}

int ap_read_restore(const char *path, restore_data *r, sd_error *err) {
  memset(r, 0, sizeof *r);
  sd_h5 *f;
  if (sd_h5_open(path, &f, err) != 0)
    return -1;
  char *fmt = NULL;
  int64_t version = 0;
  int rc = -1;
  if (sd_h5_attr_get_str(f, "/", "format", &fmt, err) != 0)
    goto done;
  if (strcmp(fmt, RESTORE_FORMAT) != 0) {
    sd_fail(err, "%s: not an sdprune restore file (format '%s')", path, fmt);
    goto done;
  }
  if (sd_h5_attr_get_i64(f, "/", "format_version", &version, err) != 0)
    goto done;
  if (version != RESTORE_FORMAT_VERSION) {
    sd_fail(err, "%s: restore file format version %lld; this sdprune reads %d", path, (long long)version,
            RESTORE_FORMAT_VERSION);
    goto done;
  }
  if (sd_h5_attr_get_str(f, "/", "layout", &r->layout, err) != 0 ||
      sd_h5_attr_get_str(f, "/", "checkpoint_format", &r->format, err) != 0)
    goto done;
  if (sd_h5_read_table(f, "/files", file_fields, N_FIELDS(file_fields), sizeof(file_row), (void **)&r->files,
                       &r->n_files, err) != 0 ||
      sd_h5_read_table(f, "/tensors", tensor_fields, N_FIELDS(tensor_fields), sizeof(tensor_row), (void **)&r->tensors,
                       &r->n_tensors, err) != 0)
    goto done;
  if (!(r->index = sd_calloc((size_t)r->n_tensors + 1, sizeof *r->index, err)) ||
      !(r->original = sd_calloc((size_t)r->n_tensors + 1, sizeof *r->original, err)) ||
      !(r->n_original = sd_calloc((size_t)r->n_tensors + 1, sizeof *r->n_original, err)))
    goto done;
  for (int64_t i = 0; i < r->n_tensors; i++) {
    char ds[800];
    int nd;
    int64_t shape[SD_H5_MAX_DIMS];
    snprintf(ds, sizeof ds, "/patches/%s/indices", r->tensors[i].key);
    if (sd_h5_read(f, ds, SD_H5_I64, &nd, shape, (void **)&r->index[i], err) != 0)
      goto done;
    if (nd != 1 || shape[0] != r->tensors[i].n_pruned) {
      sd_fail(err, "%s: %s holds %lld indices, the tensors table says %lld", path, ds,
              (long long)(nd == 1 ? shape[0] : -1), (long long)r->tensors[i].n_pruned);
      goto done;
    }
    snprintf(ds, sizeof ds, "/patches/%s/original", r->tensors[i].key);
    if (sd_h5_read(f, ds, SD_H5_U8, &nd, shape, (void **)&r->original[i], err) != 0)
      goto done;
    r->n_original[i] = nd == 1 ? shape[0] : -1;
  }
  if (sd_h5_exists(f, "/header")) {
    int nd;
    int64_t shape[SD_H5_MAX_DIMS];
    if (sd_h5_read(f, "/header", SD_H5_U8, &nd, shape, (void **)&r->header, err) != 0)
      goto done;
    r->header_len = nd == 1 ? shape[0] : 0;
  }
  if (sd_h5_exists(f, "/zip_fields") &&
      sd_h5_read_table(f, "/zip_fields", zip_field_fields, N_FIELDS(zip_field_fields), sizeof(field_row),
                       (void **)&r->fields, &r->n_fields, err) != 0)
    goto done;
  rc = 0;
done:
  free(fmt);
  sd_h5_close(f);
  if (rc != 0)
    ap_restore_data_free(r);
  return rc;
}
