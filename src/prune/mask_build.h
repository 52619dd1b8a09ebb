/* A mask from statistics and the model they were taken on: checks the model hash, gathers the ff.net.2
 * weights of the hooked layers from the UNet view and runs the method's scores (scores.h). Shared by
 * `sdprune mask` and the MPI driver's mask stage; no files written, no command line. */
#ifndef SD_MASK_BUILD_H
#define SD_MASK_BUILD_H

#include "model/model.h"
#include "prune/scores.h"

typedef struct {
  int64_t ff_weights;   /* weights of the masked ff.net.2 layers */
  int64_t unet_weights; /* floating-point weights of the whole UNet */
  double score_seconds;
} sd_mask_build_info;

/* Fills m (layers, method, params_json, model_hash) from s and model; info may be NULL. */
int sd_mask_build(const char *method, const sd_stats *s, sd_model *model, const sd_score_params *p, sd_mask *m,
                  sd_mask_build_info *info, sd_error *err);

#endif
