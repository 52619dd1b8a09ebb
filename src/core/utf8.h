/* Strict UTF-8 decoding (no overlong forms, surrogates or code points past U+10FFFF), shared by the
 * readers and writers that must reject invalid text. */
#ifndef SD_UTF8_H
#define SD_UTF8_H

/* Decodes the sequence at p (NUL-terminated text) into *cp; returns its length in bytes, or -1. */
int sd_utf8_next(const unsigned char *p, unsigned *cp);

#endif
