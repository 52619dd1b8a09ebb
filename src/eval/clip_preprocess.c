/* CLIP image preprocessing (see clip_preprocess.h): PIL-exact bicubic resize, crop, normalisation. */
#include "eval/clip_preprocess.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

void sd_clip_preprocess_defaults(sd_clip_preprocess *p, int image_size) {
  /* OPENAI_CLIP_MEAN / OPENAI_CLIP_STD of transformers (openai CLIP's Normalize) */
  static const float mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
  static const float std[3] = {0.26862954f, 0.26130258f, 0.27577711f};
  memset(p, 0, sizeof *p);
  p->resize_shortest = image_size;
  p->crop = image_size;
  memcpy(p->mean, mean, sizeof mean);
  memcpy(p->std, std, sizeof std);
  p->crop_rule = SD_CLIP_CROP_HF;
  p->resize_rule = SD_CLIP_RESIZE_TRUNCATE;
}

static int read_triple(json_t *o, const char *key, float out[3], int positive, sd_error *err) {
  json_t *a = json_object_get(o, key);
  if (!a)
    return 0;
  if (!json_is_array(a) || json_array_size(a) != 3)
    return sd_fail(err, "preprocess config: '%s' must be an array of 3 numbers", key);
  for (int c = 0; c < 3; c++) {
    json_t *v = json_array_get(a, (size_t)c);
    if (!json_is_number(v) || (positive && !(json_number_value(v) > 0)))
      return sd_fail(err, "preprocess config: '%s'[%d] must be a %snumber", key, c, positive ? "positive " : "");
    out[c] = (float)json_number_value(v);
  }
  return 0;
}

/* An int, or an object member (e.g. size {"shortest_edge": 224}, crop_size {"height": 224}). */
static int read_size(json_t *o, const char *key, const char *member, int *out, sd_error *err) {
  json_t *v = json_object_get(o, key);
  if (!v)
    return 0;
  if (json_is_object(v))
    v = json_object_get(v, member);
  if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > 65536)
    return sd_fail(err, "preprocess config: '%s' must be a positive integer or hold \"%s\"", key, member);
  *out = (int)json_integer_value(v);
  return 0;
}

int sd_clip_preprocess_from_json(const char *text, sd_clip_preprocess *p, sd_error *err) {
  json_error_t jerr;
  json_t *root = json_loads(text, 0, &jerr);
  if (!root)
    return sd_fail(err, "preprocess config: invalid JSON at line %d: %s", jerr.line, jerr.text);
  int rc = read_triple(root, "image_mean", p->mean, 0, err) || read_triple(root, "image_std", p->std, 1, err) ||
                   read_size(root, "size", "shortest_edge", &p->resize_shortest, err) ||
                   read_size(root, "crop_size", "height", &p->crop, err)
               ? -1
               : 0;
  json_t *crop = json_object_get(root, "crop_size");
  if (rc == 0 && json_is_object(crop) && json_object_get(crop, "width") &&
      json_integer_value(json_object_get(crop, "width")) != p->crop)
    rc = sd_fail(err, "preprocess config: a crop_size that is not square is not supported");
  json_decref(root);
  return rc;
}

/* shortest·long/short in exact integers: truncated (Python's int()) or rounded half to even (round()). */
static int scaled_side(int shortest, int long_side, int short_side, sd_clip_resize_rule rule) {
  const int64_t num = (int64_t)shortest * long_side, q = num / short_side, r2 = 2 * (num % short_side);
  if (rule == SD_CLIP_RESIZE_TRUNCATE || r2 < short_side)
    return (int)q;
  if (r2 > short_side)
    return (int)q + 1;
  return (int)(q % 2 == 0 ? q : q + 1);
}

void sd_clip_resize_size(int w, int h, int shortest, sd_clip_resize_rule rule, int *out_w, int *out_h) {
  if (w <= h) {
    *out_w = shortest;
    *out_h = scaled_side(shortest, h, w, rule);
  } else {
    *out_h = shortest;
    *out_w = scaled_side(shortest, w, h, rule);
  }
}

/* ---- PIL's ImagingResample, 8 bits per channel ----------------------------------------- */

