/* The sdprune subcommands: one file each under src/cli/, dispatched from main.c. Each returns the
 * process exit status (0 success, 1 failure, 2 usage error). */
#ifndef SD_COMMANDS_H
#define SD_COMMANDS_H

int cmd_verify(int argc, char **argv);
int cmd_synth(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_mask(int argc, char **argv);
int cmd_apply(int argc, char **argv);
int cmd_restore(int argc, char **argv);
int cmd_prompts(int argc, char **argv);
int cmd_reduce(int argc, char **argv);
int cmd_attack(int argc, char **argv);
int cmd_import_scores(int argc, char **argv);
int cmd_grid(int argc, char **argv);

#endif
