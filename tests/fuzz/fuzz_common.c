/* The temporary folder and input splitting of fuzz_common.h. */
#include "fuzz_common.h"

#include <dirent.h>
#include <fcntl.h>
#include <hdf5.h>
#include <sys/stat.h>

static char dir_path[256];

static void remove_dir(void) {
  DIR *d = opendir(dir_path);
  if (d) {
    struct dirent *e;
    char p[512];
    while ((e = readdir(d))) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
        continue;
      snprintf(p, sizeof p, "%s/%s", dir_path, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(dir_path);
}

const char *fuzz_dir(void) {
  if (dir_path[0])
    return dir_path;
  /* FUZZ_TMPDIR (run.sh sets it and removes it afterwards): a harness that dies (a crash, or a fork-mode child
   * killed on a hang) runs no atexit, and would leave its folder behind in /dev/shm. */
  struct stat st;
  const char *base = getenv("FUZZ_TMPDIR") && getenv("FUZZ_TMPDIR")[0] ? getenv("FUZZ_TMPDIR")
                     : stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0
                         ? "/dev/shm"
                         : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
  snprintf(dir_path, sizeof dir_path, "%s/sdprune-fuzz-XXXXXX", base);
  if (!mkdtemp(dir_path)) {
    perror("fuzz: mkdtemp");
    abort();
  }
  atexit(remove_dir);
  return dir_path;
}

const char *fuzz_file(int slot, const char *name, const void *data, size_t size) {
  static char paths[8][512];
  if (slot < 0 || slot >= 8)
    abort();
  snprintf(paths[slot], sizeof paths[slot], "%s/%s", fuzz_dir(), name);
  int fd = open(paths[slot], O_WRONLY | O_CREAT | O_TRUNC, 0600);
  if (fd < 0) {
    perror(paths[slot]);
    abort();
  }
  const char *p = data;
  while (size > 0) {
    ssize_t n = write(fd, p, size);
    if (n <= 0) {
      perror(paths[slot]);
      abort();
    }
    p += n;
    size -= (size_t)n;
  }
  close(fd);
  return paths[slot];
}

void fuzz_split(const uint8_t *data, size_t size, int n, const uint8_t **part, size_t *len) {
  size_t at = 0;
  for (int i = 0; i < n; i++) {
    part[i] = data + at;
    len[i] = 0;
    if (at >= size)
      continue;
    const uint8_t *nul = i < n - 1 ? memchr(data + at, 0, size - at) : NULL;
    size_t end = nul ? (size_t)(nul - data) : size;
    len[i] = end - at;
    at = nul ? end + 1 : size;
  }
}

char *fuzz_strndup(const void *data, size_t size) {
  char *s = malloc(size + 1);
  if (!s)
    abort();
  if (size)
    memcpy(s, data, size);
  s[size] = 0;
  return s;
}

long fuzz_h5_open_objects(void) {
  return (long)H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
}
