/* sdprune apply: writes the pruned checkpoint (the mask's weights zeroed) in the input's layout, names
 * and dtypes, and its restore file beside it. The work is done by prune/apply.c; this file parses
 * options and prints the one-line summary. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/provenance.h"
#include "core/sha256.h"
#include "prune/apply.h"
#include "prune/mask_io.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: sdprune apply --model PATH [--unet FILE] --mask MASK.h5 --out FILE|DIR [--force]\n\n"
          "Writes the checkpoint with the mask's ff.net.2 weights set to zero, in the input's own layout,\n"
          "names and dtypes; every other byte is copied unchanged. Beside it goes the restore file\n"
          "<out without .safetensors/.ckpt/.pt>.restore.h5 (for a folder <DIR>.restore.h5), from which\n"
          "`sdprune restore` gives back the original bytes exactly.\n\n"
          "  single .safetensors file -> one .safetensors file (header gains __metadata__ sdprune_mask)\n"
          "  .ckpt/.pt torch zip      -> the same zip, storages and CRC-32s patched in place (a compressed\n"
          "                              storage, rare, gives a .safetensors file instead; --out NAME.safetensors\n"
          "                              converts on purpose)\n"
          "  diffusers folder         -> a folder: every file copied, only the UNet weights file patched\n"
          "  --unet FILE              -> a patched copy of FILE only (the base model resolves names and shapes)\n\n"
          "  --mask FILE           mask from `sdprune mask` (HDF5)\n"
          "  --out FILE|DIR        output checkpoint (a folder for a diffusers model)\n"
          "  --force               replace an existing output and restore file\n");
  sd_cli_common_help(out, 1);
}

int cmd_apply(int argc, char **argv) {
  sd_cli_common common = {0};
  const char *mask_path = NULL, *out = NULL;
  int force = 0;
  for (int i = 1; i < argc; i++) {
    int r = sd_cli_common_option(&common, "apply", argc, argv, &i);
    if (r < 0)
      return 2;
    if (r > 0)
      continue;
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(a, "--force")) {
      force = 1;
      continue;
    }
    if (strcmp(a, "--mask") && strcmp(a, "--out")) {
      fprintf(stderr, "sdprune apply: unknown option '%s' (see --help)\n", a);
      return 2;
    }
    const char *v = sd_cli_value("apply", argc, argv, &i);
    if (!v)
      return 2;
    if (!strcmp(a, "--mask"))
      mask_path = v;
    else
      out = v;
  }
  if (!common.model.path || !mask_path || !out) {
    fprintf(stderr, "sdprune apply: --model, --mask and --out are required (see --help)\n");
    return 2;
  }
  if (common.model.text_encoder_path) {
    fprintf(stderr, "sdprune apply: --text-encoder is not used: a mask prunes the UNet\n");
    return 2;
  }
  signal(SIGXFSZ, SIG_IGN); /* a file size limit makes write fail (and the temporaries go), not kill us */
  sd_cli_apply_threads(&common, "apply");
  double t0 = sd_now();
  sd_error err;
  sd_mask mask = {0};
  sd_model *m = NULL;
  char *cmdline = sd_command_line(argc, argv);
  int status = 1;
  uint8_t digest[32];
  char mask_sha[65];
  if (sd_mask_read(mask_path, &mask, &err) != 0 || sd_sha256_file(mask_path, digest, &err) != 0)
    goto fail;
  sd_sha256_hex(digest, mask_sha);
  /* opened directly, never through the weight cache: the UNet view must point into the source files */
  if (sd_model_open(&common.model, &m, &err) != 0)
    goto fail;
  sd_apply_options opt = {.out = out,
                          .force = force,
                          .unet_override = common.model.unet_path != NULL,
                          .mask_path = mask_path,
                          .mask_sha256 = mask_sha,
                          .command_line = cmdline};
  sd_apply_result res;
  if (sd_apply_mask_checkpoint(m, &mask, &opt, &res, &err) != 0)
    goto fail;
  if (res.note[0])
    fprintf(stderr, "sdprune apply: note: %s\n", res.note);
  fprintf(stderr,
          "sdprune apply: pruned %lld of %lld ff.net.2 weights (%.4g%%) in %d layers; wrote %s (%s, %.1f MB) and %s "
          "in %.1f s\n",
          (long long)res.pruned, (long long)res.total, res.total ? 100.0 * (double)res.pruned / (double)res.total : 0.0,
          res.n_layers, res.out_path, res.format, (double)res.bytes / 1e6, res.restore_path, sd_now() - t0);
  status = 0;
  goto done;
fail:
  fprintf(stderr, "sdprune apply: %s\n", err.msg);
done:
  sd_model_close(m);
  sd_mask_free(&mask);
  free(cmdline);
  return status;
}
