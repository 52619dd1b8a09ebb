/* PNG reader behind io/png_read.h: libpng's progressive-free read path with the transformations that
 * normalise every colour type and depth to RGB8. Nothing here scales or writes images. */
#include "io/png_read.h"

#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PNG_READ_MAX_SIDE 65536 /* as the writer */

typedef struct {
  jmp_buf jump;
  char msg[256];
} png_failure;

static void on_png_error(png_structp png, png_const_charp msg) {
  png_failure *failure = png_get_error_ptr(png);
  snprintf(failure->msg, sizeof failure->msg, "%s", msg);
  longjmp(failure->jump, 1);
}

static void on_png_warning(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

/* What decode_png hands back; filled only after the last longjmp point that could leave it stale. */
typedef struct {
  uint8_t *pixels;
  int width, height;
  char why[300]; /* a message when the image is refused (size) rather than broken */
} decoded;

/* Decodes f (positioned after the 8 signature bytes) into out. Kept apart so that the setjmp frame holds no
 * locals that change after setjmp: the buffers live in *out and *rows_slot. */
static int decode_png(FILE *f, decoded *out, png_bytep **rows_slot, png_failure *failure) {
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, failure, on_png_error, on_png_warning);
  if (!png) {
    snprintf(failure->msg, sizeof failure->msg, "cannot create read struct");
    return -1;
  }
  png_infop info = png_create_info_struct(png);
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    snprintf(failure->msg, sizeof failure->msg, "cannot create info struct");
    return -1;
  }
  if (setjmp(failure->jump)) {
    png_destroy_read_struct(&png, &info, NULL);
    return -1;
  }
  png_init_io(png, f);
  png_set_sig_bytes(png, 8);
  png_read_info(png, info);
  png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
  int color = png_get_color_type(png, info), depth = png_get_bit_depth(png, info);
  if (w > PNG_READ_MAX_SIDE || h > PNG_READ_MAX_SIDE) {
    snprintf(out->why, sizeof out->why, "image of %ux%u pixels is over %d a side", (unsigned)w, (unsigned)h,
             PNG_READ_MAX_SIDE);
    png_destroy_read_struct(&png, &info, NULL);
    return -1;
  }
  if (color == PNG_COLOR_TYPE_PALETTE)
    png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8)
    png_set_expand_gray_1_2_4_to_8(png);
  if (depth == 16)
    png_set_strip_16(png); /* the high byte, as cv2 and PIL do */
  if (color == PNG_COLOR_TYPE_GRAY || color == PNG_COLOR_TYPE_GRAY_ALPHA)
    png_set_gray_to_rgb(png);
  png_set_strip_alpha(png); /* also the alpha that palette or gray tRNS would expand to */
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  if (png_get_channels(png, info) != 3 || png_get_bit_depth(png, info) != 8) {
    snprintf(out->why, sizeof out->why, "unexpected layout after conversion (%d channels, %d bits)",
             png_get_channels(png, info), png_get_bit_depth(png, info));
    png_destroy_read_struct(&png, &info, NULL);
    return -1;
  }
  size_t stride = (size_t)w * 3;
  out->pixels = malloc(stride * h);
  *rows_slot = malloc(sizeof **rows_slot * h);
  if (!out->pixels || !*rows_slot) {
    snprintf(out->why, sizeof out->why, "out of memory for %ux%u pixels", (unsigned)w, (unsigned)h);
    png_destroy_read_struct(&png, &info, NULL);
    return -1;
  }
  for (png_uint_32 y = 0; y < h; y++)
    (*rows_slot)[y] = out->pixels + y * stride;
  png_read_image(png, *rows_slot);
  png_read_end(png, NULL);
  png_destroy_read_struct(&png, &info, NULL);
  out->width = (int)w;
  out->height = (int)h;
  return 0;
}

int sd_png_read_rgb8(const char *path, uint8_t **hwc, int *width, int *height, sd_error *err) {
  *hwc = NULL;
  *width = *height = 0;
  FILE *f = fopen(path, "rb");
  if (!f)
    return sd_fail(err, "%s: %s", path, strerror(errno));
  unsigned char sig[8];
  size_t got = fread(sig, 1, sizeof sig, f);
  if (got != sizeof sig || png_sig_cmp(sig, 0, sizeof sig) != 0) {
    fclose(f);
    return sd_fail(err, "%s: not a PNG file", path);
  }
  png_failure failure = {.msg = ""};
  decoded out = {NULL, 0, 0, ""};
  png_bytep *rows = NULL;
  int rc = decode_png(f, &out, &rows, &failure);
  fclose(f);
  free(rows);
  if (rc != 0) {
    free(out.pixels);
    return out.why[0] ? sd_fail(err, "%s: %s", path, out.why)
                      : sd_fail(err, "%s: bad PNG (libpng: %s)", path, failure.msg);
  }
  *hwc = out.pixels;
  *width = out.width;
  *height = out.height;
  return 0;
}
