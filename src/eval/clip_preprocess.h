/* CLIP image preprocessing as Hugging Face CLIPImageProcessor and openai CLIP's `preprocess` do it:
 * resize the shortest side with PIL's BICUBIC filter, centre crop, scale to [0, 1], normalise by
 * mean/std, CHW float32. The resize reproduces PIL's ImagingResample for 8-bit images (Pillow
 * Resample.c: separable convolution, horizontal pass then vertical, fixed-point weights, rounding to
 * uint8 between the passes), so pixel values match PIL's to the last bit rather than approximately.
 * No colour management, no alpha: the input is 8-bit RGB, row-major [h, w, 3]. */
#ifndef SD_CLIP_PREPROCESS_H
#define SD_CLIP_PREPROCESS_H

#include <stdint.h>

#include "core/error.h"

/* The two libraries differ in one detail of the crop: the offset of a crop whose margin is odd. */
typedef enum {
  SD_CLIP_CROP_HF = 0,     /* CLIPImageProcessor (transformers center_crop): (size - crop) // 2 */
  SD_CLIP_CROP_TORCHVISION /* openai CLIP (torchvision CenterCrop): round((size - crop) / 2), half to even */
} sd_clip_crop_rule;

/* ...and the reference data in one detail of the resize: the length of the long side. */
typedef enum {
  SD_CLIP_RESIZE_TRUNCATE = 0, /* transformers and torchvision: int(shortest · long / short) */
  SD_CLIP_RESIZE_ROUND         /* round(shortest · long / short), half to even: how tiny-clip's reference
                                * resized (56×40 -> 45×32, where transformers makes 44×32) */
} sd_clip_resize_rule;

typedef struct {
  int resize_shortest; /* shortest side after the resize: size["shortest_edge"] (= image_size) */
  int crop;            /* crop_size, the vision tower's image_size */
  float mean[3], std[3];
  sd_clip_crop_rule crop_rule;
  sd_clip_resize_rule resize_rule;
} sd_clip_preprocess;

/* openai CLIP's mean and std, resize and crop to image_size, transformers' resize and crop rules. */
void sd_clip_preprocess_defaults(sd_clip_preprocess *p, int image_size);

/* Reads image_mean and image_std (3 numbers each; a CLIPConfig saved with them at the top level, as
 * tiny-clip's config.json, or a preprocessor_config.json), and from a preprocessor_config.json also
 * size ({"shortest_edge": n} or n) and crop_size ({"height": n, "width": n} or n). Absent keys keep p's
 * values; a present key with a wrong type is an error naming it. */
int sd_clip_preprocess_from_json(const char *json_text, sd_clip_preprocess *p, sd_error *err);

/* Size after resizing the shortest side of w×h to `shortest`; the other side by `rule` (truncated as
 * transformers get_resize_output_image_size and torchvision Resize compute it, or rounded). Square
 * images and SD's usual sizes (multiples of 64 resized to 224) give whole numbers: the rules agree. */
void sd_clip_resize_size(int w, int h, int shortest, sd_clip_resize_rule rule, int *out_w, int *out_h);

/* PIL's Image.resize((ow, oh), Image.BICUBIC) of src [h, w, 3] into dst [oh, ow, 3]: cubic kernel a = -0.5,
 * support 2 widened by the scale factor when shrinking (antialiasing), weights normalised per output pixel
 * and rounded to 22-bit fixed point, uint8 result of the horizontal pass fed to the vertical pass. */
int sd_resize_bicubic_rgb8(const uint8_t *src, int w, int h, uint8_t *dst, int ow, int oh, sd_error *err);

/* rgb [h, w, 3] -> pixel_values [3, crop, crop]: resize (shortest side), centre crop, x/255, (x - mean)/std. */
int sd_clip_preprocess_rgb8(const sd_clip_preprocess *p, const uint8_t *rgb, int w, int h, float *pixel_values,
                            sd_error *err);

#endif