/* Pillow's weights carry 32 - 8 - 2 fraction bits: 8 for the pixel, 2 of headroom for the filter's
 * negative lobes pushing partial sums past [0, 255]. */
#define PIL_PRECISION_BITS 22

/* Keys' cubic convolution kernel with a = -0.5 (PIL's BICUBIC), support 2. */
static double bicubic(double x) {
  const double a = -0.5;
  if (x < 0.0)
    x = -x;
  if (x < 1.0)
    return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0)
    return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

/* Per output pixel of one axis: the first input index, the tap count and ksize fixed-point weights. */
typedef struct {
  int ksize;
  int *first, *taps; /* [out] */
  int32_t *weights;  /* [out, ksize] */
} resample_axis;

static void axis_free(resample_axis *ax) {
  free(ax->first);
  free(ax->taps);
  free(ax->weights);
}

/* PIL precompute_coeffs + normalize_coeffs_8bpc for the whole axis (box [0, in)): the output pixel xx
 * is centred at (xx + 0.5)·scale; when shrinking, the kernel is stretched by the scale (antialiasing). */
static int axis_init(resample_axis *ax, int in, int out, sd_error *err) {
  memset(ax, 0, sizeof *ax);
  const double scale = (double)in / out, filterscale = scale < 1.0 ? 1.0 : scale, support = 2.0 * filterscale;
  ax->ksize = (int)ceil(support) * 2 + 1;
  ax->first = sd_malloc(sizeof(int) * (size_t)out, err);
  ax->taps = sd_malloc(sizeof(int) * (size_t)out, err);
  ax->weights = sd_calloc((size_t)out * ax->ksize, sizeof(int32_t), err);
  double *w = sd_malloc(sizeof(double) * (size_t)ax->ksize, err);
  if (!ax->first || !ax->taps || !ax->weights || !w) {
    free(w);
    axis_free(ax);
    return -1;
  }
  for (int xx = 0; xx < out; xx++) {
    const double center = (xx + 0.5) * scale, ss = 1.0 / filterscale;
    int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5); /* PIL truncates */
    if (xmin < 0)
      xmin = 0;
    if (xmax > in)
      xmax = in;
    const int n = xmax - xmin;
    double sum = 0.0;
    for (int x = 0; x < n; x++) {
      w[x] = bicubic((x + xmin - center + 0.5) * ss);
      sum += w[x];
    }
    int32_t *k = ax->weights + (size_t)xx * ax->ksize;
    for (int x = 0; x < n; x++) {
      double v = sum != 0.0 ? w[x] / sum : w[x];
      k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PIL_PRECISION_BITS)) : (int32_t)(0.5 + v * (1 << PIL_PRECISION_BITS));
    }
    ax->first[xx] = xmin;
    ax->taps[xx] = n;
  }
  free(w);
  return 0;
}

/* PIL clip8: the rounding constant is added before the sum, then floor(sum / 2^22) clamped to [0, 255]. */
static inline uint8_t clip8(int64_t acc) {
  if (acc < 0)
    return 0;
  acc >>= PIL_PRECISION_BITS;
  return acc > 255 ? 255 : (uint8_t)acc;
}

/* dst [h, ow, 3] from src [h, w, 3] along x. */
static void resample_horizontal(uint8_t *dst, const uint8_t *src, int w, int h, int ow, const resample_axis *ax) {
  for (int y = 0; y < h; y++) {
    const uint8_t *row = src + (size_t)y * w * 3;
    for (int xx = 0; xx < ow; xx++) {
      const int32_t *k = ax->weights + (size_t)xx * ax->ksize;
      const uint8_t *p = row + (size_t)ax->first[xx] * 3;
      int64_t s0 = 1 << (PIL_PRECISION_BITS - 1), s1 = s0, s2 = s0;
      for (int x = 0; x < ax->taps[xx]; x++) {
        s0 += (int64_t)p[3 * x + 0] * k[x];
        s1 += (int64_t)p[3 * x + 1] * k[x];
        s2 += (int64_t)p[3 * x + 2] * k[x];
      }
      uint8_t *o = dst + ((size_t)y * ow + xx) * 3;
      o[0] = clip8(s0);
      o[1] = clip8(s1);
      o[2] = clip8(s2);
    }
  }
}

