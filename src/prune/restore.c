/* Restoring a pruned checkpoint (apply.h: sd_restore_checkpoint): checks the pruned input against the
 * restore file, puts the original bytes back and checks the result's SHA-256. Not the restore file's
 * schema (restore_file.c) nor the writing of pruned checkpoints (apply.c). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/files.h"
#include "prune/apply_internal.h"

/* A file name from the restore file used under a folder: relative, no "..". */
static int safe_rel(const char *rel) {
  if (!*rel || rel[0] == '/')
    return 0;
  for (const char *p = rel; *p;) {
    const char *slash = strchr(p, '/');
    size_t n = slash ? (size_t)(slash - p) : strlen(p);
    if (n == 0 || (n == 2 && p[0] == '.' && p[1] == '.'))
      return 0;
    p += n + (slash ? 1 : 0);
  }
  return 1;
}

static int check_hash(const char *path, uint64_t want_size, const char *want_sha, const char *what, sd_error *err) {
  struct stat st;
  if (stat(path, &st) != 0)
    return sd_fail(err, "%s: cannot open: %s", path, strerror(errno));
  uint8_t d[32];
  char hex[65];
  if ((uint64_t)st.st_size == want_size) {
    if (sd_sha256_file(path, d, err) != 0)
      return -1;
    sd_sha256_hex(d, hex);
    if (strcmp(hex, want_sha) == 0)
      return 0;
  }
  return sd_fail(err,
                 "%s: SHA-256 does not match the restore file's record of the %s (not the file it was written for, or "
                 "changed since)",
                 path, what);
}

/* Rebuilds one patched file from the pruned one into out (a temporary name). */
static int rebuild_file(const restore_data *r, const file_row *row, const char *pruned, const char *tmp,
                        sd_restore_result *res, sd_error *err) {
  unsigned char *map = NULL;
  uint64_t size = 0;
  edit *edits = NULL;
  unsigned char(*fbytes)[8] = NULL; /* original bytes of the zip fields */
  out_stream s = {0};
  int rc = -1, n = 0;
  int st = !strcmp(r->format, "safetensors") || !strcmp(r->format, "safetensors-from-torch");
  if (!st && strcmp(r->format, "torch-zip") != 0)
    return sd_fail(err, "unknown checkpoint format '%s' in the restore file", r->format);
  if (st && (!r->header || r->header_len < 8))
    return sd_fail(err, "the restore file has no original header");
  if (ap_map_file(pruned, &map, &size, err) != 0)
    return -1;
  if (!(edits = sd_calloc((size_t)(r->n_tensors + r->n_fields) + 1, sizeof *edits, err)))
    goto done;
  for (int64_t i = 0; i < r->n_tensors; i++) {
    const tensor_row *t = &r->tensors[i];
    if (strcmp(t->file, row->file) != 0)
      continue;
    sd_dtype dt;
    if (sd_dtype_from_name(t->dtype, &dt) != 0 || t->nbytes < 0 || t->pruned_offset < 0 ||
        r->n_original[i] != t->n_pruned * (int64_t)sd_dtype_size(dt)) {
      sd_fail(err, "%s: tensor '%s': inconsistent record in the restore file", pruned, t->key);
      goto done;
    }
    edits[n++] = (edit){
        (uint64_t)t->pruned_offset, (uint64_t)t->nbytes, sd_dtype_size(dt), t->n_pruned, r->index[i], r->original[i]};
    res->n_tensors++;
    res->restored += t->n_pruned;
  }
  if (r->n_fields && !(fbytes = sd_calloc((size_t)r->n_fields, 8, err)))
    goto done;
  for (int64_t i = 0; i < r->n_fields; i++) {
    const field_row *fr = &r->fields[i];
    if (strcmp(fr->file, row->file) != 0)
      continue;
    if (fr->size < 1 || fr->size > 8 || fr->pruned_offset < 0) {
      sd_fail(err, "%s: inconsistent zip field record in the restore file", pruned);
      goto done;
    }
    ap_wr_le(fbytes[i], (uint64_t)fr->original, (int)fr->size);
    edits[n++] = (edit){(uint64_t)fr->pruned_offset, (uint64_t)fr->size, 0, 0, NULL, fbytes[i]};
  }
  qsort(edits, (size_t)n, sizeof *edits, ap_compare_edits);
  uint64_t from = 0;
  if (st) {
    uint64_t hl = size >= 8 ? ap_rd_le(map, 8) : UINT64_MAX;
    if (hl > size - 8) {
      sd_fail(err, "%s: not a safetensors file", pruned);
      goto done;
    }
    from = 8 + hl;
  }
  int wrc = ap_stream_open(&s, tmp, 0, err);
  if (wrc == 0 && st)
    wrc = ap_emit(&s, NULL, r->header, (size_t)r->header_len, err);
  if (wrc == 0)
    wrc = ap_copy_edited(&s, pruned, map, from, size, edits, n, err);
  if (wrc == 0)
    wrc = ap_stream_close(&s, err);
  if (wrc != 0)
    goto done;
  char hex[65];
  ap_hex_digest(&s.out, hex);
  if (s.bytes != (uint64_t)row->original_size || strcmp(hex, row->original_sha256) != 0) {
    sd_fail(err, "%s: the restored bytes' SHA-256 does not match the original's (damaged restore file?)", pruned);
    goto done;
  }
  res->bytes += s.bytes;
  s.path[0] = 0; /* complete: the caller renames or removes it */
  rc = 0;
done:
  ap_stream_abort(&s);
  free(fbytes);
  free(edits);
  ap_unmap_file(map, size);
  return rc;
}

