/* Scratch arena for activations: a bump allocator reset once per forward pass. The first pass
 * grows it; afterwards the chunks are merged into one block of the high-water size, so later
 * passes with the same shapes never call malloc (the timestep loop allocates nothing). */
#ifndef SD_ARENA_H
#define SD_ARENA_H

#include <stddef.h>

#include "core/error.h"

typedef struct sd_arena_chunk {
  struct sd_arena_chunk *next;
  size_t size, used;
  /* data follows, 64-byte aligned */
} sd_arena_chunk;

typedef struct {
  sd_arena_chunk *head; /* chunk being filled; older chunks follow through next */
  size_t in_use;        /* bytes handed out since the last reset */
  size_t high_water;    /* largest in_use seen */
  int n_chunks;
} sd_arena;

/* Returns 64-byte aligned memory for n floats, or NULL with err set. */
float *sd_arena_floats(sd_arena *a, size_t n, sd_error *err);
/* Current position, to release everything allocated after it (stack discipline). */
size_t sd_arena_mark(const sd_arena *a);
void sd_arena_release(sd_arena *a, size_t mark);
/* Starts a new pass; merges chunks when the previous pass needed more than one. */
void sd_arena_reset(sd_arena *a);
void sd_arena_free(sd_arena *a);

#endif
