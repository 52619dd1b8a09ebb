/* Applying a pruning mask (apply.h): in memory to a built UNet, and to checkpoint files, with a restore
 * file that gives the original bytes back. On disk only bytes of the input's own container are
 * patched (safetensors data, torch zip storages and their CRC-32 fields, one file of a diffusers
 * folder copy): no dtype is converted and no tensor re-encoded. Here: the mask's tensors and the
 * orchestration of a single file, a diffusers folder or a --unet override; the bytes of each format
 * are in apply_formats.c, the restore file in restore_file.c, restoring in restore.c. Not the choice
 * of the weights (scores.c) nor the mask file (mask_io.c). */
#include "prune/apply.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/files.h"
#include "core/provenance.h"
#include "prune/apply_internal.h"

/* ---- mask checks shared by both paths ---- */

/* The walk and the patching rely on indices that increase and lie inside the weight. */
static int check_layer(const char *mask_path, const sd_mask_layer *l, sd_error *err) {
  if (l->rows <= 0 || l->cols <= 0)
    return sd_fail(err, "%s: layer '%s' has shape [%d, %d]", mask_path, l->layer, l->rows, l->cols);
  if ((l->n_weights && !l->weights) || (l->n_neurons && !l->neurons) || l->n_weights < 0 || l->n_neurons < 0)
    return sd_fail(err, "%s: layer '%s': index counts without indices", mask_path, l->layer);
  int64_t size = (int64_t)l->rows * l->cols;
  for (int64_t k = 0; k < l->n_weights; k++)
    if (l->weights[k] < 0 || l->weights[k] >= size || (k && l->weights[k] <= l->weights[k - 1]))
      return sd_fail(err, "%s: layer '%s': weight index %lld (position %lld) is out of [0, %lld) or not increasing",
                     mask_path, l->layer, (long long)l->weights[k], (long long)k, (long long)size);
  for (int k = 0; k < l->n_neurons; k++)
    if (l->neurons[k] < 0 || l->neurons[k] >= l->cols || (k && l->neurons[k] <= l->neurons[k - 1]))
      return sd_fail(err, "%s: layer '%s': neuron %d (position %d) is out of [0, %d) or not increasing", mask_path,
                     l->layer, (int)l->neurons[k], k, l->cols);
  return 0;
}

/* ---- in memory ---- */

static sd_unet_tblock *find_tblock(sd_unet *u, const char *layer) {
  sd_unet_block *groups[3] = {u->input_blocks, &u->middle, u->output_blocks};
  int counts[3] = {u->n_input_blocks, 1, u->n_output_blocks};
  char name[200];
  for (int g = 0; g < 3; g++)
    for (int i = 0; groups[g] && i < counts[g]; i++) {
      sd_unet_block *blk = &groups[g][i];
      for (int l = 0; l < blk->n_layers; l++) {
        if (blk->layers[l].kind != SD_LAYER_ATTN)
          continue;
        sd_unet_transformer *tr = &blk->layers[l].attn;
        for (int d = 0; tr->blocks && d < tr->depth; d++) {
          snprintf(name, sizeof name, "%s.ff.net.2", tr->blocks[d].site);
          if (strcmp(name, layer) == 0)
            return &tr->blocks[d];
        }
      }
    }
  return NULL;
}

int sd_mask_apply_unet(sd_unet *unet, const sd_mask *mask, sd_mask_unet_copies *owned, sd_error *err) {
  memset(owned, 0, sizeof *owned);
  int n = mask->n_layers, rc = -1;
  if (n == 0)
    return 0;
  sd_unet_tblock **blocks = sd_calloc((size_t)n, sizeof *blocks, err);
  float **copies = sd_calloc((size_t)n, sizeof *copies, err);
  if (!blocks || !copies)
    goto done;
  for (int i = 0; i < n; i++) {
    const sd_mask_layer *l = &mask->layers[i];
    if (check_layer("mask", l, err) != 0)
      goto done;
    sd_unet_tblock *tb = find_tblock(unet, l->layer);
    if (!tb) {
      sd_fail(
          err,
          "mask layer '%s' is not the ff.net.2 of a transformer block of this UNet (mask from another architecture?)",
          l->layer);
      goto done;
    }
    if (tb->ff_out.out != l->rows || tb->ff_out.in != l->cols) {
      sd_fail(err, "mask layer '%s' is [%d, %d] but the UNet's weight is [%d, %d] (mask from another architecture?)",
              l->layer, l->rows, l->cols, tb->ff_out.out, tb->ff_out.in);
      goto done;
    }
    for (int j = 0; j < i; j++)
      if (blocks[j] == tb) {
        sd_fail(err, "mask layer '%s' is listed twice", l->layer);
        goto done;
      }
    blocks[i] = tb;
  }
  /* all copies first, so that a failure leaves the UNet as it was */
  for (int i = 0; i < n; i++) {
    const sd_mask_layer *l = &mask->layers[i];
    size_t numel = (size_t)l->rows * (size_t)l->cols;
    if (!(copies[i] = sd_malloc(numel * sizeof(float), err)))
      goto done;
    memcpy(copies[i], blocks[i]->ff_out.w, numel * sizeof(float));
    sd_mask_layer_apply_f32(l, copies[i]);
  }
  for (int i = 0; i < n; i++)
    blocks[i]->ff_out.w = copies[i];
  owned->copies = copies;
  owned->n = n;
  copies = NULL;
  rc = 0;
done:
  if (copies) {
    for (int i = 0; i < n; i++)
      free(copies[i]);
    free(copies);
  }
  free(blocks);
  return rc;
}