typedef struct {
  const restore_data *r;
  const char *root;
} extra_ctx;

static int check_listed(void *vctx, const char *rel, const char *full, int is_dir, sd_error *err) {
  extra_ctx *c = vctx;
  if (is_dir)
    return 0;
  for (int64_t i = 0; i < c->r->n_files; i++)
    if (!strcmp(c->r->files[i].file, rel))
      return 0;
  return sd_fail(err, "%s: not in the restore file (added to the pruned folder after apply?)", full);
}

int sd_restore_checkpoint(const char *pruned, const char *restore_path, const char *out, int force,
                          sd_restore_result *res, sd_error *err) {
  memset(res, 0, sizeof *res);
  restore_data r;
  if (ap_read_restore(restore_path, &r, err) != 0)
    return -1;
  char tmp[4300] = "", tmp_dir[4300] = "";
  int rc = -1;
  snprintf(res->out_path, sizeof res->out_path, "%s", out);
  for (size_t n = strlen(res->out_path); n > 1 && res->out_path[n - 1] == '/'; n--)
    res->out_path[n - 1] = 0;
  int folder = !strcmp(r.layout, "diffusers");
  const file_row *patched = NULL;
  for (int64_t i = 0; i < r.n_files; i++) {
    if (!strcmp(r.files[i].role, "patched")) {
      if (patched) {
        sd_fail(err, "%s: more than one patched file recorded", restore_path);
        goto done;
      }
      patched = &r.files[i];
    }
    if (folder && !safe_rel(r.files[i].file)) {
      sd_fail(err, "%s: file name '%s' is not a path inside a folder", restore_path, r.files[i].file);
      goto done;
    }
  }
  if (!patched) {
    sd_fail(err, "%s: no patched file recorded", restore_path);
    goto done;
  }
  if (folder ? !sd_is_dir(pruned) : !sd_is_file(pruned)) {
    sd_fail(err, "%s: not a %s; %s was written for a %s", pruned, folder ? "folder" : "file", restore_path,
            folder ? "diffusers folder" : "single checkpoint file");
    goto done;
  }
  if (ap_same_file(res->out_path, pruned) ||
      (folder && (ap_path_inside(res->out_path, pruned) || ap_path_inside(pruned, res->out_path)))) {
    sd_fail(err, "%s: the output would replace or lie inside the input %s", res->out_path, pruned);
    goto done;
  }
  if (!force && ap_path_exists(res->out_path)) {
    sd_fail(err, "%s: exists (use --force to replace it)", res->out_path);
    goto done;
  }
  char src[4200];
  if (folder)
    snprintf(src, sizeof src, "%s/%s", pruned, patched->file);
  else
    snprintf(src, sizeof src, "%s", pruned);
  if (check_hash(src, (uint64_t)patched->pruned_size, patched->pruned_sha256, "pruned file", err) != 0)
    goto done;
  res->format = !strcmp(r.format, "torch-zip")     ? "torch-zip"
                : !strcmp(r.format, "safetensors") ? "safetensors"
                                                   : "safetensors-from-torch";
  if (!folder) {
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", res->out_path, (long)getpid());
    if (rebuild_file(&r, patched, src, tmp, res, err) != 0) {
      tmp[0] = 0;
      goto done;
    }
    if (rename(tmp, res->out_path) != 0) {
      sd_fail(err, "%s: cannot rename %s to it: %s", res->out_path, tmp, strerror(errno));
      goto done;
    }
    tmp[0] = 0;
    res->n_files = 1;
  } else {
    extra_ctx ec = {&r, pruned};
    if (ap_walk_tree(pruned, "", 0, check_listed, &ec, err) != 0)
      goto done;
    snprintf(tmp_dir, sizeof tmp_dir, "%s.tmp-%ld", res->out_path, (long)getpid());
    if (mkdir(tmp_dir, 0777) != 0) {
      sd_fail(err, "%s: cannot create: %s", tmp_dir, strerror(errno));
      tmp_dir[0] = 0;
      goto done;
    }
    for (int64_t i = 0; i < r.n_files; i++) {
      const file_row *fr = &r.files[i];
      char from[4200], to[4200];
      if (snprintf(from, sizeof from, "%s/%s", pruned, fr->file) >= (int)sizeof from ||
          snprintf(to, sizeof to, "%s/%s", tmp_dir, fr->file) >= (int)sizeof to) {
        sd_fail(err, "%s/%s: path too long", tmp_dir, fr->file);
        goto done;
      }
      char *slash = strrchr(to, '/');
      *slash = 0;
      if (sd_mkdir_p(to) != 0) {
        sd_fail(err, "%s: cannot create: %s", to, strerror(errno));
        goto done;
      }
      *slash = '/';
      if (fr == patched) {
        if (rebuild_file(&r, fr, from, to, res, err) != 0)
          goto done;
      } else {
        uint64_t size;
        char sha[65];
        if (ap_copy_file(from, to, &size, sha, err) != 0)
          goto done;
        if (size != (uint64_t)fr->pruned_size || strcmp(sha, fr->pruned_sha256) != 0) {
          sd_fail(err, "%s: SHA-256 does not match the restore file's record (changed since apply?)", from);
          goto done;
        }
        res->bytes += size;
      }
      res->n_files++;
    }
    if (ap_replace_dir(tmp_dir, res->out_path, err) != 0)
      goto done;
    tmp_dir[0] = 0;
  }
  rc = 0;
done:
  if (tmp[0])
    unlink(tmp);
  if (tmp_dir[0])
    ap_remove_tree(tmp_dir);
  ap_restore_data_free(&r);
  return rc;
}
