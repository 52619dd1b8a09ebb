/* CLIP byte-level BPE tokenizer, as openai CLIP's simple_tokenizer.py (and diffusers' CLIPTokenizer
 * with ftfy): text cleaning, regex pre-tokenization, BPE by merge rank, [bos] + 75 tokens + [eos]
 * padded to 77. Not the text encoder, and no decoding of ids back to text.
 *
 * An sd_tokenizer is thread-compatible: one instance must not be used by two threads at once (it
 * owns a word cache and scratch buffers); separate instances share nothing. */
#ifndef SD_TOKENIZER_H
#define SD_TOKENIZER_H

#include <stdint.h>

#include "core/error.h"

#define SD_TOKENIZER_CONTEXT 77 /* ids per prompt: bos, at most 75 tokens, eos, padding */

typedef struct sd_tokenizer sd_tokenizer;

/* Loads DIR/vocab.json (token -> id, must hold <|startoftext|> and <|endoftext|>) and DIR/merges.txt
 * (first line a "#version" header, then "a b" per line; as upstream, only the first 48894 merges
 * are used). Errors name the file (and line) at fault. */
int sd_tokenizer_load(const char *dir, sd_tokenizer **out, sd_error *err);

/* Encodes one NUL-terminated UTF-8 prompt into ids[77]: bos, the first 75 BPE tokens, eos, then the
 * padding id. *n_tokens_before_truncation (may be NULL) receives the token count without bos/eos
 * before truncation to 75. Returns -1 with a message on invalid UTF-8 (byte offset given). */
int sd_tokenizer_encode(sd_tokenizer *tok, const char *utf8_prompt, int32_t ids[SD_TOKENIZER_CONTEXT],
                        int *n_tokens_before_truncation, sd_error *err);

/* Same, with an explicit byte length (the prompt may then contain no NUL). */
int sd_tokenizer_encode_n(sd_tokenizer *tok, const char *utf8_prompt, size_t len, int32_t ids[SD_TOKENIZER_CONTEXT],
                          int *n_tokens_before_truncation, sd_error *err);

/* The special ids read from the vocabulary. */
int32_t sd_tokenizer_bos(const sd_tokenizer *tok); /* <|startoftext|> */
int32_t sd_tokenizer_eos(const sd_tokenizer *tok); /* <|endoftext|> */
/* Padding after the eos: the tokenizer folder's tokenizer_config.json pad_token when present (SD 2.x
 * diffusers folders: "!" = 0), else <|endoftext|> (SD 1.x). open_clip (SD 2.x single files) pads with 0. */
int32_t sd_tokenizer_pad(const sd_tokenizer *tok);
void sd_tokenizer_set_pad(sd_tokenizer *tok, int32_t id);

void sd_tokenizer_free(sd_tokenizer *tok);

#endif
