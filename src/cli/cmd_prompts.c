/* sdprune prompts: shows how a prompt file is read (src/io/prompt_csv.c) and what generate would take
 * from each row: a header JSON line with the row count, then one JSON object per row with its seed,
 * guidance, size (and where each comes from) and its CLIP token count. Output only; not a CSV editor,
 * and it loads no model (the tokenizer is the model-free one of src/model/tokenizer.c).
 *
 * Seeds are written as decimal strings: they are uint64 in the files (I2P has seeds above 2^31), which
 * neither a double nor jansson's json_int_t (long long) holds in full; generate's PNG provenance writes
 * them the same way. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "io/prompt_csv.h"
#include "model/model.h"
#include "model/tokenizer.h"

/* generate's defaults (src/cli/cmd_generate.c): seed 0, guidance 7.5, 512x512 unless a row gives a size. */
#define PROMPTS_DEFAULT_SEED 0
#define PROMPTS_DEFAULT_GUIDANCE 7.5
#define PROMPTS_DEFAULT_SIZE 512

static void usage(FILE *out) {
  fprintf(out,
          "usage: sdprune prompts FILE [--template T] [--seed S] [--guidance G] [--tokenizer DIR]\n\n"
          "Shows how sdprune reads a prompt file (CSV as published, or .txt with one prompt per line) and what\n"
          "`sdprune generate --prompts FILE` takes from each row. stdout: first a header line\n"
          "  {\"file\",\"sha256\",\"kind\":\"csv\"|\"text\",\"rows\":N,\"columns\":[...],\"template\":T|null}\n"
          "then one JSON object per row (compact, keys in this order):\n"
          "  index (0-based record), line (physical line where it starts), case_number, prompt,\n"
          "  seed (decimal string: uint64 seeds do not fit a JSON number everywhere), seed_source,\n"
          "  guidance, guidance_source, width, height, size_source,\n"
          "  tokens (CLIP ids with bos and eos before truncation), truncated (tokens > %d).\n"
          "A *_source is \"row\" (the file's column), \"option\" (--seed/--guidance, which win over the row,\n"
          "as in generate) or \"default\" (seed %d, guidance %.1f, %dx%d). stderr ends with one summary line:\n"
          "rows, rows without a seed, rows over %d tokens. A file the reader rejects gives one line\n"
          "\"FILE:LINE: what\" and exit status 1.\n\n"
          "  --template T     build prompts from columns, e.g. \"{nudity} {people}, {location}\"\n"
          "  --seed S         seed for every row (as generate --seed: wins over evaluation_seed)\n"
          "  --guidance G     guidance for every row (wins over evaluation_guidance)\n"
          "  --tokenizer DIR  folder with vocab.json and merges.txt; default: $SDPRUNE_TOKENIZER, else the\n"
          "                   bundled SD 1.x CLIP tokenizer\n"
          "  --help           this text\n",
          SD_TOKENIZER_CONTEXT, PROMPTS_DEFAULT_SEED, PROMPTS_DEFAULT_GUIDANCE, PROMPTS_DEFAULT_SIZE,
          PROMPTS_DEFAULT_SIZE, SD_TOKENIZER_CONTEXT);
}

/* Prints "sdprune prompts: msg" as one line: messages may quote cell text holding line breaks. */
static void print_error(const char *msg) {
  fputs("sdprune prompts: ", stderr);
  for (const char *c = msg; *c; c++)
    fputc(*c == '\n' || *c == '\r' ? ' ' : *c, stderr);
  fputc('\n', stderr);
}

static int parse_seed(const char *s, uint64_t *out) {
  if (*s < '0' || *s > '9')
    return -1;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno == ERANGE || *end)
    return -1;
  *out = (uint64_t)v;
  return 0;
}

static int parse_guidance(const char *s, double *out) {
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || *end || errno == ERANGE || !isfinite(v))
    return -1;
  *out = v;
  return 0;
}

/* Writes j as one compact line (keys in insertion order, UTF-8 kept) and releases it. */
static int print_json_line(json_t *j) {
  int rc = j ? json_dumpf(j, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER) : -1;
  json_decref(j);
  if (rc == 0)
    putchar('\n');
  return rc;
}

static json_t *header_json(const sd_prompt_set *set) {
  json_t *j = json_object(), *cols = json_array();
  json_object_set_new(j, "file", json_string(set->path));
  json_object_set_new(j, "sha256", json_string(set->sha256_hex));
  json_object_set_new(j, "kind", json_string(set->is_csv ? "csv" : "text"));
  json_object_set_new(j, "rows", json_integer(set->n_rows));
  for (int c = 0; c < set->n_columns; c++)
    json_array_append_new(cols, json_string(set->columns[c]));
  json_object_set_new(j, "columns", cols);
  json_object_set_new(j, "template", set->template_used ? json_string(set->template_used) : json_null());
  return j;
}

typedef struct {
  int seed_given, guidance_given;
  uint64_t seed;
  double guidance;
} prompts_options;

