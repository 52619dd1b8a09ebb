/* Error messages and checked allocation for the engine (see error.h). */
#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int sd_fail(sd_error *err, const char *fmt, ...) {
  if (err) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
  }
  return -1;
}

int sd_fail_prefix(sd_error *err, const char *fmt, ...) {
  if (err) {
    char prefix[512], old[sizeof err->msg];
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-truncation"
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old);
#pragma GCC diagnostic pop
  }
  return -1;
}

void *sd_malloc(size_t size, sd_error *err) {
  void *p = malloc(size ? size : 1);
  if (!p) sd_fail(err, "out of memory allocating %zu bytes", size);
  return p;
}

void *sd_calloc(size_t count, size_t size, sd_error *err) {
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) sd_fail(err, "out of memory allocating %zu x %zu bytes", count, size);
  return p;
}

char *sd_strdup(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}
