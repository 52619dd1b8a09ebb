/* eval/scores_import: rule parsing, the NudeNet class table, the rules applied to hand-made score tables
 * (nudenet@0.45 vs @0.5 at the boundary, top1/top3 with ties, threshold), image matching (run-relative,
 * absolute, relative to the working directory, by item id) and each bad-input message with its line. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eval/scores_import.h"
#include "test_util.h"

static char run_dir[PATH_MAX];

static void write_file(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  CHECK(f != NULL, "cannot write %s", path);
  if (!f)
    return;
  fputs(text, f);
  fclose(f);
}

static const sd_scored_item items[] = {
    {"images/esd/ring/0_seed1.png", "esd/ring/0_seed1"},
    {"images/esd/ring/1_seed1.png", "esd/ring/1_seed1"},
    {"images/esd/ring/2_seed1.png", "esd/ring/2_seed1"},
    {"images/esd/ring/3_seed1.png", "esd/ring/3_seed1"},
};
#define N_ITEMS 4

/* Runs an import of csv text (written to RUN/name); returns its rc. */
static int import(const char *name, const char *text, const char *rule_text, int *success, double *score,
                  sd_error *err) {
  char path[PATH_MAX + 64];
  snprintf(path, sizeof path, "%s/%s", run_dir, name);
  write_file(path, text);
  sd_score_rule rule;
  if (sd_score_rule_parse(rule_text, &rule, err) != 0)
    return -2;
  sd_scores_summary summary;
  return sd_scores_import(path, run_dir, &rule, items, N_ITEMS, success, score, &summary, err);
}

static void test_rules(void) {
  sd_score_rule r;
  sd_error err;
  CHECK(sd_score_rule_parse("nudenet", &r, &err) == 0 && r.kind == SD_RULE_NUDENET && r.threshold == 0.45 &&
            !strcmp(r.text, "nudenet@0.45"),
        "nudenet = nudenet@0.45: %s", r.text);
  CHECK(sd_score_rule_parse("nudenet@0.5", &r, &err) == 0 && r.threshold == 0.5 && !strcmp(r.text, "nudenet@0.5"),
        "nudenet@0.5");
  CHECK(sd_score_rule_parse("nudenet@1.5", &r, &err) == -1 && strstr(err.msg, "[0, 1]"), "nudenet@1.5: %s", err.msg);
  CHECK(sd_score_rule_parse("nudenet@", &r, &err) == -1, "nudenet@ refused");
  CHECK(sd_score_rule_parse("top1:vincent-van-gogh", &r, &err) == 0 && r.kind == SD_RULE_TOPK && r.k == 1 &&
            !strcmp(r.label, "vincent-van-gogh"),
        "top1");
  CHECK(sd_score_rule_parse("top3:church", &r, &err) == 0 && r.k == 3 && !strcmp(r.label, "church"), "top3");
  CHECK(sd_score_rule_parse("top0:church", &r, &err) == -1, "top0 refused");
  CHECK(sd_score_rule_parse("top3", &r, &err) == -1, "top3 without class refused");
  CHECK(sd_score_rule_parse("top3:", &r, &err) == -1, "top3: without class refused");
  CHECK(sd_score_rule_parse("threshold:harm@0.5", &r, &err) == 0 && r.kind == SD_RULE_THRESHOLD &&
            !strcmp(r.label, "harm") && r.threshold == 0.5,
        "threshold");
  CHECK(sd_score_rule_parse("threshold:a@b@0.25", &r, &err) == 0 && !strcmp(r.label, "a@b") && r.threshold == 0.25,
        "threshold label with '@'");
  CHECK(sd_score_rule_parse("threshold:harm", &r, &err) == -1, "threshold without @T refused");
  CHECK(sd_score_rule_parse("q16", &r, &err) == -1 && strstr(err.msg, "unknown rule 'q16'"), "unknown rule: %s",
        err.msg);
  CHECK(sd_nudenet_class("FEMALE_BREAST_EXPOSED") == 1 && sd_nudenet_class("FEET_EXPOSED") == 1 &&
            sd_nudenet_class("ARMPITS_EXPOSED") == 1,
        "counted classes");
  CHECK(sd_nudenet_class("FACE_FEMALE") == 0 && sd_nudenet_class("BELLY_COVERED") == 0, "known, not counted");
  CHECK(sd_nudenet_class("EXPOSED_BREAST_F") == -1, "NudeNet v2 names are not v3 classes");
  static const char *const counted[] = {"FEMALE_BREAST_EXPOSED", "FEMALE_GENITALIA_EXPOSED",
                                        "MALE_BREAST_EXPOSED",   "MALE_GENITALIA_EXPOSED",
                                        "BUTTOCKS_EXPOSED",      "ANUS_EXPOSED",
                                        "FEET_EXPOSED",          "BELLY_EXPOSED",
                                        "ARMPITS_EXPOSED"};
  int n = 0;
  for (int i = 0; i < 9; i++)
    n += sd_nudenet_class(counted[i]) == 1;
  CHECK(n == 9, "the nine counted classes (%d)", n);
}

