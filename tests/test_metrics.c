/* eval/metrics: the Wilson interval against closed-form references (Python Decimal, 40 digits) and Newcombe
 * (1998)'s published four-digit values; ASR, pre/post-attack ASR pairing (by case_id, by row), exclusions,
 * per-category rows, order, errors, the markdown table and the HDF5 tables read back. */
#include <math.h>
#include <stdint.h>
#include <unistd.h>

#include "eval/metrics.h"
#include "io/h5.h"
#include "test_util.h"

static void test_wilson(void) {
  /* Closed form evaluated in Python's decimal module with 40 digits (z = 1.959963984540054). */
  static const struct {
    int64_t k, n;
    double lo, hi;
  } ref[] = {
      {0, 10, 0.0, 0.2775327998628892},
      {5, 10, 0.236593090512564, 0.76340690948743595},
      {81, 263, 0.25528851987827422, 0.36620957698280004},
      {15, 148, 0.062386399530736283, 0.16048724172330803},
      {1, 29, 0.0061132142927626618, 0.17175521879320285},
      {10, 10, 0.72246720013711074, 1.0},
      {3, 7, 0.1582198552514697, 0.74954163547234276},
  };
  double worst = 0;
  for (size_t i = 0; i < sizeof ref / sizeof *ref; i++) {
    double lo, hi;
    CHECK(sd_wilson_interval(ref[i].k, ref[i].n, SD_WILSON_Z95, &lo, &hi) == 0, "k=%lld n=%lld", (long long)ref[i].k,
          (long long)ref[i].n);
    /* 1e-14: a few ulps of the double-precision closed form. */
    CHECK_NEAR(lo, ref[i].lo, 1e-14, "wilson lo");
    CHECK_NEAR(hi, ref[i].hi, 1e-14, "wilson hi");
    worst = fmax(worst, fmax(fabs(lo - ref[i].lo), fabs(hi - ref[i].hi)));
  }
  printf("wilson: worst difference from the 40-digit reference %.3g\n", worst);
  /* Newcombe, Stat. Med. 17:857 (1998), Table I, method 3 (score): printed to 4 decimals. */
  double lo, hi;
  sd_wilson_interval(81, 263, SD_WILSON_Z95, &lo, &hi);
  CHECK(fabs(lo - 0.2553) < 5e-5 && fabs(hi - 0.3662) < 5e-5, "81/263: %.4f %.4f", lo, hi);
  sd_wilson_interval(0, 20, SD_WILSON_Z95, &lo, &hi);
  CHECK(lo == 0.0 && fabs(hi - 0.1611) < 5e-5, "0/20: %.4f %.4f", lo, hi);
  sd_wilson_interval(0, 10, SD_WILSON_Z95, &lo, &hi);
  CHECK(lo == 0.0, "k = 0 gives lo exactly 0 (got %.17g)", lo);
  sd_wilson_interval(10, 10, SD_WILSON_Z95, &lo, &hi);
  CHECK(hi == 1.0, "k = n gives hi exactly 1 (got %.17g)", hi);
  CHECK(sd_wilson_interval(0, 0, SD_WILSON_Z95, &lo, &hi) == 0 && isnan(lo) && isnan(hi), "n = 0: NaN bounds");
  CHECK(sd_wilson_interval(3, 2, SD_WILSON_Z95, &lo, &hi) == -1 && isnan(lo), "k > n refused");
  CHECK(sd_wilson_interval(-1, 2, SD_WILSON_Z95, &lo, &hi) == -1, "k < 0 refused");
  CHECK(sd_wilson_interval(1, 2, 0.0, &lo, &hi) == -1, "z = 0 refused");
}

#define ITEM(model, set, case_id, cats, row, seed, success, failed, clip)                                              \
  { model, set, case_id, cats, row, seed, success, failed, clip, NAN }

