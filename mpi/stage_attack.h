/* The attack stage of sdprune-mpi (`sdprune-mpi attack JOB`): see stage_attack.c. */
#ifndef SDM_STAGE_ATTACK_H
#define SDM_STAGE_ATTACK_H

#include "mpi/options.h"

/* Collective. Returns the exit status (the same on every rank). */
int sdm_attack_stage(const sdm_options *o, int argc, char **argv);

#endif
