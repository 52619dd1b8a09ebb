/* io/png_read: every colour type and depth (hand-encoded by tests/png_read_fixtures.py, expectations checked
 * there against PIL's convert("RGB")) read to RGB8 byte for byte; a round trip through png_write; and the
 * errors: not a PNG, truncated, missing. */
#include <stdint.h>
#include <unistd.h>

#include "io/png_read.h"
#include "io/png_write.h"
#include "test_util.h"

static long read_all(const char *path, uint8_t *buf, long cap) {
  FILE *f = fopen(path, "rb");
  if (!f)
    return -1;
  long n = (long)fread(buf, 1, (size_t)cap, f);
  fclose(f);
  return n;
}

static void test_fixtures(const char *dir) {
  const char *src = getenv("SDPRUNE_SOURCE");
  char cmd[2048], names[4096] = "";
  if (!src || access("/usr/bin/python3", X_OK) != 0) {
    printf("SKIP fixtures: no SDPRUNE_SOURCE or /usr/bin/python3\n");
    return;
  }
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/tests/png_read_fixtures.py %s", src, dir);
  FILE *p = popen(cmd, "r");
  size_t got = p ? fread(names, 1, sizeof names - 1, p) : 0;
  names[got] = '\0';
  int status = p ? pclose(p) : -1;
  CHECK(status == 0 && got > 0, "fixture script: status %d", status);
  int n_fixtures = 0;
  for (char *name = strtok(names, " \n"); name; name = strtok(NULL, " \n")) {
    char png[1024], rgb[1024];
    snprintf(png, sizeof png, "%s/%s.png", dir, name);
    snprintf(rgb, sizeof rgb, "%s/%s.rgb", dir, name);
    uint8_t want[4096];
    long n_want = read_all(rgb, want, sizeof want);
    uint8_t *hwc = NULL;
    int w = 0, h = 0;
    sd_error err;
    int rc = sd_png_read_rgb8(png, &hwc, &w, &h, &err);
    CHECK(rc == 0, "%s: %s", name, err.msg);
    if (rc == 0) {
      long differ = 0;
      for (long i = 0; i < n_want && i < (long)w * h * 3; i++)
        differ += hwc[i] != want[i];
      CHECK(w == 13 && h == 7 && n_want == (long)w * h * 3 && differ == 0, "%s: %dx%d, %ld of %ld bytes differ", name,
            w, h, differ, n_want);
      n_fixtures++;
    }
    free(hwc);
  }
  printf("fixtures: %d PNG kinds read byte-exact\n", n_fixtures);
  CHECK(n_fixtures == 15, "15 fixtures, got %d", n_fixtures);
}

static void test_round_trip_and_errors(const char *dir) {
  char path[1024];
  snprintf(path, sizeof path, "%s/written.png", dir);
  uint8_t img[5 * 3 * 3];
  for (int i = 0; i < (int)sizeof img; i++)
    img[i] = (uint8_t)(i * 37 + 11);
  sd_error err;
  CHECK(sd_png_write_rgb8(path, img, 3, 5, NULL, 0, &err) == 0, "write: %s", err.msg);
  uint8_t *hwc = NULL;
  int w, h;
  CHECK(sd_png_read_rgb8(path, &hwc, &w, &h, &err) == 0 && w == 5 && h == 3 && !memcmp(hwc, img, sizeof img),
        "round trip through png_write");
  free(hwc);

  /* Truncated: the signature and IHDR but half the data. */
  uint8_t bytes[4096];
  long n = read_all(path, bytes, sizeof bytes);
  char cut[1024];
  snprintf(cut, sizeof cut, "%s/cut.png", dir);
  FILE *f = fopen(cut, "wb");
  if (f) {
    fwrite(bytes, 1, (size_t)(n > 40 ? 40 : n), f);
    fclose(f);
  }
  CHECK(sd_png_read_rgb8(cut, &hwc, &w, &h, &err) == -1 && strstr(err.msg, "cut.png: bad PNG (libpng: ") && !hwc,
        "truncated: %s", err.msg);
  printf("truncated: %s\n", err.msg);
  char text[1024];
  snprintf(text, sizeof text, "%s/image.png", dir);
  f = fopen(text, "w");
  if (f) {
    fputs("GIF89a not a png at all", f);
    fclose(f);
  }
  CHECK(sd_png_read_rgb8(text, &hwc, &w, &h, &err) == -1 && strstr(err.msg, "image.png: not a PNG file"),
        "not a PNG: %s", err.msg);
  snprintf(text, sizeof text, "%s/short.png", dir);
  f = fopen(text, "w");
  if (f) {
    fputs("\x89PN", f);
    fclose(f);
  }
  CHECK(sd_png_read_rgb8(text, &hwc, &w, &h, &err) == -1 && strstr(err.msg, "not a PNG file"), "3 bytes: %s", err.msg);
  snprintf(text, sizeof text, "%s/missing.png", dir);
  CHECK(sd_png_read_rgb8(text, &hwc, &w, &h, &err) == -1 && strstr(err.msg, "missing.png: No such file"), "missing: %s",
        err.msg);
}

int main(void) {
  char dir[] = "/tmp/sdprune-pngread-XXXXXX";
  if (!mkdtemp(dir))
    return 1;
  test_fixtures(dir);
  test_round_trip_and_errors(dir);
  char cmd[256];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0)
    fprintf(stderr, "cannot remove %s\n", dir);
  return test_finish();
}
