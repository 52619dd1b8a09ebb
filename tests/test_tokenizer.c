/* Tests of the CLIP tokenizer against ids produced by openai CLIP's simple_tokenizer
 * (reference/tokenizer_cases.jsonl: each of the 77 ids per case), plus its error paths. */
#include <jansson.h>
#include <unistd.h>

#include "model/tokenizer.h"
#include "test_util.h"

static void test_reference_cases(sd_tokenizer *tok, const char *ref) {
  char path[4096];
  snprintf(path, sizeof path, "%s/tokenizer_cases.jsonl", ref);
  FILE *f = fopen(path, "r");
  CHECK(f != NULL, "cannot open %s", path);
  if (!f) return;
  char *line = NULL;
  size_t cap = 0;
  int cases = 0, matched = 0;
  while (getline(&line, &cap, f) > 0) {
    json_error_t jerr;
    json_t *c = json_loads(line, 0, &jerr);
    CHECK(c != NULL, "%s: %s", path, jerr.text);
    if (!c) continue;
    json_t *prompt = json_object_get(c, "prompt"), *want = json_object_get(c, "ids");
    CHECK(json_is_string(prompt) && json_array_size(want) == SD_TOKENIZER_CONTEXT, "case %d malformed", cases);
    int32_t ids[SD_TOKENIZER_CONTEXT];
    int n_tokens = 0;
    sd_error err = {{0}};
    int rc = sd_tokenizer_encode_n(tok, json_string_value(prompt), json_string_length(prompt), ids, &n_tokens, &err);
    CHECK(rc == 0, "case %d: %s", cases, err.msg);
    int same = rc == 0;
    for (int i = 0; i < SD_TOKENIZER_CONTEXT && rc == 0; i++) {
      json_int_t w = json_integer_value(json_array_get(want, (size_t)i));
      CHECK(ids[i] == w, "case %d (%s) id %d: got %d want %lld", cases, json_string_value(prompt), i, ids[i],
            (long long)w);
      same &= ids[i] == w;
    }
    /* the token count before truncation agrees with the ids kept */
    int kept = 0;
    for (int i = 1; i < SD_TOKENIZER_CONTEXT - 1 && ids[i] != sd_tokenizer_eos(tok); i++)
      kept++;
    CHECK(n_tokens == kept || (kept == 75 && n_tokens >= 75), "case %d: %d tokens, %d kept", cases, n_tokens, kept);
    matched += same;
    cases++;
    json_decref(c);
  }
  free(line);
  fclose(f);
  printf("tokenizer reference cases: %d/%d match in all 77 ids\n", matched, cases);
  CHECK(cases == 40, "expected 40 cases, read %d", cases);
}

static void test_cache_and_specials(sd_tokenizer *tok) {
  int32_t a[SD_TOKENIZER_CONTEXT], b[SD_TOKENIZER_CONTEXT];
  sd_error err = {{0}};
  /* the second call goes through the word cache */
  CHECK(sd_tokenizer_encode(tok, "pineapple pineapple pineapple", a, NULL, &err) == 0, "%s", err.msg);
  CHECK(sd_tokenizer_encode(tok, "pineapple pineapple pineapple", b, NULL, &err) == 0, "%s", err.msg);
  CHECK(memcmp(a, b, sizeof a) == 0, "cached encoding differs");
  CHECK(a[1] == a[2] && a[2] == a[3] && a[4] == 49407, "repeated word tokens: %d %d %d %d", a[1], a[2], a[3], a[4]);
  CHECK(sd_tokenizer_bos(tok) == 49406 && sd_tokenizer_eos(tok) == 49407, "bos %d eos %d", sd_tokenizer_bos(tok),
        sd_tokenizer_eos(tok));
  /* the special tokens written in a prompt are kept whole */
  CHECK(sd_tokenizer_encode(tok, "<|endoftext|>", a, NULL, &err) == 0, "%s", err.msg);
  CHECK(a[1] == 49407, "special token in text: %d", a[1]);
}

static void test_invalid_utf8(sd_tokenizer *tok) {
  static const char *bad[] = {"caf\xe9", "\xc0\xaf", "\xed\xa0\x80 surrogate", "\xf4\x90\x80\x80", "cut \xe2\x82"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    int32_t ids[SD_TOKENIZER_CONTEXT];
    sd_error err = {{0}};
    CHECK(sd_tokenizer_encode(tok, bad[i], ids, NULL, &err) == -1, "invalid UTF-8 %zu accepted", i);
    CHECK(strstr(err.msg, "invalid UTF-8") != NULL, "message: %s", err.msg);
  }
}

static void test_missing_files(const char *ref) {
  char dir[] = "/tmp/sdprune_tok_XXXXXX", src[4096], dst[4200];
  CHECK(mkdtemp(dir) != NULL, "mkdtemp");
  sd_tokenizer *tok = NULL;
  sd_error err = {{0}};
  CHECK(sd_tokenizer_load(dir, &tok, &err) == -1 && tok == NULL, "load of an empty directory succeeded");
  CHECK(strstr(err.msg, "vocab.json") != NULL, "message should name vocab.json: %s", err.msg);
  snprintf(src, sizeof src, "%s/clip-tokenizer/vocab.json", ref);
  snprintf(dst, sizeof dst, "%s/vocab.json", dir);
  CHECK(symlink(src, dst) == 0, "symlink");
  err.msg[0] = 0;
  CHECK(sd_tokenizer_load(dir, &tok, &err) == -1 && tok == NULL, "load without merges.txt succeeded");
  CHECK(strstr(err.msg, "merges.txt") != NULL, "message should name merges.txt: %s", err.msg);
  /* a merges line that is not two symbols */
  char merges[4200];
  snprintf(merges, sizeof merges, "%s/merges.txt", dir);
  FILE *f = fopen(merges, "w");
  fputs("#version: 0.2\ni n\nthree symbols here\n", f);
  fclose(f);
  err.msg[0] = 0;
  CHECK(sd_tokenizer_load(dir, &tok, &err) == -1, "bad merges line accepted");
  CHECK(strstr(err.msg, "merges.txt:3") != NULL, "message should name merges.txt:3: %s", err.msg);
  unlink(merges);
  unlink(dst);
  rmdir(dir);
}

int main(void) {
  const char *ref = test_reference_dir();
  char dir[4096];
  snprintf(dir, sizeof dir, "%s/clip-tokenizer", ref);
  sd_tokenizer *tok = NULL;
  sd_error err = {{0}};
  CHECK(sd_tokenizer_load(dir, &tok, &err) == 0, "%s", err.msg);
  if (tok) {
    test_reference_cases(tok, ref);
    test_cache_and_specials(tok);
    test_invalid_utf8(tok);
    sd_tokenizer_free(tok);
  }
  test_missing_files(ref);
  return test_finish();
}
