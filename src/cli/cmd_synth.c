/* sdprune synth: writes a randomly initialised checkpoint with the real names and shapes of an SD
 * architecture (model/synth.h does the work), or of a CLIPModel (tiny-clip, model/synth_clip.h). For
 * tests, demos and benchmarks without downloading weights; the images such a model makes are noise. */
#include <errno.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "model/synth.h"
#include "model/synth_clip.h"

static void help(FILE *out) {
  fprintf(out,
          "usage: sdprune synth --arch ARCH --out FILE.safetensors [--dtype f16|f32] [--seed N] [--quiet]\n\n"
          "Writes a randomly initialised Stable Diffusion checkpoint in the original single-file naming\n"
          "(model.diffusion_model.*, cond_stage_model.*, first_stage_model.*, betas, alphas_cumprod,\n"
          "alphas_cumprod_prev) with exactly the tensor names and shapes of ARCH, and a __metadata__\n"
          "\"config\" describing it. Weights ~ N(0, 1/fan_in), norms 1/0, biases N(0, 0.01^2), from --seed.\n\n"
          "  --arch ARCH     %s|%s\n"
          "                  tiny-sd1: the shapes of the shared tiny reference model (a few MB)\n"
          "                  sd15: Stable Diffusion 1.5 (UNet 320, CLIP ViT-L text, KL VAE; ~2 GB in f16)\n"
          "                  sd21: Stable Diffusion 2.1 (linear projections, context 1024, OpenCLIP ViT-H text)\n"
          "                  tiny-clip: a CLIP image-text model (HF CLIPModel names: vision_model.*, text_model.*,\n"
          "                  visual_projection, text_projection, logit_scale) with the shapes of the shared\n"
          "                  tiny-clip reference (32 px, 3.3 MB); a random but not uniform zero-shot detector.\n"
          "                  The same file as the CLIP path synth:tiny-clip[:SEED] (f16).\n"
          "  --dtype D       f16 (default) or f32 weights; schedule buffers are always F32\n"
          "  --seed N        generator seed, 0..2^64-1 (default 0); the same seed gives the same bytes\n"
          "  --out FILE      output path; written to a temporary name and renamed when complete\n"
          "  --quiet         no progress on stderr (the summary line is still printed)\n",
          sd_synth_arch_names(), sd_synth_clip_arch_names());
}

/* The writer's temporary file, removed if the run is interrupted. */
static char tmp_path[4200];

static void on_signal(int sig) {
  if (tmp_path[0]) unlink(tmp_path);
  signal(sig, SIG_DFL);
  raise(sig);
}

typedef struct {
  int tty, quiet;
} progress_state;

static void progress(void *ctx, int index, int count, const char *name) {
  progress_state *p = ctx;
  if (p->quiet) return;
  if (p->tty) {
    fprintf(stderr, "\rsynth: tensor %d/%d %-100.100s", index + 1, count, name);
    if (index + 1 == count) fputc('\n', stderr);
  } else if ((index + 1) % 100 == 0 || index + 1 == count) {
    fprintf(stderr, "synth: tensor %d/%d %s\n", index + 1, count, name);
  }
}

/* The output's directory must exist and be writable; says why not in one line. */
static int check_output(const char *out) {
  char copy[4096];
  snprintf(copy, sizeof copy, "%s", out);
  const char *dir = dirname(copy);
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    fprintf(stderr, "sdprune synth: %s: output directory %s does not exist\n", out, dir);
    return -1;
  }
  if (access(dir, W_OK) != 0) {
    fprintf(stderr, "sdprune synth: %s: output directory %s is not writable: %s\n", out, dir, strerror(errno));
    return -1;
  }
  if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) {
    fprintf(stderr, "sdprune synth: %s is a directory; --out names the file to write\n", out);
    return -1;
  }
  return 0;
}

int cmd_synth(int argc, char **argv) {
  const char *arch_name = NULL, *out = NULL, *dtype_name = "f16";
  unsigned long long seed = 0;
  progress_state ps = {.tty = isatty(2)};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v;
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      help(stdout);
      return 0;
    } else if (strcmp(a, "--quiet") == 0) {
      ps.quiet = 1;
    } else if (strcmp(a, "--arch") == 0 || strcmp(a, "--out") == 0 || strcmp(a, "--dtype") == 0 ||
               strcmp(a, "--seed") == 0) {
      if (!(v = sd_cli_value("synth", argc, argv, &i))) return 2;
      if (strcmp(a, "--arch") == 0) arch_name = v;
      else if (strcmp(a, "--out") == 0) out = v;
      else if (strcmp(a, "--dtype") == 0) dtype_name = v;
      else {
        char *end;
        errno = 0;
        seed = strtoull(v, &end, 10);
        if (errno || *end || end == v || v[0] == '-') {
          fprintf(stderr, "sdprune synth: --seed must be an integer in [0, 2^64-1], got '%s'\n", v);
          return 2;
        }
      }
    } else {
      fprintf(stderr, "sdprune synth: unknown option '%s' (see sdprune synth --help)\n", a);
      return 2;
    }
  }
  if (!arch_name || !out) {
    fprintf(stderr, "sdprune synth: %s is required (see sdprune synth --help)\n", !arch_name ? "--arch" : "--out");
    return 2;
  }
  sd_error err = {{0}};
  sd_synth_arch arch;
  sd_synth_clip_arch clip_arch;
  const int is_clip = sd_synth_clip_arch_get(arch_name, &clip_arch, &err) == 0;
  if (!is_clip && sd_synth_arch_get(arch_name, &arch, &err) != 0) {
    fprintf(stderr, "sdprune synth: unknown architecture '%s' (expected %s|%s)\n", arch_name, sd_synth_arch_names(),
            sd_synth_clip_arch_names());
    return 2;
  }
  sd_dtype dtype;
  if (strcmp(dtype_name, "f16") == 0) dtype = SD_DTYPE_F16;
  else if (strcmp(dtype_name, "f32") == 0) dtype = SD_DTYPE_F32;
  else {
    fprintf(stderr, "sdprune synth: unknown --dtype '%s' (expected f16 or f32)\n", dtype_name);
    return 2;
  }
  if (check_output(out) != 0) return 1;
  /* same name as sd_safetensors_write's temporary file */
  snprintf(tmp_path, sizeof tmp_path, "%s.tmp.%ld", out, (long)getpid());
  signal(SIGINT, on_signal);
  signal(SIGTERM, on_signal);
  double t0 = sd_now();
  int count = 0;
  uint64_t bytes = 0;
  int rc = is_clip ? sd_synth_clip_write(out, &clip_arch, dtype, (uint64_t)seed, progress, &ps, &count, &bytes, &err)
                   : sd_synth_write(out, &arch, dtype, (uint64_t)seed, progress, &ps, &count, &bytes, &err);
  signal(SIGINT, SIG_DFL);
  signal(SIGTERM, SIG_DFL);
  tmp_path[0] = 0;
  if (rc != 0) {
    if (ps.tty && !ps.quiet) fputc('\n', stderr);
    fprintf(stderr, "sdprune synth: %s\n", err.msg);
    return 1;
  }
  fprintf(stderr, "synth: wrote %s: arch %s, dtype %s, seed %llu, %d tensors, %llu data bytes, %.1f s\n", out,
          is_clip ? clip_arch.kind : arch.kind, dtype_name, seed, count, (unsigned long long)bytes, sd_now() - t0);
  return 0;
}
