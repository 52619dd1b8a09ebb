/* Read-ahead of whole files on a background thread, so that reading one file overlaps the work on the
 * previous one (the offline reduce reads shard k+1 into the page cache while it adds shard k). Purely an
 * optimisation: a prefetch that cannot open or read its file does nothing, the real read reports it. */
#ifndef SD_PREFETCH_H
#define SD_PREFETCH_H

typedef struct sd_prefetch sd_prefetch;

/* Starts reading `path` into the page cache on a new thread (nothing is copied; cached pages cost nothing). NULL when no
 * thread could be started (then nothing is prefetched). */
sd_prefetch *sd_prefetch_start(const char *path);
/* Waits for the read to end and frees p. NULL is a no-op. */
void sd_prefetch_join(sd_prefetch *p);

#endif
