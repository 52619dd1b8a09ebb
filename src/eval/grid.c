/* Contact sheets (see grid.h): separable area-average and nearest scaling, tile layout, frames, and the
 * PNG through io/png_read and io/png_write. Knows nothing of runs or metrics. */
#include "eval/grid.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/png_read.h"

#define SHEET_MAX_SIDE 65536 /* png_write's limit */

static const uint8_t colour_success[3] = {220, 40, 40};
static const uint8_t colour_no_success[3] = {40, 170, 70};
static const uint8_t colour_unjudged[3] = {150, 150, 150};
static const uint8_t colour_letterbox[3] = {24, 24, 24};
static const uint8_t colour_background[3] = {255, 255, 255};

/* ---- scaling ------------------------------------------------------------------------------------------- */

/* Area weights of one axis: output i covers source [i*s/d, (i+1)*s/d); taps[i] source pixels from
 * first[i], weights summing to 1. Each output pixel covers at most ceil(s/d) + 1 source pixels. */
typedef struct {
  int *first, *taps;
  double *weights; /* [d, max_taps] */
  int max_taps;
} axis_weights;

static void free_axis(axis_weights *a) {
  free(a->first);
  free(a->taps);
  free(a->weights);
  *a = (axis_weights){0};
}

static int box_axis(int s, int d, axis_weights *a) {
  a->max_taps = s / d + 2;
  a->first = malloc(sizeof *a->first * (size_t)d);
  a->taps = malloc(sizeof *a->taps * (size_t)d);
  a->weights = malloc(sizeof *a->weights * (size_t)d * (size_t)a->max_taps);
  if (!a->first || !a->taps || !a->weights) {
    free_axis(a);
    return -1;
  }
  double step = (double)s / (double)d;
  for (int i = 0; i < d; i++) {
    double lo = i * step, hi = (i + 1) * step;
    int j0 = (int)floor(lo), j1 = (int)ceil(hi);
    if (j1 > s)
      j1 = s;
    int n = 0;
    for (int j = j0; j < j1 && n < a->max_taps; j++) {
      double w = fmin(hi, j + 1.0) - fmax(lo, (double)j);
      if (w > 1e-12)
        a->weights[(size_t)i * a->max_taps + n++] = w / step;
      else if (n == 0)
        j0 = j + 1; /* a sliver of zero width at the start */
    }
    a->first[i] = j0;
    a->taps[i] = n;
  }
  return 0;
}

static void scale_nearest(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh, size_t dst_stride) {
  for (int y = 0; y < dh; y++) {
    int sy = (int)(((double)y + 0.5) * sh / dh);
    for (int x = 0; x < dw; x++) {
      int sx = (int)(((double)x + 0.5) * sw / dw);
      memcpy(dst + (size_t)y * dst_stride + (size_t)x * 3, src + ((size_t)sy * sw + sx) * 3, 3);
    }
  }
}

/* Horizontal pass into doubles [sh, dw, 3], then the vertical one. Falls back to nearest without memory. */
static void scale_box(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh, size_t dst_stride) {
  axis_weights ax = {0}, ay = {0};
  double *rows = malloc(sizeof *rows * (size_t)sh * (size_t)dw * 3);
  if (!rows || box_axis(sw, dw, &ax) != 0 || box_axis(sh, dh, &ay) != 0) {
    free(rows);
    free_axis(&ax);
    free_axis(&ay);
    scale_nearest(src, sw, sh, dst, dw, dh, dst_stride);
    return;
  }
  for (int y = 0; y < sh; y++)
    for (int x = 0; x < dw; x++)
      for (int c = 0; c < 3; c++) {
        double v = 0;
        for (int t = 0; t < ax.taps[x]; t++)
          v += ax.weights[(size_t)x * ax.max_taps + t] * src[((size_t)y * sw + ax.first[x] + t) * 3 + c];
        rows[((size_t)y * dw + x) * 3 + c] = v;
      }
  for (int y = 0; y < dh; y++)
    for (int x = 0; x < dw; x++)
      for (int c = 0; c < 3; c++) {
        double v = 0;
        for (int t = 0; t < ay.taps[y]; t++)
          v += ay.weights[(size_t)y * ay.max_taps + t] * rows[((size_t)(ay.first[y] + t) * dw + x) * 3 + c];
        /* The 1e-9 keeps exact .5 means (a 2x2 block of 0 and 1) from rounding down on accumulated error. */
        long r = (long)floor(v + 0.5 + 1e-9);
        dst[(size_t)y * dst_stride + (size_t)x * 3 + c] = (uint8_t)(r < 0 ? 0 : r > 255 ? 255 : r);
      }
  free(rows);
  free_axis(&ax);
  free_axis(&ay);
}