/* esd: ring is paired with plain by case_id; sd: by row (no case_id). Worked out by hand in the comments. */
static const sd_metric_item items[] = {
    ITEM("esd", "plain", "c0", "", 0, 1, 1, 0, NAN),
    ITEM("esd", "plain", "c1", "", 1, 1, 0, 0, NAN),
    ITEM("esd", "plain", "c2", "", 2, 1, 0, 0, NAN),
    ITEM("esd", "plain", "c3", "", 3, 1, -1, 0, NAN), /* not judged: c3 of ring stays unpaired */
    ITEM("esd", "plain", "c4", "", 4, 1, 0, 1, 9.0),  /* failed: excluded, its CLIP score too */
    ITEM("sd", "plain", "", "", 0, 7, 1, 0, NAN),
    ITEM("esd", "ring", "c0", "sexual", 0, 1, 0, 0, 0.3),
    ITEM("esd", "ring", "c1", "sexual, violence", 1, 1, 1, 0, 0.5),
    ITEM("esd", "ring", "c2", "violence", 2, 1, 0, 0, NAN),
    ITEM("esd", "ring", "c3", "", 3, 1, 1, 0, 0.1),
    ITEM("esd", "ring", "c5", "sexual", 4, 1, 1, 0, NAN), /* no counterpart item */
    ITEM("sd", "plain", "", "", 1, 7, 0, 0, NAN),
    ITEM("sd", "plain", "", "", 0, 8, 1, 0, NAN),
    ITEM("sd", "ring", "", "", 0, 7, 0, 0, NAN),
    ITEM("sd", "ring", "", "", 1, 7, 1, 0, NAN),
    ITEM("sd", "ring", "", "", 1, 8, 0, 0, NAN), /* row 1 seed 8 has no counterpart */
};
static const sd_metric_set sets[] = {{"ring", "plain"}, {"plain", NULL}};
#define N_ITEMS ((int64_t)(sizeof items / sizeof *items))

static void check_row(const sd_metric_row *r, const char *model, const char *set, const char *category, int64_t n_items,
                      int64_t n, int64_t successes, int64_t n_paired, int64_t pre, int64_t post) {
  CHECK(!strcmp(r->model, model) && !strcmp(r->set, set) && !strcmp(r->category, category),
        "row %s/%s/%s, want %s/%s/%s", r->model, r->set, r->category, model, set, category);
  CHECK(r->n_items == n_items && r->n == n && r->successes == successes,
        "%s/%s/%s: items %lld judged %lld successes %lld", model, set, category, (long long)r->n_items, (long long)r->n,
        (long long)r->successes);
  CHECK(r->n_paired == n_paired && r->pre_successes == pre && r->post_successes == post,
        "%s/%s/%s: paired %lld pre %lld post %lld, want %lld %lld %lld", model, set, category, (long long)r->n_paired,
        (long long)r->pre_successes, (long long)r->post_successes, (long long)n_paired, (long long)pre,
        (long long)post);
  CHECK_NEAR(r->asr, (double)successes / (double)n, 1e-15, "asr");
  double lo, hi;
  sd_wilson_interval(successes, n, SD_WILSON_Z95, &lo, &hi);
  CHECK(r->asr_lo == lo && r->asr_hi == hi, "%s/%s/%s: interval", model, set, category);
  if (n_paired > 0) {
    CHECK_NEAR(r->pre_asr, (double)pre / (double)n_paired, 1e-15, "pre_asr");
    CHECK_NEAR(r->post_asr, (double)post / (double)n_paired, 1e-15, "post_asr");
    sd_wilson_interval(post, n_paired, SD_WILSON_Z95, &lo, &hi);
    CHECK(r->post_asr_lo == lo && r->post_asr_hi == hi, "%s/%s/%s: post interval", model, set, category);
  } else {
    CHECK(isnan(r->pre_asr) && isnan(r->post_asr), "%s/%s/%s: pre/post NaN without pairs", model, set, category);
  }
}

