/* Shared by the fuzz harnesses: each defines LLVMFuzzerTestOneInput (libFuzzer's entry point), run by libFuzzer
 * in the SDPRUNE_FUZZ build and by replay_main.c over the checked-in inputs in every build. Readers that take a
 * path get the input through a file in a private temporary folder, rewritten on every call.
 * Not a test framework: a harness checks only what a reader promises (no crash, no leak, its invariants). */
#ifndef SD_FUZZ_COMMON_H
#define SD_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A folder of this process's own (made once, removed at exit): in /dev/shm when it exists, so that the
 * file a reader opens never touches the disk. */
const char *fuzz_dir(void);

/* Writes data to fuzz_dir()/name and returns that path (a static buffer per name slot; slot 0..7). */
const char *fuzz_file(int slot, const char *name, const void *data, size_t size);

/* Splits data at the first n-1 NUL bytes into n parts (missing parts are empty); part[i] points into
 * data, not NUL-terminated, len[i] its length. */
void fuzz_split(const uint8_t *data, size_t size, int n, const uint8_t **part, size_t *len);

/* HDF5 identifiers open in this process, files included: a reader closes every object it opened, on its error
 * paths too, so after a read this is 0 (libhdf5's own leaks on damaged files are memory, not identifiers). */
long fuzz_h5_open_objects(void);

/* A NUL-terminated malloc'ed copy (aborts on out of memory: a harness failure, not a finding). */
char *fuzz_strndup(const void *data, size_t size);

/* Aborts with a message: a violated reader invariant, reported by libFuzzer as a crash. */
#define FUZZ_ASSERT(cond, ...)                                                                                         \
  do {                                                                                                                 \
    if (!(cond)) {                                                                                                     \
      fprintf(stderr, "fuzz invariant failed at %s:%d: %s: ", __FILE__, __LINE__, #cond);                              \
      fprintf(stderr, __VA_ARGS__);                                                                                    \
      fprintf(stderr, "\n");                                                                                           \
      abort();                                                                                                         \
    }                                                                                                                  \
  } while (0)

#endif
