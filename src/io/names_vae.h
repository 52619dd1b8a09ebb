/* Name mapping for the VAE: diffusers `AutoencoderKL` state-dict keys to the canonical ldm names
 * the model code uses (those of `first_stage_model.*` without the prefix). Knows names only, no
 * tensors' values or shapes. */
#ifndef SD_IO_NAMES_VAE_H
#define SD_IO_NAMES_VAE_H

#include <stddef.h>

#include "io/tensor_store.h"

/* An sd_name_map_fn (io/store_view.h). ctx points to an int holding n_levels
 * (len(block_out_channels)): diffusers numbers the decoder's up_blocks from the lowest resolution,
 * ldm's decoder.up from the highest, so up_blocks.i is up.(n_levels-1-i). With ctx NULL the
 * decoder's up_blocks are not mapped. Examples:
 *   decoder.up_blocks.0.resnets.1.conv1.weight      -> decoder.up.{L-1}.block.1.conv1.weight
 *   decoder.up_blocks.0.upsamplers.0.conv.weight    -> decoder.up.{L-1}.upsample.conv.weight
 *   encoder.down_blocks.0.downsamplers.0.conv.bias  -> encoder.down.0.downsample.conv.bias
 *   *.resnets.j.conv_shortcut.*                     -> *.block.j.nin_shortcut.*
 *   *.mid_block.resnets.0 / .1                      -> *.mid.block_1 / .block_2
 *   *.mid_block.attentions.0.group_norm|to_q|to_k|to_v|to_out.0 (or query|key|value|proj_attn)
 *                                                   -> *.mid.attn_1.norm|q|k|v|proj_out
 *   *.conv_norm_out.*                               -> *.norm_out.*
 *   conv_in, conv_out, quant_conv, post_quant_conv  -> unchanged
 * Returns 1 when mapped, 0 for keys that are not VAE weights (or do not fit in out). */
int sd_vae_name_from_diffusers(void *ctx, const char *key, char *out, size_t n);

/* A view of src (a diffusers vae/diffusion_pytorch_model.safetensors, keys without prefix) under
 * the canonical names. The view points into src, which must outlive it. */
sd_tensor_store *sd_vae_view_from_diffusers(const sd_tensor_store *src, int n_levels, sd_error *err);

#endif
