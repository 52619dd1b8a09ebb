/* Checks a YAML document against a libcyaml schema before libcyaml loads it, so that every problem is
 * one message with the right line: unknown and repeated keys, scalars of the wrong type, mappings or
 * lists where the schema has none, list lengths, aliases, several documents, excessive nesting. Records
 * the line of every key for later messages. Loads nothing (libcyaml does) and knows no particular schema. */
#ifndef SD_YAML_CHECK_H
#define SD_YAML_CHECK_H

#include <cyaml/cyaml.h>
#include <stddef.h>

#include "core/error.h"

#define SD_YAML_MAX_DEPTH 16

typedef struct {
  char *path; /* "sampler.steps", "sets[0].file"; "" for the top mapping */
  int line;   /* 1-based: the key's line (mapping members) or the value's (list entries, the top) */
} sd_yaml_key_line;

typedef struct {
  sd_yaml_key_line *keys;
  int n, cap;
} sd_yaml_lines;

/* Checks text[0..len) against top (a mapping schema). Messages start with "WHERE:LINE: " when with_lines,
 * else "WHERE: " (for documents the caller built, e.g. from a command-line override). lines may be NULL. */
int sd_yaml_check(const char *text, size_t len, const cyaml_schema_value_t *top, const char *where, int with_lines,
                  sd_yaml_lines *lines, sd_error *err);

/* The line of path, else of its nearest recorded parent ("sets[1].name" -> "sets[1]" -> "sets" -> "");
 * 0 when nothing is recorded. */
int sd_yaml_line_of(const sd_yaml_lines *lines, const char *path);
void sd_yaml_lines_free(sd_yaml_lines *lines);

/* 1 if value is a YAML null as libcyaml reads one for a field with CYAML_FLAG_POINTER_NULL_STR
 * ("", "~", "null", "Null", "NULL"). */
int sd_yaml_is_null(const char *value);

#endif
