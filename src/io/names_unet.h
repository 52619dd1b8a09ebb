/* UNet key names: diffusers UNet2DConditionModel -> ldm openaimodel paths (the canonical names).
 * The one place that knows both conventions for the UNet. */
#ifndef SD_NAMES_UNET_H
#define SD_NAMES_UNET_H

#include <stddef.h>

#include "io/tensor_store.h"

#define SD_NAMES_MAX_LEVELS 8

typedef struct {
  int n_levels;
  int layers_per_block[SD_NAMES_MAX_LEVELS]; /* resnets per down block, indexed by level */
  int up_has_attention[SD_NAMES_MAX_LEVELS]; /* per up block (diffusers order: deepest first) */
} sd_unet_names;

/* Reads the block structure from the diffusers keys of src (those starting with prefix). */
void sd_unet_names_scan(sd_unet_names *names, const sd_tensor_store *src, const char *prefix);
/* sd_name_map_fn: diffusers key (prefix already stripped) -> ldm key; returns 0 for non-UNet keys. */
int sd_unet_name_from_diffusers(void *names, const char *key, char *out, size_t n);

#endif