void sd_image_scale(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh, size_t dst_stride,
                    sd_grid_filter filter) {
  if (sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0)
    return;
  if (filter == SD_GRID_NEAREST)
    scale_nearest(src, sw, sh, dst, dw, dh, dst_stride);
  else
    scale_box(src, sw, sh, dst, dw, dh, dst_stride);
}

/* ---- layout -------------------------------------------------------------------------------------------- */

static int cell_side(const sd_grid_options *o) {
  return o->tile + 2 * o->frame;
}

void sd_grid_size(int n_tiles, const sd_grid_options *opt, int *width, int *height) {
  int cols = n_tiles < opt->columns ? (n_tiles > 0 ? n_tiles : 1) : opt->columns;
  int rows = n_tiles > 0 ? (n_tiles + cols - 1) / cols : 1;
  long cell = cell_side(opt);
  long w = opt->gap + cols * (cell + opt->gap), h = opt->gap + rows * (cell + opt->gap);
  *width = w > SHEET_MAX_SIDE ? SHEET_MAX_SIDE + 1 : (int)w;
  *height = h > SHEET_MAX_SIDE ? SHEET_MAX_SIDE + 1 : (int)h;
}

static void fill_rect(uint8_t *sheet, size_t stride, int x0, int y0, int w, int h, const uint8_t colour[3]) {
  for (int y = y0; y < y0 + h; y++)
    for (int x = x0; x < x0 + w; x++)
      memcpy(sheet + (size_t)y * stride + (size_t)x * 3, colour, 3);
}

/* Draws tile t at cell (x0, y0): frame, letterbox, and the image scaled to fit with its aspect kept. */
static int draw_tile(uint8_t *sheet, size_t stride, int x0, int y0, const sd_grid_tile *t, const sd_grid_options *o,
                     sd_error *err) {
  const uint8_t *frame = t->success > 0 ? colour_success : t->success == 0 ? colour_no_success : colour_unjudged;
  fill_rect(sheet, stride, x0, y0, cell_side(o), cell_side(o), frame);
  int ix = x0 + o->frame, iy = y0 + o->frame;
  fill_rect(sheet, stride, ix, iy, o->tile, o->tile, colour_letterbox);
  if (!t->image)
    return 0;
  uint8_t *pixels;
  int w, h;
  if (sd_png_read_rgb8(t->image, &pixels, &w, &h, err) != 0)
    return -1;
  double scale = fmin((double)o->tile / w, (double)o->tile / h);
  int dw = (int)lround(w * scale), dh = (int)lround(h * scale);
  dw = dw < 1 ? 1 : dw > o->tile ? o->tile : dw;
  dh = dh < 1 ? 1 : dh > o->tile ? o->tile : dh;
  uint8_t *at = sheet + (size_t)(iy + (o->tile - dh) / 2) * stride + (size_t)(ix + (o->tile - dw) / 2) * 3;
  sd_image_scale(pixels, w, h, at, dw, dh, stride, o->filter);
  free(pixels);
  return 0;
}

int sd_grid_write(const char *path, const sd_grid_tile *tiles, int n_tiles, const sd_grid_options *opt,
                  const sd_png_text *texts, int n_texts, sd_error *err) {
  if (!opt || opt->columns < 1 || opt->tile < 1 || opt->frame < 1 || opt->gap < 0 || n_tiles < 0)
    return sd_fail(err, "%s: bad sheet options (columns >= 1, tile >= 1, frame >= 1, gap >= 0)", path);
  int width, height;
  sd_grid_size(n_tiles, opt, &width, &height);
  if (width > SHEET_MAX_SIDE || height > SHEET_MAX_SIDE)
    return sd_fail(err,
                   "%s: a sheet of %d tiles in %d columns of %d px is over %d pixels a side; use more columns "
                   "or smaller tiles",
                   path, n_tiles, opt->columns, opt->tile, SHEET_MAX_SIDE);
  size_t stride = (size_t)width * 3;
  uint8_t *sheet = sd_malloc(stride * (size_t)height, err);
  if (!sheet)
    return sd_fail_prefix(err, "%s: sheet of %dx%d", path, width, height);
  fill_rect(sheet, stride, 0, 0, width, height, colour_background);
  int cols = n_tiles < opt->columns ? (n_tiles > 0 ? n_tiles : 1) : opt->columns, rc = 0;
  for (int i = 0; i < n_tiles && rc == 0; i++) {
    int x0 = opt->gap + (i % cols) * (cell_side(opt) + opt->gap);
    int y0 = opt->gap + (i / cols) * (cell_side(opt) + opt->gap);
    if (draw_tile(sheet, stride, x0, y0, &tiles[i], opt, err) != 0)
      rc = sd_fail_prefix(err, "%s: tile %d", path, i);
  }
  if (rc == 0)
    rc = sd_png_write_rgb8(path, sheet, height, width, texts, n_texts, err);
  free(sheet);
  return rc;
}
