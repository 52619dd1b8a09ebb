/* Shards of a distributed statistics run (stats_shards.h): listing, completeness check and merge.
 * The totals are merged by sd_stats_merge (exact integer sums), so the result does not depend on how
 * the items were split over ranks or in which order the shards are read. */
#include "stats/stats_shards.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/prefetch.h"
#include "stats/stats_io.h"

void sd_shard_path(const char *run_dir, int rank, char *out, size_t size) {
  snprintf(out, size, "%s/shards/rank-%05d.h5", run_dir, rank);
}

static int cmp_rank(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return (x > y) - (x < y);
}

int sd_shards_list(const char *run_dir, char ***paths, int **ranks, int *n, sd_error *err) {
  char folder[4200];
  snprintf(folder, sizeof folder, "%s/shards", run_dir);
  *paths = NULL;
  *ranks = NULL;
  *n = 0;
  DIR *d = opendir(folder);
  if (!d)
    return errno == ENOENT ? 0 : sd_fail(err, "%s: cannot list: %s", folder, strerror(errno));
  int cap = 0, *rk = NULL;
  struct dirent *e;
  while ((e = readdir(d))) {
    int r = -1, used = 0;
    size_t len = strlen(e->d_name);
    if (sscanf(e->d_name, "rank-%d.h5%n", &r, &used) != 1 || r < 0 || (size_t)used != len ||
        strcmp(e->d_name + len - 3, ".h5"))
      continue;
    if (*n == cap) {
      cap = cap ? 2 * cap : 16;
      int *nr = realloc(rk, sizeof *rk * (size_t)cap);
      if (!nr) {
        free(rk);
        closedir(d);
        return sd_fail(err, "out of memory");
      }
      rk = nr;
    }
    rk[(*n)++] = r;
  }
  closedir(d);
  if (*n == 0) {
    free(rk);
    return 0;
  }
  qsort(rk, (size_t)*n, sizeof *rk, cmp_rank);
  char **p = sd_calloc((size_t)*n, sizeof *p, err);
  if (!p) {
    free(rk);
    return -1;
  }
  for (int i = 0; i < *n; i++) {
    char path[4300];
    sd_shard_path(run_dir, rk[i], path, sizeof path);
    if (!(p[i] = sd_strdup(path))) {
      sd_shards_list_free(p, rk, *n);
      return sd_fail(err, "out of memory");
    }
  }
  *paths = p;
  *ranks = rk;
  return 0;
}

void sd_shards_list_free(char **paths, int *ranks, int n) {
  for (int i = 0; paths && i < n; i++)
    free(paths[i]);
  free(paths);
  free(ranks);
}

static int same(const char *a, const char *b) {
  return !strcmp(a ? a : "", b ? b : "");
}

int sd_stats_compatible(const sd_stats *a, const sd_stats *b, char *why, size_t ws) {
  const sd_stats_settings *x = &a->settings, *y = &b->settings;
  if (!same(x->model_hash, y->model_hash) || !same(x->unet_override, y->unet_override) ||
      !same(x->text_encoder_override, y->text_encoder_override)) {
    snprintf(why, ws, "another model (hash %s, expected %s)", y->model_hash ? y->model_hash : "?",
             x->model_hash ? x->model_hash : "?");
    return 0;
  }
  if (!same(x->sampler, y->sampler) || x->steps != y->steps || x->max_steps != y->max_steps || x->eta != y->eta ||
      a->n_steps != b->n_steps) {
    snprintf(why, ws, "other sampler settings (%s %d steps, max_steps %d, eta %g; expected %s %d, %d, %g)",
             y->sampler ? y->sampler : "?", y->steps, y->max_steps, y->eta, x->sampler ? x->sampler : "?", x->steps,
             x->max_steps, x->eta);
    return 0;
  }
  if (!same(x->hooks, y->hooks) || a->n_layers != b->n_layers) {
    snprintf(why, ws, "other hooks (%s, %d layers; expected %s, %d)", y->hooks ? y->hooks : "?", b->n_layers,
             x->hooks ? x->hooks : "?", a->n_layers);
    return 0;
  }
  for (int l = 0; l < a->n_layers; l++)
    if (strcmp(a->layers[l].name, b->layers[l].name) || a->layers[l].width != b->layers[l].width) {
      snprintf(why, ws, "layer %d is %s, expected %s", l, b->layers[l].name, a->layers[l].name);
      return 0;
    }
  for (int t = 0; t < a->n_steps; t++)
    if (a->timesteps[t] != b->timesteps[t]) {
      snprintf(why, ws, "timestep %d is %g, expected %g", t, b->timesteps[t], a->timesteps[t]);
      return 0;
    }
  return 1;
}

