#include "core/prefetch.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sd_prefetch {
  pthread_t thread;
  char *path;
};

/* read() rather than posix_fadvise(WILLNEED): the kernel may cut an advised read-ahead short under
 * memory pressure or per-device limits, a read to the end always happens. 4 MiB blocks keep the request
 * queue full without a large buffer. */
static void *prefetch_main(void *arg) {
  sd_prefetch *p = arg;
  int fd = open(p->path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return NULL;
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  enum { BLOCK = 4 << 20 };
  char *buf = malloc(BLOCK);
  if (buf)
    while (read(fd, buf, BLOCK) > 0) {
    }
  free(buf);
  close(fd);
  return NULL;
}

sd_prefetch *sd_prefetch_start(const char *path) {
  sd_prefetch *p = calloc(1, sizeof *p);
  if (!p || !(p->path = strdup(path))) {
    free(p);
    return NULL;
  }
  if (pthread_create(&p->thread, NULL, prefetch_main, p) != 0) {
    free(p->path);
    free(p);
    return NULL;
  }
  return p;
}

void sd_prefetch_join(sd_prefetch *p) {
  if (!p)
    return;
  pthread_join(p->thread, NULL);
  free(p->path);
  free(p);
}
