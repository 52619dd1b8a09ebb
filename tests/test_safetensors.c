/* safetensors reader/writer: round trip, dtype conversion, and every kind of lying header. */
#include <unistd.h>

#include "core/half.h"
#include "io/safetensors.h"
#include "io/tensor_store.h"
#include "test_util.h"

static char dir[256];

static void write_raw(const char *path, const char *header, const void *data, size_t nbytes, long pad_len_delta) {
  FILE *f = fopen(path, "wb");
  uint64_t len = strlen(header) + (uint64_t)pad_len_delta;
  unsigned char lb[8];
  for (int i = 0; i < 8; i++) lb[i] = (unsigned char)(len >> (8 * i));
  fwrite(lb, 1, 8, f);
  fwrite(header, 1, strlen(header), f);
  if (data) fwrite(data, 1, nbytes, f);
  fclose(f);
}

static void expect_error(const char *name, const char *header, const void *data, size_t nbytes, long delta,
                         const char *needle) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s.safetensors", dir, name);
  write_raw(path, header, data, nbytes, delta);
  sd_tensor_store *s = NULL;
  sd_error err = {{0}};
  int rc = sd_store_open(path, &s, &err);
  CHECK(rc != 0 && s == NULL, "%s: expected failure", name);
  CHECK(strstr(err.msg, path) != NULL, "%s: message names the file: %s", name, err.msg);
  CHECK(strstr(err.msg, needle) != NULL, "%s: message mentions '%s': %s", name, needle, err.msg);
  sd_store_close(s);
}

int main(void) {
  snprintf(dir, sizeof dir, "/tmp/sdprune_test_st_%d", (int)getpid());
  mkdir(dir, 0755);
  char path[512];
  snprintf(path, sizeof path, "%s/ok.safetensors", dir);

  /* Round trip with F32, F16, BF16, I64 and a shape-[] scalar. */
  float f32[6] = {1, -2, 3.5f, 0, 1e-3f, -7};
  uint16_t f16[4], bf16[4];
  float src16[4] = {0.5f, -1.25f, 65504.0f, 6.1e-5f};
  for (int i = 0; i < 4; i++) {
    f16[i] = sd_f32_to_f16(src16[i]);
    bf16[i] = sd_f32_to_bf16(src16[i]);
  }
  int64_t ids[3] = {0, 1, 76};
  float scalar = 0.18215f;
  sd_st_entry e[5] = {
      {.name = "a.weight", .dtype = SD_DTYPE_F32, .ndim = 2, .shape = {2, 3}, .data = f32},
      {.name = "b.half", .dtype = SD_DTYPE_F16, .ndim = 1, .shape = {4}, .data = f16},
      {.name = "c.bf", .dtype = SD_DTYPE_BF16, .ndim = 2, .shape = {2, 2}, .data = bf16},
      {.name = "position_ids", .dtype = SD_DTYPE_I64, .ndim = 1, .shape = {3}, .data = ids},
      {.name = "scale", .dtype = SD_DTYPE_F32, .ndim = 0, .data = &scalar},
  };
  sd_error err = {{0}};
  CHECK(sd_safetensors_write(path, e, 5, "{\"config\":\"{}\"}", &err) == 0, "write: %s", err.msg);
  sd_tensor_store *s = NULL;
  CHECK(sd_store_open(path, &s, &err) == 0, "open: %s", err.msg);
  if (s) {
    CHECK(s->count == 5, "count %d", s->count);
    CHECK(s->metadata_json && strstr(s->metadata_json, "config"), "metadata kept");
    sd_tensor *t = sd_store_find(s, "a.weight");
    CHECK(t && t->ndim == 2 && t->shape[0] == 2 && t->shape[1] == 3, "a.weight shape");
    const float *v = t ? sd_tensor_f32(t, &err) : NULL;
    for (int i = 0; v && i < 6; i++) CHECK_NEAR(v[i], f32[i], 0, "f32 value");
    t = sd_store_find(s, "b.half");
    v = t ? sd_tensor_f32(t, &err) : NULL;
    for (int i = 0; v && i < 4; i++) CHECK_NEAR(v[i], src16[i], fabs(src16[i]) * 1e-3, "f16 value");
    t = sd_store_find(s, "c.bf");
    v = t ? sd_tensor_f32(t, &err) : NULL;
    for (int i = 0; v && i < 4; i++) CHECK_NEAR(v[i], src16[i], fabs(src16[i]) * 8e-3, "bf16 value");
    t = sd_store_find(s, "position_ids");
    v = t ? sd_tensor_f32(t, &err) : NULL;
    CHECK(v && v[2] == 76.0f, "i64 converted");
    t = sd_store_find(s, "scale");
    CHECK(t && t->ndim == 0 && sd_tensor_numel(t) == 1, "scalar tensor");
    CHECK(sd_store_find(s, "missing") == NULL, "missing name not found");
  }
  sd_store_close(s);

  /* Exact half conversions at the edges. */
  CHECK(sd_f16_to_f32(0x3c00) == 1.0f, "f16 one");
  CHECK(sd_f16_to_f32(0x0001) == 5.9604644775390625e-08f, "f16 smallest subnormal");
  CHECK(sd_f16_to_f32(0xfbff) == -65504.0f, "f16 lowest");
  CHECK(sd_f32_to_f16(1.0009765625f) == 0x3c01, "f16 rounding exact");
  CHECK(sd_f32_to_f16(1.00048828125f) == 0x3c00, "f16 ties to even");

  /* Lying or broken headers: each must fail with a message naming the file and the problem. */
  float four[4] = {0};
  expect_error("truncated", "{\"x\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", four, 8, 0, "past the end");
  expect_error("size_lie", "{\"x\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", four, 16, 0, "needs 12 bytes");
  expect_error("bad_dtype", "{\"x\":{\"dtype\":\"F8_E9\",\"shape\":[4],\"data_offsets\":[0,16]}}", four, 16, 0, "unknown dtype");
  expect_error("overlap",
               "{\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"y\":{\"dtype\":\"F32\",\"shape\":[2],"
               "\"data_offsets\":[4,12]}}",
               four, 16, 0, "overlap");
  expect_error("header_len", "{}", NULL, 0, 1000, "header length");
  expect_error("not_json", "{\"x\":", four, 16, 0, "not valid JSON");
  expect_error("neg_shape", "{\"x\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", four, 16, 0, "shape entry");
  expect_error("dup_key", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"x\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", four, 16, 0, "x");
  snprintf(path, sizeof path, "%s/tiny.safetensors", dir);
  FILE *f = fopen(path, "wb");
  fwrite("abc", 1, 3, f);
  fclose(f);
  CHECK(sd_store_open(path, &s, &err) != 0 && strstr(err.msg, "too short"), "short file: %s", err.msg);
  CHECK(sd_store_open("/nonexistent/x.safetensors", &s, &err) != 0 && strstr(err.msg, "cannot open"), "missing: %s", err.msg);

  char cmd[300];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
  return test_finish();
}
