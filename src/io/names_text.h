/* Where the text encoder lives in the checkpoint layouts we read, and the view that shows it under
 * Hugging Face CLIPTextModel names (`text_model.*`), whatever the file calls it. Name mapping only:
 * no arithmetic, no copies; the model itself is model/clip_text.c.
 *
 * Layouts:
 *   HF        diffusers text_encoder/model.safetensors: `text_model.*` as is (prefix "").
 *   SD1       single-file SD 1.x: `cond_stage_model.transformer.text_model.*` (prefix stripped).
 *   OPENCLIP  single-file SD 2.x: `cond_stage_model.model.*` in open_clip naming (token_embedding,
 *             positional_embedding, transformer.resblocks.{i}.{ln_1,attn,ln_2,mlp}, ln_final, ...).
 *             ldm's FrozenOpenCLIPEmbedder(layer="penultimate") runs all blocks but the last, then
 *             ln_final: use skip_last_layers = 1 with this layout (diffusers' converted SD 2.x folders
 *             drop the last block instead: 23 layers, skip 0). Its MLP uses exact gelu (ViT-H/14). */
#ifndef SD_NAMES_TEXT_H
#define SD_NAMES_TEXT_H

#include "core/error.h"
#include "io/tensor_store.h"

typedef enum {
  SD_TEXT_LAYOUT_NONE = 0,
  SD_TEXT_LAYOUT_HF,
  SD_TEXT_LAYOUT_SD1,
  SD_TEXT_LAYOUT_OPENCLIP,
} sd_text_layout;

#define SD_TEXT_PREFIX_SD1 "cond_stage_model.transformer."
#define SD_TEXT_PREFIX_OPENCLIP "cond_stage_model.model."

/* Which layout src holds (by its token embedding's key); *prefix (if non-NULL) gets the key prefix. */
sd_text_layout sd_text_layout_detect(const sd_tensor_store *src, const char **prefix);
const char *sd_text_layout_name(sd_text_layout layout);

/* Adds to view the open_clip text tensors of src under prefix, renamed to HF names. The stacked
 * attn.in_proj_weight [3d, d] / in_proj_bias [3d] (q, k, v in that order, as torch's
 * nn.MultiheadAttention stores them) become q/k/v_proj entries pointing at rows [0,d), [d,2d), [2d,3d)
 * of the same data (no copy). text_projection, logit_scale and unknown keys are not added.
 * Returns the number of tensors added, or -1. */
int sd_text_view_from_openclip(sd_tensor_store *view, const sd_tensor_store *src, const char *prefix, sd_error *err);

/* A new HF-named view of the text encoder in src, any layout above; *layout (if non-NULL) says which.
 * NULL with err set when src holds no text encoder. Close it with sd_store_close before src. */
sd_tensor_store *sd_text_view_open(const sd_tensor_store *src, sd_text_layout *layout, sd_error *err);

#endif
