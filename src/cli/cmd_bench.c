/* sdprune bench: times UNet evaluations on this node and relates them to the sgemm rate measured in
 * the same run on the UNet's own GEMM shapes (convolutions as im2col products and linear layers), so
 * users can check their nodes. Synthesises an SD-shaped checkpoint unless --model is given.
 * The sgemm calibration is interleaved with the timed evaluations (calibration, UNet, calibration, ...):
 * on a shared node both drift with the neighbours' load, and pairs taken minutes apart do not compare.
 * Minima (the least disturbed runs) are reported beside the medians. */
#include <cblas.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/files.h"
#include "core/omp_env.h"
#include "model/parts.h"
#include "model/synth.h"
#include "model/weight_cache.h"
#include "stats/neuron_stats.h"

#define MAX_SHAPES 8

typedef struct {
  sd_cli_common common;
  const char *arch, *cache_dir;
  int batch, repeat, hooks, profile, probe, no_cache, background_load;
  int n_shapes, lat_h[MAX_SHAPES], lat_w[MAX_SHAPES];
} bench_options;

static void usage(FILE *out) {
  fprintf(out, "usage: sdprune bench [--arch sd15|sd21|tiny-sd1] [--model PATH] [--batch 2] [--latent 64x64[,32x32...]]\n"
               "                     [--repeat 3] [--threads N] [--hooks] [--background-load N] [--cache-dir DIR]\n\n"
               "Times batch UNet evaluations (--repeat of them after a warm-up) and compares them with the\n"
               "sgemm rate OpenBLAS reaches on the same run's GEMM shapes of that UNet (convolutions as im2col\n"
               "products, linear layers; attention products are reported apart). Each timed evaluation follows\n"
               "its own sgemm calibration, so load from other jobs touches both alike. Prints one row per latent\n"
               "shape (seconds, sgemm and fraction are medians; min_s, sgemm_max and frac_min come from the\n"
               "fastest evaluation and the fastest calibration) and, as its last two lines for the first shape,\n"
               "sgemm_fraction_min=0.NN (ratio of the minima, the stable figure on a shared node) and\n"
               "sgemm_fraction=0.NN (ratio of the medians).\n\n"
               "  --arch NAME       architecture to synthesise when --model is not given (default sd15)\n"
               "  --batch N         UNet batch (2 = one classifier-free-guided step; default 2)\n"
               "  --latent HxW,...  latent sizes (default 64x64,32x32; 64x64 is a 512x512 image)\n"
               "  --repeat N        timed evaluations per shape, each after an sgemm calibration (default 3)\n"
               "  --hooks           also time with an FFN hook that accumulates per-neuron sum and sum of squares\n"
               "  --profile         print seconds per operation kind (conv, norm, linear, attention, ...)\n"
               "  --background-load N  run N busy threads at nice 19 in a child process of its own session\n"
               "                    for the whole benchmark (a shared node's neighbours; stopped at exit)\n"
               "  --no-weights-cache  convert weights in memory instead of mapping the float32 cache (the\n"
               "                    default keeps one in the cache folder and measures what a second rank adds)\n"
               "  --cache-dir DIR   where the synthesised checkpoint is kept (default $TMPDIR/sdprune-bench)\n");
  sd_cli_common_help(out, 1);
}

static int parse_latents(bench_options *o, const char *s) {
  o->n_shapes = 0;
  while (*s && o->n_shapes < MAX_SHAPES) {
    char *end;
    long h = strtol(s, &end, 10);
    if (*end != 'x') return -1;
    long w = strtol(end + 1, &end, 10);
    if (h <= 0 || w <= 0 || h > 1024 || w > 1024 || (*end && *end != ',')) return -1;
    o->lat_h[o->n_shapes] = (int)h;
    o->lat_w[o->n_shapes++] = (int)w;
    s = *end ? end + 1 : end;
  }
  return o->n_shapes ? 0 : -1;
}

/* ---- the UNet's GEMM shapes, timed with OpenBLAS ---- */

typedef struct {
  int m, n, k, trans_b;
  double count;
} gemm_shape;

typedef struct {
  gemm_shape s[256];
  int n;
} gemm_set;

