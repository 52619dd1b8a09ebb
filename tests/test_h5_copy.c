/* io/h5 copying: objects (dataset, group tree, external link) and attributes (string, integer, float, on
 * the file and on objects) from one file into a new one, and a table of unknown columns described, read
 * generically and written again with one more column. */
#include <stddef.h>
#include <stdint.h>
#include <unistd.h>

#include "io/h5.h"
#include "test_util.h"

typedef struct {
  char *name;
  int64_t row;
  int32_t success;
  double score;
  uint8_t flag;
  float half;
} item;

static const sd_h5_field item_fields[] = {
    {"name", SD_H5_STR, offsetof(item, name)},       {"row", SD_H5_I64, offsetof(item, row)},
    {"success", SD_H5_I32, offsetof(item, success)}, {"score", SD_H5_F64, offsetof(item, score)},
    {"flag", SD_H5_U8, offsetof(item, flag)},        {"half", SD_H5_F32, offsetof(item, half)},
};

static void make_source(const char *path) {
  sd_h5 *f;
  sd_error err;
  CHECK(sd_h5_create(path, &f, &err) == 0, "create: %s", err.msg);
  int64_t shape[1] = {3};
  float v[3] = {1, 2, 3};
  item rows[2] = {{"a", 0, 1, 0.5, 7, 1.5f}, {"b", 1, -1, -2.0, 0, 0.25f}};
  CHECK(sd_h5_write(f, "/values", SD_H5_F32, 1, shape, v, 0, &err) == 0, "%s", err.msg);
  CHECK(sd_h5_write(f, "/deep/er/values", SD_H5_F32, 1, shape, v, 0, &err) == 0, "%s", err.msg);
  CHECK(sd_h5_write_table(f, "/items", item_fields, 6, sizeof(item), rows, 2, &err) == 0, "%s", err.msg);
  CHECK(sd_h5_attr_set_str(f, "/", "model", "esd-u1", &err) == 0, "%s", err.msg);
  CHECK(sd_h5_attr_set_i64(f, "/", "steps", 50, &err) == 0, "%s", err.msg);
  CHECK(sd_h5_attr_set_f64(f, "/items", "threshold", 0.45, &err) == 0, "%s", err.msg);
  CHECK(sd_h5_attr_set_str(f, "/deep", "note", "nested", &err) == 0, "%s", err.msg);
  CHECK(sd_h5_link_external(f, "/linked", "elsewhere.h5", "/x", &err) == 0, "%s", err.msg);
  CHECK(sd_h5_commit(f, &err) == 0, "commit: %s", err.msg);
}

