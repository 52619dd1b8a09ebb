/* Replays saved inputs through a fuzz harness without libFuzzer: `fuzz_replay_NAME FILE|DIR...` runs every
 * file (directories one level deep, in name order) through LLVMFuzzerTestOneInput. A crash, a sanitizer
 * report or a failed invariant ends the program abnormally, so a ctest over tests/fuzz/regress/NAME and
 * tests/fuzz/corpus/NAME fails; otherwise it prints how many inputs ran and exits 0. */
#include <dirent.h>
#include <sys/stat.h>

#include "fuzz_common.h"

static int run_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    perror(path);
    return -1;
  }
  size_t cap = 1 << 16, n = 0;
  uint8_t *buf = malloc(cap);
  size_t got;
  while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap)
      buf = realloc(buf, cap *= 2);
  }
  fclose(f);
  if (!buf)
    abort();
  /* libFuzzer hands over an exact-size copy; so does the replay, so that ASan sees reads past the end. */
  uint8_t *exact = malloc(n ? n : 1);
  if (!exact)
    abort();
  memcpy(exact, buf, n);
  free(buf);
  if (getenv("FUZZ_REPLAY_VERBOSE"))
    fprintf(stderr, "replay %s (%zu bytes)\n", path, n);
  LLVMFuzzerTestOneInput(exact, n);
  free(exact);
  return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv) {
  int ran = 0, bad = 0;
  for (int i = 1; i < argc; i++) {
    struct stat st;
    if (stat(argv[i], &st) != 0)
      continue; /* an absent regress/ folder: nothing to replay */
    if (!S_ISDIR(st.st_mode)) {
      bad += run_file(argv[i]) != 0;
      ran++;
      continue;
    }
    struct dirent **names;
    int n = scandir(argv[i], &names, NULL, by_name);
    for (int k = 0; k < n; k++) {
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", argv[i], names[k]->d_name);
      if (names[k]->d_name[0] != '.' && stat(p, &st) == 0 && S_ISREG(st.st_mode)) {
        bad += run_file(p) != 0;
        ran++;
      }
      free(names[k]);
    }
    free(names);
  }
  printf("%d inputs replayed, %d unreadable\n", ran, bad);
  return bad ? 1 : 0;
}