static void test_compute(sd_metrics *m) {
  sd_error err;
  int rc = sd_metrics_compute(items, N_ITEMS, sets, 2, SD_WILSON_Z95, m, &err);
  CHECK(rc == 0, "compute: %s", err.msg);
  if (rc)
    return;
  CHECK(m->n_rows == 4, "4 rows (2 models x 2 sets), got %lld", (long long)m->n_rows);
  if (m->n_rows != 4)
    return;
  /* esd/ring: judged c0 c1 c2 c3 c5 (3 successes); pairs c0 (pre 1), c1, c2 (pre 0): post c0, c1. */
  check_row(&m->rows[0], "esd", "ring", "", 5, 5, 3, 3, 1, 2);
  CHECK(!strcmp(m->rows[0].counterpart, "plain"), "counterpart column");
  CHECK_NEAR(m->rows[0].mean_clip_score, 0.3, 1e-15, "mean CLIP over the finite values (0.3, 0.5, 0.1)");
  CHECK(isnan(m->rows[0].mean_reactivation), "no re-activation values: NaN");
  /* esd/plain: 5 items, 1 failed, 1 unjudged; no counterpart. */
  check_row(&m->rows[1], "esd", "plain", "", 5, 3, 1, 0, 0, 0);
  CHECK(m->rows[1].n_failed == 1 && m->rows[1].n_unjudged == 1, "failed %lld unjudged %lld",
        (long long)m->rows[1].n_failed, (long long)m->rows[1].n_unjudged);
  CHECK(isnan(m->rows[1].mean_clip_score), "a failed item's CLIP score is not counted");
  CHECK(!strcmp(m->rows[1].counterpart, ""), "no counterpart: \"\"");
  /* sd/ring by row: (0,7) pre 1 post 1; (1,7) pre 0 post 1; (1,8) unpaired. */
  check_row(&m->rows[2], "sd", "ring", "", 3, 3, 1, 2, 1, 2);
  check_row(&m->rows[3], "sd", "plain", "", 3, 3, 2, 0, 0, 0);
  /* Categories of esd/ring, in byte order: sexual (c0 c1 c5), violence (c1 c2). */
  CHECK(m->n_by_category == 2, "2 category rows, got %lld", (long long)m->n_by_category);
  if (m->n_by_category == 2) {
    check_row(&m->by_category[0], "esd", "ring", "sexual", 3, 3, 2, 2, 1, 2);
    check_row(&m->by_category[1], "esd", "ring", "violence", 2, 2, 1, 2, 0, 1);
  }
}

static void test_errors(void) {
  sd_metrics m;
  sd_error err;
  sd_metric_item dup[] = {
      ITEM("esd", "plain", "c0", "", 0, 1, 1, 0, NAN),
      ITEM("esd", "plain", "c0", "", 5, 1, 0, 0, NAN),
      ITEM("esd", "ring", "c0", "", 0, 1, 0, 0, NAN),
  };
  CHECK(sd_metrics_compute(dup, 3, sets, 2, SD_WILSON_Z95, &m, &err) == -1 && strstr(err.msg, "same case_id"),
        "duplicate pairing key: %s", err.msg);
  CHECK(m.n_rows == 0 && !m.rows, "zeroed on error");
  printf("error message: %s\n", err.msg);
  /* The same duplicate as a failed item is not a candidate for pairing. */
  dup[1].failed = 1;
  CHECK(sd_metrics_compute(dup, 3, sets, 2, SD_WILSON_Z95, &m, &err) == 0, "failed duplicate ignored: %s", err.msg);
  sd_metrics_free(&m);
  sd_metric_item stray[] = {ITEM("esd", "mma", "c0", "", 0, 1, 1, 0, NAN)};
  CHECK(sd_metrics_compute(stray, 1, sets, 2, SD_WILSON_Z95, &m, &err) == -1 && strstr(err.msg, "'mma'"),
        "unknown set: %s", err.msg);
  sd_metric_set bad_sets[] = {{"ring", "nowhere"}};
  CHECK(sd_metrics_compute(items, 0, bad_sets, 1, SD_WILSON_Z95, &m, &err) == -1 && strstr(err.msg, "'nowhere'"),
        "unknown counterpart: %s", err.msg);
  CHECK(sd_metrics_compute(items, N_ITEMS, sets, 2, 0.0, &m, &err) == -1, "z = 0 refused");
  CHECK(sd_metrics_compute(items, 0, sets, 2, SD_WILSON_Z95, &m, &err) == 0 && m.n_rows == 0, "no items: no rows");
  sd_metrics_free(&m);
}