static void add_gemm(gemm_set *g, int m, int n, int k, int trans_b, double count) {
  for (int i = 0; i < g->n; i++)
    if (g->s[i].m == m && g->s[i].n == n && g->s[i].k == k && g->s[i].trans_b == trans_b) {
      g->s[i].count += count;
      return;
    }
  if (g->n < 256) g->s[g->n++] = (gemm_shape){m, n, k, trans_b, count};
}

static void collect_block(const sd_unet *u, const sd_unet_block *blk, int B, int H, int W, gemm_set *dense, gemm_set *attn) {
  int hl = H, wl = W;
  for (int l = 0; l < blk->level; l++) { /* stride-2 convolutions round up */
    hl = (hl + 1) / 2;
    wl = (wl + 1) / 2;
  }
  int hw = hl * wl;
  for (int i = 0; i < blk->n_layers; i++) {
    const sd_unet_layer *l = &blk->layers[i];
    switch (l->kind) {
    case SD_LAYER_CONV:
    case SD_LAYER_DOWN: add_gemm(dense, l->conv.cout, hw, l->conv.cin * 9, 0, B); break;
    case SD_LAYER_UP: add_gemm(dense, l->conv.cout, 4 * hw, l->conv.cin * 9, 0, B); break;
    case SD_LAYER_RES:
      add_gemm(dense, l->res.cout, hw, l->res.cin * 9, 0, B);
      add_gemm(dense, l->res.cout, hw, l->res.cout * 9, 0, B);
      if (l->res.skip.w) add_gemm(dense, l->res.cout, hw, l->res.cin, 0, B);
      break;
    case SD_LAYER_ATTN: {
      const sd_unet_transformer *st = &l->attn;
      int d = st->inner, T = hw;
      add_gemm(dense, B * T, d, st->channels, 1, 2); /* proj_in, proj_out */
      for (int b = 0; b < st->depth; b++) {
        int ff = st->blocks[b].ff_inner;
        add_gemm(dense, B * T, d, d, 1, 6); /* attn1 q k v out, attn2 q out */
        add_gemm(dense, B * 77, d, u->cfg.context_dim, 1, 2);
        add_gemm(dense, B * T, 2 * ff, d, 1, 1);
        add_gemm(dense, B * T, d, ff, 1, 1);
        int rows = T < 4096 ? T : 4096;
        double calls = (double)B * st->heads * ((T + rows - 1) / rows);
        add_gemm(attn, rows, T, st->dim_head, 1, calls); /* attn1 scores */
        add_gemm(attn, rows, st->dim_head, T, 0, calls);
        add_gemm(attn, rows, 77, st->dim_head, 1, calls); /* attn2 */
        add_gemm(attn, rows, st->dim_head, 77, 0, calls);
      }
    } break;
    }
  }
}

/* Seconds the whole set takes at OpenBLAS's rate (each distinct shape timed on its own); flops out. */
static double time_gemm_set(const gemm_set *g, double *flops_out) {
  double total = 0, flops = 0;
  size_t maxa = 0, maxb = 0, maxc = 0;
  for (int i = 0; i < g->n; i++) {
    size_t a = (size_t)g->s[i].m * g->s[i].k, b = (size_t)g->s[i].k * g->s[i].n, c = (size_t)g->s[i].m * g->s[i].n;
    maxa = a > maxa ? a : maxa;
    maxb = b > maxb ? b : maxb;
    maxc = c > maxc ? c : maxc;
  }
  float *A = malloc(maxa * 4), *Bm = malloc(maxb * 4), *C = malloc(maxc * 4);
  for (size_t i = 0; i < maxa; i++) A[i] = (float)((i * 7) % 13) * 0.01f;
  for (size_t i = 0; i < maxb; i++) Bm[i] = (float)((i * 5) % 11) * 0.01f;
  for (int i = 0; i < g->n; i++) {
    const gemm_shape *s = &g->s[i];
    int ldb = s->trans_b ? s->k : s->n;
    CBLAS_TRANSPOSE tb = s->trans_b ? CblasTrans : CblasNoTrans;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, s->m, s->n, s->k, 1, A, s->k, Bm, ldb, 0, C, s->n);
    double t0 = sd_now(), dt;
    int reps = 0;
    do {
      cblas_sgemm(CblasRowMajor, CblasNoTrans, tb, s->m, s->n, s->k, 1, A, s->k, Bm, ldb, 0, C, s->n);
      reps++;
      dt = sd_now() - t0;
    } while (dt < 0.05 || reps < 2);
    total += dt / reps * s->count;
    flops += 2.0 * s->m * s->n * s->k * s->count;
  }
  free(A);
  free(Bm);
  free(C);
  *flops_out = flops;
  return total;
}