static json_t *row_json(const sd_prompt *r, const prompts_options *o, int tokens) {
  json_t *j = json_object();
  json_object_set_new(j, "index", json_integer(r->index));
  json_object_set_new(j, "line", json_integer(r->line));
  json_object_set_new(j, "case_number", json_integer((json_int_t)r->case_number));
  json_object_set_new(j, "prompt", json_string(r->prompt));
  const char *seed_source = o->seed_given ? "option" : r->has_seed ? "row" : "default";
  uint64_t seed = o->seed_given ? o->seed : r->has_seed ? r->seed : PROMPTS_DEFAULT_SEED;
  char seed_text[32];
  snprintf(seed_text, sizeof seed_text, "%llu", (unsigned long long)seed);
  json_object_set_new(j, "seed", json_string(seed_text));
  json_object_set_new(j, "seed_source", json_string(seed_source));
  const char *guidance_source = o->guidance_given ? "option" : r->has_guidance ? "row" : "default";
  double guidance = o->guidance_given ? o->guidance : r->has_guidance ? r->guidance : PROMPTS_DEFAULT_GUIDANCE;
  json_object_set_new(j, "guidance", json_real(guidance));
  json_object_set_new(j, "guidance_source", json_string(guidance_source));
  int row_size = r->width > 0 && r->height > 0; /* generate takes a row's size only when both are given */
  json_object_set_new(j, "width", json_integer(row_size ? r->width : PROMPTS_DEFAULT_SIZE));
  json_object_set_new(j, "height", json_integer(row_size ? r->height : PROMPTS_DEFAULT_SIZE));
  json_object_set_new(j, "size_source", json_string(row_size ? "row" : "default"));
  json_object_set_new(j, "tokens", json_integer(tokens));
  json_object_set_new(j, "truncated", json_boolean(tokens > SD_TOKENIZER_CONTEXT));
  return j;
}

int cmd_prompts(int argc, char **argv) {
  static char default_dir[4096];
  const char *tokenizer_dir = sd_default_tokenizer_dir(default_dir, sizeof default_dir) ? default_dir : NULL;
  const char *file = NULL, *template_text = NULL;
  prompts_options o = {0};
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    }
    if (a[0] != '-' || !a[1]) {
      if (file) {
        fprintf(stderr, "sdprune prompts: one FILE only, got '%s' and '%s'\n", file, a);
        return 2;
      }
      file = a;
      continue;
    }
    int known =
        !strcmp(a, "--template") || !strcmp(a, "--seed") || !strcmp(a, "--guidance") || !strcmp(a, "--tokenizer");
    if (!known || i + 1 >= argc) {
      fprintf(stderr, "sdprune prompts: %s '%s' (see sdprune prompts --help)\n",
              known ? "missing value after" : "unknown argument", a);
      return 2;
    }
    const char *v = argv[++i];
    if (!strcmp(a, "--template")) {
      template_text = v;
    } else if (!strcmp(a, "--tokenizer")) {
      tokenizer_dir = v;
    } else if (!strcmp(a, "--seed")) {
      if (parse_seed(v, &o.seed)) {
        fprintf(stderr, "sdprune prompts: --seed must be a non-negative integer below 2^64, got '%s'\n", v);
        return 2;
      }
      o.seed_given = 1;
    } else {
      if (parse_guidance(v, &o.guidance)) {
        fprintf(stderr, "sdprune prompts: --guidance must be a number, got '%s'\n", v);
        return 2;
      }
      o.guidance_given = 1;
    }
  }
  if (!file) {
    fprintf(stderr, "sdprune prompts: no FILE given (see sdprune prompts --help)\n");
    return 2;
  }
  if (!tokenizer_dir || !*tokenizer_dir) {
    fprintf(stderr, "sdprune prompts: no tokenizer: pass --tokenizer DIR (a folder with vocab.json and merges.txt) "
                    "or set SDPRUNE_TOKENIZER\n");
    return 2;
  }
  sd_error err = {{0}};
  sd_tokenizer *tok = NULL;
  if (sd_tokenizer_load(tokenizer_dir, &tok, &err)) {
    print_error(err.msg);
    return 1;
  }
  sd_prompt_set *set = NULL;
  if (sd_prompt_set_load(file, template_text, &set, &err)) {
    print_error(err.msg);
    sd_tokenizer_free(tok);
    return 1;
  }
  int status = print_json_line(header_json(set)) ? 1 : 0;
  int without_seed = 0, over_context = 0;
  for (int i = 0; i < set->n_rows && status == 0; i++) {
    const sd_prompt *r = &set->rows[i];
    int32_t ids[SD_TOKENIZER_CONTEXT];
    int n_tokens = 0;
    if (sd_tokenizer_encode(tok, r->prompt, ids, &n_tokens, &err)) {
      char msg[1200];
      snprintf(msg, sizeof msg, "%s:%d: %s", set->path, r->line, err.msg);
      print_error(msg);
      status = 1;
      break;
    }
    int tokens = n_tokens + 2; /* bos + eos, as len(CLIPTokenizer(prompt).input_ids) counts them */
    without_seed += !r->has_seed;
    over_context += tokens > SD_TOKENIZER_CONTEXT;
    if (print_json_line(row_json(r, &o, tokens)))
      status = 1;
  }
  if (fflush(stdout) != 0 && status == 0) {
    fprintf(stderr, "sdprune prompts: cannot write the output: %s\n", strerror(errno));
    status = 1;
  }
  if (status == 0)
    fprintf(stderr, "sdprune prompts: %s: rows=%d rows_without_seed=%d rows_over_%d_tokens=%d\n", set->path,
            set->n_rows, without_seed, SD_TOKENIZER_CONTEXT, over_context);
  sd_prompt_set_free(set);
  sd_tokenizer_free(tok);
  return status;
}
