/* A Stable Diffusion model as loaded from disk: the opened checkpoint files, one canonical-name view
 * per part (UNet, text encoder, VAE), configurations, and provenance. Handles the single-file layout
 * (`model.diffusion_model.*`, `cond_stage_model.*`, `first_stage_model.*`), the diffusers folder, and
 * part overrides (`--unet FILE`, `--text-encoder FILE`). No math here. */
#ifndef SD_MODEL_H
#define SD_MODEL_H

#include "io/tensor_store.h"
#include "model/unet.h"

#define SD_MODEL_MAX_FILES 8

typedef struct {
  const char *path;              /* single checkpoint file or diffusers folder */
  const char *config_path;       /* --config FILE.json|FILE.yaml|DIR, optional: architecture override */
  const char *unet_path;         /* --unet FILE, optional: replaces the UNet */
  const char *text_encoder_path; /* --text-encoder FILE, optional: replaces the text encoder */
  const char *tokenizer_dir;     /* --tokenizer DIR, optional */
  const char *prediction;        /* --prediction eps|v, optional: what the UNet predicts */
} sd_model_options;

typedef struct {
  char *path;
  const char *layout; /* "single-file" or "diffusers" */
  sd_tensor_store *files[SD_MODEL_MAX_FILES];
  int n_files;
  sd_tensor_store *unet_view, *text_view, *vae_view; /* NULL when the part is absent */
  const char *text_layout; /* "hf" (CLIPTextModel names) or "openclip" (SD 2.x single file) */
  sd_unet_config unet_cfg;
  const char *unet_cfg_source; /* "--config", "diffusers config", "checkpoint metadata", "inferred" */
  char *text_config_json;      /* HF CLIPTextConfig object text, or NULL (then infer from shapes) */
  char *vae_config_json;       /* diffusers AutoencoderKL config or ldm "vae" object text, or NULL */
  char *scheduler_config_json; /* diffusers scheduler config, or NULL */
  int v_prediction;            /* 1: the UNet predicts v (SD 2.x 768-v); 0: eps */
  const char *prediction_source; /* "--prediction", "--config", "scheduler config", "checkpoint metadata", "default" */
  char tokenizer_dir[4096];    /* empty when unknown */
  char hash[17];               /* hex digest identifying the weights (model hash in outputs) */
} sd_model;

int sd_model_open(const sd_model_options *opt, sd_model **out, sd_error *err);
void sd_model_close(sd_model *m);

/* The tokenizer used when neither the model nor --tokenizer names one: $SDPRUNE_TOKENIZER, else the
 * CLIP tokenizer bundled with sdprune (src/data/clip-tokenizer, the SD 1.x vocabulary). Returns 0 if none. */
int sd_default_tokenizer_dir(char *out, size_t n);

/* Reads a whole (small) text file; NULL with err set on failure. */
char *sd_read_text_file(const char *path, size_t max_bytes, sd_error *err);

#endif