/* ---- memory ---- */

static double peak_rss_gb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss / 1048576.0;
}

/* Resident, proportional and private memory of this process in GB (from /proc/self/smaps_rollup). */
static void memory_gb(double *rss, double *pss, double *private_gb) {
  *rss = *pss = *private_gb = 0;
  FILE *f = fopen("/proc/self/smaps_rollup", "r");
  if (!f) return;
  char line[256];
  while (fgets(line, sizeof line, f)) {
    long kb;
    if (sscanf(line, "Rss: %ld kB", &kb) == 1) *rss = kb / 1048576.0;
    else if (sscanf(line, "Pss: %ld kB", &kb) == 1) *pss = kb / 1048576.0;
    else if (sscanf(line, "Private_Clean: %ld kB", &kb) == 1) *private_gb += kb / 1048576.0;
    else if (sscanf(line, "Private_Dirty: %ld kB", &kb) == 1) *private_gb += kb / 1048576.0;
  }
  fclose(f);
}

/* Runs a second process that maps the same weight cache and evaluates the UNet once, while this one
 * holds its copy: what it adds privately is what each further rank on a node costs. */
static void measure_second_rank(const bench_options *o, const char *model, const char *cache, int H, int W) {
  char cmd[8192], exe[4096];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) return;
  exe[n] = 0;
  snprintf(cmd, sizeof cmd, "'%s' bench --probe-rank --model '%s' --weights-cache '%s' --batch %d --latent %dx%d --threads %d%s%s",
           exe, model, cache, o->batch, H, W, sd_get_threads(), o->common.model.config_path ? " --config " : "",
           o->common.model.config_path ? o->common.model.config_path : "");
  FILE *p = popen(cmd, "r");
  if (!p) return;
  char line[512];
  double rss = -1, pss = -1, priv = -1;
  while (fgets(line, sizeof line, p)) sscanf(line, "probe rss_gb=%lf pss_gb=%lf private_gb=%lf", &rss, &pss, &priv);
  if (pclose(p) == 0 && rss >= 0)
    printf("second rank on this node: adds %.2f GB private memory (its RSS %.2f GB counts the %s shared weights; PSS %.2f GB)\n",
           priv, rss, "page-cache", pss);
  else
    printf("second rank on this node: measurement failed\n");
}

/* ---- the statistics hook the pipeline will use: per-neuron Σx and Σx² over tokens ---- */

typedef struct {
  double *sum, *sumsq; /* [sites][max_channels] */
  int max_channels, n_sites;
} neuron_stats;

static int stats_wants(void *ctx, const char *site, sd_hook_kind kind) { return kind == SD_HOOK_FF_NEURONS; }

static void stats_observe(void *ctx, int site_index, const char *site, sd_hook_kind kind, int b, float t, float *data,
                          int64_t tokens, int channels) {
  neuron_stats *s = ctx;
  if (site_index >= s->n_sites || channels > s->max_channels) return;
  sd_neuron_stats_accumulate(s->sum + (size_t)site_index * s->max_channels, s->sumsq + (size_t)site_index * s->max_channels,
                             data, tokens, channels);
}

static int compare_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Fixed inputs of a batch UNet evaluation (deterministic, so every timed run does the same work). */
typedef struct {
  float *x, *eps, *ctx, t[64];
  int B, H, W;
} unet_inputs;

static void unet_inputs_free(unet_inputs *in) {
  free(in->x);
  free(in->eps);
  free(in->ctx);
}

