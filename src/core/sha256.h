/* SHA-256 (FIPS 180-4): incremental hashing, a streaming file hash, and the AUTOMATIC1111 checkpoint
 * "model hash" helpers used for provenance. Not a general crypto library (no HMAC, no constant-time claims). */
#ifndef SD_SHA256_H
#define SD_SHA256_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct {
  uint32_t state[8];
  uint64_t total_bytes; /* message length so far */
  uint8_t block[64];    /* pending partial block */
  size_t block_len;
} sd_sha256_ctx;

void sd_sha256_init(sd_sha256_ctx *ctx);
void sd_sha256_update(sd_sha256_ctx *ctx, const void *data, size_t len);
void sd_sha256_final(sd_sha256_ctx *ctx, uint8_t digest[32]);

/* One-shot over a buffer. */
void sd_sha256(const void *data, size_t len, uint8_t digest[32]);

/* Lower-case hex of a digest, NUL-terminated. */
void sd_sha256_hex(const uint8_t digest[32], char out[65]);

/* Hashes a whole file, reading it in chunks (constant memory). */
int sd_sha256_file(const char *path, uint8_t digest[32], sd_error *err);

/* A1111 legacy "model hash": first 8 hex chars of sha256 over the 0x10000 bytes at offset 0x100000 of the
 * file (fewer if the file is shorter, as A1111's f.seek/f.read does; empty when shorter than the offset). */
int sd_a1111_legacy_hash(const char *path, char out[9], sd_error *err);

/* A1111 "AutoV2" short hash: first 10 hex chars of the full-file sha256. */
int sd_a1111_autov2_hash(const char *path, char out[11], sd_error *err);

#endif
