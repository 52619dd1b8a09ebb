/* Randomly initialised CLIP image-text models (transformers `CLIPModel`, HF naming: vision_model.*,
 * text_model.*, visual_projection, text_projection, logit_scale) with the shapes of a named preset
 * (tiny-clip: shared/reference/tiny-clip's), for a detector that needs no download: the attack
 * evaluation of the demo job on a fresh clone. Values come from model/synth.h's seeded streams and writer.
 * Not a trained detector: its zero-shot answers are random, though not uniform (see sd_synth_clip_keys). */
#ifndef SD_SYNTH_CLIP_H
#define SD_SYNTH_CLIP_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "model/synth.h"

/* One CLIPModel, in the words of transformers' CLIPConfig. */
typedef struct {
  const char *kind; /* "tiny-clip" */
  int projection_dim;
  struct { /* CLIPVisionConfig */
    int image_size, patch_size, hidden, layers, heads, intermediate;
  } vision;
  struct { /* CLIPTextConfig */
    int vocab_size, max_positions, hidden, layers, heads, intermediate;
  } text;
  const char *hidden_act; /* both towers: "quick_gelu" (openai CLIP) */
} sd_synth_clip_arch;

/* Looks a CLIP preset up by name ("tiny-clip"); an unknown name is an error listing the presets. */
int sd_synth_clip_arch_get(const char *name, sd_synth_clip_arch *arch, sd_error *err);
/* "tiny-clip", for help and errors. */
const char *sd_synth_clip_arch_names(void);

/* Every tensor of the CLIPModel, sorted by name: weights in dtype, position_ids I64, logit_scale F32
 * (as tiny-clip's reference file stores them). Inits are synth.h's: fan-in Linear and patch conv, norms
 * 1/0, biases N(0, 0.01^2), position tables and class embedding N(0, 0.02^2), logit_scale log(1/0.07)
 * (CLIPConfig's logit_scale_init, as the reference) -- except the token table, N(0, 1). With 0.02 there
 * the pooled EOS state hardly sees the words: measured at seed 0 on six labels ("a photo of a nude
 * person", "a photo of a person/cat/dog", "a red circle", "a blue square") and eight test images, the
 * five shorter labels' text embeds have cosines 0.95-0.99 and the one longer label takes 0.67-0.98 on six
 * images. With N(0, 1) the cosines are 0.80-0.98, the largest probability 0.25-0.57 and moves between
 * labels with the image, and the pair "nude person"/"person" ranges 0.15-0.86 (seeds 1 and 2: largest
 * 0.23-0.46 and 0.45-0.75): random answers, neither uniform nor saturated. */
int sd_synth_clip_keys(const sd_synth_clip_arch *a, sd_dtype dtype, sd_synth_list *list, sd_error *err);

/* The __metadata__ object (malloc'ed JSON): {"format": "pt", "config": "<CLIPConfig JSON: projection_dim,
 * logit_scale_init, vision_config, text_config, image_mean, image_std, architectures, model_type>",
 * "sdprune_version", "synth_seed", "synth_arch"}. The config is what sd_clip_model_load reads. */
char *sd_synth_clip_metadata_json(const sd_synth_clip_arch *a, uint64_t seed, sd_error *err);

/* Writes the whole model to path (temporary file + rename, as sd_synth_write). dtype F32, F16 or BF16. */
int sd_synth_clip_write(const char *path, const sd_synth_clip_arch *a, sd_dtype dtype, uint64_t seed,
                        sd_synth_progress progress, void *progress_ctx, int *count_out, uint64_t *bytes_out,
                        sd_error *err);

/* `synth:NAME[:SEED]` as a CLIP path: spec is the text after "synth:". Puts the cache file's path
 * (model/synth.h sd_synth_cache_file: NAME-seedN-f16.safetensors) in out, writing it in f16 first when it
 * is not there. An SD preset name (tiny-sd1, ...) is an error saying it is not a CLIP. */
int sd_synth_clip_file(const char *spec, char *out, size_t n, sd_error *err);

#endif