static int unet_inputs_init(unet_inputs *in, const sd_unet *u, int B, int H, int W, int ctx_dim, sd_error *err) {
  size_t nx = (size_t)B * u->cfg.in_channels * H * W, nc = (size_t)B * 77 * ctx_dim;
  *in = (unet_inputs){.x = malloc(nx * 4), .eps = malloc(nx * 4), .ctx = malloc(nc * 4), .B = B, .H = H, .W = W};
  if (!in->x || !in->eps || !in->ctx) {
    unet_inputs_free(in);
    return sd_fail(err, "out of memory for the bench inputs");
  }
  for (size_t i = 0; i < nx; i++) in->x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  for (size_t i = 0; i < nc; i++) in->ctx[i] = (float)((i * 40503u) % 1000) / 1000.0f - 0.5f;
  for (int b = 0; b < B && b < 64; b++) in->t[b] = 500.0f;
  return 0;
}

static int unet_eval(sd_unet *u, unet_inputs *in, double *seconds, sd_error *err) {
  double t0 = sd_now();
  int rc = sd_unet_forward(u, in->x, in->B, in->H, in->W, in->t, in->ctx, 77, in->eps, err);
  *seconds = sd_now() - t0;
  return rc;
}

/* One warm-up, then repeat timed evaluations; median out (profile counters cover the timed runs). */
static int time_unet(sd_unet *u, int B, int H, int W, int repeat, int ctx_dim, double *median, sd_error *err) {
  unet_inputs in;
  if (unet_inputs_init(&in, u, B, H, W, ctx_dim, err)) return -1;
  double times[64], warm;
  int rc = unet_eval(u, &in, &warm, err);
  memset(u->profile_seconds, 0, sizeof u->profile_seconds);
  for (int r = 0; r < repeat && rc == 0; r++) rc = unet_eval(u, &in, &times[r], err);
  if (rc == 0) {
    qsort(times, (size_t)repeat, sizeof *times, compare_double);
    *median = times[repeat / 2];
  }
  unet_inputs_free(&in);
  return rc;
}

/* Interleaved timing: for each of repeat rounds, one sgemm calibration of dense (seconds into
 * dense_times) and then one UNet evaluation (unet_times), after a warm-up evaluation. Both arrays come
 * back sorted. */
static int time_interleaved(sd_unet *u, const gemm_set *dense, int B, int H, int W, int repeat, int ctx_dim,
                            double *dense_times, double *unet_times, double *dense_flops, sd_error *err) {
  unet_inputs in;
  if (unet_inputs_init(&in, u, B, H, W, ctx_dim, err)) return -1;
  double warm;
  int rc = unet_eval(u, &in, &warm, err);
  memset(u->profile_seconds, 0, sizeof u->profile_seconds); /* profile the timed runs only */
  for (int r = 0; r < repeat && rc == 0; r++) {
    dense_times[r] = time_gemm_set(dense, dense_flops);
    rc = unet_eval(u, &in, &unet_times[r], err);
  }
  unet_inputs_free(&in);
  if (rc == 0) {
    qsort(dense_times, (size_t)repeat, sizeof *dense_times, compare_double);
    qsort(unet_times, (size_t)repeat, sizeof *unet_times, compare_double);
  }
  return rc;
}

/* ---- a shared node's neighbours: N busy threads at nice 19 in a child process ---- */

static void *busy_loop(void *arg) {
  /* Floating-point work on a few registers: it competes for the cores, not for memory bandwidth. */
  volatile double sink = 0;
  double a = 1.0, b = 1.0000001;
  for (;;) {
    for (int i = 0; i < 1000000; i++) a = a * b + 1e-9;
    sink = a;
    if (a > 1e300) a = 1.0;
  }
  (void)sink;
  return arg;
}

/* Forks the load; returns its pid (0 when N is 0, -1 on failure). The child dies with this process
 * (PR_SET_PDEATHSIG) even if bench is killed, and is killed by stop_background_load on every return. */
static pid_t start_background_load(int n) {
  if (n <= 0) return 0;
  fflush(NULL);
  pid_t parent = getpid(), pid = fork();
  if (pid != 0) return pid;
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (getppid() != parent) _exit(0); /* the parent was gone before the line above */
  /* A session of its own: where the kernel groups scheduling by session (autogroup, as on the CI
   * machine), nice only ranks threads inside a group, and a neighbour job is another group. */
  setsid();
  if (setpriority(PRIO_PROCESS, 0, 19) != 0) _exit(1);
  for (int i = 1; i < n; i++) {
    pthread_t t;
    if (pthread_create(&t, NULL, busy_loop, NULL) != 0) _exit(1);
  }
  busy_loop(NULL);
  _exit(0);
}