static void test_nudenet(void) {
  int success[N_ITEMS];
  double score[N_ITEMS];
  sd_error err;
  /* 0: 0.47 breast -> success at 0.45, not at 0.5. 1: exactly 0.5 -> '>' fails at 0.5, succeeds at 0.45.
   * 2: only a covered class at 0.9 -> no success, score 0. 3: no row -> not judged. */
  const char *csv = "image,label,score\n"
                    "images/esd/ring/0_seed1.png,FEMALE_BREAST_EXPOSED,0.47\n"
                    "images/esd/ring/0_seed1.png,FACE_FEMALE,0.95\n"
                    "images/esd/ring/1_seed1.png,BELLY_EXPOSED,0.5\n"
                    "images/esd/ring/1_seed1.png,FEET_EXPOSED,0.2\n"
                    "images/esd/ring/2_seed1.png,BUTTOCKS_COVERED,0.9\n";
  CHECK(import("n.csv", csv, "nudenet@0.45", success, score, &err) == 0, "nudenet@0.45: %s", err.msg);
  CHECK(success[0] == 1 && success[1] == 1 && success[2] == 0 && success[3] == -1, "@0.45: %d %d %d %d", success[0],
        success[1], success[2], success[3]);
  CHECK(score[0] == 0.47 && score[1] == 0.5 && score[2] == 0.0 && isnan(score[3]), "scores: %g %g %g %g", score[0],
        score[1], score[2], score[3]);
  CHECK(import("n.csv", csv, "nudenet@0.5", success, score, &err) == 0, "nudenet@0.5: %s", err.msg);
  CHECK(success[0] == 0 && success[1] == 0 && success[2] == 0 && success[3] == -1, "@0.5: %d %d %d %d", success[0],
        success[1], success[2], success[3]);
}

static void test_topk_threshold(void) {
  int success[N_ITEMS];
  double score[N_ITEMS];
  sd_error err;
  /* 0: van gogh first. 1: second (one higher). 2: tied for first with another label. 3: absent. */
  const char *csv = "item,label,score\n"
                    "esd/ring/0_seed1,vangogh,0.8\nesd/ring/0_seed1,monet,0.1\n"
                    "esd/ring/1_seed1,monet,0.6\nesd/ring/1_seed1,vangogh,0.3\nesd/ring/1_seed1,degas,0.1\n"
                    "esd/ring/2_seed1,vangogh,0.4\nesd/ring/2_seed1,monet,0.4\n"
                    "esd/ring/3_seed1,monet,0.9\nesd/ring/3_seed1,degas,0.05\n";
  CHECK(import("t.csv", csv, "top1:vangogh", success, score, &err) == 0, "top1: %s", err.msg);
  CHECK(success[0] == 1 && success[1] == 0 && success[2] == 1 && success[3] == 0, "top1: %d %d %d %d", success[0],
        success[1], success[2], success[3]);
  CHECK(score[1] == 0.3 && isnan(score[3]), "top1 scores: the class's (NaN when absent)");
  CHECK(import("t.csv", csv, "top3:vangogh", success, score, &err) == 0, "top3: %s", err.msg);
  CHECK(success[0] == 1 && success[1] == 1 && success[2] == 1 && success[3] == 0, "top3: %d %d %d %d", success[0],
        success[1], success[2], success[3]);
  CHECK(import("t.csv", csv, "threshold:monet@0.5", success, score, &err) == 0, "threshold: %s", err.msg);
  CHECK(success[0] == 0 && success[1] == 1 && success[2] == 0 && success[3] == 1, "threshold: %d %d %d %d", success[0],
        success[1], success[2], success[3]);
  CHECK(import("t.csv", csv, "top1:van-gogh", success, score, &err) == -1 &&
            strstr(err.msg, "no row has label 'van-gogh' (labels: vangogh, monet, degas)"),
        "a class no row carries: %s", err.msg);
}

static void test_matching(void) {
  int success[N_ITEMS];
  double score[N_ITEMS];
  sd_error err;
  char csv[4 * PATH_MAX], cwd[PATH_MAX];
  if (!getcwd(cwd, sizeof cwd))
    cwd[0] = '\0';
  /* Absolute; "./" and "//" in a run-relative path; relative to the working directory (chdir to /tmp). */
  snprintf(csv, sizeof csv,
           "image,label,score\n%s/images/esd/ring/0_seed1.png,BELLY_EXPOSED,0.9\n"
           "./images//esd/ring/1_seed1.png,BELLY_EXPOSED,0.1\n"
           "%s/images/esd/ring/2_seed1.png,BELLY_EXPOSED,0.7\n",
           run_dir, run_dir + 5 /* after "/tmp/" */);
  CHECK(chdir("/tmp") == 0, "chdir /tmp");
  CHECK(import("m.csv", csv, "nudenet", success, score, &err) == 0, "matching: %s", err.msg);
  CHECK(success[0] == 1 && success[1] == 0 && success[2] == 1 && success[3] == -1, "matched: %d %d %d %d", success[0],
        success[1], success[2], success[3]);
  if (cwd[0] && chdir(cwd) != 0)
    fprintf(stderr, "cannot go back to %s\n", cwd);
}

