/* Fuzzes prompt encoding (model/tokenizer.c + tokenizer_text.c: UTF-8 checks, ftfy-like cleaning, the
 * pre-tokenizing regex, BPE) with the bundled CLIP vocabulary, on any bytes as a prompt of a CSV or a job file
 * could hold. Ids must be bos, tokens, eos, then padding. The word cache persists between inputs, as in a run. */
#include "fuzz_common.h"

#include "model/model.h"
#include "model/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static sd_tokenizer *tok;
  if (!tok) {
    char dir[4096];
    sd_error err = {{0}};
    if (!sd_default_tokenizer_dir(dir, sizeof dir) || sd_tokenizer_load(dir, &tok, &err) != 0) {
      fprintf(stderr, "fuzz_tokenizer_encode: no tokenizer: %s\n", err.msg);
      abort();
    }
  }
  int32_t ids[SD_TOKENIZER_CONTEXT];
  int n = -1;
  sd_error err = {{0}};
  if (sd_tokenizer_encode_n(tok, (const char *)data, size, ids, &n, &err) != 0) {
    FUZZ_ASSERT(err.msg[0], "failure without a message");
    return 0;
  }
  int32_t bos = sd_tokenizer_bos(tok), eos = sd_tokenizer_eos(tok), pad = sd_tokenizer_pad(tok);
  int kept = n < SD_TOKENIZER_CONTEXT - 2 ? n : SD_TOKENIZER_CONTEXT - 2;
  FUZZ_ASSERT(n >= 0 && ids[0] == bos && ids[kept + 1] == eos, "bos/eos misplaced (%d tokens)", n);
  for (int i = 1; i <= kept; i++)
    FUZZ_ASSERT(ids[i] >= 0 && ids[i] < 49408, "id %d at %d", ids[i], i);
  for (int i = kept + 2; i < SD_TOKENIZER_CONTEXT; i++)
    FUZZ_ASSERT(ids[i] == pad, "padding %d at %d", ids[i], i);
  /* The same bytes as a NUL-terminated prompt, where they hold no NUL. */
  if (!memchr(data, 0, size)) {
    char *s = fuzz_strndup(data, size);
    int32_t ids2[SD_TOKENIZER_CONTEXT];
    int n2 = -1;
    FUZZ_ASSERT(sd_tokenizer_encode(tok, s, ids2, &n2, &err) == 0 && n2 == n && memcmp(ids, ids2, sizeof ids) == 0,
                "encode and encode_n disagree");
    free(s);
  }
  return 0;
}
