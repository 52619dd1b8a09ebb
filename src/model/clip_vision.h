/* The CLIP image tower: Hugging Face `CLIPVisionTransformer` plus CLIPModel's `visual_projection`
 * (transformers/models/clip/modeling_clip.py; openai CLIP's model.py VisionTransformer is the numerical
 * reference). It maps normalised pixel values to an image embedding. It does not resize or normalise
 * images (eval/clip_preprocess.h) and knows no text: eval/clip_model.h joins the two towers.
 *
 * Cost: per image about layers · T · (4d² + 2·d·f + 2·T·d) + N · d · C·p² multiply-adds, T = N + 1 tokens.
 * ViT-L/14 at 224 px (d 1024, f 4096, 24 layers, T 257): 77.6 G in the projections and MLPs, 3.2 G in the
 * attention products, 0.15 G in the patch embedding: ~81 GMAC = 162 GFLOP per image, all of it in sgemm or
 * the attention kernel. Measured with random ViT-L/14 weights on the shared 2-core machine while other jobs
 * ran: 4.0-4.3 s per image at 2 threads (40 GFLOP/s), where plain sgemm of the fc1 shape reached 36-49
 * GFLOP/s at that moment; at the README's quiet sgemm rate (~250 GFLOP/s) that is ~0.7 s. Against 1.6
 * TFLOP per batch-2 SD-1.5 UNet evaluation at 64×64 latents, one image costs ~0.2% of a 50-step
 * generation, whatever the machine (both run at its sgemm rate). */
#ifndef SD_CLIP_VISION_H
#define SD_CLIP_VISION_H

#include "core/arena.h"
#include "core/error.h"
#include "core/kernels.h"
#include "io/tensor_store.h"
#include "model/clip_encoder.h"

/* transformers CLIPVisionConfig (and CLIPConfig.projection_dim), the fields of the forward pass. */
typedef struct {
  int image_size;     /* 224: input is image_size × image_size */
  int patch_size;     /* 32 (the default, ViT-B/32); 14 for ViT-L/14 */
  int channels;       /* num_channels, 3 */
  int hidden;         /* hidden_size d: 768 (default), 1024 ViT-L */
  int layers;         /* num_hidden_layers: 12, 24 ViT-L */
  int heads;          /* num_attention_heads: 12, 16 ViT-L */
  int intermediate;   /* intermediate_size f: 3072, 4096 ViT-L */
  int act_quick_gelu; /* hidden_act: 1 "quick_gelu" (openai CLIP, the default), 0 "gelu" (OpenCLIP/LAION) */
  float ln_eps;       /* layer_norm_eps, 1e-5 */
  int projection_dim; /* CLIPConfig.projection_dim: 512 (default), 768 ViT-L/14 */
} sd_clip_vision_config;

/* transformers CLIPVisionTransformer + visual_projection, g = image_size / patch_size, N = g² patches,
 * T = N + 1 tokens. Weights point into the view's float32 copies (the view must outlive the model);
 * activations come from the arena, reset at every forward call. */
typedef struct {
  sd_clip_vision_config cfg;
  sd_linear patch_embedding;       /* [d, C·p·p]: embeddings.patch_embedding.weight [d, C, p, p] (a conv with
                                    * stride p and no bias) read as a matrix over flattened patches */
  const float *class_embedding;    /* [d]     embeddings.class_embedding (openai class_embedding) */
  const float *position_embedding; /* [T, d]  embeddings.position_embedding.weight (openai positional_embedding) */
  sd_norm pre_layrnorm;            /* [d]     pre_layrnorm (HF's spelling; openai ln_pre) */
  sd_clip_encoder_layer *layers;   /* [cfg.layers] encoder.layers.{i} (openai transformer.resblocks.{i}) */
  sd_norm post_layernorm;          /* [d]     post_layernorm (openai ln_post) */
  sd_linear visual_projection;     /* [proj, d], no bias (openai proj [d, proj], transposed) */
  sd_arena arena;
} sd_clip_vision;

/* Reads the vision part of an HF config.json: a CLIPConfig ("vision_config" object, projection_dim at
 * the top level), a CLIPVisionConfig itself (CLIPVisionModelWithProjection: projection_dim inside), or a
 * safetensors __metadata__ object whose "config" member holds one of those as a JSON string. Keys read:
 * image_size, patch_size, num_channels, hidden_size, num_hidden_layers, num_attention_heads,
 * intermediate_size, hidden_act, layer_norm_eps, projection_dim; absent keys take CLIPVisionConfig's
 * defaults (ViT-B/32, quick_gelu), as transformers does. */
int sd_clip_vision_config_from_json(const char *hf_config_json, sd_clip_vision_config *cfg, sd_error *err);

/* Infers the configuration from the HF-named tensors of a view (no config at hand):
 *   hidden, channels, patch_size   from embeddings.patch_embedding.weight [d, C, p, p]
 *   image_size = p·g               from embeddings.position_embedding.weight [g²+1, d]
 *   layers                         by counting encoder.layers.{i}.self_attn.q_proj.weight from 0
 *   intermediate                   from layers.0.mlp.fc1.weight [f, d]
 *   projection_dim                 from visual_projection.weight [proj, d]
 *   heads = d / 64 (openai ViT-B/L; d 1280, OpenCLIP ViT-H, has 16 heads of 80); act quick_gelu, eps 1e-5.
 * OpenCLIP (LAION) towers use exact gelu: give those a config. */
int sd_clip_vision_config_infer(sd_tensor_store *view, sd_clip_vision_config *cfg, sd_error *err);

/* Binds every weight (names `vision_model.*` and `visual_projection.weight`) and checks its shape. All
 * missing tensors are reported in one error by name; a wrong shape is reported as got/expected. */
int sd_clip_vision_init(sd_clip_vision *m, const sd_clip_vision_config *cfg, sd_tensor_store *view, sd_error *err);

/* pixel_values [C, S, S] (already normalised, S = image_size) -> image_embeds [projection_dim], the
 * projected, not normalised CLIPModel.get_image_features. pooled [d] (may be NULL) receives
 * post_layernorm(class token), CLIPVisionModel's pooler_output. */
int sd_clip_vision_forward(sd_clip_vision *m, const float *pixel_values, float *image_embeds, float *pooled,
                           sd_error *err);

void sd_clip_vision_free(sd_clip_vision *m);

#endif
