/* The stages of sdprune-mpi after the reduce, run by rank 0 alone: DIR/stats.h5 -> DIR/mask.h5
 * (prune/mask_build) -> the pruned checkpoint and its restore file (prune/apply), with the job file's
 * mask section as the parameters. Library calls only: no MPI, no tensors, no HDF5 here; the driver
 * (sdprune_mpi.c) makes the other ranks wait and broadcasts the result. */
#ifndef SDM_STAGE_MASK_H
#define SDM_STAGE_MASK_H

#include "mpi/options.h"

/* 1 when the options carry a job file with a mask section (mask.method). */
int sdm_has_mask_stage(const sdm_options *o);

/* Builds DIR/mask.h5 from DIR/stats.h5 and writes the pruned checkpoint (DIR/pruned.safetensors,
 * DIR/pruned/ for a diffusers folder, DIR/pruned.<ext> otherwise) with its restore file; existing
 * outputs are replaced (they are derived). Prints its own lines; returns 0 or 1. */
int sdm_mask_stage(const sdm_options *o, int argc, char **argv);

#endif
