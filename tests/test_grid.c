/* eval/grid: box scaling against block means and against a direct 2-D area integral (non-integer ratios,
 * up and down), nearest scaling, and a small sheet read back: size, frame colours per judgement, the image
 * inside its tile, letterboxing, empty cells; errors (unreadable tile, oversized sheet) leave no file. */
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "eval/grid.h"
#include "io/png_read.h"
#include "io/png_write.h"
#include "test_util.h"

/* The reference: output pixel = integral of the source over its area / the area, done in 2-D directly. */
static void box_reference(const uint8_t *src, int sw, int sh, double *out, int dw, int dh) {
  double sx = (double)sw / dw, sy = (double)sh / dh;
  for (int y = 0; y < dh; y++)
    for (int x = 0; x < dw; x++)
      for (int c = 0; c < 3; c++) {
        double v = 0;
        for (int j = 0; j < sh; j++) {
          double oy = fmin((y + 1) * sy, j + 1.0) - fmax(y * sy, (double)j);
          if (oy <= 0)
            continue;
          for (int i = 0; i < sw; i++) {
            double ox = fmin((x + 1) * sx, i + 1.0) - fmax(x * sx, (double)i);
            if (ox > 0)
              v += ox * oy * src[((size_t)j * sw + i) * 3 + c];
          }
        }
        out[((size_t)y * dw + x) * 3 + c] = v / (sx * sy);
      }
}

static void test_scaling(void) {
  uint8_t src[9 * 7 * 3], dst[12 * 12 * 3];
  for (int i = 0; i < (int)sizeof src; i++)
    src[i] = (uint8_t)((i * 97 + 13) % 256);
  /* Block means: 4x2 -> 2x1 exactly. */
  uint8_t block[4 * 2 * 3] = {0, 0, 0, 10, 10, 10, 20, 20, 20, 30, 30, 30, 1, 1, 1, 11, 11, 11, 21, 21, 21, 31, 31, 31};
  uint8_t two[2 * 3];
  sd_image_scale(block, 4, 2, two, 2, 1, 2 * 3, SD_GRID_BOX);
  /* (0+10+1+11)/4 = 5.5 -> 6 (half up); (20+30+21+31)/4 = 25.5 -> 26 */
  CHECK(two[0] == 6 && two[3] == 26, "block means: %d %d", two[0], two[3]);
  static const int sizes[][2] = {{4, 3}, {5, 5}, {2, 7}, {9, 7}, {12, 11}, {1, 1}};
  int worst = 0;
  for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
    int dw = sizes[k][0], dh = sizes[k][1];
    double ref[12 * 12 * 3];
    sd_image_scale(src, 9, 7, dst, dw, dh, (size_t)dw * 3, SD_GRID_BOX);
    box_reference(src, 9, 7, ref, dw, dh);
    int off = 0;
    for (int i = 0; i < dw * dh * 3; i++) {
      int want = (int)floor(ref[i] + 0.5 + 1e-9);
      off = abs(dst[i] - want) > off ? abs(dst[i] - want) : off;
    }
    /* Same rounding on the same real number: any difference would be a wrong weight, not round-off. */
    CHECK(off == 0, "box 9x7 -> %dx%d: off by %d", dw, dh, off);
    worst = off > worst ? off : worst;
  }
  printf("box scaling: worst difference from the 2-D area integral %d\n", worst);
  /* Nearest 2x up: pixel (x, y) of the output is source (x / 2, y / 2). */
  uint8_t up[18 * 14 * 3];
  sd_image_scale(src, 9, 7, up, 18, 14, 18 * 3, SD_GRID_NEAREST);
  int bad = 0;
  for (int y = 0; y < 14; y++)
    for (int x = 0; x < 18; x++)
      bad += memcmp(up + ((size_t)y * 18 + x) * 3, src + ((size_t)(y / 2) * 9 + x / 2) * 3, 3) != 0;
  CHECK(bad == 0, "nearest 2x: %d pixels differ", bad);
  /* Strided output: a 2x2 result into a 5-pixel-wide canvas leaves the rest alone. */
  uint8_t canvas[5 * 2 * 3];
  memset(canvas, 77, sizeof canvas);
  sd_image_scale(src, 9, 7, canvas, 2, 2, 5 * 3, SD_GRID_BOX);
  CHECK(canvas[2 * 3] == 77 && canvas[5 * 3 + 2 * 3] == 77, "stride respected");
}

static const uint8_t *pixel(const uint8_t *img, int w, int x, int y) {
  return img + ((size_t)y * w + x) * 3;
}

static int is_colour(const uint8_t *p, int r, int g, int b) {
  return p[0] == r && p[1] == g && p[2] == b;
}

