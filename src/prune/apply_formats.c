/* The patched bytes of one weights file (apply_internal.h): a safetensors file with its header's
 * metadata set, a torch zip turned into safetensors with the same keys, and the plan that patches a
 * torch zip in place. Not which tensors (apply.c) nor the zip's own structure (io/zip_patch.c). */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "io/pickle.h"
#include "io/zip_patch.h"
#include "prune/apply_internal.h"

/* ---- safetensors ---- */

/* A safetensors header from its JSON text: the 8-byte length, then the text padded with spaces to a
 * multiple of 8. */
static unsigned char *st_header_bytes(const char *text, size_t *len, sd_error *err) {
  size_t n = strlen(text), padded = (n + 7) & ~(size_t)7;
  unsigned char *h = sd_malloc(8 + padded, err);
  if (!h)
    return NULL;
  ap_wr_le(h, padded, 8);
  memcpy(h + 8, text, n);
  memset(h + 8 + n, ' ', padded - n);
  *len = 8 + padded;
  return h;
}

/* The original header with __metadata__["sdprune_mask"] set, __metadata__ first, every tensor entry
 * as it was (same order, dtype, shape, data_offsets); padded with spaces to a multiple of 8. */
static int st_patched_header(const char *path, const unsigned char *map, uint64_t header_len, const char *meta,
                             unsigned char **out, size_t *out_len, sd_error *err) {
  json_error_t jerr;
  json_t *old = json_loadb((const char *)map + 8, (size_t)header_len, 0, &jerr);
  if (!old || !json_is_object(old)) {
    json_decref(old);
    return sd_fail(err, "%s: header is not a JSON object", path);
  }
  json_t *md = json_object_get(old, "__metadata__");
  if (md && !json_is_object(md)) {
    json_decref(old);
    return sd_fail(err, "%s: __metadata__ is not an object", path);
  }
  json_t *root = json_object(), *nmd = md ? json_deep_copy(md) : json_object(), *value = json_string(meta);
  int rc = -1;
  char *text = NULL;
  if (!root || !nmd || !value) {
    json_decref(nmd);
    json_decref(value);
    sd_fail(err, "%s: cannot build the new header (a path that is not UTF-8?)", path);
    goto done;
  }
  json_object_set_new(nmd, "sdprune_mask", value);
  json_object_set_new(root, "__metadata__", nmd);
  const char *key;
  json_t *v;
  json_object_foreach(old, key, v) { /* jansson keeps insertion order: the file's order */
    if (strcmp(key, "__metadata__") != 0)
      json_object_set(root, key, v);
  }
  if (!(text = json_dumps(root, JSON_COMPACT))) {
    sd_fail(err, "%s: cannot encode the new header", path);
    goto done;
  }
  if (!(*out = st_header_bytes(text, out_len, err)))
    goto done;
  rc = 0;
done:
  free(text);
  json_decref(root);
  json_decref(old);
  return rc;
}

/* A safetensors input: new header, then the data section byte for byte with the pruned elements zero. */
static int write_st_patched(const sd_tensor_store *st, patch *p, int np, const char *meta, out_stream *s,
                            unsigned char **orig_header, size_t *orig_header_len, sd_error *err) {
  const unsigned char *map = st->map;
  uint64_t size = st->map_size, header_len = map && size >= 8 ? ap_rd_le(map, 8) : 0;
  if (!map || size < 8 || header_len > size - 8)
    return sd_fail(err, "%s: not a mapped safetensors file", st->path);
  uint64_t data_start = 8 + header_len;
  unsigned char *hdr = NULL;
  size_t hdr_len = 0;
  if (st_patched_header(st->path, map, header_len, meta, &hdr, &hdr_len, err) != 0)
    return -1;
  edit *edits = sd_calloc((size_t)np + 1, sizeof *edits, err);
  int rc = -1;
  if (!edits)
    goto done;
  for (int i = 0; i < np; i++) {
    const unsigned char *d = p[i].src->data;
    if (d < map + data_start || d > map + size || p[i].src->nbytes > (size_t)(map + size - d)) {
      sd_fail(err, "%s: tensor '%s' does not lie in the file's data section", st->path, p[i].src->name);
      goto done;
    }
    p[i].original_offset = (uint64_t)(d - map);
    p[i].pruned_offset = p[i].original_offset - data_start + hdr_len;
    edits[i] = (edit){p[i].original_offset, p[i].src->nbytes, p[i].esize, p[i].n, p[i].index, NULL};
  }
  qsort(edits, (size_t)np, sizeof *edits, ap_compare_edits);
  ap_feed_in(s, map, (size_t)data_start);
  if (ap_emit(s, NULL, hdr, hdr_len, err) != 0)
    goto done;
  if (ap_copy_edited(s, st->path, map, data_start, size, edits, np, err) != 0)
    goto done;
  if (!(*orig_header = sd_malloc((size_t)data_start, err)))
    goto done;
  memcpy(*orig_header, map, (size_t)data_start);
  *orig_header_len = (size_t)data_start;
  rc = 0;
done:
  free(edits);
  free(hdr);
  return rc;
}

