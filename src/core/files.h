/* Small filesystem helpers shared by the CLI and the loaders. */
#ifndef SD_FILES_H
#define SD_FILES_H

int sd_is_dir(const char *path);
int sd_is_file(const char *path);
/* mkdir -p; returns 0, or -1 with errno set. */
int sd_mkdir_p(const char *path);

#endif
