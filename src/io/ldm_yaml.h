/* The ldm inference configs shipped beside single-file checkpoints (CompVis v1-inference.yaml, Stability
 * v2-inference.yaml / v2-inference-v.yaml) turned into the JSON that `--config` takes:
 *   {"unet": unet_config.params, "text": an HF CLIPTextConfig, "vae": ddconfig + embed_dim + scale_factor,
 *    "parameterization": "eps" | "v"}
 * Only the architecture is read; training settings (learning rate, schedulers, loss) are ignored. Free-form
 * YAML through libyaml into jansson values; not the job files (io/job.c). */
#ifndef SD_LDM_YAML_H
#define SD_LDM_YAML_H

#include <stddef.h>

#include "core/error.h"

/* 1 if path ends in .yaml or .yml (any case). */
int sd_ldm_yaml_is_yaml(const char *path);

/* Reads the config at path (at most 1 MiB) and returns the JSON text (caller frees), or NULL with err set
 * ("FILE:LINE: key: what is wrong"). A relative cond_stage_config.params.version folder is looked up
 * beside the file. */
char *sd_ldm_yaml_to_json(const char *path, sd_error *err);

/* The same from text; where names it in messages, base_dir (NULL: the current folder) anchors relative
 * version folders. */
char *sd_ldm_yaml_text_to_json(const char *text, size_t len, const char *where, const char *base_dir, sd_error *err);

#endif