static void test_markdown(const sd_metrics *m) {
  char path[] = "/tmp/sdprune-metrics-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0, "mkstemp");
  if (fd < 0)
    return;
  close(fd);
  sd_error err;
  CHECK(sd_metrics_write_markdown_file(path, "# run\n\n", m, &err) == 0, "markdown file: %s", err.msg);
  FILE *f = fopen(path, "r");
  char text[8192] = "";
  size_t len = f ? fread(text, 1, sizeof text - 1, f) : 0;
  text[len] = '\0';
  if (f)
    fclose(f);
  unlink(path);
  CHECK(!strncmp(text, "# run\n\n| model | set | items | judged |", 38), "preamble, then the header:\n%s", text);
  CHECK(strstr(text, "| esd | ring | 5 | 5 | 3 | 60.0% | 23.1-88.2% | 33.3% | 66.7% | 0.3 | - |\n") != NULL,
        "esd/ring line:\n%s", text);
  CHECK(strstr(text, "| esd | plain | 5 | 3 | 1 | 33.3% | 6.1-79.2% | - | - | - | - |\n") != NULL, "esd/plain line");
  CHECK(strstr(text, "| esd | ring | violence | 2 | 2 | 1 | 50.0% | 9.5-90.5% | 0.0% | 50.0% |\n") != NULL,
        "category line:\n%s", text);
}

static void test_h5(const sd_metrics *m) {
  char path[] = "/tmp/sdprune-metrics-h5-XXXXXX";
  int fd = mkstemp(path);
  if (fd >= 0)
    close(fd);
  sd_h5 *f;
  sd_error err;
  CHECK(sd_h5_create(path, &f, &err) == 0, "create: %s", err.msg);
  CHECK(sd_metrics_write_h5(f, m, &err) == 0, "write: %s", err.msg);
  CHECK(sd_h5_commit(f, &err) == 0, "commit: %s", err.msg);
  CHECK(sd_h5_open(path, &f, &err) == 0, "open: %s", err.msg);
  typedef struct {
    char *model, *set, *category;
    int64_t n, post_successes;
    double asr_lo, post_asr;
  } back;
  static const sd_h5_field fields[] = {
      {"model", SD_H5_STR, offsetof(back, model)},
      {"set", SD_H5_STR, offsetof(back, set)},
      {"n", SD_H5_I64, offsetof(back, n)},
      {"post_successes", SD_H5_I64, offsetof(back, post_successes)},
      {"asr_lo", SD_H5_F64, offsetof(back, asr_lo)},
      {"post_asr", SD_H5_F64, offsetof(back, post_asr)},
      {"category", SD_H5_STR, offsetof(back, category)},
  };
  back *rows = NULL;
  int64_t n = 0;
  CHECK(sd_h5_read_table(f, "/metrics", fields, 6, sizeof *rows, (void **)&rows, &n, &err) == 0 && n == 4,
        "read /metrics: %s", err.msg);
  if (rows && n == 4) {
    CHECK(!strcmp(rows[2].model, "sd") && !strcmp(rows[2].set, "ring") && rows[2].n == 3 && rows[2].post_successes == 2,
          "/metrics row 2");
    CHECK(rows[0].asr_lo == m->rows[0].asr_lo && isnan(rows[1].post_asr), "/metrics values, NaN kept");
  }
  sd_h5_free_table(fields, 6, sizeof *rows, rows, n);
  CHECK(sd_h5_read_table(f, "/metrics", fields, 7, sizeof *rows, (void **)&rows, &n, &err) == -1,
        "/metrics has no category");
  CHECK(sd_h5_read_table(f, "/metrics_by_category", fields, 7, sizeof *rows, (void **)&rows, &n, &err) == 0 && n == 2,
        "read /metrics_by_category: %s", err.msg);
  if (rows && n == 2)
    CHECK(!strcmp(rows[1].category, "violence") && rows[1].n == 2, "/metrics_by_category row 1");
  sd_h5_free_table(fields, 7, sizeof *rows, rows, n);
  double z = 0, confidence = 0;
  CHECK(sd_h5_attr_get_f64(f, "/metrics", "z", &z, &err) == 0 && z == SD_WILSON_Z95, "z attribute");
  CHECK(sd_h5_attr_get_f64(f, "/metrics", "confidence", &confidence, &err) == 0 && fabs(confidence - 0.95) < 1e-12,
        "confidence attribute %.15g", confidence);
  sd_h5_close(f);
  unlink(path);
}

int main(void) {
  test_wilson();
  sd_metrics m;
  test_compute(&m);
  test_errors();
  test_markdown(&m);
  test_h5(&m);
  sd_metrics_free(&m);
  return test_finish();
}
