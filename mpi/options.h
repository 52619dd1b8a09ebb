/* Options of sdprune-mpi: the subcommand, a job file (io/job.h, when built) and the same settings as
 * `sdprune stats` on the command line (they win over the job file's), the output folder and the
 * backend. Parsing only; knows no MPI. */
#ifndef SDM_OPTIONS_H
#define SDM_OPTIONS_H

#include <stdint.h>
#include <stdio.h>

#include "cli/cli_common.h"
#include "stats/stats_run.h"

#define SDM_MAX_SETS 64
#define SDM_MAX_SEEDS 4096

typedef struct sdm_options {
  const char *command; /* "stats", "run", "mask", "reduce" */
  const char *job_path;
  sd_cli_common common;
  sd_stats_set_spec sets[SDM_MAX_SETS];
  int n_sets;
  const char *template_str, *hooks, *out;
  sd_stats_plan_options plan;
  uint64_t seeds[SDM_MAX_SEEDS];
  int per_item, quiet, checkpoint_every, max_report;
  double progress_every;  /* seconds between progress lines when stderr is not a terminal */
  const char *backend;    /* "engine" (default) or "fake" */
  int fake_ms;            /* fake: milliseconds per item */
  unsigned fake_hash;     /* fake: model hash variant */
  const char *fake_fail;  /* fake: "SET:ROW" fails */
  const char *fake_crash; /* fake: "SET:ROW" crashes the rank (SIGSEGV) */
  char names[SDM_MAX_SETS][72];
  void *job; /* the loaded job file (sd_job), owned */
} sdm_options;

void sdm_usage(FILE *out);
/* Returns 0, 1 when --help was printed, 2 on a usage error (message printed). */
int sdm_parse(sdm_options *o, int argc, char **argv);
void sdm_options_free(sdm_options *o);

#endif
