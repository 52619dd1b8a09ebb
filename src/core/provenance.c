/* Provenance strings (see provenance.h). */
#include "core/provenance.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef SDPRUNE_GIT_REVISION
#define SDPRUNE_GIT_REVISION "unknown"
#endif

const char *sd_version(void) { return SDPRUNE_VERSION; }
const char *sd_git_revision(void) { return SDPRUNE_GIT_REVISION; }

const char *sd_utc_now(char *buf, size_t size) {
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(buf, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

static int needs_quotes(const char *s) {
  if (!*s) return 1;
  for (; *s; s++)
    if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%", *s)) return 1;
  return 0;
}

char *sd_command_line(int argc, char **argv) {
  size_t n = 16;
  for (int i = 0; i < argc; i++) n += 4 * strlen(argv[i]) + 3;
  char *s = malloc(n), *p = s;
  if (!s) return NULL;
  p += sprintf(p, "sdprune");
  for (int i = 0; i < argc; i++) {
    *p++ = ' ';
    if (!needs_quotes(argv[i])) {
      p += sprintf(p, "%s", argv[i]);
      continue;
    }
    *p++ = '\'';
    for (const char *c = argv[i]; *c; c++) {
      if (*c == '\'') p += sprintf(p, "'\\''");
      else *p++ = *c;
    }
    *p++ = '\'';
  }
  *p = 0;
  return s;
}
