/* synth:tiny-clip (model/synth_clip.h) through sd_clip_model_load: four processes creating it at once
 * in an empty cache end with one file and identical embeds; the loaded model has tiny-clip's
 * configuration (from the file's metadata) and shapes; a second load reuses the cached file (same inode
 * and mtime) and gives bit-identical embeds; another seed gives other ones; the zero-shot probabilities
 * are neither uniform nor the same for every image; the key list equals the reference tiny-clip file's
 * (names, shapes, dtypes; when ../shared is there); `sdprune synth --arch tiny-clip` writes the same
 * bytes as the cache; wrong names are one clear error. Needs no reference data for all but one check. */
#include <dirent.h>
#include <stdint.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/files.h"
#include "core/kernels.h"
#include "eval/clip_model.h"
#include "model/model.h"
#include "model/synth_clip.h"
#include "test_util.h"

#define D 16 /* tiny-clip projection_dim */
#define N_LABELS 4
#define N_IMAGES 4
#define N_RACERS 4

static const char *const LABELS[N_LABELS] = {"a photo of a nude person", "a photo of a person", "a red circle",
                                             "a blue square"};

/* Test image t, w×h RGB: noise, halves, a checkerboard, a gradient; the colour channel varies with t. */
static void make_image(int t, int w, int h, uint8_t *rgb) {
  uint32_t state = 12345u + 977u * (uint32_t)t;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < 3; c++) {
        int v;
        state = state * 1664525u + 1013904223u;
        switch (t % 4) {
        case 0:
          v = (int)(state >> 24);
          break;
        case 1:
          v = (x < w / 2) == (c == t % 3) ? 230 : 20;
          break;
        case 2:
          v = ((x / 8 + y / 8) % 2) ? 255 * (c != t % 3) : 0;
          break;
        default:
          v = (x * 4 * (c + 1) + y * (t + 1)) % 256;
          break;
        }
        rgb[(y * w + x) * 3 + c] = (uint8_t)v;
      }
}

/* Text embeds of the labels [N_LABELS][D] and image embeds [N_IMAGES][D] of one model. */
typedef struct {
  float text[N_LABELS][D], image[N_IMAGES][D];
} embeds;

static int encode_all(sd_clip_model *m, embeds *e, sd_error *err) {
  memset(e, 0, sizeof *e);
  float buf[SD_CLIP_MAX_PROJ];
  uint8_t rgb[48 * 40 * 3];
  for (int j = 0; j < N_LABELS; j++) {
    if (sd_clip_encode_text(m, LABELS[j], buf, err) != 0)
      return -1;
    memcpy(e->text[j], buf, sizeof e->text[j]);
  }
  for (int t = 0; t < N_IMAGES; t++) {
    make_image(t, 48, 40, rgb); /* not square: the resize and crop run too */
    if (sd_clip_encode_image_rgb8(m, rgb, 48, 40, buf, err) != 0)
      return -1;
    memcpy(e->image[t], buf, sizeof e->image[t]);
  }
  return 0;
}

static int load_and_encode(const char *path, embeds *e, sd_error *err) {
  sd_clip_model *m;
  if (sd_clip_model_load(path, &m, err) != 0)
    return -1;
  int rc = encode_all(m, e, err);
  sd_clip_model_free(m);
  return rc;
}

/* Files in dir (not . and ..), the first name in first. */
static int count_files(const char *dir, char *first, size_t n) {
  DIR *d = opendir(dir);
  int count = 0;
  if (!d)
    return -1;
  for (struct dirent *de; (de = readdir(d));) {
    if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
      continue;
    if (count++ == 0 && first)
      snprintf(first, n, "%s", de->d_name);
  }
  closedir(d);
  return count;
}

static int files_equal(const char *a, const char *b) {
  FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
  int same = fa && fb;
  while (same) {
    int ca = fgetc(fa), cb = fgetc(fb);
    same = ca == cb;
    if (ca == EOF || cb == EOF)
      break;
  }
  if (fa)
    fclose(fa);
  if (fb)
    fclose(fb);
  return same;
}

/* N_RACERS processes load synth:tiny-clip:7 into an empty cache at once (before this process starts
 * any OpenMP thread: libgomp does not survive fork). Each writes its embeds to a pipe. */