/* dst [oh, w, 3] from src [h, w, 3] along y. */
static void resample_vertical(uint8_t *dst, const uint8_t *src, int w, int oh, const resample_axis *ax) {
  for (int yy = 0; yy < oh; yy++) {
    const int32_t *k = ax->weights + (size_t)yy * ax->ksize;
    for (int x = 0; x < w * 3; x++) {
      int64_t s = 1 << (PIL_PRECISION_BITS - 1);
      for (int y = 0; y < ax->taps[yy]; y++)
        s += (int64_t)src[((size_t)(ax->first[yy] + y) * w) * 3 + x] * k[y];
      dst[((size_t)yy * w) * 3 + x] = clip8(s);
    }
  }
}

int sd_resize_bicubic_rgb8(const uint8_t *src, int w, int h, uint8_t *dst, int ow, int oh, sd_error *err) {
  if (w <= 0 || h <= 0 || ow <= 0 || oh <= 0)
    return sd_fail(err, "resize: sizes must be positive (%dx%d -> %dx%d)", w, h, ow, oh);
  /* PIL skips a pass whose axis keeps its size (and copies when both do) */
  const int horizontal = ow != w, vertical = oh != h;
  if (!horizontal && !vertical) {
    memcpy(dst, src, (size_t)w * h * 3);
    return 0;
  }
  resample_axis ax;
  uint8_t *tmp = NULL;
  int rc = -1;
  if (horizontal) {
    if (axis_init(&ax, w, ow, err) != 0)
      return -1;
    tmp = vertical ? sd_malloc((size_t)ow * h * 3, err) : dst;
    if (tmp)
      resample_horizontal(tmp, src, w, h, ow, &ax);
    axis_free(&ax);
    if (!tmp)
      return -1;
  }
  if (!vertical)
    return 0;
  if (axis_init(&ax, h, oh, err) != 0)
    goto free_tmp;
  resample_vertical(dst, horizontal ? tmp : src, ow, oh, &ax);
  axis_free(&ax);
  rc = 0;
free_tmp:
  if (horizontal)
    free(tmp);
  return rc;
}

/* ---- the whole preprocessing ------------------------------------------------------------ */

static int crop_offset(int size, int crop, sd_clip_crop_rule rule) {
  int margin = size - crop;
  if (rule == SD_CLIP_CROP_HF || margin % 2 == 0)
    return margin / 2;
  int k = margin / 2; /* margin / 2.0 = k + 0.5: Python's round() goes to the even neighbour */
  return k % 2 == 0 ? k : k + 1;
}

int sd_clip_preprocess_rgb8(const sd_clip_preprocess *p, const uint8_t *rgb, int w, int h, float *pixel_values,
                            sd_error *err) {
  if (w <= 0 || h <= 0)
    return sd_fail(err, "CLIP preprocess: image size %dx%d must be positive", w, h);
  if (p->resize_shortest < p->crop)
    return sd_fail(err, "CLIP preprocess: shortest side %d after the resize is smaller than the crop %d",
                   p->resize_shortest, p->crop);
  int rw, rh;
  sd_clip_resize_size(w, h, p->resize_shortest, p->resize_rule, &rw, &rh);
  uint8_t *resized = sd_malloc((size_t)rw * rh * 3, err);
  if (!resized || sd_resize_bicubic_rgb8(rgb, w, h, resized, rw, rh, err) != 0) {
    free(resized);
    return sd_fail_prefix(err, "CLIP preprocess");
  }
  const int top = crop_offset(rh, p->crop, p->crop_rule), left = crop_offset(rw, p->crop, p->crop_rule);
  const int S = p->crop;
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < S; y++)
      for (int x = 0; x < S; x++) {
        /* float32 as ToTensor (x / 255) then Normalize ((x - mean) / std) */
        float v = (float)resized[((size_t)(top + y) * rw + left + x) * 3 + c] / 255.0f;
        pixel_values[((size_t)c * S + y) * S + x] = (v - p->mean[c]) / p->std[c];
      }
  free(resized);
  return 0;
}