int main(void) {
  char src_path[] = "/tmp/sdprune-h5copy-src-XXXXXX", dst_path[] = "/tmp/sdprune-h5copy-dst-XXXXXX";
  int fd = mkstemp(src_path);
  if (fd >= 0)
    close(fd);
  fd = mkstemp(dst_path);
  if (fd >= 0)
    close(fd);
  make_source(src_path);
  sd_h5 *src = NULL, *dst = NULL;
  sd_error err;
  CHECK(sd_h5_open(src_path, &src, &err) == 0, "open: %s", err.msg);
  CHECK(sd_h5_create(dst_path, &dst, &err) == 0, "create: %s", err.msg);
  if (!src || !dst)
    return test_finish();
  CHECK(sd_h5_copy_attrs(src, "/", dst, "/", &err) == 0, "root attributes: %s", err.msg);
  CHECK(sd_h5_copy(src, "/values", dst, "/values", &err) == 0, "dataset: %s", err.msg);
  CHECK(sd_h5_copy(src, "/deep", dst, "/deep", &err) == 0, "group: %s", err.msg);
  CHECK(sd_h5_copy(src, "/linked", dst, "/linked", &err) == 0, "external link (target missing): %s", err.msg);
  CHECK(sd_h5_copy(src, "/values", dst, "/values", &err) == -1 && strstr(err.msg, "already exists"),
        "copy onto an existing object: %s", err.msg);
  CHECK(sd_h5_copy(src, "/nothing", dst, "/nothing", &err) == -1 && strstr(err.msg, "no such object"),
        "copy of nothing: %s", err.msg);

  /* The table: described, read generically, written back with one more column. */
  sd_h5_field *fields = NULL;
  int n_fields = 0;
  CHECK(sd_h5_table_fields(src, "/items", &fields, &n_fields, &err) == 0 && n_fields == 6, "describe: %s", err.msg);
  static const sd_h5_type want[6] = {SD_H5_STR, SD_H5_I64, SD_H5_I32, SD_H5_F64, SD_H5_U8, SD_H5_F32};
  for (int i = 0; i < n_fields && i < 6; i++)
    CHECK(!strcmp(fields[i].name, item_fields[i].name) && fields[i].type == want[i] &&
              fields[i].offset == (size_t)i * SD_H5_FIELD_SLOT,
          "field %d: %s type %d offset %zu", i, fields[i].name, (int)fields[i].type, fields[i].offset);
  sd_h5_free_fields(fields, n_fields);
  CHECK(sd_h5_table_fields(src, "/values", &fields, &n_fields, &err) == -1 && !fields && strstr(err.msg, "not a table"),
        "a plain dataset is not a table: %s", err.msg);
  CHECK(sd_h5_table_fields(src, "/items", &fields, &n_fields, &err) == 0, "describe again: %s", err.msg);
  size_t slot_row = (size_t)(n_fields + 1) * SD_H5_FIELD_SLOT;
  char *rows = NULL;
  int64_t n_rows = 0;
  CHECK(sd_h5_read_table(src, "/items", fields, n_fields, slot_row, (void **)&rows, &n_rows, &err) == 0 && n_rows == 2,
        "generic read: %s", err.msg);
  sd_h5_field extended[8];
  memcpy(extended, fields, sizeof *fields * (size_t)n_fields);
  extended[n_fields] = (sd_h5_field){"success_nudenet", SD_H5_I32, (size_t)n_fields * SD_H5_FIELD_SLOT};
  for (int64_t r = 0; r < n_rows; r++)
    *(int32_t *)(rows + r * slot_row + (size_t)n_fields * SD_H5_FIELD_SLOT) = (int32_t)(10 + r);
  CHECK(sd_h5_write_table(dst, "/items", extended, n_fields + 1, slot_row, rows, n_rows, &err) == 0, "write back: %s",
        err.msg);
  CHECK(sd_h5_copy_attrs(src, "/items", dst, "/items", &err) == 0, "table attributes: %s", err.msg);
  sd_h5_free_table(fields, n_fields, slot_row, rows, n_rows);
  sd_h5_free_fields(fields, n_fields);
  sd_h5_close(src);
  CHECK(sd_h5_commit(dst, &err) == 0, "commit: %s", err.msg);

  CHECK(sd_h5_open(dst_path, &dst, &err) == 0, "open the copy: %s", err.msg);
  if (!dst)
    return test_finish();
  char *s = NULL;
  int64_t steps = 0;
  double threshold = 0;
  CHECK(sd_h5_attr_get_str(dst, "/", "model", &s, &err) == 0 && s && !strcmp(s, "esd-u1"), "root str attribute");
  free(s);
  s = NULL;
  CHECK(sd_h5_attr_get_i64(dst, "/", "steps", &steps, &err) == 0 && steps == 50, "root i64 attribute");
  CHECK(sd_h5_attr_get_f64(dst, "/items", "threshold", &threshold, &err) == 0 && threshold == 0.45, "table attribute");
  CHECK(sd_h5_attr_get_str(dst, "/deep", "note", &s, &err) == 0 && s && !strcmp(s, "nested"), "group attribute");
  free(s);
  float v[3] = {0};
  CHECK(sd_h5_read_into(dst, "/deep/er/values", SD_H5_F32, v, 3, &err) == 0 && v[2] == 3.0f, "nested dataset: %s",
        err.msg);
  CHECK(sd_h5_read_into(dst, "/values", SD_H5_F32, v, 3, &err) == 0 && v[0] == 1.0f, "dataset: %s", err.msg);
  char **names = NULL;
  int n_names = 0;
  CHECK(sd_h5_list(dst, "/", &names, &n_names, &err) == 0 && n_names == 4, "4 root objects, got %d", n_names);
  sd_h5_free_strings(names, n_names);
  typedef struct {
    char *name;
    int64_t row;
    int32_t success, extra;
    double score;
    float half;
  } back;
  static const sd_h5_field back_fields[] = {
      {"name", SD_H5_STR, offsetof(back, name)},       {"row", SD_H5_I64, offsetof(back, row)},
      {"success", SD_H5_I32, offsetof(back, success)}, {"success_nudenet", SD_H5_I32, offsetof(back, extra)},
      {"score", SD_H5_F64, offsetof(back, score)},     {"half", SD_H5_F32, offsetof(back, half)},
  };
  back *b = NULL;
  int64_t nb = 0;
  CHECK(sd_h5_read_table(dst, "/items", back_fields, 6, sizeof *b, (void **)&b, &nb, &err) == 0 && nb == 2,
        "read the rewritten table: %s", err.msg);
  if (b && nb == 2)
    CHECK(!strcmp(b[1].name, "b") && b[1].row == 1 && b[1].success == -1 && b[1].extra == 11 && b[1].score == -2.0 &&
              b[1].half == 0.25f,
          "rewritten row 1: %s %lld %d %d %g %g", b[1].name, (long long)b[1].row, b[1].success, b[1].extra, b[1].score,
          b[1].half);
  sd_h5_free_table(back_fields, 6, sizeof *b, b, nb);
  sd_h5_close(dst);
  unlink(src_path);
  unlink(dst_path);
  return test_finish();
}