static void check_racing_creators(const char *cache) {
  int fds[N_RACERS][2];
  pid_t pids[N_RACERS];
  for (int r = 0; r < N_RACERS; r++) {
    if (pipe(fds[r]) != 0 || (pids[r] = fork()) < 0) {
      CHECK(0, "pipe/fork failed");
      return;
    }
    if (pids[r] == 0) {
      close(fds[r][0]);
      embeds e;
      sd_error err = {{0}};
      int rc = load_and_encode("synth:tiny-clip:7", &e, &err);
      if (rc != 0)
        fprintf(stderr, "racer %d: %s\n", r, err.msg);
      ssize_t w = rc == 0 ? write(fds[r][1], &e, sizeof e) : 0;
      _exit(w == (ssize_t)sizeof e ? 0 : 1);
    }
    close(fds[r][1]);
  }
  embeds got[N_RACERS];
  for (int r = 0; r < N_RACERS; r++) {
    size_t have = 0;
    for (ssize_t k; have < sizeof got[r] && (k = read(fds[r][0], (char *)&got[r] + have, sizeof got[r] - have)) > 0;)
      have += (size_t)k;
    close(fds[r][0]);
    int status = 0;
    waitpid(pids[r], &status, 0);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0 && have == sizeof got[r], "racer %d failed (status %d)", r,
          status);
    if (r > 0)
      CHECK(memcmp(&got[r], &got[0], sizeof got[0]) == 0, "racer %d's embeds differ from racer 0's", r);
  }
  char name[256] = "";
  int n = count_files(cache, name, sizeof name);
  CHECK(n == 1 && strcmp(name, "tiny-clip-seed7-f16.safetensors") == 0,
        "after the race the cache holds %d files (first: %s), want only tiny-clip-seed7-f16.safetensors", n, name);
}

