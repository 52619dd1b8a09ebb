/* Provenance strings every output carries: sdprune version, git revision of the build, UTC time,
 * the command line. */
#ifndef SD_PROVENANCE_H
#define SD_PROVENANCE_H

#include <stddef.h>

const char *sd_version(void);
const char *sd_git_revision(void); /* "abc1234" (+"-dirty"), or "unknown" outside a git checkout */
/* "2026-12-02T01:23:45Z" into buf (size >= 21). */
const char *sd_utc_now(char *buf, size_t size);
/* "sdprune <argv...>", shell-quoted where needed; malloc'ed (NULL on out of memory). */
char *sd_command_line(int argc, char **argv);

#endif