/* A torch zip written as safetensors with the same keys, dtypes and shapes (the fallback). The
 * "original" hashed alongside is this same file unpruned: what restore gives back. */
static int write_st_from_store(const sd_tensor_store *st, patch *p, int np, const char *meta, out_stream *s,
                               unsigned char **orig_header, size_t *orig_header_len, sd_error *err) {
  json_t *root = json_object(), *md = json_object();
  json_t *jm = json_string(meta), *jfrom = json_string(st->path);
  char *text = NULL;
  unsigned char *hdr = NULL;
  int rc = -1;
  if (!root || !md || !jm || !jfrom) {
    json_decref(md);
    json_decref(jm);
    json_decref(jfrom);
    sd_fail(err, "%s: cannot build a safetensors header (a path that is not UTF-8?)", st->path);
    goto done;
  }
  json_object_set_new(md, "sdprune_mask", jm);
  json_object_set_new(md, "sdprune_converted_from", jfrom);
  json_object_set_new(root, "__metadata__", md);
  uint64_t offset = 0;
  for (int i = 0; i < st->count; i++) {
    const sd_tensor *t = &st->tensors[i];
    json_t *e = json_object(), *shape = json_array(), *offs = json_array();
    for (int d = 0; d < t->ndim; d++)
      json_array_append_new(shape, json_integer(t->shape[d]));
    json_array_append_new(offs, json_integer((json_int_t)offset));
    json_array_append_new(offs, json_integer((json_int_t)(offset + t->nbytes)));
    json_object_set_new(e, "dtype", json_string(sd_dtype_name(t->dtype)));
    json_object_set_new(e, "shape", shape);
    json_object_set_new(e, "data_offsets", offs);
    if (json_object_set_new(root, t->name, e) != 0) {
      sd_fail(err, "%s: tensor name '%s' cannot be a safetensors key", st->path, t->name);
      goto done;
    }
    offset += t->nbytes;
  }
  if (!(text = json_dumps(root, JSON_COMPACT))) {
    sd_fail(err, "%s: cannot encode a safetensors header", st->path);
    goto done;
  }
  size_t hdr_len;
  if (!(hdr = st_header_bytes(text, &hdr_len, err)))
    goto done;
  if (ap_emit(s, hdr, hdr, hdr_len, err) != 0)
    goto done;
  offset = hdr_len;
  for (int i = 0; i < st->count; i++) {
    const sd_tensor *t = &st->tensors[i];
    int j = 0;
    while (j < np && p[j].src != t)
      j++;
    if (j == np) {
      if (ap_copy_plain(s, t->data, t->nbytes, err) != 0)
        goto done;
    } else {
      p[j].original_offset = p[j].pruned_offset = offset;
      edit e = {0, t->nbytes, p[j].esize, p[j].n, p[j].index, NULL};
      if (ap_copy_edited(s, st->path, t->data, 0, t->nbytes, &e, 1, err) != 0)
        goto done;
    }
    offset += t->nbytes;
  }
  *orig_header = hdr;
  *orig_header_len = hdr_len;
  hdr = NULL;
  rc = 0;
done:
  free(hdr);
  free(text);
  json_decref(root);
  return rc;
}

/* ---- torch zip in place ---- */

/* The tensor under `key` as torch_zip.c names it: nested dicts joined with '.'. */
static const pk_value *find_pk_tensor(const pk_value *d, const char *key, int depth) {
  if (depth > 16 || !d || d->kind != PK_DICT)
    return NULL;
  size_t klen = strlen(key);
  for (int i = 0; i + 1 < d->n; i += 2) {
    const pk_value *k = d->items[i], *v = d->items[i + 1];
    if (k->kind != PK_STR || k->len > klen || memchr(k->s, 0, k->len) || strncmp(key, k->s, k->len) != 0)
      continue;
    if (v->kind == PK_TENSOR && key[k->len] == 0)
      return v;
    if (v->kind == PK_DICT && key[k->len] == '.') {
      const pk_value *r = find_pk_tensor(v, key + k->len + 1, depth + 1);
      if (r)
        return r;
    }
  }
  return NULL;
}

