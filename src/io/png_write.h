/* PNG output for generated images: the diffusers float->uint8 conversion, an atomic 8-bit RGB PNG writer with
 * text chunks (A1111 "parameters", sdprune provenance), and the A1111 infotext formatter.
 * Not a PNG reader, and no alpha, 16-bit or palette output. */
#ifndef SD_PNG_WRITE_H
#define SD_PNG_WRITE_H

#include <stdint.h>

#include "core/error.h"

typedef struct {
  const char *key;  /* 1..79 Latin-1 printable characters (PNG keyword rules) */
  const char *text; /* UTF-8; written as tEXt when Latin-1 encodable, else iTXt (as PIL's add_text does) */
} sd_png_text;

/* chw: [3, H, W] float image in [-1, 1] as the VAE decodes it; hwc: [H, W, 3] bytes.
 * Mirrors diffusers exactly in float32: v = clamp(x * 0.5 + 0.5, 0, 1), then numpy's
 * (v * 255).round().astype("uint8") -- round half to even. NaN becomes 0. */
void sd_image_to_rgb8(const float *chw, int H, int W, uint8_t *hwc);

/* Writes chw (see above) as an 8-bit RGB PNG with the given text chunks, through "<path>.tmp.<pid>" and a
 * rename, so a partial PNG is never left at path (nor the temporary, on failure). */
int sd_png_write_rgb(const char *path, const float *chw, int H, int W, const sd_png_text *texts, int n_texts,
                     sd_error *err);

/* Same, from bytes already converted ([H, W, 3]). */
int sd_png_write_rgb8(const char *path, const uint8_t *hwc, int H, int W, const sd_png_text *texts, int n_texts,
                      sd_error *err);

/* A1111's quote() for infotext values (modules/infotext_utils.py): returned unchanged unless it contains ',',
 * '\n' or ':', else as json.dumps(value, ensure_ascii=False). Returns a malloc'd string (NULL on OOM). */
char *sd_a1111_quote(const char *value);

/* A1111 infotext ("parameters" chunk) as create_infotext builds it:
 *   "<prompt>[\nNegative prompt: <negative>]\nSteps: N, Sampler: S, CFG scale: C, Seed: N, Size: WxH,
 *    Model hash: H, Model: M[, <extra>], Version: sdprune <version>"
 * with each value passed through sd_a1111_quote, NULL/empty model_hash/model_name omitted, cfg_scale printed as
 * Python's repr(float) (7.5, 7.0), and the whole text stripped of surrounding whitespace. extra (may be NULL)
 * is pre-formatted "Key: value, Key2: value2" (quote its values with sd_a1111_quote) and goes before
 * Version, where A1111 puts extra_generation_params. Returns malloc'd text, NULL on OOM. */
char *sd_a1111_parameters(const char *prompt, const char *negative, int steps, const char *sampler_name,
                          double cfg_scale, uint64_t seed, int width, int height, const char *model_hash,
                          const char *model_name, const char *extra);

#endif
