/* SHA-256 per FIPS 180-4 (section 6.2), written from the standard; plus file hashing and the A1111
 * model-hash conventions. Portable C, no SIMD: hashing a 4 GB checkpoint is I/O bound anyway. */
#include "core/sha256.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint32_t sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static inline uint32_t rotr(uint32_t x, int n) { return (x >> n) | (x << (32 - n)); }

static void sha256_compress(uint32_t state[8], const uint8_t block[64]) {
  uint32_t w[64];
  for (int t = 0; t < 16; t++)
    w[t] = (uint32_t)block[4 * t] << 24 | (uint32_t)block[4 * t + 1] << 16 | (uint32_t)block[4 * t + 2] << 8 |
           (uint32_t)block[4 * t + 3];
  for (int t = 16; t < 64; t++) {
    uint32_t s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3);
    uint32_t s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10);
    w[t] = w[t - 16] + s0 + w[t - 7] + s1;
  }
  uint32_t a = state[0], b = state[1], c = state[2], d = state[3];
  uint32_t e = state[4], f = state[5], g = state[6], h = state[7];
  for (int t = 0; t < 64; t++) {
    uint32_t big_s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25);
    uint32_t ch = (e & f) ^ (~e & g);
    uint32_t t1 = h + big_s1 + ch + sha256_k[t] + w[t];
    uint32_t big_s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22);
    uint32_t maj = (a & b) ^ (a & c) ^ (b & c);
    uint32_t t2 = big_s0 + maj;
    h = g;
    g = f;
    f = e;
    e = d + t1;
    d = c;
    c = b;
    b = a;
    a = t1 + t2;
  }
  state[0] += a;
  state[1] += b;
  state[2] += c;
  state[3] += d;
  state[4] += e;
  state[5] += f;
  state[6] += g;
  state[7] += h;
}

void sd_sha256_init(sd_sha256_ctx *ctx) {
  static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
  memcpy(ctx->state, h0, sizeof h0);
  ctx->total_bytes = 0;
  ctx->block_len = 0;
}

void sd_sha256_update(sd_sha256_ctx *ctx, const void *data, size_t len) {
  const uint8_t *p = data;
  ctx->total_bytes += len;
  if (ctx->block_len) {
    size_t take = 64 - ctx->block_len < len ? 64 - ctx->block_len : len;
    memcpy(ctx->block + ctx->block_len, p, take);
    ctx->block_len += take;
    p += take;
    len -= take;
    if (ctx->block_len < 64) return;
    sha256_compress(ctx->state, ctx->block);
    ctx->block_len = 0;
  }
  for (; len >= 64; p += 64, len -= 64) sha256_compress(ctx->state, p);
  memcpy(ctx->block, p, len);
  ctx->block_len = len;
}

void sd_sha256_final(sd_sha256_ctx *ctx, uint8_t digest[32]) {
  uint64_t bits = ctx->total_bytes * 8;
  /* Padding (5.1.1): a 1 bit, zeros to 56 mod 64 bytes, then the 64-bit big-endian bit length. */
  uint8_t pad[72] = {0x80};
  size_t pad_len = (ctx->block_len < 56 ? 56 : 120) - ctx->block_len;
  for (int i = 0; i < 8; i++) pad[pad_len + i] = (uint8_t)(bits >> (56 - 8 * i));
  uint64_t keep_total = ctx->total_bytes;
  sd_sha256_update(ctx, pad, pad_len + 8);
  ctx->total_bytes = keep_total;
  for (int i = 0; i < 8; i++) {
    digest[4 * i] = (uint8_t)(ctx->state[i] >> 24);
    digest[4 * i + 1] = (uint8_t)(ctx->state[i] >> 16);
    digest[4 * i + 2] = (uint8_t)(ctx->state[i] >> 8);
    digest[4 * i + 3] = (uint8_t)ctx->state[i];
  }
}

void sd_sha256(const void *data, size_t len, uint8_t digest[32]) {
  sd_sha256_ctx ctx;
  sd_sha256_init(&ctx);
  sd_sha256_update(&ctx, data, len);
  sd_sha256_final(&ctx, digest);
}

void sd_sha256_hex(const uint8_t digest[32], char out[65]) {
  static const char hex[] = "0123456789abcdef";
  for (int i = 0; i < 32; i++) {
    out[2 * i] = hex[digest[i] >> 4];
    out[2 * i + 1] = hex[digest[i] & 15];
  }
  out[64] = '\0';
}

/* Hashes up to max_len bytes (SIZE_MAX = to EOF) from offset; a file shorter than offset hashes nothing. */
static int sha256_file_range(const char *path, long long offset, size_t max_len, uint8_t digest[32],
                             sd_error *err) {
  FILE *f = fopen(path, "rb");
  if (!f) return sd_fail(err, "%s: cannot open: %s", path, strerror(errno));
  sd_sha256_ctx ctx;
  sd_sha256_init(&ctx);
  if (offset > 0 && fseeko(f, (off_t)offset, SEEK_SET) != 0) {
    fclose(f);
    return sd_fail(err, "%s: cannot seek to %lld: %s", path, offset, strerror(errno));
  }
  static const size_t chunk = 1 << 20;
  uint8_t *buf = sd_malloc(chunk, err);
  if (!buf) {
    fclose(f);
    return -1;
  }
  size_t left = max_len;
  while (left > 0) {
    size_t want = left < chunk ? left : chunk;
    size_t got = fread(buf, 1, want, f);
    sd_sha256_update(&ctx, buf, got);
    left -= got;
    if (got < want) break;
  }
  int bad = ferror(f);
  free(buf);
  fclose(f);
  if (bad) return sd_fail(err, "%s: read error while hashing", path);
  sd_sha256_final(&ctx, digest);
  return 0;
}

int sd_sha256_file(const char *path, uint8_t digest[32], sd_error *err) {
  return sha256_file_range(path, 0, SIZE_MAX, digest, err);
}

int sd_a1111_legacy_hash(const char *path, char out[9], sd_error *err) {
  uint8_t digest[32];
  char hex[65];
  if (sha256_file_range(path, 0x100000, 0x10000, digest, err)) return -1;
  sd_sha256_hex(digest, hex);
  memcpy(out, hex, 8);
  out[8] = '\0';
  return 0;
}

int sd_a1111_autov2_hash(const char *path, char out[11], sd_error *err) {
  uint8_t digest[32];
  char hex[65];
  if (sd_sha256_file(path, digest, err)) return -1;
  sd_sha256_hex(digest, hex);
  memcpy(out, hex, 10);
  out[10] = '\0';
  return 0;
}