void sd_mask_unet_copies_free(sd_mask_unet_copies *owned) {
  if (!owned)
    return;
  for (int i = 0; i < owned->n; i++)
    free(owned->copies[i]);
  free(owned->copies);
  owned->copies = NULL;
  owned->n = 0;
}

/* ---- small helpers ---- */
/* ---- the tensors a mask patches ---- */

typedef struct {
  int64_t *index;
  int64_t n, cap;
} index_sink;

static int collect_index(void *ctx, int64_t i) {
  index_sink *s = ctx;
  if (s->n >= s->cap)
    return 1;
  s->index[s->n++] = i;
  return 0;
}

static void free_patches(patch *p, int n) {
  if (!p)
    return;
  for (int i = 0; i < n; i++) {
    free(p[i].index);
    free(p[i].original);
  }
  free(p);
}

/* Finds, for every mask layer, the weight in the UNet view, checks its shape, and the tensor of the
 * source file it is a view of (same data pointer): that gives the file and the key in its own naming. */
static int locate_patches(const sd_model *m, const sd_mask *mask, const char *mask_path, patch **out,
                          const sd_tensor_store **store, sd_error *err) {
  const char *ckpt = m->unet_view->path;
  patch *p = sd_calloc((size_t)mask->n_layers + 1, sizeof *p, err);
  if (!p)
    return -1;
  *store = NULL;
  for (int i = 0; i < mask->n_layers; i++) {
    const sd_mask_layer *l = &mask->layers[i];
    if (check_layer(mask_path, l, err) != 0)
      goto fail;
    char wname[600];
    if (l->weight && *l->weight)
      snprintf(wname, sizeof wname, "%s", l->weight);
    else
      snprintf(wname, sizeof wname, "%s.weight", l->layer);
    const sd_tensor *vt = sd_store_find(m->unet_view, wname);
    if (!vt) {
      sd_fail(err, "%s: layer '%s' is not in %s (mask from another architecture?)", mask_path, l->layer, ckpt);
      goto fail;
    }
    if (vt->ndim != 2 || vt->shape[0] != l->rows || vt->shape[1] != l->cols) {
      char sb[96];
      sd_fail(err, "%s: layer '%s' is [%d, %d] in the mask but %s in %s (mask from another architecture?)", mask_path,
              l->layer, l->rows, l->cols, sd_shape_str(vt->shape, vt->ndim, sb, sizeof sb), ckpt);
      goto fail;
    }
    if (vt->dtype != SD_DTYPE_F32 && vt->dtype != SD_DTYPE_F16 && vt->dtype != SD_DTYPE_BF16 &&
        vt->dtype != SD_DTYPE_F64) {
      sd_fail(err, "%s: tensor '%s' is %s, not a floating-point weight", ckpt, wname, sd_dtype_name(vt->dtype));
      goto fail;
    }
    const sd_tensor *found = NULL;
    const sd_tensor_store *fs = NULL;
    for (int f = 0; f < m->n_files; f++)
      for (int t = 0; t < m->files[f]->count; t++) {
        const sd_tensor *c = &m->files[f]->tensors[t];
        if (c->data != vt->data || c->nbytes != vt->nbytes || c->dtype != vt->dtype)
          continue;
        if (!found || (ap_ends_with(c->name, wname) && !ap_ends_with(found->name, wname)))
          found = c, fs = m->files[f];
      }
    if (!found) {
      sd_fail(err, "%s: cannot find the file holding '%s' (weights replaced by a cache?)", ckpt, wname);
      goto fail;
    }
    if (*store && *store != fs) {
      sd_fail(err, "%s: the masked UNet weights come from two files (%s, %s)", ckpt, (*store)->path, fs->path);
      goto fail;
    }
    *store = fs;
    for (int j = 0; j < i; j++)
      if (p[j].src == found) {
        sd_fail(err, "%s: layers '%s' and '%s' prune the same tensor", mask_path, p[j].layer->layer, l->layer);
        goto fail;
      }
    p[i].layer = l;
    p[i].src = found;
    p[i].esize = sd_dtype_size(found->dtype);
    int64_t n = sd_mask_layer_pruned(l);
    index_sink sink = {sd_malloc((size_t)(n ? n : 1) * sizeof(int64_t), err), 0, n};
    p[i].index = sink.index;
    p[i].original = sd_malloc((size_t)(n ? n : 1) * p[i].esize, err);
    if (!p[i].index || !p[i].original)
      goto fail;
    if (sd_mask_layer_foreach(l, collect_index, &sink) != 0 || sink.n != n) {
      sd_fail(err, "%s: layer '%s': the pruned count does not match its indices", mask_path, l->layer);
      goto fail;
    }
    p[i].n = n;
    const unsigned char *data = found->data;
    for (int64_t k = 0; k < n; k++)
      memcpy(p[i].original + (size_t)k * p[i].esize, data + (size_t)p[i].index[k] * p[i].esize, p[i].esize);
  }
  *out = p;
  return 0;
fail:
  free_patches(p, mask->n_layers);
  return -1;
}