/* One item of one file, keyed by (set, row, seed). */
typedef struct {
  const char *set;
  int row;
  uint64_t seed;
  int file; /* -1: the plan */
  int status;
  int foreign_set; /* its set's prompt file differs from the plan's set of that name */
} entry;

static int cmp_key(const entry *a, const entry *b) {
  int c = strcmp(a->set, b->set);
  if (c)
    return c;
  if (a->row != b->row)
    return a->row < b->row ? -1 : 1;
  return a->seed != b->seed ? (a->seed < b->seed ? -1 : 1) : 0;
}

static int cmp_entry(const void *pa, const void *pb) { /* by key, then the plan first, then by file */
  const entry *a = pa, *b = pb;
  int c = cmp_key(a, b);
  return c ? c : (a->file > b->file) - (a->file < b->file);
}

static const sd_stats_set *find_set(const sd_stats *s, const char *name) {
  for (int k = 0; k < s->n_sets; k++)
    if (!strcmp(s->sets[k].name, name))
      return &s->sets[k];
  return NULL;
}

#define SAY(kind, ...)                                                                                                 \
  do {                                                                                                                 \
    if (report && shown[kind]++ < max_lines)                                                                           \
      fprintf(report, __VA_ARGS__);                                                                                    \
  } while (0)

int sd_shards_check(const sd_stats *plan, const sd_stats *shards, const char *const *names, int n, FILE *report,
                    int max_lines, sd_shards_report *r) {
  memset(r, 0, sizeof *r);
  int shown[4] = {0}; /* missing/failed, duplicate, foreign, foreign files */
  enum { MISSING, DUP, FOREIGN, FFILE };
  const sd_stats *ref = plan ? plan : (n > 0 ? &shards[0] : NULL);
  if (!ref)
    return 0;
  int64_t total = plan ? plan->n_items : 0;
  for (int f = 0; f < n; f++)
    total += shards[f].n_items;
  entry *e = malloc(sizeof *e * (size_t)(total ? total : 1));
  int *compatible = calloc((size_t)(n ? n : 1), sizeof *compatible);
  if (!e || !compatible) {
    free(e);
    free(compatible);
    if (report)
      fprintf(report, "out of memory checking %d shards\n", n);
    r->missing = 1;
    return 1;
  }
  int64_t ne = 0;
  if (plan)
    for (int64_t i = 0; i < plan->n_items; i++)
      e[ne++] = (entry){plan->sets[plan->items[i].set].name, plan->items[i].row, plan->items[i].seed, -1, 0, 0};
  for (int f = 0; f < n; f++) {
    const sd_stats *s = &shards[f];
    char why[600];
    compatible[f] = sd_stats_compatible(ref, s, why, sizeof why);
    if (!compatible[f]) {
      int64_t nd = 0;
      for (int64_t i = 0; i < s->n_items; i++)
        nd += s->items[i].status == SD_ITEM_DONE;
      r->foreign_files++;
      r->foreign += nd;
      SAY(FFILE, "foreign shard %s: %s; its %lld done items are not counted\n", names[f], why, (long long)nd);
      for (int64_t i = 0; i < s->n_items; i++)
        if (s->items[i].status == SD_ITEM_DONE)
          SAY(FOREIGN, "foreign item (set %s, row %d, seed %llu) in %s\n", s->sets[s->items[i].set].name,
              s->items[i].row, (unsigned long long)s->items[i].seed, names[f]);
      continue;
    }
    for (int64_t i = 0; i < s->n_items; i++) {
      const sd_stats_item *it = &s->items[i];
      const sd_stats_set *mine = &s->sets[it->set], *theirs = find_set(ref, mine->name);
      int fs = theirs && !same(theirs->file_sha256, mine->file_sha256);
      e[ne++] = (entry){mine->name, it->row, it->seed, f, it->status, fs};
    }
  }
  qsort(e, (size_t)ne, sizeof *e, cmp_entry);
  for (int64_t i = 0; i < ne;) {
    int64_t j = i;
    int in_plan = 0, done = 0, failed = 0, first_done = -1;
    while (j < ne && !cmp_key(&e[i], &e[j])) {
      if (e[j].file < 0)
        in_plan = 1;
      else if (e[j].foreign_set && e[j].status == SD_ITEM_DONE) {
        r->foreign++;
        SAY(FOREIGN, "foreign item (set %s, row %d, seed %llu) in %s: its set was read from another prompt file\n",
            e[j].set, e[j].row, (unsigned long long)e[j].seed, names[e[j].file]);
      } else if (e[j].status == SD_ITEM_DONE) {
        if (done++) {
          r->duplicate++;
          SAY(DUP, "duplicate item (set %s, row %d, seed %llu): done in %s and in %s\n", e[j].set, e[j].row,
              (unsigned long long)e[j].seed, names[first_done], names[e[j].file]);
        } else
          first_done = e[j].file;
      } else if (e[j].status == SD_ITEM_FAILED)
        failed = 1;
      j++;
    }
    if (plan && !in_plan && done) {
      r->foreign += done;
      SAY(FOREIGN, "foreign item (set %s, row %d, seed %llu) in %s: not in this plan\n", e[i].set, e[i].row,
          (unsigned long long)e[i].seed, names[first_done]);
    } else {
      r->planned++;
      if (done)
        r->done++;
      else if (failed) {
        r->failed++;
        SAY(MISSING, "failed item (set %s, row %d, seed %llu): not done in any shard\n", e[i].set, e[i].row,
            (unsigned long long)e[i].seed);
      } else {
        r->missing++;
        SAY(MISSING, "missing item (set %s, row %d, seed %llu): not done in any shard\n", e[i].set, e[i].row,
            (unsigned long long)e[i].seed);
      }
    }
    i = j;
  }
  if (report) {
    static const char *const kinds[4] = {"missing or failed", "duplicate", "foreign", "foreign shard"};
    for (int k = 0; k < 4; k++)
      if (shown[k] > max_lines)
        fprintf(report, "... and %d more %s lines\n", shown[k] - max_lines, kinds[k]);
  }
  free(e);
  free(compatible);
  return r->missing || r->failed || r->duplicate || r->foreign ? 1 : 0;
}

