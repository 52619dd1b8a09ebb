/* The Stable Diffusion VAE (ldm `AutoencoderKL`): Decoder + post_quant_conv turning latents into
 * images, and Encoder + quant_conv turning images into the moments of the latent distribution.
 * Not here: sampling from the moments, clamping or converting images to pixels, name mapping of
 * checkpoint layouts (io/names_vae.h), reading files (io/tensor_store.h). */
#ifndef SD_MODEL_VAE_H
#define SD_MODEL_VAE_H

#include "core/arena.h"
#include "core/error.h"
#include "core/kernels.h"
#include "io/tensor_store.h"

#define SD_VAE_MAX_LEVELS 8
#define SD_VAE_MAX_BLOCKS 8 /* num_res_blocks + 1 (decoder levels) at most */

/* ldm `ddconfig` of first_stage_config (attn_resolutions empty: attention only in the middle;
 * double_z true; dropout irrelevant at inference). GroupNorm is 32 groups, eps 1e-6. */
typedef struct {
  int ch;                         /* base channels (SD: 128) */
  int out_ch;                     /* image channels out of the decoder (3) */
  int in_channels;                /* image channels into the encoder (3) */
  int z_channels;                 /* decoder input / half the encoder output (4) */
  int embed_dim;                  /* latent channels around (post_)quant_conv (4) */
  int num_res_blocks;             /* per encoder level; the decoder has one more (SD: 2) */
  int n_levels;                   /* len(ch_mult); images are 2^(n_levels-1) times the latent */
  int ch_mult[SD_VAE_MAX_LEVELS]; /* SD: 1,2,4,4 */
  float scale_factor;             /* latent = scale_factor · posterior sample (SD 1.x: 0.18215) */
  int has_encoder;                /* load encoder + quant_conv as well */
} sd_vae_config;

/* ldm.modules.diffusionmodules.model.ResnetBlock with temb_channels=0:
 * x + conv2(dropout(swish(norm2(conv1(swish(norm1(x))))))), the skip through nin_shortcut (1×1)
 * when the channel count changes (nin_shortcut.w == NULL otherwise). */
typedef struct {
  int cin, cout;
  sd_norm norm1;
  sd_conv2d conv1;
  sd_norm norm2;
  sd_conv2d conv2;
  sd_conv2d nin_shortcut;
} sd_vae_resblock;

/* ldm AttnBlock: single-head self-attention over the h·w positions, q/k/v/proj_out 1×1 convs
 * (weights [C,C,1,1], or diffusers' Linear [C,C]: the same numbers), scale C^-0.5, residual add. */
typedef struct {
  int c;
  sd_norm norm;
  sd_conv2d q, k, v, proj_out;
} sd_vae_attn;

/* ldm Encoder/Decoder `mid`: block_1, attn_1, block_2. */
typedef struct {
  sd_vae_resblock block_1;
  sd_vae_attn attn_1;
  sd_vae_resblock block_2;
} sd_vae_mid;

/* ldm Encoder `down[i]`: num_res_blocks blocks, then Downsample (pad right/bottom by one,
 * conv3×3 stride 2 pad 0) except at the last level (downsample.w == NULL). */
typedef struct {
  sd_vae_resblock block[SD_VAE_MAX_BLOCKS];
  sd_conv2d downsample;
} sd_vae_down_level;

/* ldm Decoder `up[i]`: num_res_blocks+1 blocks, then Upsample (nearest ×2, conv3×3) except at
 * level 0 (upsample.w == NULL). */
typedef struct {
  sd_vae_resblock block[SD_VAE_MAX_BLOCKS];
  sd_conv2d upsample;
} sd_vae_up_level;

/* ldm Encoder (double_z): conv_in, down levels, mid, norm_out, swish, conv_out to 2·z channels. */
typedef struct {
  sd_conv2d conv_in;
  sd_vae_down_level down[SD_VAE_MAX_LEVELS];
  sd_vae_mid mid;
  sd_norm norm_out;
  sd_conv2d conv_out;
} sd_vae_encoder;