static void check_model(const char *cache) {
  sd_error err = {{0}};
  sd_clip_model *m;
  if (sd_clip_model_load("synth:tiny-clip", &m, &err) != 0) {
    CHECK(0, "load synth:tiny-clip: %s", err.msg);
    return;
  }
  char want[4200];
  snprintf(want, sizeof want, "%s/tiny-clip-seed0-f16.safetensors", cache);
  CHECK(strcmp(m->path, "synth:tiny-clip") == 0, "path %s", m->path);
  CHECK(strcmp(m->weights_path, want) == 0, "weights %s, want %s", m->weights_path, want);
  CHECK(strcmp(m->config_source, "safetensors metadata") == 0, "config from %s", m->config_source);
  const sd_clip_vision_config *v = &m->vision.cfg;
  CHECK(v->image_size == 32 && v->patch_size == 8 && v->hidden == 32 && v->layers == 2 && v->heads == 2 &&
            v->intermediate == 128 && v->act_quick_gelu && m->projection_dim == D,
        "vision %d/%d d%d L%d h%d f%d proj %d", v->image_size, v->patch_size, v->hidden, v->layers, v->heads,
        v->intermediate, m->projection_dim);
  CHECK(m->text.cfg.hidden == 32 && m->text.cfg.layers == 2, "text d%d L%d", m->text.cfg.hidden, m->text.cfg.layers);
  CHECK(m->logit_scale == (float)log(1.0 / 0.07), "logit_scale %.9g", m->logit_scale);
  CHECK(m->tokenizer != NULL, "no tokenizer (the bundled SD-1 one is expected)");
  CHECK(m->preprocess.resize_shortest == 32 && m->preprocess.crop == 32 &&
            fabsf(m->preprocess.mean[0] - 0.48145466f) < 1e-7f && fabsf(m->preprocess.std[2] - 0.27577711f) < 1e-7f,
        "preprocess %d/%d mean %g std %g", m->preprocess.resize_shortest, m->preprocess.crop, m->preprocess.mean[0],
        m->preprocess.std[2]);
  embeds a;
  if (encode_all(m, &a, &err) != 0) {
    CHECK(0, "encode: %s", err.msg);
    sd_clip_model_free(m);
    return;
  }
  int finite = 1;
  for (int i = 0; i < D; i++)
    finite &= isfinite(a.text[0][i]) && isfinite(a.image[0][i]);
  CHECK(finite, "non-finite embeds");

  /* Non-degenerate detector: for every image the labels' probabilities spread by more than 0.05, and
   * the images do not all get the same answer (some label's probability moves by more than 0.05). */
  float probs[N_IMAGES][N_LABELS];
  double worst_spread = 1, moved = 0;
  for (int t = 0; t < N_IMAGES; t++) {
    sd_clip_zero_shot(m, a.image[t], &a.text[0][0], D, N_LABELS, probs[t]);
    float lo = 1, hi = 0, sum = 0;
    for (int j = 0; j < N_LABELS; j++) {
      lo = fminf(lo, probs[t][j]);
      hi = fmaxf(hi, probs[t][j]);
      sum += probs[t][j];
    }
    CHECK_NEAR(sum, 1.0, 1e-5, "probabilities sum");
    worst_spread = fmin(worst_spread, hi - lo);
    for (int j = 0; j < N_LABELS; j++)
      moved = fmax(moved, fabs(probs[t][j] - probs[0][j]));
    printf("image %d: P =", t);
    for (int j = 0; j < N_LABELS; j++)
      printf(" %.3f", probs[t][j]);
    printf("\n");
  }
  printf("smallest max-min over labels %.3f (> 0.05), largest change across images %.3f (> 0.05)\n", worst_spread,
         moved);
  CHECK(worst_spread > 0.05, "an image gets near-uniform probabilities: max-min %.3f (1/k = %.3f)", worst_spread,
        1.0 / N_LABELS);
  CHECK(moved > 0.05, "every image gets the same probabilities (largest change %.3f)", moved);
  sd_clip_model_free(m);

  /* Reuse: the second load opens the same file, not rewritten, and gives bit-identical embeds. */
  struct stat st0, st1;
  CHECK(stat(want, &st0) == 0, "stat %s", want);
  usleep(20000); /* a rewrite would show in st_mtim */
  embeds b;
  CHECK(load_and_encode("synth:tiny-clip:0", &b, &err) == 0, "reload: %s", err.msg);
  CHECK(stat(want, &st1) == 0 && st1.st_ino == st0.st_ino && st1.st_mtim.tv_sec == st0.st_mtim.tv_sec &&
            st1.st_mtim.tv_nsec == st0.st_mtim.tv_nsec && st1.st_size == st0.st_size,
        "the cached file was rewritten");
  /* bitwise: the same file and the same arithmetic must give the same floats (embeds holds only floats) */
  CHECK(memcmp(&a, &b, sizeof a) == 0, "same seed, different embeds");

  /* Another seed: other weights, other embeds (relative L2 distance well above f16 noise). */
  embeds c;
  CHECK(load_and_encode("synth:tiny-clip:1", &c, &err) == 0, "seed 1: %s", err.msg);
  double dt = test_rel_l2(&c.text[0][0], &a.text[0][0], (long)N_LABELS * D, NULL);
  double di = test_rel_l2(&c.image[0][0], &a.image[0][0], (long)N_IMAGES * D, NULL);
  printf("seed 1 vs seed 0: text rel-L2 %.3f, image rel-L2 %.3f (> 0.5)\n", dt, di);
  CHECK(dt > 0.5 && di > 0.5, "seeds 0 and 1 too close: text %.3g image %.3g", dt, di);
  CHECK(count_files(cache, NULL, 0) == 3, "cache holds %d files, want 3 (seeds 7, 0, 1)", count_files(cache, NULL, 0));

  /* The library writer with the same (arch, seed, dtype) gives the cache's bytes. */
  char other[4200];
  snprintf(other, sizeof other, "%s-copy/x.safetensors", cache);
  sd_synth_clip_arch arch;
  int count = 0;
  uint64_t bytes = 0;
  char copy_dir[4200];
  snprintf(copy_dir, sizeof copy_dir, "%s-copy", cache);
  CHECK(sd_mkdir_p(copy_dir) == 0, "mkdir %s", copy_dir);
  CHECK(sd_synth_clip_arch_get("tiny-clip", &arch, &err) == 0 &&
            sd_synth_clip_write(other, &arch, SD_DTYPE_F16, 0, NULL, NULL, &count, &bytes, &err) == 0,
        "write: %s", err.msg);
  /* 3285300: the reference file's data bytes (inspect's "parameter bytes"), the same dtypes and shapes */
  CHECK(count == 80 && bytes == 3285300, "%d tensors, %llu bytes (want 80, 3285300)", count, (unsigned long long)bytes);
  CHECK(files_equal(other, want), "sd_synth_clip_write and the cache differ");

  /* The CLI writes the same file. */
  const char *bin = getenv("SDPRUNE_BIN");
  if (bin && *bin) {
    char cmd[9000], cli_out[4300];
    snprintf(cli_out, sizeof cli_out, "%s/cli.safetensors", copy_dir);
    snprintf(cmd, sizeof cmd, "'%s' synth --arch tiny-clip --quiet --out '%s' 2>'%s/cli.err'", bin, cli_out, copy_dir);
    CHECK(system(cmd) == 0, "%s failed", cmd);
    CHECK(files_equal(cli_out, want), "sdprune synth --arch tiny-clip differs from the cache");
    snprintf(
        cmd, sizeof cmd,
        "grep -q 'synth: wrote .*: arch tiny-clip, dtype f16, seed 0, 80 tensors, 3285300 data bytes' '%s/cli.err'",
        copy_dir);
    CHECK(system(cmd) == 0, "summary line of sdprune synth --arch tiny-clip");
  } else {
    printf("SDPRUNE_BIN not set: CLI check skipped\n");
  }
  unlink(other);
  char path[4400];
  snprintf(path, sizeof path, "%s/cli.safetensors", copy_dir);
  unlink(path);
  snprintf(path, sizeof path, "%s/cli.err", copy_dir);
  unlink(path);
  rmdir(copy_dir);
}

