/* The Stable Diffusion UNet (CompVis/Stability ldm `openaimodel.UNetModel` with
 * `attention.SpatialTransformer`), float32 on CPU. Weights come from a canonical-name view (ldm module
 * paths without `model.diffusion_model.`); the forward pass writes eps for a batch of latents and can
 * report the FFN neurons (GEGLU output, the input of `ff.net.2`) and the cross-attention output of
 * every transformer block through hooks. Knows nothing of files, samplers or MPI. */
#ifndef SD_UNET_H
#define SD_UNET_H

#include <stdint.h>

#include "core/arena.h"
#include "core/kernels.h"
#include "io/tensor_store.h"

#define SD_UNET_MAX_LEVELS 8

typedef struct {
  int in_channels, out_channels, model_channels;
  int n_levels;
  int channel_mult[SD_UNET_MAX_LEVELS];
  int num_res_blocks[SD_UNET_MAX_LEVELS];
  int attention[SD_UNET_MAX_LEVELS];         /* 1: SpatialTransformers at this level */
  int transformer_depth[SD_UNET_MAX_LEVELS]; /* blocks per SpatialTransformer at this level */
  int middle_depth;
  /* Heads: either a count per level (diffusers' attention_head_dim, ldm num_heads) or channels per
   * head (ldm num_head_channels, SD 2.x: 64). heads_per_level[l] > 0 wins over head_channels. */
  int heads_per_level[SD_UNET_MAX_LEVELS];
  int middle_heads;
  int head_channels;
  int legacy; /* ldm `legacy` flag (SD 1.x/2.x configs set False; affects dim_head only with head_channels) */
  int context_dim;
  int linear_proj; /* SD 2.x: proj_in/proj_out are Linear, not 1x1 Conv */
  int norm_groups;
  float norm_eps;    /* ResBlock/out GroupNorm: 1e-5 */
  float st_norm_eps; /* SpatialTransformer GroupNorm: 1e-6 */
} sd_unet_config;

/* Hook sites: the FFN neurons and the cross-attention output of each transformer block. */
typedef enum { SD_HOOK_FF_NEURONS = 0, SD_HOOK_ATTN2_OUT = 1 } sd_hook_kind;

/* Observer of activations, called during the forward pass. `wants` is asked once per site when the
 * model is initialised (site is the ldm module path, e.g. "input_blocks.1.1.transformer_blocks.0");
 * `observe` then receives data [tokens, channels] for batch element b at timestep t. The data may be
 * modified in place (e.g. to mask neurons). Hooks off cost nothing. */
typedef struct {
  int (*wants)(void *ctx, const char *site, sd_hook_kind kind);
  void (*observe)(void *ctx, int site_index, const char *site, sd_hook_kind kind, int b, float t, float *data,
                  int64_t tokens, int channels);
  void *ctx;
} sd_unet_hooks;

/* ldm ResBlock: in_layers (0 GroupNorm, 1 SiLU, 2 conv3x3), emb_layers (0 SiLU, 1 Linear),
 * out_layers (0 GroupNorm, 1 SiLU, 2 Dropout, 3 conv3x3), skip_connection (1x1 conv or identity). */
typedef struct {
  sd_norm in_norm;
  sd_conv2d in_conv;
  sd_linear emb_proj;
  sd_norm out_norm;
  sd_conv2d out_conv;
  sd_conv2d skip; /* skip.w == NULL: identity */
  int cin, cout;
} sd_unet_resblock;

/* ldm BasicTransformerBlock: attn1 (self), attn2 (cross), ff = GEGLU(net.0.proj) -> net.2. */
typedef struct {
  sd_norm norm1, norm2, norm3;
  sd_linear attn1_q, attn1_k, attn1_v, attn1_out;
  sd_linear attn2_q, attn2_k, attn2_v, attn2_out;
  sd_linear ff_proj, ff_out; /* ff.net.0.proj [2·ff_inner, dim], ff.net.2 [dim, ff_inner] */
  int ff_inner;
  char site[128];
  int site_index;                /* index among all transformer blocks, in forward order */
  int hook_ff, hook_attn2;       /* answers of hooks->wants */
} sd_unet_tblock;

