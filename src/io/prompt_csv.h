/* Prompt sets as researchers publish them: RFC-4180 CSV (the I2P / UnlearnDiffAtk / Ring-A-Bell / ESD files)
 * or plain text with one prompt per line, read into records with prompt, seed, guidance and size.
 * Not a general CSV library (no custom delimiters, no writing) and no prompt weighting syntax.
 *
 * CSV rules: quoted fields may hold commas, doubled quotes and line breaks; CRLF, LF or CR line ends; an
 * optional UTF-8 BOM; blank lines are skipped; a record with fewer fields than the header is padded with
 * empty fields, one with more is an error. Every field must be valid UTF-8 (errors give the physical line
 * where the record starts). Known columns:
 *   prompt                                  the prompt (unless a template is given)
 *   evaluation_seed (else seed)             uint64, "1234" or pandas' "1234.0"; empty = no seed
 *   evaluation_guidance (else guidance_scale, guidance)   decimal; empty = none
 *   case_number                             integer; defaults to the 0-based record index
 *   sd_image_width, sd_image_height         integers; 0 when absent
 * Any column (the unnamed index column is named "" or "Unnamed: 0") is reachable by sd_prompt_set_field.
 *
 * Templates: "{column} text {other}" builds each prompt from named columns ("{{", "}}" are literal braces).
 * Without a template, a CSV with no `prompt` column but with `nudity`, `people` and `location` columns (the
 * Ring-A-Bell concept-pair files) gets the default SD_PROMPT_TEMPLATE_CONCEPT_PAIRS, as Ring-A-Bell builds it.
 *
 * File kind: a ".txt" file is plain text. Otherwise the first record is read as a CSV header; with a `prompt`
 * column, a template, or the concept-pair columns it is CSV; a ".csv" file with none of these is an error;
 * any other file falls back to plain text. Plain text: one prompt per line, trailing CR/whitespace kept
 * except the line end itself, blank lines skipped. */
#ifndef SD_PROMPT_CSV_H
#define SD_PROMPT_CSV_H

#include <stdint.h>

#include "core/error.h"

#define SD_PROMPT_TEMPLATE_CONCEPT_PAIRS "{nudity} {people}, {location}"

typedef struct {
  int index;           /* 0-based record number (blank lines not counted) */
  int line;            /* 1-based physical line where the record starts */
  int64_t case_number; /* case_number column, else index */
  const char *prompt;  /* UTF-8, owned by the set */
  int has_seed;
  uint64_t seed;
  int has_guidance;
  double guidance;
  int width, height; /* sd_image_width / sd_image_height, 0 when absent */
} sd_prompt;

typedef struct {
  char *path;
  int is_csv;         /* 0: plain text */
  char *template_used; /* NULL unless prompts were built from a template */
  int n_rows;
  sd_prompt *rows;     /* [n_rows] */
  int n_columns;       /* 0 for plain text */
  char **columns;      /* [n_columns] header names */
  char **cells;        /* [n_rows, n_columns] field text, owned by the set */
  char sha256_hex[65]; /* SHA-256 of the file bytes, for provenance */
  /* storage */
  char *field_buf;
  char **built_prompts; /* [n_rows] when templated */
} sd_prompt_set;

/* Loads path; template_or_null overrides the prompt column (see above). On error returns -1 with
 * "path:line: what" in err and *out = NULL. */
int sd_prompt_set_load(const char *path, const char *template_or_null, sd_prompt_set **out, sd_error *err);

/* Field text of a row by column name (first match), or NULL if no such column or row. For plain text only
 * "prompt" exists. */
const char *sd_prompt_set_field(const sd_prompt_set *set, int row, const char *column);

/* Column index by name, or -1. */
int sd_prompt_set_column(const sd_prompt_set *set, const char *column);

void sd_prompt_set_free(sd_prompt_set *set);

#endif