void ap_zip_plan_free(zip_plan *z) {
  free(z->edits);
  free(z->fields);
  memset(z, 0, sizeof *z);
}

static void add_field(zip_plan *z, uint64_t offset, uint32_t original, uint32_t pruned) {
  crc_field *f = &z->fields[z->n_fields++];
  f->offset = offset;
  f->original = original;
  f->pruned = pruned;
  ap_wr_le(f->bytes, pruned, 4);
}

/* Each pruned tensor's bytes inside its storage entry, and the entry's CRC-32 wherever the zip records
 * it (sd_zip_crc_fields). */
int ap_plan_zip(const char *path, const unsigned char *map, uint64_t size, patch *p, int np, zip_plan *z, char *why,
                size_t why_size, sd_error *err) {
  sd_zip_dir dir;
  memset(z, 0, sizeof *z);
  if (sd_zip_dir_read(path, map, size, &dir, err) != 0)
    return -1;
  int rc = -1, *entry_of = NULL;
  uint64_t *data_of = NULL;
  pk_doc doc = {0};
  unsigned char *pkl = NULL;
  size_t pkl_len = 0;
  char prefix[512] = "", name[1200];
  int found = 0;
  for (int i = 0; i < dir.n && !found; i++) { /* "<archive>/data.pkl", as torch_zip.c looks for it */
    const char *nm = dir.e[i].name, *slash = strchr(nm, '/');
    size_t len = strlen(nm);
    if (len >= 8 && strcmp(nm + len - 8, "data.pkl") == 0 && (slash == NULL ? len == 8 : slash == nm + len - 9) &&
        len - 8 < sizeof prefix) {
      memcpy(prefix, nm, len - 8);
      prefix[len - 8] = 0;
      found = 1;
    }
  }
  if (!found) {
    sd_fail(err, "%s: no <name>/data.pkl entry (not a torch.save checkpoint)", path);
    goto done;
  }
  snprintf(name, sizeof name, "%sdata.pkl", prefix);
  if (sd_zip_read_entry(path, name, &pkl, &pkl_len, err) != 0)
    goto done;
  if (pk_load(pkl, pkl_len, &doc, err) != 0) {
    sd_fail_prefix(err, "%s: %s", path, name);
    goto done;
  }
  const pk_value *sd = doc.root;
  static const char *const nested[] = {"state_dict", "model", "module"};
  for (int i = 0; i < 3; i++) {
    const pk_value *v = pk_dict_get(doc.root, nested[i]);
    if (v && v->kind == PK_DICT) {
      sd = v;
      break;
    }
  }
  entry_of = sd_calloc((size_t)np + 1, sizeof *entry_of, err);
  data_of = sd_calloc((size_t)np + 1, sizeof *data_of, err);
  z->edits = sd_calloc((size_t)np * 4 + 1, sizeof *z->edits, err);
  z->fields = sd_calloc((size_t)np * 3 + 1, sizeof *z->fields, err);
  if (!entry_of || !data_of || !z->edits || !z->fields)
    goto done;
  for (int i = 0; i < np; i++) {
    const char *key = p[i].src->name;
    const pk_value *t = find_pk_tensor(sd, key, 0);
    if (!t || !t->storage || !t->storage->s) {
      sd_fail(err, "%s: tensor '%s' is not in %sdata.pkl", path, key, prefix);
      goto done;
    }
    snprintf(name, sizeof name, "%sdata/%s", prefix, t->storage->s);
    int k = 0;
    while (k < dir.n && strcmp(dir.e[k].name, name) != 0)
      k++;
    if (k == dir.n) {
      sd_fail(err, "%s: no entry '%s' for the storage of '%s'", path, name, key);
      goto done;
    }
    const sd_zip_entry *e = &dir.e[k];
    if (e->flags & 1) {
      sd_fail(err, "%s: entry '%s' is encrypted", path, name);
      goto done;
    }
    if (e->method != 0) {
      snprintf(why, why_size, "%s: the storage of '%s' is compressed (zip method %u)", path, key, e->method);
      rc = 1;
      goto done;
    }
    int64_t expect = 1;
    int contiguous = 1;
    for (int dd = t->ndim - 1; dd >= 0; dd--) {
      if (t->size[dd] != 1 && t->stride[dd] != expect)
        contiguous = 0;
      expect *= t->size[dd];
    }
    if (!contiguous) {
      snprintf(why, why_size, "%s: '%s' is not contiguous in its storage", path, key);
      rc = 1;
      goto done;
    }
    uint64_t data = 0;
    if (sd_zip_data_offset(path, map, size, e, &data, err) != 0)
      goto done;
    if (e->comp != e->size || sd_dtype_size(t->storage->dtype) != p[i].esize || t->offset < 0) {
      sd_fail(err, "%s: entry '%s' does not hold '%s' as data.pkl describes it", path, name, key);
      goto done;
    }
    uint64_t off = data + (uint64_t)t->offset * p[i].esize;
    if (off > data + e->comp || p[i].src->nbytes > data + e->comp - off ||
        memcmp(map + off, p[i].src->data, p[i].src->nbytes) != 0) {
      sd_fail(err, "%s: the bytes of '%s' are not where data.pkl says in entry '%s'", path, key, name);
      goto done;
    }
    p[i].original_offset = p[i].pruned_offset = off;
    entry_of[i] = k;
    data_of[i] = data;
    z->edits[z->n_edits++] = (edit){off, p[i].src->nbytes, p[i].esize, p[i].n, p[i].index, NULL};
  }
  for (int i = 0; i < np; i++) { /* one new CRC per patched entry */
    int first = 1;
    for (int j = 0; j < i; j++)
      first &= entry_of[j] != entry_of[i];
    if (!first)
      continue;
    const sd_zip_entry *e = &dir.e[entry_of[i]];
    uint64_t data = data_of[i];
    uint32_t old = sd_crc32(map + data, e->comp);
    if (old != e->crc) {
      sd_fail(err, "%s: entry '%s': CRC-32 %08x does not match the recorded %08x (corrupt file?)", path, e->name, old,
              e->crc);
      goto done;
    }
    unsigned char *buf = sd_malloc(e->comp ? (size_t)e->comp : 1, err);
    if (!buf)
      goto done;
    memcpy(buf, map + data, (size_t)e->comp);
    for (int j = i; j < np; j++) {
      if (entry_of[j] != entry_of[i])
        continue;
      edit sub = {p[j].original_offset - data, p[j].src->nbytes, p[j].esize, p[j].n, p[j].index, NULL};
      ap_apply_elements(buf + sub.offset, &sub, path, err);
    }
    uint32_t now = sd_crc32(buf, e->comp);
    free(buf);
    uint64_t at[3];
    int n_at;
    if (sd_zip_crc_fields(path, map, size, e, data, at, &n_at, err) != 0)
      goto done;
    for (int f = 0; f < n_at; f++)
      add_field(z, at[f], old, now);
  }
  for (int i = 0; i < z->n_fields; i++)
    z->edits[z->n_edits++] = (edit){z->fields[i].offset, 4, 0, 0, NULL, z->fields[i].bytes};
  qsort(z->edits, (size_t)z->n_edits, sizeof *z->edits, ap_compare_edits);
  for (int i = 1; i < z->n_edits; i++)
    if (z->edits[i].offset < z->edits[i - 1].offset + z->edits[i - 1].nbytes) {
      sd_fail(err, "%s: two patched regions overlap at byte %llu (tensors sharing a storage?)", path,
              (unsigned long long)z->edits[i].offset);
      goto done;
    }
  rc = 0;
done:
  if (rc != 0)
    ap_zip_plan_free(z);
  free(entry_of);
  free(data_of);
  pk_free(&doc);
  free(pkl);
  sd_zip_dir_free(&dir);
  return rc;
}

/* Writes the patched file (format per c->format) through s. */
int ap_write_patched(apply_ctx *c, const sd_tensor_store *store, const unsigned char *zmap, uint64_t zsize,
                     const char *meta, out_stream *s, sd_error *err) {
  if (!strcmp(c->format, "safetensors"))
    return write_st_patched(store, c->p, c->np, meta, s, &c->header, &c->header_len, err);
  if (!strcmp(c->format, "safetensors-from-torch"))
    return write_st_from_store(store, c->p, c->np, meta, s, &c->header, &c->header_len, err);
  return ap_copy_edited(s, store->path, zmap, 0, zsize, c->zip.edits, c->zip.n_edits, err);
}
