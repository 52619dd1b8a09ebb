/* Strict UTF-8 decoding (see utf8.h). */
#include "core/utf8.h"

int sd_utf8_next(const unsigned char *p, unsigned *cp) {
  unsigned c;
  int n;
  if (p[0] < 0x80) c = p[0], n = 1;
  else if ((p[0] & 0xE0) == 0xC0) c = p[0] & 0x1F, n = 2;
  else if ((p[0] & 0xF0) == 0xE0) c = p[0] & 0x0F, n = 3;
  else if ((p[0] & 0xF8) == 0xF0) c = p[0] & 0x07, n = 4;
  else return -1;
  for (int k = 1; k < n; k++) {
    if ((p[k] & 0xC0) != 0x80) return -1; /* also stops at the terminator */
    c = c << 6 | (p[k] & 0x3F);
  }
  if ((n == 2 && c < 0x80) || (n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10FFFF)) ||
      (c >= 0xD800 && c <= 0xDFFF))
    return -1;
  *cp = c;
  return n;
}
