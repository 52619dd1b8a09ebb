/* Shared CLI options and helpers (see cli_common.h). */
#include "cli/cli_common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/kernels.h"
#include "model/weight_cache.h"

const char *sd_cli_value(const char *cmd, int argc, char **argv, int *i) {
  if (*i + 1 >= argc) {
    fprintf(stderr, "sdprune %s: %s needs a value\n", cmd, argv[*i]);
    return NULL;
  }
  return argv[++*i];
}

int sd_cli_int(const char *cmd, const char *opt, const char *value, long min, long max, long *out) {
  char *end;
  errno = 0;
  long v = strtol(value, &end, 10);
  if (errno || *end || end == value || v < min || v > max) {
    fprintf(stderr, "sdprune %s: %s must be an integer in [%ld, %ld], got '%s'\n", cmd, opt, min, max, value);
    return -1;
  }
  *out = v;
  return 0;
}

int sd_cli_parse_size(const char *s, int *w, int *h) {
  char *end;
  long a = strtol(s, &end, 10);
  if (*end != 'x' && *end != 'X') return -1;
  long b = strtol(end + 1, &end, 10);
  if (*end || a <= 0 || b <= 0 || a > 16384 || b > 16384) return -1;
  *w = (int)a;
  *h = (int)b;
  return 0;
}

int sd_cli_parse_seed(const char *s, uint64_t *out) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || *end || *s == '-' || !*s) return -1;
  *out = v;
  return 0;
}

int sd_cli_parse_seed_list(const char *v, uint64_t *out, int max, int *n) {
  const char *p = v;
  *n = 0;
  while (*p) {
    char *end;
    errno = 0;
    if (*p == '-') return -1;
    unsigned long long a = strtoull(p, &end, 10), b = a;
    if (errno || end == p) return -1;
    if (*end == '-') {
      p = end + 1;
      if (*p == '-') return -1;
      b = strtoull(p, &end, 10);
      if (errno || end == p || b < a) return -1;
    }
    for (unsigned long long s = a; s <= b; s++) {
      if (*n >= max) return -1;
      out[(*n)++] = s;
      if (s == b) break;
    }
    if (*end == ',') end++;
    else if (*end) return -1;
    p = end;
  }
  return *n > 0 ? 0 : -1;
}

int sd_cli_parse_nonneg(const char *s, double *out) {
  char *end;
  double d = strtod(s, &end);
  if (*end || !*s || d != d || d < 0) return -1;
  *out = d;
  return 0;
}

int sd_cli_common_option(sd_cli_common *c, const char *cmd, int argc, char **argv, int *i) {
  static const char *const names[] = {"--model",     "--unet",    "--text-encoder", "--config",
                                      "--tokenizer", "--threads", "--weights-cache", "--prediction"};
  int which = -1;
  for (int k = 0; k < 8; k++)
    if (strcmp(argv[*i], names[k]) == 0) which = k;
  if (which < 0) return 0;
  const char *v = sd_cli_value(cmd, argc, argv, i);
  if (!v) return -1;
  switch (which) {
  case 0: c->model.path = v; break;
  case 1: c->model.unet_path = v; break;
  case 2: c->model.text_encoder_path = v; break;
  case 3: c->model.config_path = v; break;
  case 4: c->model.tokenizer_dir = v; break;
  case 5: {
    long n;
    if (sd_cli_int(cmd, "--threads", v, 1, 4096, &n) != 0) return -1;
    c->threads = (int)n;
  } break;
  case 6: c->weights_cache = v; break;
  case 7: c->model.prediction = v; break;
  }
  return 1;
}

void sd_cli_common_help(FILE *out, int with_model) {
  if (with_model)
    fprintf(out, "model options:\n"
                 "  --model PATH          checkpoint file (.safetensors/.ckpt) or diffusers folder\n"
                 "  --unet FILE           replace the UNet (safetensors or .pt/.ckpt, diffusers or original names)\n"
                 "  --text-encoder FILE   replace the text encoder likewise\n"
                 "  --config FILE         architecture override: JSON (ldm-style or diffusers UNet config), a diffusers\n"
                 "                        folder, or an ldm inference YAML (v1-inference.yaml, v2-inference-v.yaml)\n"
                 "  --tokenizer DIR       folder with vocab.json and merges.txt\n"
                 "  --prediction eps|v    what the UNet predicts (default: scheduler config or checkpoint\n"
                 "                        metadata, else eps; SD 2.x 768-v models predict v)\n"
                 "  --weights-cache DIR   keep a float32 copy of the weights there and map it read-only, so\n"
                 "                        ranks on a node share one copy (default: $SDPRUNE_WEIGHTS_CACHE)\n");
  fprintf(out, "  --threads N           threads for BLAS and the engine (default: SLURM_CPUS_PER_TASK,\n"
               "                        OMP_NUM_THREADS, else all cores)\n");
}

static int env_threads(const char *name) {
  const char *v = getenv(name);
  if (!v || !*v) return 0;
  char *end;
  long n = strtol(v, &end, 10);
  return (*end || n < 1 || n > 4096) ? 0 : (int)n;
}

int sd_cli_apply_threads(const sd_cli_common *c, const char *cmd) {
  int cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
  if (cores < 1) cores = 1;
  int n = c->threads;
  if (!n) n = env_threads("SLURM_CPUS_PER_TASK");
  if (!n) n = env_threads("OMP_NUM_THREADS");
  if (!n) n = cores;
  if (n > cores) {
    fprintf(stderr, "sdprune %s: warning: %d threads requested but %d cores online; using %d\n", cmd, n, cores, cores);
    n = cores;
  }
  sd_set_threads(n);
  return n;
}

double sd_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int sd_cli_open_model(sd_cli_common *c, const char *cmd, sd_model **out) {
  sd_error err;
  if (sd_model_open(&c->model, out, &err) != 0) {
    fprintf(stderr, "sdprune %s: %s\n", cmd, err.msg);
    return 1;
  }
  const char *dir = c->weights_cache ? c->weights_cache : getenv("SDPRUNE_WEIGHTS_CACHE");
  if (dir && *dir) {
    char note[1200] = "";
    if (sd_weight_cache_apply(*out, dir, 1800, note, sizeof note) != 0)
      fprintf(stderr, "sdprune %s: warning: %s\n", cmd, note);
  }
  return 0;
}
