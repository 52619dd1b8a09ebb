/* Text cleaning of openai CLIP's simple_tokenizer before BPE: ftfy.fix_text (the ftfy 6 steps that
 * apply to prompts), html.unescape twice, whitespace runs to one space, strip, str.lower.
 * Internal to src/model/tokenizer*.c; not the BPE and not the regex split. */
#ifndef SD_TOKENIZER_TEXT_H
#define SD_TOKENIZER_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Growable array of Unicode code points. */
typedef struct {
  uint32_t *v;
  size_t n, cap;
  int oom; /* set when a push failed to allocate; checked once at the end of a pass */
} sd_cpbuf;

void sd_cpbuf_free(sd_cpbuf *b);

/* Strict UTF-8 decoding (no overlongs, surrogates or values past U+10FFFF): 0, or -1 with a message
 * giving the byte offset of the first invalid sequence. */
int sd_utf8_decode(const char *s, size_t len, sd_cpbuf *out, sd_error *err);

/* The whole cleaning: utf8 in, NUL-terminated malloc'd UTF-8 out (*out_len bytes without the NUL).
 * Fails on invalid UTF-8 or out of memory. */
int sd_tok_clean_text(const char *utf8, size_t len, char **out, size_t *out_len, sd_error *err);

#endif
