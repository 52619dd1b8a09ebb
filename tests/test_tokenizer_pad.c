/* Padding follows the tokenizer folder: SD 2.x diffusers folders say pad_token "!" (id 0) in
 * tokenizer_config.json, SD 1.x folders pad with <|endoftext|>; the eos after the prompt stays. */
#include <unistd.h>

#include "model/tokenizer.h"
#include "test_util.h"

static void encode_cat(const char *dir, int32_t ids[77]) {
  sd_tokenizer *tok = NULL;
  sd_error err;
  int rc = sd_tokenizer_load(dir, &tok, &err);
  CHECK(rc == 0, "load %s: %s", dir, err.msg);
  if (rc) return;
  CHECK(sd_tokenizer_encode(tok, "a photo of a cat", ids, NULL, &err) == 0, "encode: %s", err.msg);
  sd_tokenizer_free(tok);
}

int main(void) {
  const char *ref = test_reference_dir();
  char src[512], dir[256], path[600];
  snprintf(dir, sizeof dir, "/tmp/sdprune_test_pad_%d", (int)getpid());
  mkdir(dir, 0755);
  for (int i = 0; i < 2; i++) {
    const char *f = i ? "merges.txt" : "vocab.json";
    snprintf(src, sizeof src, "%s/clip-tokenizer/%s", ref, f);
    snprintf(path, sizeof path, "%s/%s", dir, f);
    CHECK(symlink(src, path) == 0, "symlink %s", f);
  }
  int32_t ids[77];
  encode_cat(dir, ids); /* no tokenizer_config.json: SD 1.x padding */
  CHECK(ids[5] == 2368 && ids[6] == 49407 && ids[7] == 49407 && ids[76] == 49407, "eos padding: %d %d %d", ids[5], ids[6], ids[7]);
  snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
  FILE *f = fopen(path, "w");
  fputs("{\"pad_token\": \"!\", \"eos_token\": \"<|endoftext|>\"}", f);
  fclose(f);
  encode_cat(dir, ids);
  CHECK(ids[0] == 49406 && ids[5] == 2368 && ids[6] == 49407, "prompt and eos kept: %d %d", ids[5], ids[6]);
  CHECK(ids[7] == 0 && ids[76] == 0, "pad '!' is id 0: %d %d", ids[7], ids[76]);
  f = fopen(path, "w");
  fputs("{\"pad_token\": {\"content\": \"<|endoftext|>\", \"lstrip\": false}}", f);
  fclose(f);
  encode_cat(dir, ids);
  CHECK(ids[7] == 49407, "pad token given as an object: %d", ids[7]);
  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
  return test_finish();
}
