/* sdprune restore: gives back the original checkpoint bytes from a pruned checkpoint and the restore
 * file `sdprune apply` wrote beside it (prune/apply.c does the work). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "prune/apply.h"

static void usage(FILE *out) {
  fprintf(out, "usage: sdprune restore --model PRUNED --restore FILE.restore.h5 --out ORIGINAL [--force]\n\n"
               "Rebuilds the checkpoint the mask was applied to, byte for byte: a file from a file, a diffusers\n"
               "folder from a folder. The pruned input's SHA-256 is checked against the restore file first and\n"
               "the result's SHA-256 against the original's before it is renamed into place.\n"
               "A torch zip that apply had to write as safetensors comes back as that safetensors file unpruned.\n\n"
               "  --model PATH          the pruned checkpoint (file or folder) written by `sdprune apply`\n"
               "  --restore FILE        its restore file (<pruned>.restore.h5)\n"
               "  --out PATH            where to write the original\n"
               "  --force               replace an existing output\n");
}

int cmd_restore(int argc, char **argv) {
  const char *pruned = NULL, *restore = NULL, *out = NULL;
  int force = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(a, "--force")) {
      force = 1;
      continue;
    }
    const char **dst = !strcmp(a, "--model")     ? &pruned
                       : !strcmp(a, "--restore") ? &restore
                       : !strcmp(a, "--out")     ? &out
                                                 : NULL;
    if (!dst) {
      fprintf(stderr, "sdprune restore: unknown option '%s' (see --help)\n", a);
      return 2;
    }
    if (!(*dst = sd_cli_value("restore", argc, argv, &i)))
      return 2;
  }
  if (!pruned || !restore || !out) {
    fprintf(stderr, "sdprune restore: --model, --restore and --out are required (see --help)\n");
    return 2;
  }
  signal(SIGXFSZ, SIG_IGN); /* a file size limit makes write fail (and the temporaries go), not kill us */
  double t0 = sd_now();
  sd_error err;
  sd_restore_result res;
  if (sd_restore_checkpoint(pruned, restore, out, force, &res, &err) != 0) {
    fprintf(stderr, "sdprune restore: %s\n", err.msg);
    return 1;
  }
  fprintf(stderr,
          "sdprune restore: restored %lld elements of %d tensors; wrote %s (%s, %d file%s, %.1f MB) in %.1f s\n",
          (long long)res.restored, res.n_tensors, res.out_path, res.format, res.n_files, res.n_files == 1 ? "" : "s",
          (double)res.bytes / 1e6, sd_now() - t0);
  return 0;
}
