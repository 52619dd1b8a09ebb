/* diffusers -> ldm UNet key mapping (see names_unet.h). Index arithmetic: ldm numbers input_blocks
 * 1.. across levels with layers_per_block res blocks plus one downsampler per level but the last;
 * output_blocks have layers_per_block + 1 res blocks per level, the upsampler sitting in the last
 * one at index 1, or 2 when that block also has a SpatialTransformer. */
#include "io/names_unet.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sd_unet_names_scan(sd_unet_names *nm, const sd_tensor_store *src, const char *prefix) {
  memset(nm, 0, sizeof *nm);
  size_t plen = prefix ? strlen(prefix) : 0;
  for (int i = 0; i < src->count; i++) {
    const char *k = src->tensors[i].name;
    if (plen && strncmp(k, prefix, plen) != 0) continue;
    k += plen;
    int a, b;
    if (sscanf(k, "down_blocks.%d.resnets.%d.", &a, &b) == 2 && a >= 0 && a < SD_NAMES_MAX_LEVELS) {
      if (b + 1 > nm->layers_per_block[a]) nm->layers_per_block[a] = b + 1;
      if (a + 1 > nm->n_levels) nm->n_levels = a + 1;
    }
    if (sscanf(k, "up_blocks.%d.attentions.%d.", &a, &b) == 2 && a >= 0 && a < SD_NAMES_MAX_LEVELS)
      nm->up_has_attention[a] = 1;
  }
}

/* ResnetBlock2D member -> ldm ResBlock member. */
static const char *resnet_member(const char *rest, char *buf, size_t n) {
  static const char *const map[][2] = {{"norm1", "in_layers.0"},      {"conv1", "in_layers.2"},
                                       {"time_emb_proj", "emb_layers.1"}, {"norm2", "out_layers.0"},
                                       {"conv2", "out_layers.3"},     {"conv_shortcut", "skip_connection"}};
  for (size_t i = 0; i < sizeof map / sizeof *map; i++) {
    size_t l = strlen(map[i][0]);
    if (strncmp(rest, map[i][0], l) == 0 && rest[l] == '.') {
      snprintf(buf, n, "%s%s", map[i][1], rest + l);
      return buf;
    }
  }
  return NULL;
}

int sd_unet_name_from_diffusers(void *ctx, const char *key, char *out, size_t n) {
  const sd_unet_names *nm = ctx;
  int i, j, used = 0;
  char member[256];
  if (strncmp(key, "time_embedding.linear_1.", 24) == 0) return snprintf(out, n, "time_embed.0.%s", key + 24), 1;
  if (strncmp(key, "time_embedding.linear_2.", 24) == 0) return snprintf(out, n, "time_embed.2.%s", key + 24), 1;
  if (strncmp(key, "conv_in.", 8) == 0) return snprintf(out, n, "input_blocks.0.0.%s", key + 8), 1;
  if (strncmp(key, "conv_norm_out.", 14) == 0) return snprintf(out, n, "out.0.%s", key + 14), 1;
  if (strncmp(key, "conv_out.", 9) == 0) return snprintf(out, n, "out.2.%s", key + 9), 1;
  if (sscanf(key, "down_blocks.%d.%n", &i, &used) == 1 && i >= 0 && i < nm->n_levels) {
    int base = 1;
    for (int l = 0; l < i; l++) base += nm->layers_per_block[l] + 1;
    const char *rest = key + used;
    if (sscanf(rest, "resnets.%d.%n", &j, &used) == 1 && resnet_member(rest + used, member, sizeof member))
      return snprintf(out, n, "input_blocks.%d.0.%s", base + j, member), 1;
    if (sscanf(rest, "attentions.%d.%n", &j, &used) == 1)
      return snprintf(out, n, "input_blocks.%d.1.%s", base + j, rest + used), 1;
    if (strncmp(rest, "downsamplers.0.conv.", 20) == 0)
      return snprintf(out, n, "input_blocks.%d.0.op.%s", base + nm->layers_per_block[i], rest + 20), 1;
    return 0;
  }
  if (strncmp(key, "mid_block.", 10) == 0) {
    const char *rest = key + 10;
    if (sscanf(rest, "resnets.%d.%n", &j, &used) == 1 && resnet_member(rest + used, member, sizeof member))
      return snprintf(out, n, "middle_block.%d.%s", j == 0 ? 0 : 2, member), 1;
    if (strncmp(rest, "attentions.0.", 13) == 0) return snprintf(out, n, "middle_block.1.%s", rest + 13), 1;
    return 0;
  }
  if (sscanf(key, "up_blocks.%d.%n", &i, &used) == 1 && i >= 0 && i < nm->n_levels) {
    int base = 0;
    for (int u = 0; u < i; u++) base += nm->layers_per_block[nm->n_levels - 1 - u] + 1;
    int lpb = nm->layers_per_block[nm->n_levels - 1 - i];
    const char *rest = key + used;
    if (sscanf(rest, "resnets.%d.%n", &j, &used) == 1 && resnet_member(rest + used, member, sizeof member))
      return snprintf(out, n, "output_blocks.%d.0.%s", base + j, member), 1;
    if (sscanf(rest, "attentions.%d.%n", &j, &used) == 1)
      return snprintf(out, n, "output_blocks.%d.1.%s", base + j, rest + used), 1;
    if (strncmp(rest, "upsamplers.0.conv.", 18) == 0)
      return snprintf(out, n, "output_blocks.%d.%d.conv.%s", base + lpb, nm->up_has_attention[i] ? 2 : 1, rest + 18), 1;
    return 0;
  }
  return 0;
}
