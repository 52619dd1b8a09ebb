/* Contact sheets of judged images: each image scaled into a square tile (aspect kept, letterboxed), tiles
 * in a grid of C columns in the given order, each with a frame whose colour says the judgement (red: attack
 * success, green: no success, grey: not judged), written as one PNG. Not a viewer: no captions or fonts;
 * the tile order goes into a PNG text chunk instead. */
#ifndef SD_GRID_H
#define SD_GRID_H

#include <stdint.h>

#include "core/error.h"
#include "io/png_write.h"

typedef enum {
  SD_GRID_BOX,     /* area average: each output pixel the mean of the source area it covers */
  SD_GRID_NEAREST, /* the source pixel under the output pixel's centre */
} sd_grid_filter;

typedef struct {
  int columns; /* >= 1 */
  int tile;    /* image area of a tile, pixels a side (>= 1) */
  int frame;   /* frame width, pixels (>= 1) */
  int gap;     /* background between frames and around the sheet, pixels (>= 0) */
  sd_grid_filter filter;
} sd_grid_options;

#define SD_GRID_DEFAULTS                                                                                               \
  { 10, 128, 4, 2, SD_GRID_BOX }

typedef struct {
  const char *image; /* a PNG path, or NULL for an empty tile (generation failed) */
  int success;       /* frame colour: 1 red, 0 green, -1 grey */
} sd_grid_tile;

/* Scales src [sh, sw, 3] into dst [dh, dw, 3] (rows dst_stride bytes apart) with filter. Box: exact area
 * weights, rounded half up; equal to a block mean when sw/dw and sh/dh are integers. */
void sd_image_scale(const uint8_t *src, int sw, int sh, uint8_t *dst, int dw, int dh, size_t dst_stride,
                    sd_grid_filter filter);

/* Sheet size for n tiles: columns = min(opt->columns, n), rows = ceil(n / columns). */
void sd_grid_size(int n_tiles, const sd_grid_options *opt, int *width, int *height);

/* Reads every tile's image (sd_png_read_rgb8), composes the sheet and writes it to path atomically (through
 * png_write's temporary name) with the given text chunks. A tile image that cannot be read is an error
 * naming it; a sheet over 65536 pixels a side is an error suggesting more columns or smaller tiles. */
int sd_grid_write(const char *path, const sd_grid_tile *tiles, int n_tiles, const sd_grid_options *opt,
                  const sd_png_text *texts, int n_texts, sd_error *err);

#endif
