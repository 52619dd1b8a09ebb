/* Tests for core/sha256: FIPS 180-2 / NIST example vectors, chunked updates that straddle block edges,
 * and the file hashes against /usr/bin/sha256sum (including the A1111 legacy and AutoV2 model hashes). */
#include <stdint.h>
#include <unistd.h>

#include "core/sha256.h"
#include "test_util.h"

static void hex_of(const void *data, size_t len, char out[65]) {
  uint8_t d[32];
  sd_sha256(data, len, d);
  sd_sha256_hex(d, out);
}

/* Runs a shell pipeline printing a sha256sum line; returns the 64-hex digest or "" if unavailable. */
static int sha256sum_of(const char *cmd, char out[65]) {
  FILE *p = popen(cmd, "r");
  out[0] = '\0';
  if (!p) return -1;
  char line[256] = {0};
  char *ok = fgets(line, sizeof line, p);
  int rc = pclose(p);
  if (!ok || rc != 0 || strlen(line) < 64) return -1;
  memcpy(out, line, 64);
  out[64] = '\0';
  return 0;
}

int main(void) {
  char hex[65];
  /* NIST FIPS 180-2 appendix B / CAVS examples. */
  hex_of("", 0, hex);
  CHECK(strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855") == 0, "empty: %s", hex);
  hex_of("abc", 3, hex);
  CHECK(strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad") == 0, "abc: %s", hex);
  const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  hex_of(m448, strlen(m448), hex);
  CHECK(strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1") == 0, "448-bit: %s", hex);
  const char *m896 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
                     "mnopqrstnopqrstu";
  hex_of(m896, strlen(m896), hex);
  CHECK(strcmp(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1") == 0, "896-bit: %s", hex);

  /* One million 'a', fed in uneven pieces so partial blocks are exercised. */
  {
    static char a[1000000];
    memset(a, 'a', sizeof a);
    hex_of(a, sizeof a, hex);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0, "1M a: %s", hex);
    sd_sha256_ctx ctx;
    uint8_t d[32];
    sd_sha256_init(&ctx);
    size_t off = 0, step = 1;
    while (off < sizeof a) {
      size_t n = step < sizeof a - off ? step : sizeof a - off;
      sd_sha256_update(&ctx, a + off, n);
      off += n;
      step = step * 7 % 193 + 1;
    }
    sd_sha256_final(&ctx, d);
    sd_sha256_hex(d, hex);
    CHECK(strcmp(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0") == 0, "1M a chunked: %s",
          hex);
  }

  /* Lengths around the padding boundary (55, 56, 63, 64, 65 bytes): one-shot equals byte-at-a-time. */
  {
    char buf[130];
    for (int i = 0; i < 130; i++) buf[i] = (char)(i * 31 + 7);
    int lens[] = {55, 56, 57, 63, 64, 65, 119, 120, 128};
    for (size_t k = 0; k < sizeof lens / sizeof *lens; k++) {
      char h1[65], h2[65];
      uint8_t d[32];
      hex_of(buf, (size_t)lens[k], h1);
      sd_sha256_ctx ctx;
      sd_sha256_init(&ctx);
      for (int i = 0; i < lens[k]; i++) sd_sha256_update(&ctx, buf + i, 1);
      sd_sha256_final(&ctx, d);
      sd_sha256_hex(d, h2);
      CHECK(strcmp(h1, h2) == 0, "len %d: %s vs %s", lens[k], h1, h2);
    }
  }

  /* Files: a 1.2 MiB pseudo-random file (crosses the 0x100000 legacy offset) and a short one. */
  char path[] = "/tmp/sdprune_sha256_XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  if (fd >= 0) {
    size_t n = 0x100000 + 0x10000 + 12345;
    uint8_t *data = malloc(n);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
      x ^= x << 13;
      x ^= x >> 17;
      x ^= x << 5;
      data[i] = (uint8_t)x;
    }
    CHECK(write(fd, data, n) == (ssize_t)n, "write");
    close(fd);
    uint8_t d[32];
    char want[65], cmd[512];
    sd_error err = {{0}};
    CHECK(sd_sha256_file(path, d, &err) == 0, "%s", err.msg);
    sd_sha256_hex(d, hex);
    char mem[65];
    hex_of(data, n, mem);
    CHECK(strcmp(hex, mem) == 0, "file vs memory: %s %s", hex, mem);
    if (access("/usr/bin/sha256sum", X_OK) == 0) {
      snprintf(cmd, sizeof cmd, "/usr/bin/sha256sum '%s'", path);
      CHECK(sha256sum_of(cmd, want) == 0, "sha256sum ran");
      CHECK(strcmp(hex, want) == 0, "file: %s, sha256sum: %s", hex, want);
      char autov2[11], legacy[9];
      CHECK(sd_a1111_autov2_hash(path, autov2, &err) == 0, "%s", err.msg);
      CHECK(strncmp(autov2, want, 10) == 0 && strlen(autov2) == 10, "autov2 %s vs %s", autov2, want);
      snprintf(cmd, sizeof cmd, "tail -c +%d '%s' | head -c %d | /usr/bin/sha256sum", 0x100000 + 1, path, 0x10000);
      CHECK(sha256sum_of(cmd, want) == 0, "legacy sha256sum ran");
      CHECK(sd_a1111_legacy_hash(path, legacy, &err) == 0, "%s", err.msg);
      CHECK(strncmp(legacy, want, 8) == 0 && strlen(legacy) == 8, "legacy %s vs %s", legacy, want);
    } else {
      fprintf(stderr, "note: /usr/bin/sha256sum missing, external comparison skipped\n");
    }
    /* A file shorter than the legacy offset: A1111 hashes the empty read. */
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, 1000, f);
    fclose(f);
    char legacy[9];
    CHECK(sd_a1111_legacy_hash(path, legacy, &err) == 0, "%s", err.msg);
    CHECK(strcmp(legacy, "e3b0c442") == 0, "short-file legacy hash %s", legacy);
    free(data);
    unlink(path);
  }
  uint8_t d[32];
  sd_error err = {{0}};
  CHECK(sd_sha256_file("/nonexistent/dir/model.ckpt", d, &err) == -1, "missing file fails");
  CHECK(strstr(err.msg, "/nonexistent/dir/model.ckpt") != NULL, "error names the file: %s", err.msg);
  return test_finish();
}
