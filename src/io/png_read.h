/* PNG input for contact sheets and checks: any PNG (gray, gray+alpha, RGB, RGBA, palette; 1 to 16 bits;
 * interlaced or not) read as 8-bit RGB. Alpha is dropped, not composited, and 16-bit samples keep their high
 * byte -- what cv2.imread and PIL's convert("RGB"), the detectors' readers, see. Not a writer (png_write.h);
 * no colour management (gAMA, iCCP and sRGB chunks are ignored). */
#ifndef SD_PNG_READ_H
#define SD_PNG_READ_H

#include <stdint.h>

#include "core/error.h"

/* Reads path into a malloc'ed [height, width, 3] buffer (*hwc). Errors: "path: not a PNG file" (no PNG
 * signature), "path: bad PNG (libpng: ...)" (damaged or truncated), "path: <strerror>", and images over
 * 65536 pixels a side. */
int sd_png_read_rgb8(const char *path, uint8_t **hwc, int *width, int *height, sd_error *err);

#endif
