/* Error reporting for the engine: functions return 0 on success or -1 on failure and leave a
 * one-line message in an sd_error that the caller prints. The library never exits. */
#ifndef SD_ERROR_H
#define SD_ERROR_H

#include <stddef.h>

typedef struct {
  char msg[1024];
} sd_error;

/* Formats the message into err (if non-NULL) and returns -1, so callers can `return sd_fail(...)`. */
int sd_fail(sd_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prefixes an existing message, e.g. with the file being read: "file: <old message>". */
int sd_fail_prefix(sd_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Allocation that reports into err on failure (returns NULL). */
void *sd_malloc(size_t size, sd_error *err);
void *sd_calloc(size_t count, size_t size, sd_error *err);
char *sd_strdup(const char *s);

#endif
