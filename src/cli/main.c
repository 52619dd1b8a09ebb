/* sdprune: command-line entry point. Dispatches to one function per subcommand (src/cli/cmd_*.c). */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "cli/commands.h"
#include "core/omp_env.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} command;

static const command commands[] = {
    {"generate", cmd_generate, "text to image with a checkpoint, prompt(s), sampler and seed"},
    {"verify", cmd_verify, "compare the engine with reference vectors (rel-L2 per case)"},
    {"synth", cmd_synth, "write a randomly initialised SD-shaped checkpoint (tests, demos, benchmarks)"},
    {"inspect", cmd_inspect, "list what a checkpoint holds: format, naming, parts, dtypes, architecture"},
    {"tokenize", cmd_tokenize, "print CLIP token ids for prompts"},
    {"bench", cmd_bench, "time UNet evaluations against the sgemm rate of this machine"},
    {"stats", cmd_stats, "FFN neuron statistics over target/anchor/adversarial prompt sets into stats.h5"},
    {"mask", cmd_mask, "pruning mask from statistics files (wanda, actdiff, sensitivity) into mask.h5"},
    {"apply", cmd_apply, "write the pruned checkpoint (same layout, names, dtypes) and its restore file"},
    {"restore", cmd_restore, "give back the original checkpoint bytes from a pruned one and its restore file"},
    {"prompts", cmd_prompts, "show how a prompt file is read: row count, then one JSON object per row"},
    {"reduce", cmd_reduce, "merge statistics shards (sdprune-mpi RUN/shards) or stats.h5 files into one stats.h5"},
    {"attack", cmd_attack, "attack evaluation of a job: images, CLIP detector, re-activation, metrics.h5 (resumable)"},
    {"import-scores", cmd_import_scores, "judge an attack run by a detector's scores CSV and a rule; recompute metrics"},
    {"grid", cmd_grid, "contact sheets of an attack run, one PNG per model x set, framed by attack success"},
};

static void usage(FILE *out) {
  fprintf(out, "sdprune %s: concept-erasure robustness tools for Stable Diffusion on CPU clusters\n\n"
               "usage: sdprune <command> [options]   (sdprune <command> --help for details)\n\ncommands:\n",
          SDPRUNE_VERSION);
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    fprintf(out, "  %-13s %s\n", commands[i].name, commands[i].summary);
}

int main(int argc, char **argv) {
  sd_omp_default_wait_policy(argv); /* first: it may re-execute this process (core/omp_env.c) */
  /* A file-size limit (ulimit -f, a quota) should fail a write with EFBIG and a clear message, not kill
   * the process halfway through a file. */
  signal(SIGXFSZ, SIG_IGN);
  if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("sdprune %s\n", SDPRUNE_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
    if (strcmp(argv[1], commands[i].name) == 0) return commands[i].run(argc - 1, argv + 1);
  fprintf(stderr, "sdprune: unknown command '%s' (see sdprune --help)\n", argv[1]);
  return 2;
}