static void test_sheet(const char *dir) {
  char solid[512], wide[512], out[512], missing[512];
  snprintf(solid, sizeof solid, "%s/solid.png", dir);
  snprintf(wide, sizeof wide, "%s/wide.png", dir);
  snprintf(out, sizeof out, "%s/sheet.png", dir);
  snprintf(missing, sizeof missing, "%s/missing.png", dir);
  uint8_t img[16 * 16 * 3];
  for (int i = 0; i < 16 * 16; i++)
    img[i * 3] = 10, img[i * 3 + 1] = 20, img[i * 3 + 2] = 30;
  sd_error err;
  CHECK(sd_png_write_rgb8(solid, img, 16, 16, NULL, 0, &err) == 0, "%s", err.msg);
  CHECK(sd_png_write_rgb8(wide, img, 8, 16, NULL, 0, &err) == 0, "%s", err.msg);
  sd_grid_tile tiles[] = {{solid, 1}, {wide, 0}, {NULL, -1}};
  sd_grid_options opt = {2, 8, 2, 1, SD_GRID_BOX};
  sd_png_text text = {"items", "a\nb\nc"};
  CHECK(sd_grid_write(out, tiles, 3, &opt, &text, 1, &err) == 0, "write: %s", err.msg);
  uint8_t *sheet = NULL;
  int w = 0, h = 0;
  CHECK(sd_png_read_rgb8(out, &sheet, &w, &h, &err) == 0, "read back: %s", err.msg);
  /* 2 columns, 2 rows of cells 8 + 2*2 = 12 with a 1-pixel gap: 1 + 2 * 13 = 27. */
  CHECK(w == 27 && h == 27, "sheet %dx%d, want 27x27", w, h);
  if (!sheet || w != 27 || h != 27) {
    free(sheet);
    return;
  }
  CHECK(is_colour(pixel(sheet, w, 0, 0), 255, 255, 255), "gap is white");
  CHECK(is_colour(pixel(sheet, w, 1, 1), 220, 40, 40), "tile 0 (success): red frame");
  CHECK(is_colour(pixel(sheet, w, 14, 1), 40, 170, 70), "tile 1 (no success): green frame");
  CHECK(is_colour(pixel(sheet, w, 1, 14), 150, 150, 150), "tile 2 (not judged): grey frame");
  CHECK(is_colour(pixel(sheet, w, 7, 7), 10, 20, 30), "tile 0: the image fills its 8x8 area");
  CHECK(is_colour(pixel(sheet, w, 3, 3), 10, 20, 30) && is_colour(pixel(sheet, w, 10, 10), 10, 20, 30),
        "tile 0: image corners");
  /* Tile 1: a 16x8 image fits as 8x4, rows 2..5 of the 8: letterbox above and below. */
  CHECK(is_colour(pixel(sheet, w, 18, 3), 24, 24, 24) && is_colour(pixel(sheet, w, 18, 5), 10, 20, 30) &&
            is_colour(pixel(sheet, w, 18, 8), 10, 20, 30) && is_colour(pixel(sheet, w, 18, 9), 24, 24, 24),
        "tile 1: letterboxed");
  CHECK(is_colour(pixel(sheet, w, 20, 20), 255, 255, 255), "cell 3 (no tile) is background");
  CHECK(is_colour(pixel(sheet, w, 7, 20), 24, 24, 24), "tile 2 (no image): empty");
  free(sheet);

  /* Errors: an unreadable tile names it, and nothing is written. */
  char out2[600];
  snprintf(out2, sizeof out2, "%s/sheet2.png", dir);
  sd_grid_tile bad[] = {{solid, 1}, {missing, 0}};
  CHECK(sd_grid_write(out2, bad, 2, &opt, NULL, 0, &err) == -1 && strstr(err.msg, "tile 1: ") &&
            strstr(err.msg, "missing.png: No such file") && access(out2, F_OK) != 0,
        "missing tile: %s", err.msg);
  sd_grid_options huge = {1, 4096, 4, 2, SD_GRID_BOX};
  sd_grid_tile many[20];
  for (int i = 0; i < 20; i++)
    many[i] = (sd_grid_tile){NULL, -1};
  CHECK(sd_grid_write(out2, many, 20, &huge, NULL, 0, &err) == -1 && strstr(err.msg, "use more columns") &&
            access(out2, F_OK) != 0,
        "oversized: %s", err.msg);
  sd_grid_options zero = {0, 8, 2, 1, SD_GRID_BOX};
  CHECK(sd_grid_write(out2, tiles, 3, &zero, NULL, 0, &err) == -1, "0 columns refused");
}

int main(void) {
  char dir[] = "/tmp/sdprune-grid-XXXXXX";
  if (!mkdtemp(dir))
    return 1;
  test_scaling();
  test_sheet(dir);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "cannot remove %s\n", dir);
  return test_finish();
}