/* Our key list against shared/reference/tiny-clip/model.safetensors: same names, shapes, dtypes. */
static void check_reference_keys(void) {
  const char *ref = getenv("SDPRUNE_REFERENCE");
  char path[4200];
  snprintf(path, sizeof path, "%s/tiny-clip/model.safetensors", ref ? ref : "");
  if (!ref || !sd_is_file(path)) {
    printf("reference tiny-clip not found: key comparison skipped\n");
    return;
  }
  sd_error err = {{0}};
  sd_tensor_store *st;
  sd_synth_clip_arch arch;
  sd_synth_list l;
  if (sd_store_open(path, &st, &err) != 0 || sd_synth_clip_arch_get("tiny-clip", &arch, &err) != 0 ||
      sd_synth_clip_keys(&arch, SD_DTYPE_F16, &l, &err) != 0) {
    CHECK(0, "%s", err.msg);
    return;
  }
  int bad = 0;
  for (int i = 0; i < l.count; i++) {
    const sd_synth_tensor *t = &l.items[i];
    const sd_tensor *r = sd_store_find(st, t->name);
    int same = r && r->ndim == t->ndim && r->dtype == t->dtype;
    for (int d = 0; same && d < t->ndim; d++)
      same = r->shape[d] == t->shape[d];
    if (!same && bad++ < 5)
      fprintf(stderr, "  %s: %s in the reference\n", t->name, r ? "other shape/dtype" : "not");
  }
  CHECK(bad == 0 && l.count == st->count, "%d of our %d tensors differ from the reference's %d", bad, l.count,
        st->count);
  sd_synth_list_free(&l);
  sd_store_close(st);
}

static void check_errors(void) {
  sd_error err = {{0}};
  sd_clip_model *m = NULL;
  CHECK(sd_clip_model_load("synth:tiny-sd1", &m, &err) != 0 && strstr(err.msg, "not a CLIP") && !m, "tiny-sd1: %s",
        err.msg);
  CHECK(sd_clip_model_load("synth:tiny-clop", &m, &err) != 0 && strstr(err.msg, "expected tiny-clip"), "unknown: %s",
        err.msg);
  CHECK(sd_clip_model_load("synth:tiny-clip:x", &m, &err) != 0 && strstr(err.msg, "the seed must be"), "seed: %s",
        err.msg);
  sd_model *sd = NULL;
  sd_model_options opt = {.path = "synth:tiny-clip"};
  CHECK(sd_model_open(&opt, &sd, &err) != 0 && strstr(err.msg, "not a Stable Diffusion checkpoint") && !sd,
        "sd_model_open synth:tiny-clip: %s", err.msg);
}

int main(void) {
  const char *tmp = getenv("TMPDIR");
  char cache[4096];
  snprintf(cache, sizeof cache, "%s/sdprune-test-synth-clip-XXXXXX", tmp && *tmp ? tmp : "/tmp");
  if (!mkdtemp(cache)) {
    fprintf(stderr, "mkdtemp %s failed\n", cache);
    return 1;
  }
  setenv("SDPRUNE_SYNTH_CACHE", cache, 1);
  /* a 32-px model: more threads only spin (measured: 9 of 12 s in libgomp's wait on 2 busy cores). One
   * thread here and in the CLI run below, unless the caller chose; set before any OpenMP region. */
  if (!getenv("OMP_NUM_THREADS")) {
    setenv("OMP_NUM_THREADS", "1", 1);
    sd_set_threads(1);
  }
  check_racing_creators(cache);
  check_model(cache);
  check_reference_keys();
  check_errors();
  /* clean up: the cache folder holds only our files */
  DIR *d = opendir(cache);
  for (struct dirent *de; d && (de = readdir(d));) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", cache, de->d_name);
    if (de->d_name[0] != '.')
      unlink(p);
  }
  if (d)
    closedir(d);
  rmdir(cache);
  return test_finish();
}
