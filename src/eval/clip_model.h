/* A CLIP model for scoring images: Hugging Face `CLIPModel` (vision tower + text tower + the two
 * projections + logit_scale) loaded from one .safetensors file or an HF folder, with CLIP's image
 * preprocessing, text encoding, zero-shot classification and the CLIP score. The detector behind
 * attack-success metrics ("does the generated image show the erased concept?"). Not a training or
 * batching framework: one image or one prompt per call, buffers owned by the caller. A model holds
 * scratch and a tokenizer: one thread at a time per sd_clip_model (the weights could be shared, not yet).
 *
 *   sd_clip_model *clip;
 *   sd_clip_model_load("openai-clip-vit-large-patch14/", &clip, &err);
 *   float img[SD_CLIP_MAX_PROJ], txt[2][SD_CLIP_MAX_PROJ], probs[2];
 *   sd_clip_encode_text(clip, "a photo of a nude person", txt[0], &err);
 *   sd_clip_encode_text(clip, "a photo of a person", txt[1], &err);
 *   sd_clip_encode_image_rgb8(clip, rgb, width, height, img, &err);
 *   sd_clip_zero_shot(clip, img, &txt[0][0], SD_CLIP_MAX_PROJ, 2, probs);  // probs[0]: P(concept)
 */
#ifndef SD_CLIP_MODEL_H
#define SD_CLIP_MODEL_H

#include <stdint.h>

#include "core/error.h"
#include "eval/clip_preprocess.h"
#include "io/tensor_store.h"
#include "model/clip_text.h"
#include "model/clip_vision.h"
#include "model/tokenizer.h"

/* Widest projection among released CLIPs (ViT-bigG: 1280); a convenient size for callers' buffers. */
#define SD_CLIP_MAX_PROJ 1280

typedef struct {
  char *path;                    /* as given: a .safetensors file or an HF folder */
  char *weights_path;            /* the file the tensors came from */
  const char *config_source;     /* "config.json", "safetensors metadata" or "inferred from shapes" */
  sd_tensor_store *store;        /* the checkpoint, HF CLIPModel names; the towers point into it */
  sd_clip_vision vision;         /* vision_model.* + visual_projection */
  sd_clip_text text;             /* text_model.* */
  sd_linear text_projection;     /* [proj, d_text], no bias: text_projection.weight */
  float logit_scale;             /* logits = exp(logit_scale) · cos; ln(100) in trained openai CLIPs */
  int projection_dim;            /* embedding width of both towers */
  sd_clip_preprocess preprocess; /* from preprocessor_config.json / config.json, openai defaults */
  sd_tokenizer *tokenizer;       /* the folder's vocab.json + merges.txt, else sdprune's bundled SD-1 one */
  char tokenizer_dir[4096];
  float *text_hidden;  /* [77, d_text] scratch */
  float *pixel_values; /* [3, S, S] scratch of encode_image_rgb8 */
} sd_clip_model;

/* path: an HF CLIPModel folder (config.json, model.safetensors or pytorch_model.bin, optional
 * preprocessor_config.json, vocab.json/merges.txt) or a weights file (.safetensors, torch zip). For a
 * file the configuration is its safetensors __metadata__["config"] when present, else a config.json
 * beside it, else inferred from the shapes. A checkpoint without `vision_model.*` tensors (a text-only
 * CLIP such as a CLIPTextModel) is an error naming the file and that prefix. */
int sd_clip_model_load(const char *path, sd_clip_model **out, sd_error *err);
void sd_clip_model_free(sd_clip_model *m);

/* ids [77] -> text embed [projection_dim] (projected, not normalised): CLIPModel.get_text_features. The
 * pooled token is the first EOS, i.e. the argmax of ids (openai CLIP and HF's eos_token_id == 2 rule;
 * the EOS id 49407 is the largest in the CLIP vocabulary), after final_layer_norm. */
int sd_clip_encode_ids(sd_clip_model *m, const int32_t ids[SD_CLIP_TEXT_TOKENS], float *embed, sd_error *err);
/* The same for a prompt, through the model's tokenizer (truncated to 75 tokens as CLIPTokenizer). */
int sd_clip_encode_text(sd_clip_model *m, const char *prompt, float *embed, sd_error *err);

/* rgb [h, w, 3] -> pixel_values [3, S, S], S = vision image_size (see eval/clip_preprocess.h). */
int sd_clip_preprocess_image(const sd_clip_model *m, const uint8_t *rgb, int w, int h, float *pixel_values,
                             sd_error *err);
/* pixel_values [3, S, S] -> image embed [projection_dim]: CLIPModel.get_image_features. */
int sd_clip_encode_pixels(sd_clip_model *m, const float *pixel_values, float *embed, sd_error *err);
/* Preprocessing + encode_pixels. */
int sd_clip_encode_image_rgb8(sd_clip_model *m, const uint8_t *rgb, int w, int h, float *embed, sd_error *err);

/* Cosine similarity of two embeddings of n values (accumulated in double). */
double sd_clip_cosine(const float *a, const float *b, int n);
/* logits[j] = exp(logit_scale) · cos(image, text_j) for the k text embeds at text_embeds + j·stride:
 * CLIPModel's logits_per_image. */
void sd_clip_logits(const sd_clip_model *m, const float *image_embed, const float *text_embeds, int stride, int k,
                    float *logits);
/* Zero-shot classification: probs = softmax(logits) over the k labels (sums to 1). */
void sd_clip_zero_shot(const sd_clip_model *m, const float *image_embed, const float *text_embeds, int stride, int k,
                       float *probs);
/* CLIP score of an image-prompt pair as torchmetrics' CLIPScore (Hessel et al. 2021 with w = 100):
 * 100 · max(cos(image, text), 0), in [0, 100]; independent of logit_scale. torchmetrics averages this
 * over a batch; here it is one pair. */
double sd_clip_score(const float *image_embed, const float *text_embed, int n);

#endif
