/* Fuzzes the external-scores import (eval/scores_import.c over io/prompt_csv.c) through a file: the input up
 * to the first NUL is the rule (as `--rule`), the rest the scores CSV, judged against a fixed run of four items.
 * Results must be 1/0/-1 per item, counts within the items, and nothing written on failure. */
#include <math.h>

#include "fuzz_common.h"

#include "eval/scores_import.h"

#define N_ITEMS 4

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *part[2];
  size_t len[2];
  fuzz_split(data, size, 2, part, len);
  char *rule_text = fuzz_strndup(part[0], len[0]);
  sd_score_rule rule;
  sd_error err = {{0}};
  if (sd_score_rule_parse(rule_text[0] ? rule_text : "nudenet", &rule, &err) != 0) {
    FUZZ_ASSERT(err.msg[0], "rule refused without a message");
    free(rule_text);
    return 0;
  }
  free(rule_text);
  static const sd_scored_item items[N_ITEMS] = {
      {"images/sd14/target/0_seed1.png", "sd14/target/0_seed1"},
      {"images/sd14/target/1_seed2.png", "sd14/target/1_seed2"},
      {"images/sd14+mask/adv/0_seed1.png", "sd14+mask/adv/0_seed1"},
      {"images/sd14+mask/adv/12_seed18446744073709551615.png", "sd14+mask/adv/12_seed18446744073709551615"},
  };
  const char *csv = fuzz_file(0, "scores.csv", part[1], len[1]);
  int success[N_ITEMS] = {7, 7, 7, 7};
  double score[N_ITEMS] = {7, 7, 7, 7};
  sd_scores_summary sum;
  memset(&sum, 0, sizeof sum);
  if (sd_scores_import(csv, fuzz_dir(), &rule, items, N_ITEMS, success, score, &sum, &err) != 0) {
    FUZZ_ASSERT(err.msg[0], "import failed without a message");
    for (int i = 0; i < N_ITEMS; i++)
      FUZZ_ASSERT(success[i] == 7 && score[i] == 7, "item %d written on failure", i);
    return 0;
  }
  int judged = 0, hits = 0;
  for (int i = 0; i < N_ITEMS; i++) {
    FUZZ_ASSERT(success[i] == -1 || success[i] == 0 || success[i] == 1, "item %d success %d", i, success[i]);
    judged += success[i] >= 0;
    hits += success[i] == 1;
  }
  FUZZ_ASSERT(sum.n_judged == judged && sum.n_successes == hits, "summary %lld/%lld, items %d/%d",
              (long long)sum.n_judged, (long long)sum.n_successes, judged, hits);
  return 0;
}
