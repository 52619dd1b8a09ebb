/* Shared state and helpers of `sdprune verify`; one file per group of cases (verify_*.c). */
#ifndef SD_VERIFY_H
#define SD_VERIFY_H

#include <stdarg.h>
#include <stdint.h>

#include "io/tensor_store.h"
#include "model/model.h"

typedef struct {
  sd_model *model;
  sd_tensor_store *vectors;
  double tol;
  int passed, failed;
  char skipped[1024];
} verify_ctx;

/* Prints a row and counts it: PASS when rel-L2 <= tol. */
void verify_row(verify_ctx *v, const char *group, const char *name, const float *got, const float *ref, int64_t n,
                double tol);
void verify_fail(verify_ctx *v, const char *group, const char *name, const char *why);
void verify_skip(verify_ctx *v, const char *group, const char *why);
sd_tensor *verify_tensor(verify_ctx *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const float *verify_f32(verify_ctx *v, sd_tensor *t);
char *verify_metadata(verify_ctx *v, const char *key); /* a string entry of __metadata__, malloc'ed */
int verify_has_group(verify_ctx *v, const char *prefix);

void verify_unet(verify_ctx *v);
void verify_vae(verify_ctx *v);
void verify_rng(verify_ctx *v);
void verify_samplers(verify_ctx *v);
/* The clip.* group: the CLIP detector at model_path (HF folder or file) against vectors_path. */
void verify_clip(verify_ctx *v, const char *model_path, const char *vectors_path);
/* Groups implemented beyond unet/text (vae, samplers, rng): 1 if `prefix` is handled. */
int verify_group_supported(const char *prefix);

#endif
