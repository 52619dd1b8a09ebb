/* Fuzzes the prompt-set reader (io/prompt_csv.c: RFC-4180 CSV, plain text, BOM, templates) through a file.
 * The first byte picks the file name's extension (.csv, .txt, none) and whether a template is given (the text
 * up to the first NUL after it); the rest is the file. A loaded set must have every row's prompt, every cell,
 * and rows' physical lines that are in order. */
#include "fuzz_common.h"

#include "io/prompt_csv.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1)
    return 0;
  static const char *const names[] = {"prompts.csv", "prompts.txt", "prompts"};
  unsigned mode = data[0];
  data++, size--;
  char *template_str = NULL;
  if (mode & 4) {
    const uint8_t *nul = memchr(data, 0, size);
    size_t n = nul ? (size_t)(nul - data) : size;
    template_str = fuzz_strndup(data, n);
    data += nul ? n + 1 : n;
    size -= nul ? n + 1 : n;
  }
  const char *path = fuzz_file(0, names[mode % 3], data, size);
  sd_prompt_set *set = NULL;
  sd_error err = {{0}};
  if (sd_prompt_set_load(path, template_str, &set, &err) != 0) {
    FUZZ_ASSERT(set == NULL && err.msg[0], "failure without a message");
    free(template_str);
    return 0;
  }
  FUZZ_ASSERT(set->n_rows >= 0 && (set->n_rows == 0 || set->rows), "rows");
  for (int r = 0; r < set->n_rows; r++) {
    const sd_prompt *p = &set->rows[r];
    FUZZ_ASSERT(p->prompt && p->index == r, "row %d", r);
    FUZZ_ASSERT(r == 0 || p->line > set->rows[r - 1].line, "row %d starts on line %d, before row %d's", r, p->line,
                r - 1);
    volatile size_t sink = strlen(p->prompt);
    (void)sink;
    for (int c = 0; c < set->n_columns; c++) {
      const char *cell = sd_prompt_set_field(set, r, set->columns[c]);
      FUZZ_ASSERT(cell != NULL, "row %d column '%s' missing", r, set->columns[c]);
      sink = strlen(cell);
    }
  }
  FUZZ_ASSERT(sd_prompt_set_field(set, set->n_rows, "prompt") == NULL, "a row past the end");
  FUZZ_ASSERT(sd_prompt_set_field(set, -1, "prompt") == NULL, "row -1");
  sd_prompt_set_free(set);
  free(template_str);
  return 0;
}