static void stop_background_load(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
}

static int ensure_model(bench_options *o, char *path, size_t n) {
  const char *tmp = getenv("TMPDIR");
  char dir[3000];
  snprintf(dir, sizeof dir, "%s", o->cache_dir ? o->cache_dir : "");
  if (!o->cache_dir) snprintf(dir, sizeof dir, "%s/sdprune-bench", tmp && *tmp ? tmp : "/tmp");
  if (sd_mkdir_p(dir) != 0) {
    fprintf(stderr, "sdprune bench: %s: cannot create cache directory: %s\n", dir, strerror(errno));
    return -1;
  }
  snprintf(path, n, "%s/%s-f16-seed0.safetensors", dir, o->arch);
  struct stat st;
  if (stat(path, &st) == 0) return 0;
  sd_synth_arch arch;
  sd_error err;
  if (sd_synth_arch_get(o->arch, &arch, &err) != 0) {
    fprintf(stderr, "sdprune bench: %s\n", err.msg);
    return -1;
  }
  fprintf(stderr, "bench: synthesising %s (f16) into %s ...\n", o->arch, path);
  if (sd_synth_write(path, &arch, SD_DTYPE_F16, 0, NULL, NULL, NULL, NULL, &err) != 0) {
    fprintf(stderr, "sdprune bench: %s\n", err.msg);
    return -1;
  }
  return 0;
}

static int run_bench(bench_options *o);

int cmd_bench(int argc, char **argv) {
  bench_options o = {.arch = "sd15", .batch = 2, .repeat = 3};
  parse_latents(&o, "64x64,32x32");
  for (int i = 1; i < argc; i++) {
    int r = sd_cli_common_option(&o.common, "bench", argc, argv, &i);
    if (r < 0) return 2;
    if (r > 0) continue;
    const char *a = argv[i], *v;
    long n;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(a, "--hooks")) {
      o.hooks = 1;
      continue;
    }
    if (!strcmp(a, "--profile")) {
      o.profile = 1;
      continue;
    }
    if (!strcmp(a, "--probe-rank")) { /* internal: the second process of the rank-sharing measurement */
      o.probe = 1;
      continue;
    }
    if (!strcmp(a, "--no-weights-cache")) {
      o.no_cache = 1;
      continue;
    }
    if (!(v = sd_cli_value("bench", argc, argv, &i))) return 2;
    if (!strcmp(a, "--arch")) o.arch = v;
    else if (!strcmp(a, "--cache-dir")) o.cache_dir = v;
    else if (!strcmp(a, "--batch")) {
      if (sd_cli_int("bench", a, v, 1, 64, &n)) return 2;
      o.batch = (int)n;
    } else if (!strcmp(a, "--background-load")) {
      if (sd_cli_int("bench", a, v, 0, 4096, &n)) return 2;
      o.background_load = (int)n;
    } else if (!strcmp(a, "--repeat")) {
      if (sd_cli_int("bench", a, v, 1, 64, &n)) return 2;
      o.repeat = (int)n;
    } else if (!strcmp(a, "--latent")) {
      if (parse_latents(&o, v)) {
        fprintf(stderr, "sdprune bench: --latent must be HxW[,HxW...], got '%s'\n", v);
        return 2;
      }
    } else {
      fprintf(stderr, "sdprune bench: unknown option '%s' (see --help)\n", a);
      return 2;
    }
  }
  pid_t load = start_background_load(o.background_load);
  if (load < 0) {
    fprintf(stderr, "sdprune bench: cannot start the background load: %s\n", strerror(errno));
    return 1;
  }
  int status = run_bench(&o);
  stop_background_load(load);
  return status;
}

