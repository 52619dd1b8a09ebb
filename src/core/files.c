/* Filesystem helpers (see files.h). */
#include "core/files.h"

#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

int sd_is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

int sd_is_file(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

int sd_mkdir_p(const char *path) {
  char buf[4096];
  if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
    errno = ENAMETOOLONG;
    return -1;
  }
  for (char *p = buf + 1; *p; p++)
    if (*p == '/') {
      *p = 0;
      if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
      *p = '/';
    }
  if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1;
  return sd_is_dir(buf) ? 0 : (errno = ENOTDIR, -1);
}