/* ---- folders ---- */

typedef struct {
  const char *dst, *skip; /* skip: the patched file, written apart */
  file_list *files;
  uint64_t bytes;
  char note[512];
} copy_ctx;

static int copy_one(void *vctx, const char *rel, const char *full, int is_dir, sd_error *err) {
  copy_ctx *c = vctx;
  char dst[4200];
  snprintf(dst, sizeof dst, "%s/%s", c->dst, rel);
  if (is_dir)
    return mkdir(dst, 0777) == 0 ? 0 : sd_fail(err, "%s: cannot create: %s", dst, strerror(errno));
  if (strcmp(rel, c->skip) == 0)
    return 0;
  /* another weights file beside the patched one (a .bin or fp16 variant) stays unpruned: say so */
  const char *slash = strrchr(c->skip, '/'), *rslash = strrchr(rel, '/');
  size_t dlen = slash ? (size_t)(slash - c->skip) : 0;
  if ((rslash ? (size_t)(rslash - rel) : 0) == dlen && strncmp(rel, c->skip, dlen) == 0 && !c->note[0] &&
      (ap_ends_with(rel, ".safetensors") || ap_ends_with(rel, ".bin")))
    snprintf(c->note, sizeof c->note, "%s copied unpruned (the model is read from %s)", rel, c->skip);
  uint64_t size;
  char sha[65];
  if (ap_copy_file(full, dst, &size, sha, err) != 0)
    return -1;
  c->bytes += size;
  return ap_file_list_add(c->files, rel, "copied", size, sha, size, sha, err);
}

/* ---- apply ---- */

static int has_ext(const char *s, const char *const *exts) {
  for (int i = 0; exts[i]; i++)
    if (ap_ends_with(s, exts[i]))
      return 1;
  return 0;
}

static char *mask_meta_json(const sd_apply_options *opt, const sd_mask *mask, int64_t pruned, int64_t total,
                            const char *restore_path) {
  json_t *j = json_object();
  json_object_set_new(j, "mask", json_string(opt->mask_path ? opt->mask_path : ""));
  json_object_set_new(j, "method", json_string(mask->method ? mask->method : ""));
  json_object_set_new(j, "mask_sha256", json_string(opt->mask_sha256 ? opt->mask_sha256 : ""));
  json_object_set_new(j, "pruned_weights", json_integer(pruned));
  json_object_set_new(j, "total_weights", json_integer(total));
  const char *slash = strrchr(restore_path, '/');
  json_object_set_new(j, "restore_file", json_string(slash ? slash + 1 : restore_path));
  json_object_set_new(j, "sdprune_version", json_string(sd_version()));
  json_object_set_new(j, "git_revision", json_string(sd_git_revision()));
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return s;
}

/* Writes the patched file under its temporary name tmp and lists it with both hashes; s stays the
 * caller's, to remove the file on a later failure. */
