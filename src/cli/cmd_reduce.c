/* sdprune reduce: merges the shards of distributed statistics runs (RUN/shards/rank-*.h5, as written by
 * sdprune-mpi) or whole stats.h5 files into one stats.h5, offline and in one process. Checks that every
 * planned item is done exactly once; it does not run the model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/files.h"
#include "stats/stats_io.h"
#include "stats/stats_shards.h"

static void usage(FILE *out) {
  fprintf(out, "usage: sdprune reduce RUN [RUN2 ...] --out stats.h5 [--compress] [--force] [--quiet]\n\n"
               "Merges statistics shards into one stats.h5: every RUN/shards/rank-*.h5 of each RUN folder (the\n"
               "shards of sdprune-mpi, whatever rank count wrote them), or RUN itself when it is an .h5 file.\n"
               "Totals are exact integer sums, so the result is bit-identical to the in-job reduce and to a\n"
               "single-process run. Every item must be done exactly once: missing, failed, duplicate and foreign\n"
               "items (another model hash, other settings or prompt files) are reported by (set, row, seed).\n"
               "Duplicate or foreign items stop the merge; missing ones are reported and the file is written.\n\n"
               "  --out FILE.h5   the merged statistics\n"
               "  --compress      store the totals shuffled + deflated (about 40%% smaller, but deflate then costs\n"
               "                  more than reading the shards: about 6 s per 300 MB on 2 cores); default: stored\n"
               "                  as read, so the reduce is bound by the disk\n"
               "  --force         replace an existing output\n"
               "  --max-report N  lines per kind of problem (default 20)\n"
               "  --quiet         only problems on stderr\n"
               "Exit status: 0 complete, 1 incomplete or refused, 2 usage.\n");
}

static int add_path(char ***paths, int *n, const char *p) {
  char **np = realloc(*paths, sizeof **paths * (size_t)(*n + 1));
  if (!np)
    return -1;
  *paths = np;
  if (!(np[*n] = sd_strdup(p)))
    return -1;
  (*n)++;
  return 0;
}

int cmd_reduce(int argc, char **argv) {
  const char *out = NULL;
  int force = 0, quiet = 0, compress = 0, n_runs = 0, max_report = 20;
  const char **runs = calloc((size_t)argc, sizeof *runs);
  if (!runs)
    return 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      free(runs);
      return 0;
    } else if (!strcmp(a, "--force"))
      force = 1;
    else if (!strcmp(a, "--compress"))
      compress = 1;
    else if (!strcmp(a, "--quiet"))
      quiet = 1;
    else if (!strcmp(a, "--out") || !strcmp(a, "--max-report")) {
      const char *v = sd_cli_value("reduce", argc, argv, &i);
      long n;
      if (!v)
        goto usage_error;
      if (!strcmp(a, "--out"))
        out = v;
      else if (sd_cli_int("reduce", a, v, 0, 1000000, &n))
        goto usage_error;
      else
        max_report = (int)n;
    } else if (a[0] == '-' && a[1]) {
      fprintf(stderr, "sdprune reduce: unknown option '%s' (see --help)\n", a);
      goto usage_error;
    } else
      runs[n_runs++] = a;
  }
  if (!out || n_runs == 0) {
    fprintf(stderr, "sdprune reduce: at least one RUN and --out are required (see --help)\n");
    goto usage_error;
  }
  if (sd_is_file(out) && !force) {
    fprintf(stderr, "sdprune reduce: %s exists; pass --force to replace it\n", out);
    goto usage_error;
  }
  char **paths = NULL;
  int n = 0, status = 1;
  sd_error err;
  for (int k = 0; k < n_runs; k++) {
    if (sd_is_file(runs[k])) {
      if (add_path(&paths, &n, runs[k]))
        goto oom;
      continue;
    }
    char **p = NULL;
    int *ranks = NULL, m = 0;
    if (sd_shards_list(runs[k], &p, &ranks, &m, &err) != 0) {
      fprintf(stderr, "sdprune reduce: %s\n", err.msg);
      goto done;
    }
    if (m == 0) {
      fprintf(stderr, "sdprune reduce: %s: no shards (%s/shards/rank-*.h5) and not a statistics file\n", runs[k],
              runs[k]);
      sd_shards_list_free(p, ranks, m);
      goto done;
    }
    for (int j = 0; j < m; j++)
      if (add_path(&paths, &n, p[j])) {
        sd_shards_list_free(p, ranks, m);
        goto oom;
      }
    sd_shards_list_free(p, ranks, m);
  }
  {
    sd_stats s;
    sd_shards_report r;
    double t0 = sd_now();
    int rc = sd_shards_merge_files(paths, n, stderr, max_report, &s, &r, &err);
    if (rc < 0) {
      fprintf(stderr, "sdprune reduce: %s\n", err.msg);
      goto done;
    }
    if (sd_stats_write_ex(out, &s, compress, &err) != 0) {
      fprintf(stderr, "sdprune reduce: %s\n", err.msg);
      sd_stats_free(&s);
      goto done;
    }
    sd_stats_free(&s);
    struct stat st;
    long long bytes = stat(out, &st) == 0 ? (long long)st.st_size : -1;
    if (!quiet || rc)
      fprintf(stderr,
              "sdprune reduce: %d files, %lld planned items: %lld done, %lld failed, %lld missing; %.2f s; wrote "
              "%s (%lld bytes)%s\n",
              n, (long long)r.planned, (long long)r.done, (long long)r.failed, (long long)r.missing, sd_now() - t0, out,
              bytes, rc ? " (incomplete)" : "");
    status = rc ? 1 : 0;
  }
  goto done;
oom:
  fprintf(stderr, "sdprune reduce: out of memory\n");
done:
  for (int k = 0; k < n; k++)
    free(paths[k]);
  free(paths);
  free(runs);
  return status;
usage_error:
  free(runs);
  return 2;
}