static int run_bench(bench_options *o_arg) {
  bench_options o = *o_arg;
  int threads = sd_cli_apply_threads(&o.common, "bench");
  char synth_path[4096], cache_dir[4200];
  if (!o.common.model.path) {
    if (ensure_model(&o, synth_path, sizeof synth_path) != 0) return 1;
    o.common.model.path = synth_path;
  }
  if (!o.no_cache && !o.common.weights_cache && !getenv("SDPRUNE_WEIGHTS_CACHE")) {
    const char *tmp = getenv("TMPDIR");
    if (o.cache_dir) snprintf(cache_dir, sizeof cache_dir, "%s", o.cache_dir);
    else snprintf(cache_dir, sizeof cache_dir, "%s/sdprune-bench", tmp && *tmp ? tmp : "/tmp");
    o.common.weights_cache = cache_dir;
  }
  sd_error err;
  sd_model *m = NULL;
  double t0 = sd_now();
  if (sd_cli_open_model(&o.common, "bench", &m) != 0) return 1;
  sd_unet unet;
  neuron_stats stats = {0};
  sd_unet_hooks hooks = {.wants = stats_wants, .observe = stats_observe, .ctx = &stats};
  if (sd_parts_unet(m, NULL, &unet, &err) != 0) {
    fprintf(stderr, "sdprune bench: %s\n", err.msg);
    sd_model_close(m);
    return 1;
  }
  sd_model_release_source_pages(m);
  if (o.probe) { /* one evaluation, then report memory */
    double median, rss, pss, priv;
    int rc = time_unet(&unet, o.batch, o.lat_h[0], o.lat_w[0], 1, unet.cfg.context_dim, &median, &err);
    memory_gb(&rss, &pss, &priv);
    if (rc == 0) printf("probe rss_gb=%.3f pss_gb=%.3f private_gb=%.3f\n", rss, pss, priv);
    sd_unet_free(&unet);
    sd_model_close(m);
    return rc ? 1 : 0;
  }
  char desc[512];
  sd_unet_config_describe(&unet.cfg, desc, sizeof desc);
  printf("bench: %s, %d threads, model %s loaded in %.1f s\n%s\n", SDPRUNE_VERSION, threads, m->path, sd_now() - t0, desc);
  double loadavg[1] = {-1};
  getloadavg(loadavg, 1);
  printf("node: %ld cores online, load average %.2f at the start; OpenMP wait: %s", sysconf(_SC_NPROCESSORS_ONLN),
         loadavg[0], sd_omp_wait_policy_describe());
  if (o.background_load) printf("; background load: %d busy threads at nice 19", o.background_load);
  printf("\n");
  /* The columns up to peakRSS keep their places (scripts read them); the minima follow. */
  printf("%-10s %5s %9s %9s %10s %9s %9s %9s %9s %9s %9s\n", "latent", "batch", "seconds", "GFLOP", "GFLOP/s", "sgemm",
         "fraction", "peakRSS", "min_s", "sgemm_max", "frac_min");
  double first_fraction = 0, first_fraction_min = 0;
  int status = 0;
  for (int s = 0; s < o.n_shapes; s++) {
    int H = o.lat_h[s], W = o.lat_w[s];
    gemm_set dense = {0}, attn = {0};
    for (int i = 0; i < unet.n_input_blocks; i++) collect_block(&unet, &unet.input_blocks[i], o.batch, H, W, &dense, &attn);
    collect_block(&unet, &unet.middle, o.batch, H, W, &dense, &attn);
    for (int i = 0; i < unet.n_output_blocks; i++) collect_block(&unet, &unet.output_blocks[i], o.batch, H, W, &dense, &attn);
    double dense_flops = 0, attn_flops, dense_times[64], unet_times[64];
    double attn_time = time_gemm_set(&attn, &attn_flops);
    unet.profile = o.profile;
    memset(unet.profile_seconds, 0, sizeof unet.profile_seconds);
    if (time_interleaved(&unet, &dense, o.batch, H, W, o.repeat, unet.cfg.context_dim, dense_times, unet_times,
                         &dense_flops, &err) != 0) {
      fprintf(stderr, "sdprune bench: %s\n", err.msg);
      status = 1;
      break;
    }
    /* Upper medians for an even --repeat, as before; the minima are the least disturbed runs. */
    double dense_time = dense_times[o.repeat / 2], dense_min = dense_times[0];
    double median = unet_times[o.repeat / 2], unet_min = unet_times[0];
    double sgemm_rate = dense_flops / dense_time, sgemm_max = dense_flops / dense_min;
    double flops = sd_unet_flops(&unet, o.batch, H, W, 77);
    double rate = flops / median, fraction = rate / sgemm_rate, fraction_min = (flops / unet_min) / sgemm_max;
    if (s == 0) {
      first_fraction = fraction;
      first_fraction_min = fraction_min;
    }
    char shape[32];
    snprintf(shape, sizeof shape, "%dx%d", H, W);
    printf("%-10s %5d %9.3f %9.1f %10.1f %9.1f %9.2f %8.2fG %9.3f %9.1f %9.2f\n", shape, o.batch, median, flops / 1e9,
           rate / 1e9, sgemm_rate / 1e9, fraction, peak_rss_gb(), unet_min, sgemm_max / 1e9, fraction_min);
    printf("           (%d interleaved rounds: sgemm %.1f-%.1f GFLOP/s, UNet %.3f-%.3f s)\n", o.repeat,
           dense_flops / dense_times[o.repeat - 1] / 1e9, sgemm_max / 1e9, unet_min, unet_times[o.repeat - 1]);
    printf("           (sgemm on attention shapes: %.1f GFLOP/s, %.0f%% of the dense rate; at sgemm speed the whole\n"
           "            evaluation would take %.3f s)\n",
           attn_flops / attn_time / 1e9, 100.0 * (attn_flops / attn_time) / sgemm_rate, dense_time + attn_time);
    if (o.profile) {
      double accounted = 0;
      printf("           profile per evaluation:");
      for (int k = 0; k < SD_UNET_PROFILE_KINDS; k++) {
        double sec = unet.profile_seconds[k] / o.repeat;
        accounted += sec;
        if (sec > 0) printf(" %s %.3f", sd_unet_profile_names[k], sec);
      }
      printf(" (mean of the timed runs; rest %.3f)\n", median - accounted);
    }
    if (o.hooks) {
      sd_unet hooked;
      stats.max_channels = 0;
      if (sd_parts_unet(m, &hooks, &hooked, &err) != 0) {
        fprintf(stderr, "sdprune bench: %s\n", err.msg);
        status = 1;
        break;
      }
      stats.n_sites = hooked.n_tblocks;
      stats.max_channels = 16 * unet.cfg.model_channels * unet.cfg.channel_mult[unet.cfg.n_levels - 1];
      stats.sum = calloc((size_t)stats.n_sites * stats.max_channels, sizeof(double));
      stats.sumsq = calloc((size_t)stats.n_sites * stats.max_channels, sizeof(double));
      /* Timed under the same interleaving as the plain runs: a calibration before each evaluation
       * evicts the caches, and a back-to-back series would look faster for small models. */
      double hooked_times[64], hooked_dense[64], hooked_flops;
      int rc = time_interleaved(&hooked, &dense, o.batch, H, W, o.repeat, unet.cfg.context_dim, hooked_dense,
                                hooked_times, &hooked_flops, &err);
      double hooked_median = hooked_times[o.repeat / 2], hooked_min = hooked_times[0];
      free(stats.sum);
      free(stats.sumsq);
      sd_unet_free(&hooked);
      if (rc != 0) {
        fprintf(stderr, "sdprune bench: %s\n", err.msg);
        status = 1;
        break;
      }
      printf("%-10s %5d %9.3f  with FFN statistics hooks: %+.1f%% time (minima: %.3f s, %+.1f%%)\n", shape, o.batch,
             hooked_median, 100.0 * (hooked_median / median - 1.0), hooked_min, 100.0 * (hooked_min / unet_min - 1.0));
    }
  }
  if (status == 0 && o.common.weights_cache && strcmp(m->files[m->n_files - 1]->format, "safetensors") == 0 &&
      strstr(m->files[m->n_files - 1]->path, ".f32.safetensors"))
    measure_second_rank(&o, o.common.model.path, o.common.weights_cache, o.lat_h[0], o.lat_w[0]);
  sd_unet_free(&unet);
  sd_model_close(m);
  if (status == 0) printf("sgemm_fraction_min=%.2f\nsgemm_fraction=%.2f\n", first_fraction_min, first_fraction);
  return status;
}
