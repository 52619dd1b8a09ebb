/* Scratch arena (see arena.h). */
#include "core/arena.h"

#include <stdint.h>
#include <stdlib.h>

#define ARENA_ALIGN 64
#define CHUNK_HEADER (((sizeof(sd_arena_chunk) + ARENA_ALIGN - 1) / ARENA_ALIGN) * ARENA_ALIGN)

static sd_arena_chunk *new_chunk(size_t size) {
  void *p = NULL;
  if (posix_memalign(&p, ARENA_ALIGN, CHUNK_HEADER + size) != 0) return NULL;
  sd_arena_chunk *c = p;
  c->next = NULL;
  c->size = size;
  c->used = 0;
  return c;
}

float *sd_arena_floats(sd_arena *a, size_t n, sd_error *err) {
  size_t bytes = ((n * sizeof(float) + ARENA_ALIGN - 1) / ARENA_ALIGN) * ARENA_ALIGN;
  if (!a->head || a->head->size - a->head->used < bytes) {
    size_t size = bytes > ((size_t)64 << 20) ? bytes : ((size_t)64 << 20);
    sd_arena_chunk *c = new_chunk(size);
    if (!c) {
      sd_fail(err, "out of memory: activation arena needs %zu more bytes", bytes);
      return NULL;
    }
    c->next = a->head;
    a->head = c;
    a->n_chunks++;
  }
  float *p = (float *)((char *)a->head + CHUNK_HEADER + a->head->used);
  a->head->used += bytes;
  a->in_use += bytes;
  if (a->in_use > a->high_water) a->high_water = a->in_use;
  return p;
}

size_t sd_arena_mark(const sd_arena *a) { return a->in_use; }

void sd_arena_release(sd_arena *a, size_t mark) {
  /* Pop whole bytes from the head chunk; a release that spans chunks keeps the older ones
   * as they are (rare, first pass only). */
  while (a->in_use > mark && a->head) {
    size_t drop = a->in_use - mark;
    if (drop <= a->head->used) {
      a->head->used -= drop;
      a->in_use = mark;
      return;
    }
    a->in_use -= a->head->used;
    a->head->used = 0;
    if (!a->head->next) break;
    sd_arena_chunk *empty = a->head;
    a->head = empty->next;
    a->n_chunks--;
    free(empty);
  }
}

void sd_arena_reset(sd_arena *a) {
  if (a->n_chunks > 1) {
    size_t total = a->high_water;
    sd_arena_free(a);
    a->head = new_chunk(total);
    a->n_chunks = a->head ? 1 : 0;
    a->high_water = total;
  }
  if (a->head) a->head->used = 0;
  a->in_use = 0;
}

void sd_arena_free(sd_arena *a) {
  while (a->head) {
    sd_arena_chunk *n = a->head->next;
    free(a->head);
    a->head = n;
  }
  a->n_chunks = 0;
  a->in_use = 0;
}