int sd_shards_merge_files(char *const *paths, int n, FILE *report, int max_lines, sd_stats *out, sd_shards_report *r,
                          sd_error *err) {
  memset(out, 0, sizeof *out);
  memset(r, 0, sizeof *r);
  if (n <= 0)
    return sd_fail(err, "no shards to merge");
  sd_stats *sh = sd_calloc((size_t)n, sizeof *sh, err);
  if (!sh)
    return -1;
  int rc = -1, got = 0, n_scratch = 0;
  sd_stats_acc *scratch = NULL;
  sd_prefetch *prefetch = NULL;
  /* Items tables first (small); the totals then stream in one file at a time: a reduce of 1,000
   * shards holds the result and one shard's set × layer, not 1,000 shards. */
  for (; got < n; got++)
    if (sd_stats_read(paths[got], &sh[got], 0, err) != 0)
      goto done;
  int incomplete = sd_shards_check(NULL, sh, (const char *const *)paths, n, report, max_lines, r);
  if (r->duplicate || r->foreign) {
    rc = sd_fail(err, "%lld duplicate and %lld foreign items (in %d foreign shards); nothing merged",
                 (long long)r->duplicate, (long long)r->foreign, r->foreign_files);
    goto done;
  }
  *out = sh[0];
  memset(&sh[0], 0, sizeof sh[0]);
  if (!(scratch = sd_calloc((size_t)out->n_layers + 1, sizeof *scratch, err)))
    goto fail_out;
  for (; n_scratch < out->n_layers; n_scratch++)
    if (sd_stats_acc_alloc(&scratch[n_scratch], out->n_steps, out->layers[n_scratch].width, err) != 0)
      goto fail_out;
  /* While file f is read and added (bound by HDF5's copy and the integer adds), a thread reads file f+1
   * into the page cache: the disk works during the adds instead of after them. */
  prefetch = n > 1 ? sd_prefetch_start(paths[1]) : NULL;
  if (sd_stats_add_file_totals(out, out, paths[0], scratch, err) != 0)
    goto fail_out;
  for (int f = 1; f < n; f++) {
    sd_prefetch_join(prefetch);
    prefetch = f + 1 < n ? sd_prefetch_start(paths[f + 1]) : NULL;
    if (sd_stats_merge(out, &sh[f], paths[f], err) != 0 ||
        sd_stats_add_file_totals(out, &sh[f], paths[f], scratch, err) != 0)
      goto fail_out;
  }
  rc = incomplete ? 1 : 0;
  goto done;
fail_out:
  sd_stats_free(out);
  memset(out, 0, sizeof *out);
done:
  sd_prefetch_join(prefetch);
  for (int l = 0; l < n_scratch; l++)
    sd_stats_acc_free(&scratch[l]);
  free(scratch);
  for (int f = 0; f < got; f++)
    sd_stats_free(&sh[f]);
  free(sh);
  return rc;
}
