/* The CLIP text transformer that conditions Stable Diffusion: Hugging Face `CLIPTextModel`
 * (transformers/models/clip/modeling_clip.py, CLIPTextTransformer) with openai CLIP's model.py
 * Transformer as the numerical reference. It returns the last hidden state after the final
 * LayerNorm (no pooling, no projection). It does not know checkpoint layouts: it reads HF names
 * (`text_model.*`) from a view; io/names_text.h builds that view for SD1, diffusers and SD2 files. */
#ifndef SD_CLIP_TEXT_H
#define SD_CLIP_TEXT_H

#include <stdint.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/kernels.h"
#include "io/tensor_store.h"
#include "model/clip_encoder.h"

/* Stable Diffusion always encodes 77 tokens: [BOS] + up to 75 BPE tokens + [EOS], padded. */
#define SD_CLIP_TEXT_TOKENS 77

/* transformers CLIPTextConfig, the fields that matter for the forward pass. */
typedef struct {
  int vocab_size;       /* 49408 */
  int max_positions;    /* max_position_embeddings, 77 */
  int hidden;           /* hidden_size: 768 SD1 (ViT-L/14), 1024 SD2 (OpenCLIP ViT-H/14) */
  int layers;           /* num_hidden_layers: blocks stored (SD2 diffusers folders store 23 of 24) */
  int heads;            /* num_attention_heads; head size hidden/heads (64 for real SD) */
  int intermediate;     /* intermediate_size: MLP width (4x hidden in real models, 2x in tiny-sd1) */
  int act_quick_gelu;   /* hidden_act: 1 "quick_gelu" x·σ(1.702x) (openai CLIP), 0 exact erf "gelu" (OpenCLIP) */
  float ln_eps;         /* layer_norm_eps, 1e-5 */
  int skip_last_layers; /* run layers - skip blocks, then the final LayerNorm: 1 for ldm's SD 2.x
                         * FrozenOpenCLIPEmbedder(layer="penultimate"); also "clip skip" */
} sd_clip_text_config;

/* transformers CLIPEncoderLayer, shared with the vision tower (model/clip_encoder.h). */
typedef sd_clip_encoder_layer sd_clip_text_layer;

/* transformers CLIPTextTransformer. Weights point into the view's float32 copies (the view must
 * outlive the model); activations come from the arena, reset at every forward call. */
typedef struct {
  sd_clip_text_config cfg;
  const float *token_embedding;    /* [vocab_size, d]     embeddings.token_embedding.weight */
  const float *position_embedding; /* [max_positions, d]  embeddings.position_embedding.weight */
  sd_clip_text_layer *layers;      /* [cfg.layers - cfg.skip_last_layers]: only the blocks that run */
  int n_run;                       /* cfg.layers - cfg.skip_last_layers */
  sd_norm final_layer_norm;        /* [d] (openai ln_final) */
  sd_arena arena;
} sd_clip_text;

/* Reads an HF text_encoder/config.json (hidden_size, intermediate_size, num_hidden_layers,
 * num_attention_heads, max_position_embeddings, hidden_act, layer_norm_eps, vocab_size; absent keys
 * take CLIPTextConfig's defaults, as transformers does). Also accepted: an object whose "text" member
 * holds those keys (single-file __metadata__["config"]), or a safetensors __metadata__ object whose
 * "config" member is that JSON as a string. skip_last_layers is set to 0. */
int sd_clip_text_config_from_json(const char *hf_config_json, sd_clip_text_config *cfg, sd_error *err);

/* Infers the configuration from the HF-named tensors of a view:
 *   hidden, vocab_size  from embeddings.token_embedding.weight [vocab, d]
 *   max_positions       from embeddings.position_embedding.weight [P, d]
 *   layers              by counting encoder.layers.{i}.self_attn.q_proj.weight from 0
 *   intermediate        from layers.0.mlp.fc1.weight [f, d]
 *   heads = hidden / 64 (every SD text encoder uses head size 64: 768 -> 12, 1024 -> 16); a width
 *     that is not a multiple of 64 is an error (pass a config instead)
 *   act: exact gelu for hidden 1024 (OpenCLIP ViT-H/14 of SD 2.x), quick_gelu otherwise (openai CLIP)
 *   ln_eps 1e-5, skip_last_layers 0 (the caller sets 1 for the SD 2.x OpenCLIP layout). */
int sd_clip_text_config_infer(sd_tensor_store *view, sd_clip_text_config *cfg, sd_error *err);

/* Binds the weights of the blocks that run (see skip_last_layers) and checks every shape. All missing
 * tensors are reported in one error by name; a wrong shape is reported as got/expected. */
int sd_clip_text_init(sd_clip_text *m, const sd_clip_text_config *cfg, sd_tensor_store *view, sd_error *err);

/* ids [77] (token ids, checked against vocab_size) -> hidden [77, d]: the last hidden state after
 * final_layer_norm (ldm FrozenCLIPEmbedder's z). Pre-LN blocks, causal self-attention, positions 0..76. */
int sd_clip_text_forward(sd_clip_text *m, const int32_t *ids, float *hidden, sd_error *err);

void sd_clip_text_free(sd_clip_text *m);

#endif