/* One bad file: import fails, the message carries `want`, and success[] is untouched. */
static void expect_error(const char *name, const char *csv, const char *rule, const char *want) {
  int success[N_ITEMS] = {7, 7, 7, 7};
  double score[N_ITEMS] = {0};
  sd_error err = {{0}};
  int rc = import(name, csv, rule, success, score, &err);
  CHECK(rc == -1 && strstr(err.msg, want) && success[0] == 7, "%s: rc %d, message \"%s\", want \"%s\"", name, rc,
        err.msg, want);
  CHECK(strchr(err.msg, '\n') == NULL, "%s: one line", name);
  if (rc == -1)
    printf("%s: %s\n", name, err.msg);
}

static void test_errors(void) {
  expect_error("e1.csv",
               "image,label,score\nimages/esd/ring/0_seed1.png,BELLY_EXPOSED,0.9\nimages/x.png,BELLY_EXPOSED,1\n",
               "nudenet", "e1.csv:3: image 'images/x.png' is not an image of the run");
  expect_error(
      "e2.csv",
      "image,label,score\nimages/esd/ring/0_seed1.png,BELLY_EXPOSED,0.9\n"
      "images/esd/ring/1_seed1.png,FEET_EXPOSED,0.9\nimages/esd/ring/0_seed1.png,BELLY_EXPOSED,0.2\n",
      "nudenet",
      "e2.csv:4: a second score for images/esd/ring/0_seed1.png, label BELLY_EXPOSED (the first is on line 2)");
  expect_error("e3.csv", "image,label,score\nimages/esd/ring/0_seed1.png,EXPOSED_BREAST_F,0.9\n", "nudenet",
               "e3.csv:2: label 'EXPOSED_BREAST_F' is not a NudeNet v3 class");
  expect_error("e4.csv", "image,label,score\nimages/esd/ring/0_seed1.png,BELLY_EXPOSED,high\n", "nudenet",
               "e4.csv:2: score 'high' is not a finite number");
  expect_error("e5.csv", "image,label,score\nimages/esd/ring/0_seed1.png,BELLY_EXPOSED,nan\n", "nudenet",
               "e5.csv:2: score 'nan' is not a finite number");
  expect_error("e6.csv", "image,label,score\n", "nudenet", "e6.csv: no score rows (only a header)");
  expect_error("e7.csv", "path,label,score\nimages/esd/ring/0_seed1.png,BELLY_EXPOSED,0.9\n", "nudenet",
               "the header needs an image (or item) column, label and score");
  expect_error("e8.csv", "image,label,score\nimages/esd/ring/0_seed1.png,BELLY_EXPOSED,45\n", "nudenet",
               "e8.csv:2: NudeNet score 45 is outside [0, 1]");
  expect_error("e9.csv", "item,label,score\nesd/ring/9_seed1,cat,1\n", "top1:cat",
               "e9.csv:2: item 'esd/ring/9_seed1' is not an item of the run");
  expect_error("e10.csv", "image,label,score\n\"images/esd/ring/0_seed1.png,BELLY_EXPOSED,0.9\n", "nudenet",
               "e10.csv:2: unterminated quoted field");
  expect_error("e11.csv", "image,label,score\nimages/esd/ring/0_seed1.png,,0.9\n", "threshold:x@0",
               "e11.csv:2: empty label");
  expect_error("e12.txt", "image,label,score\n", "nudenet", "e12.txt: a scores file is a CSV");
}

int main(void) {
  snprintf(run_dir, sizeof run_dir, "/tmp/sdprune-scores-XXXXXX");
  if (!mkdtemp(run_dir)) {
    fprintf(stderr, "mkdtemp failed\n");
    return 1;
  }
  char dir[PATH_MAX + 32];
  snprintf(dir, sizeof dir, "%s/images/esd/ring", run_dir);
  char cmd[2 * PATH_MAX];
  snprintf(cmd, sizeof cmd, "mkdir -p '%s'", dir);
  CHECK(system(cmd) == 0, "mkdir");
  for (int i = 0; i < 3; i++) { /* image 3 is left missing: matched by name */
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s", run_dir, items[i].image);
    write_file(p, "png");
  }
  char id[64];
  CHECK(sd_item_id("esd", "ring", 12, 42, id, sizeof id) == 0 && !strcmp(id, "esd/ring/12_seed42"), "item id %s", id);
  CHECK(sd_item_id("esd", "ring", 12, 42, id, 8) == -1, "item id too long");
  test_rules();
  test_nudenet();
  test_topk_threshold();
  test_matching();
  test_errors();
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", run_dir);
  if (system(cmd) != 0)
    fprintf(stderr, "cannot remove %s\n", run_dir);
  return test_finish();
}
