/* Fuzzes the tokenizer folder reader (model/tokenizer.c): the input's NUL-separated parts are vocab.json,
 * merges.txt, tokenizer_config.json and a prompt, written to a folder and loaded as --tokenizer DIR; a loaded
 * tokenizer encodes the prompt into 77 ids of its vocabulary. */
#include "fuzz_common.h"

#include "model/tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *part[4];
  size_t len[4];
  fuzz_split(data, size, 4, part, len);
  fuzz_file(0, "vocab.json", part[0], len[0]);
  fuzz_file(1, "merges.txt", part[1], len[1]);
  fuzz_file(2, "tokenizer_config.json", part[2], len[2]);
  sd_tokenizer *tok = NULL;
  sd_error err = {{0}};
  if (sd_tokenizer_load(fuzz_dir(), &tok, &err) != 0) {
    FUZZ_ASSERT(tok == NULL && err.msg[0], "failure without a message");
    return 0;
  }
  int32_t ids[SD_TOKENIZER_CONTEXT];
  int n = 0;
  if (sd_tokenizer_encode_n(tok, (const char *)part[3], len[3], ids, &n, &err) == 0) {
    FUZZ_ASSERT(ids[0] == sd_tokenizer_bos(tok), "first id is not bos");
    FUZZ_ASSERT(n >= 0, "negative token count");
  }
  sd_tokenizer_free(tok);
  return 0;
}
