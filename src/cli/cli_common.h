/* Options shared by the subcommands that take a model (--model, --unet, --text-encoder, --config,
 * --tokenizer, --threads) and small CLI helpers. */
#ifndef SD_CLI_COMMON_H
#define SD_CLI_COMMON_H

#include <stdint.h>
#include <stdio.h>

#include "model/model.h"

typedef struct {
  sd_model_options model;
  int threads;              /* 0: from SLURM_CPUS_PER_TASK / OMP_NUM_THREADS / cores */
  const char *weights_cache; /* --weights-cache DIR or $SDPRUNE_WEIGHTS_CACHE; NULL: none */
} sd_cli_common;

/* If argv[*i] is a common option, consumes it (and its value) and returns 1; returns -1 on a missing
 * value (message printed), 0 if the option is not a common one. */
int sd_cli_common_option(sd_cli_common *c, const char *cmd, int argc, char **argv, int *i);
/* Help text for the common options. */
void sd_cli_common_help(FILE *out, int with_model);
/* Decides and applies the thread count; returns it. Prints a warning for nonsense requests. */
int sd_cli_apply_threads(const sd_cli_common *c, const char *cmd);
/* Value of option argv[*i] (advancing i), or NULL after printing "cmd: OPTION needs a value". */
const char *sd_cli_value(const char *cmd, int argc, char **argv, int *i);
/* Parses a non-negative/positive integer option value; prints an error and returns -1 if invalid. */
int sd_cli_int(const char *cmd, const char *opt, const char *value, long min, long max, long *out);
/* Value parsers without messages (0 ok, -1 invalid): the caller reports in its own words. */
/* "WxH", both 1..16384. */
int sd_cli_parse_size(const char *s, int *w, int *h);
/* A seed: a non-empty decimal uint64, no sign. */
int sd_cli_parse_seed(const char *s, uint64_t *out);
/* Seeds "0,1,2", "0-9" or a mix ("0-3,7"); at most max of them into out[*n]. */
int sd_cli_parse_seed_list(const char *s, uint64_t *out, int max, int *n);
/* A finite-or-infinite non-negative number (not NaN), non-empty. */
int sd_cli_parse_nonneg(const char *s, double *out);
double sd_now(void);
/* Opens the model of the common options, applies the float32 weight cache when asked (a cache problem
 * is a warning, not an error) and prints failures as one line. Returns 0 or 1 (exit status). */
int sd_cli_open_model(sd_cli_common *c, const char *cmd, sd_model **out);

#endif