/* ldm SpatialTransformer: norm (GroupNorm eps 1e-6), proj_in, blocks, proj_out, residual. */
typedef struct {
  sd_norm norm;
  sd_linear proj_in, proj_out; /* 1x1 conv weights [out, in, 1, 1] are the same memory as Linear [out, in] */
  int channels, inner, heads, dim_head, depth;
  sd_unet_tblock *blocks;
} sd_unet_transformer;

/* Operation kinds timed when sd_unet.profile is set (bench --profile). */
enum {
  SD_PROF_CONV,
  SD_PROF_NORM,
  SD_PROF_LINEAR,
  SD_PROF_ATTENTION,
  SD_PROF_GEGLU,
  SD_PROF_HOOKS,
  SD_PROF_OTHER,
  SD_UNET_PROFILE_KINDS
};
extern const char *const sd_unet_profile_names[SD_UNET_PROFILE_KINDS];

typedef enum { SD_LAYER_CONV, SD_LAYER_RES, SD_LAYER_ATTN, SD_LAYER_DOWN, SD_LAYER_UP } sd_unet_layer_kind;

typedef struct {
  sd_unet_layer_kind kind;
  sd_conv2d conv; /* CONV (input_blocks.0.0), DOWN (op: stride 2), UP (conv after nearest x2) */
  sd_unet_resblock res;
  sd_unet_transformer attn;
} sd_unet_layer;

/* One entry of input_blocks / middle_block / output_blocks: a TimestepEmbedSequential. */
typedef struct {
  sd_unet_layer layers[3];
  int n_layers;
  int out_channels;
  int level; /* resolution level: spatial size is the input's / 2^level */
} sd_unet_block;

typedef struct {
  sd_unet_config cfg;
  sd_linear time_embed_0, time_embed_2;
  sd_unet_block *input_blocks, middle, *output_blocks;
  int n_input_blocks, n_output_blocks;
  sd_norm out_norm;
  sd_conv2d out_conv;
  int n_tblocks; /* transformer blocks in all (hook sites) */
  sd_unet_hooks hooks;
  int hooks_on;
  sd_arena skips, work; /* activations: skip stack, and working buffers + scratch */
  int profile;           /* 1: accumulate seconds per operation kind into profile_seconds */
  double profile_seconds[SD_UNET_PROFILE_KINDS];
} sd_unet;

/* Builds the module tree for cfg and binds every weight from view; all missing tensors are listed
 * in one error. hooks may be NULL. */
int sd_unet_init(sd_unet *unet, const sd_unet_config *cfg, sd_tensor_store *view, const sd_unet_hooks *hooks,
                 sd_error *err);
/* eps[B, out, H, W] = UNet(x[B, in, H, W], t[B], context[B, ctx_len, context_dim]).
 * H and W must be multiples of 2^(n_levels-1). Fractional timesteps are used as given. */
int sd_unet_forward(sd_unet *unet, const float *x, int B, int H, int W, const float *t, const float *context,
                    int ctx_len, float *eps, sd_error *err);
void sd_unet_free(sd_unet *unet);

/* Names of hook sites in forward order (valid after init). */
const char *sd_unet_site(const sd_unet *unet, int site_index);
/* FLOPs of one forward (2 per multiply-add), for benchmarks. */
double sd_unet_flops(const sd_unet *unet, int B, int H, int W, int ctx_len);

/* Configuration sources (unet_config.c). */
void sd_unet_config_sd15(sd_unet_config *cfg);
void sd_unet_config_sd21(sd_unet_config *cfg);
/* An ldm-style object ({"model_channels":..., "attention_resolutions":...}), a {"unet": {...}}
 * wrapper, or a diffusers UNet2DConditionModel config.json. */
int sd_unet_config_from_json(const char *json_text, sd_unet_config *cfg, sd_error *err);
/* From the tensor names and shapes of a canonical view; heads follow the SD convention
 * (8 heads for context 768 with conv projections, 64 channels per head otherwise). */
int sd_unet_config_infer(sd_tensor_store *view, sd_unet_config *cfg, sd_error *err);
/* Heads and head size of the SpatialTransformer at a level (level == -1: middle block). */
void sd_unet_heads(const sd_unet_config *cfg, int level, int channels, int *heads, int *dim_head);
/* One line describing the architecture. */
void sd_unet_config_describe(const sd_unet_config *cfg, char *buf, size_t size);

#endif