static int write_patched_file(apply_ctx *c, const sd_tensor_store *store, const unsigned char *zmap, uint64_t zsize,
                              const char *meta, const char *tmp, out_stream *s, sd_error *err) {
  char sha_in[65], sha_out[65];
  if (ap_stream_open(s, tmp, 1, err) != 0 || ap_write_patched(c, store, zmap, zsize, meta, s, err) != 0 ||
      ap_stream_close(s, err) != 0)
    return -1;
  ap_hex_digest(&s->in, sha_in);
  ap_hex_digest(&s->out, sha_out);
  return ap_file_list_add(&c->files, c->patched_file, "patched", s->in_bytes, sha_in, s->bytes, sha_out, err);
}

int sd_apply_mask_checkpoint(const sd_model *m, const sd_mask *mask, const sd_apply_options *opt, sd_apply_result *res,
                             sd_error *err) {
  memset(res, 0, sizeof *res);
  apply_ctx c = {.opt = opt, .mask = mask};
  const sd_tensor_store *store = NULL;
  const char *mask_path = opt->mask_path ? opt->mask_path : "mask";
  unsigned char *zmap = NULL;
  uint64_t zsize = 0;
  out_stream s = {0};
  sd_h5 *h5 = NULL;
  char tmp[4300] = "", tmp_dir[4300] = "", *meta = NULL;
  char root[PATH_MAX], src[PATH_MAX]; /* resolved model folder and UNet file; c.patched_file points into src */
  int rc = -1, committed_restore = 0;
  if (!m->unet_view)
    return sd_fail(err, "%s: the model has no UNet", m->path);
  if (mask->n_layers == 0)
    return sd_fail(err, "%s: the mask has no layers", mask_path);
  if (locate_patches(m, mask, mask_path, &c.p, &store, err) != 0)
    return -1;
  c.np = mask->n_layers;
  for (int i = 0; i < c.np; i++) {
    c.pruned += c.p[i].n;
    c.total += (int64_t)c.p[i].layer->rows * c.p[i].layer->cols;
  }
  c.layout = opt->unet_override ? "unet-override" : !strcmp(m->layout, "diffusers") ? "diffusers" : "single-file";
  int folder = !strcmp(c.layout, "diffusers"), is_zip = !strcmp(store->format, "torch");
  c.format = is_zip ? "torch-zip" : "safetensors";
  c.source = store->path;
  snprintf(res->out_path, sizeof res->out_path, "%s", opt->out);
  for (size_t n = strlen(res->out_path); n > 1 && res->out_path[n - 1] == '/'; n--)
    res->out_path[n - 1] = 0;
  static const char *const st_ext[] = {".safetensors", NULL}, *const torch_ext[] = {".ckpt", ".pt", ".pth", ".bin",
                                                                                    NULL};
  if (!folder) {
    if (sd_is_dir(res->out_path)) {
      sd_fail(err, "%s: is a folder; a single checkpoint file gives a file (name it)", res->out_path);
      goto done;
    }
    if (is_zip && has_ext(res->out_path, st_ext))
      c.format = "safetensors-from-torch";
    if (!is_zip && has_ext(res->out_path, torch_ext)) {
      sd_fail(err, "%s: the input %s is safetensors and stays so: name the output .safetensors", res->out_path,
              store->path);
      goto done;
    }
  } else if (ap_path_exists(res->out_path) && !sd_is_dir(res->out_path)) {
    sd_fail(err, "%s: exists and is not a folder; a diffusers model gives a folder", res->out_path);
    goto done;
  }
  if (is_zip && ap_map_file(store->path, &zmap, &zsize, err) != 0)
    goto done;
  if (!strcmp(c.format, "torch-zip")) {
    char why[700] = "";
    int r = ap_plan_zip(store->path, zmap, zsize, c.p, c.np, &c.zip, why, sizeof why, err);
    if (r < 0)
      goto done;
    if (r > 0 && folder) {
      sd_fail(err, "%s; the torch file of a diffusers folder can only be patched in place", why);
      goto done;
    }
    if (r > 0) {
      c.format = "safetensors-from-torch";
      size_t n = strlen(res->out_path);
      for (int i = 0; torch_ext[i]; i++)
        if (ap_ends_with(res->out_path, torch_ext[i])) {
          n -= strlen(torch_ext[i]);
          break;
        }
      if (n + 13 > sizeof res->out_path) {
        sd_fail(err, "%s: path too long", res->out_path);
        goto done;
      }
      memcpy(res->out_path + n, ".safetensors", 13);
      if (snprintf(res->note, sizeof res->note, "%s: wrote a safetensors file with the same keys instead: %s", why,
                   res->out_path) >= (int)sizeof res->note)
        memcpy(res->note + sizeof res->note - 4, "...", 4); /* a note may be cut; the paths above are checked */
    }
  }
  sd_restore_path_for(res->out_path, res->restore_path, sizeof res->restore_path);
  c.out_path = res->out_path;
  if (ap_same_file(res->out_path, store->path) || ap_same_file(res->out_path, m->path) ||
      (folder && (ap_path_inside(res->out_path, m->path) || ap_path_inside(m->path, res->out_path)))) {
    sd_fail(err, "%s: the output would replace or lie inside the input %s", res->out_path,
            folder ? m->path : store->path);
    goto done;
  }
  if (!opt->force && (ap_path_exists(res->out_path) || ap_path_exists(res->restore_path))) {
    sd_fail(err, "%s: exists (use --force to replace it)",
            ap_path_exists(res->out_path) ? res->out_path : res->restore_path);
    goto done;
  }
  if (!(meta = mask_meta_json(opt, mask, c.pruned, c.total, res->restore_path))) {
    sd_fail(err, "%s: cannot encode the mask provenance (a path that is not UTF-8?)", mask_path);
    goto done;
  }
  if (!folder) {
    const char *slash = strrchr(res->out_path, '/');
    c.patched_file = slash ? slash + 1 : res->out_path;
    snprintf(tmp, sizeof tmp, "%s.tmp-%ld", res->out_path, (long)getpid());
    if (write_patched_file(&c, store, zmap, zsize, meta, tmp, &s, err) != 0)
      goto done;
    res->bytes = s.bytes;
  } else {
    if (!realpath(m->path, root) || !realpath(store->path, src) || strncmp(src, root, strlen(root)) != 0 ||
        src[strlen(root)] != '/') {
      sd_fail(err, "%s: the UNet file %s is not inside the model folder", m->path, store->path);
      goto done;
    }
    c.patched_file = src + strlen(root) + 1;
    snprintf(tmp_dir, sizeof tmp_dir, "%s.tmp-%ld", res->out_path, (long)getpid());
    if (mkdir(tmp_dir, 0777) != 0) {
      sd_fail(err, "%s: cannot create: %s", tmp_dir, strerror(errno));
      tmp_dir[0] = 0;
      goto done;
    }
    copy_ctx cc = {.dst = tmp_dir, .skip = c.patched_file, .files = &c.files};
    if (ap_walk_tree(m->path, "", 0, copy_one, &cc, err) != 0)
      goto done;
    if (snprintf(tmp, sizeof tmp, "%s/%s", tmp_dir, c.patched_file) >= (int)sizeof tmp) {
      sd_fail(err, "%s/%s: path too long", tmp_dir, c.patched_file);
      goto done;
    }
    if (write_patched_file(&c, store, zmap, zsize, meta, tmp, &s, err) != 0)
      goto done;
    res->bytes = cc.bytes + s.bytes;
    if (cc.note[0])
      snprintf(res->note, sizeof res->note, "%s", cc.note);
  }
  /* the restore file first: a checkpoint under its final name always has one */
  if (ap_write_restore(res->restore_path, &c, &h5, err) != 0)
    goto done;
  sd_h5 *restore_file = h5;
  h5 = NULL; /* commit frees it in every case */
  if (sd_h5_commit(restore_file, err) != 0)
    goto done;
  committed_restore = 1;
  if (!folder) {
    if (rename(tmp, res->out_path) != 0) {
      sd_fail(err, "%s: cannot rename %s to it: %s", res->out_path, tmp, strerror(errno));
      goto done;
    }
    s.path[0] = 0;
  } else {
    if (ap_replace_dir(tmp_dir, res->out_path, err) != 0)
      goto done;
    tmp_dir[0] = 0;
    s.path[0] = 0;
  }
  res->layout = c.layout;
  res->format = c.format;
  snprintf(res->source, sizeof res->source, "%s", store->path);
  res->n_layers = c.np;
  res->pruned = c.pruned;
  res->total = c.total;
  rc = 0;
done:
  if (rc != 0) {
    ap_stream_abort(&s);
    sd_h5_abort(h5);
    if (tmp_dir[0])
      ap_remove_tree(tmp_dir);
    if (committed_restore)
      unlink(res->restore_path);
  }
  free(meta);
  free(c.header);
  ap_zip_plan_free(&c.zip);
  ap_file_list_free(&c.files);
  free_patches(c.p, c.np);
  ap_unmap_file(zmap, zsize);
  return rc;
}