/* ldm Decoder: conv_in, mid, up levels from the highest index down, norm_out, swish, conv_out. */
typedef struct {
  sd_conv2d conv_in;
  sd_vae_mid mid;
  sd_vae_up_level up[SD_VAE_MAX_LEVELS];
  sd_norm norm_out;
  sd_conv2d conv_out;
} sd_vae_decoder;

/* ldm.models.autoencoder.AutoencoderKL. Weight pointers point into the view's float32 caches:
 * the view (and the stores under it) must outlive the sd_vae. */
typedef struct {
  sd_vae_config cfg;
  sd_vae_decoder decoder;
  sd_conv2d post_quant_conv; /* embed_dim -> z_channels, 1×1 */
  sd_vae_encoder encoder;    /* filled when cfg.has_encoder */
  sd_conv2d quant_conv;      /* 2·z_channels -> 2·embed_dim, 1×1 */
  sd_arena arena;            /* activations, reset per call */
  sd_tensor_store *owned_view; /* the renamed view made by sd_vae_load, or NULL */
} sd_vae;

/* Reads the architecture from the tensor shapes of a view under ldm names (decoder.*,
 * post_quant_conv.*, and encoder.* with quant_conv.* when present). scale_factor is set to SD's 0.18215. */
int sd_vae_config_infer(sd_tensor_store *view, sd_vae_config *cfg, sd_error *err);

/* Reads a diffusers vae/config.json (block_out_channels, layers_per_block, latent_channels,
 * in/out_channels, scaling_factor). has_encoder is set. */
int sd_vae_config_from_diffusers_json(const char *json_text, sd_vae_config *cfg, sd_error *err);

/* Reads the "vae" object of an ldm-style config (ch, ch_mult, num_res_blocks, z_channels,
 * embed_dim, in_channels, out_ch, scale_factor; attn_resolutions must be empty, double_z true). */
int sd_vae_config_from_ldm_json(const char *json_text, sd_vae_config *cfg, sd_error *err);
/* Either of the two, told apart by diffusers' keys (block_out_channels, latent_channels). */
int sd_vae_config_from_json(const char *json_text, sd_vae_config *cfg, sd_error *err);

/* Binds every weight of the configured VAE from the view (canonical ldm names without
 * `first_stage_model.`). On failure err lists all missing tensors and wrong shapes (got/expected). */
int sd_vae_init(sd_vae *vae, const sd_vae_config *cfg, sd_tensor_store *view, sd_error *err);

/* One call for a model's VAE part (sd_model.vae_view and vae_config_json): the view may hold
 * canonical ldm names or diffusers names (then renamed into a view the sd_vae owns); the config
 * comes from config_json (diffusers or ldm, may be NULL) or is inferred from the shapes.
 * has_encoder is cleared when the file has no encoder. */
int sd_vae_load(sd_vae *vae, sd_tensor_store *view, const char *config_json, sd_error *err);

/* image[B, out_ch, f·h, f·w] = decoder(post_quant_conv(latent[B, embed_dim, h, w] / scale_factor)),
 * f = 2^(n_levels-1); raw decoder output (roughly [-1, 1], not clamped). */
int sd_vae_decode(sd_vae *vae, const float *latent, int B, int h, int w, float *image, sd_error *err);

/* moments[B, 2·embed_dim, ho, wo] = quant_conv(encoder(image[B, in_channels, H, W])): mean then
 * logvar halves; ho = H after n_levels-1 Downsamples (H/f when H is a multiple of f). */
int sd_vae_encode(sd_vae *vae, const float *image, int B, int H, int W, float *moments, sd_error *err);
/* Latent size the encoder produces for an H×W image (ldm's padded stride-2 convs). */
void sd_vae_encoded_size(const sd_vae_config *cfg, int H, int W, int *ho, int *wo);

void sd_vae_free(sd_vae *vae);

#endif
