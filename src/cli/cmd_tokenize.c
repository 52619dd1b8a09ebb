/* sdprune tokenize: prints the 77 CLIP token ids of each prompt, one line per prompt (from --prompt,
 * --file or stdin, one prompt per line). Argument handling and output only; the tokenizer itself is
 * src/model/tokenizer.c. Not a CSV reader: every input line is a prompt. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "model/model.h"
#include "model/tokenizer.h"

static void usage(FILE *out) {
  fprintf(out,
          "usage: sdprune tokenize [--tokenizer DIR] [--file FILE] [--prompt TEXT]...\n\n"
          "Prints the %d CLIP token ids (bos, up to 75 tokens, eos, eos padding), space-separated, one line\n"
          "per prompt. Prompts come from --prompt (repeatable), else one per line from --file, else stdin.\n\n"
          "  --tokenizer DIR  folder with vocab.json and merges.txt (a diffusers model's tokenizer/);\n"
          "                   default: $SDPRUNE_TOKENIZER, else the bundled SD 1.x CLIP tokenizer\n"
          "  --file FILE      read prompts from FILE, one per line\n"
          "  --prompt TEXT    tokenize TEXT (may be given several times)\n"
          "  --help           this text\n",
          SD_TOKENIZER_CONTEXT);
}

static void print_ids(const int32_t *ids) {
  for (int i = 0; i < SD_TOKENIZER_CONTEXT; i++)
    printf(i ? " %d" : "%d", ids[i]);
  putchar('\n');
}

/* Tokenizes every line of f; errors name source:line. Returns 0 or 1. */
static int tokenize_lines(sd_tokenizer *tok, FILE *f, const char *source) {
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  long line_no = 0;
  int status = 0;
  while ((len = getline(&line, &cap, f)) >= 0) {
    line_no++;
    if (len > 0 && line[len - 1] == '\n') line[--len] = 0;
    int32_t ids[SD_TOKENIZER_CONTEXT];
    sd_error err = {{0}};
    if (sd_tokenizer_encode_n(tok, line, (size_t)len, ids, NULL, &err)) {
      fprintf(stderr, "sdprune tokenize: %s:%ld: %s\n", source, line_no, err.msg);
      status = 1;
      break;
    }
    print_ids(ids);
  }
  if (!status && ferror(f)) {
    fprintf(stderr, "sdprune tokenize: %s: read error\n", source);
    status = 1;
  }
  free(line);
  return status;
}

int cmd_tokenize(int argc, char **argv) {
  static char default_dir[4096];
  const char *dir = sd_default_tokenizer_dir(default_dir, sizeof default_dir) ? default_dir : NULL, *file = NULL;
  int n_prompts = 0;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    }
    int known = !strcmp(argv[i], "--tokenizer") || !strcmp(argv[i], "--file") || !strcmp(argv[i], "--prompt");
    if (!known || i + 1 >= argc) {
      fprintf(stderr, "sdprune tokenize: %s '%s' (see sdprune tokenize --help)\n",
              known ? "missing value after" : "unknown argument", argv[i]);
      return 2;
    }
    if (strcmp(argv[i], "--tokenizer") == 0)
      dir = argv[i + 1];
    else if (strcmp(argv[i], "--file") == 0)
      file = argv[i + 1];
    else
      n_prompts++;
    i++;
  }
  if (!dir || !*dir) {
    fprintf(stderr, "sdprune tokenize: no tokenizer: pass --tokenizer DIR (a folder with vocab.json and merges.txt) "
                    "or set SDPRUNE_TOKENIZER\n");
    return 2;
  }
  if (n_prompts && file) {
    fprintf(stderr, "sdprune tokenize: give either --prompt or --file, not both\n");
    return 2;
  }
  sd_tokenizer *tok;
  sd_error err = {{0}};
  if (sd_tokenizer_load(dir, &tok, &err)) {
    fprintf(stderr, "sdprune tokenize: %s\n", err.msg);
    return 1;
  }
  int status = 0;
  if (n_prompts) {
    for (int i = 1, k = 0; i < argc && !status; i += 2) {
      if (strcmp(argv[i], "--prompt")) continue;
      k++;
      int32_t ids[SD_TOKENIZER_CONTEXT];
      if (sd_tokenizer_encode(tok, argv[i + 1], ids, NULL, &err)) {
        fprintf(stderr, "sdprune tokenize: --prompt %d: %s\n", k, err.msg);
        status = 1;
      } else {
        print_ids(ids);
      }
    }
  } else if (file) {
    FILE *f = fopen(file, "rb");
    if (!f) {
      perror(file);
      status = 1;
    } else {
      status = tokenize_lines(tok, f, file);
      fclose(f);
    }
  } else {
    status = tokenize_lines(tok, stdin, "<stdin>");
  }
  sd_tokenizer_free(tok);
  if (fflush(stdout) != 0) status = 1;
  return status;
}
