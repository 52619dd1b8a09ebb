/* Fuzzes the job-file reader (io/job.c with the schema check of io/yaml_check.c and libcyaml) through a file:
 * the input up to the first NUL is jobs/NAME.yaml, each further NUL-separated part one `--set` override
 * applied in turn. A loaded job must satisfy what the reader documents (names of the allowed characters,
 * counts matching their arrays); a refused override leaves the job as it was. */
#include "fuzz_common.h"

#include "io/job.h"

#define MAX_OVERRIDES 4

static void check_job(const sd_job *j) {
  FUZZ_ASSERT(j->n_sets >= 0 && (j->n_sets == 0 || j->sets), "sets");
  for (int i = 0; i < j->n_sets; i++)
    FUZZ_ASSERT(j->sets[i].name && j->sets[i].role && j->sets[i].file, "set %d incomplete", i);
  FUZZ_ASSERT(j->n_seeds >= 0 && (j->n_seeds == 0 || j->seeds), "seeds");
  FUZZ_ASSERT(j->out && j->out[0], "no output folder");
  for (int i = 0; i < j->n_attack_models; i++) {
    const char *n = j->attack_models[i].name;
    FUZZ_ASSERT(n && n[0], "attack model %d has no name", i);
    FUZZ_ASSERT(strcmp(n, ".") && strcmp(n, "..") && !strchr(n, '/'), "attack model name '%s' is a path", n);
  }
  for (int i = 0; i < j->n_attack_sets; i++) {
    const char *n = j->attack_sets[i].name;
    FUZZ_ASSERT(n && n[0], "attack set %d has no name", i);
    FUZZ_ASSERT(strcmp(n, ".") && strcmp(n, "..") && !strchr(n, '/'), "attack set name '%s' is a path", n);
  }
  for (int i = 0; i < j->n_sets; i++) {
    const char *n = j->sets[i].name;
    FUZZ_ASSERT(strcmp(n, ".") && strcmp(n, "..") && !strchr(n, '/'), "set name '%s' is a path", n);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const uint8_t *part[1 + MAX_OVERRIDES];
  size_t len[1 + MAX_OVERRIDES];
  fuzz_split(data, size, 1 + MAX_OVERRIDES, part, len);
  const char *path = fuzz_file(0, "job.yaml", part[0], len[0]);
  sd_job job;
  sd_error err = {{0}};
  if (sd_job_load(path, &job, &err) != 0) {
    FUZZ_ASSERT(err.msg[0], "failure without a message");
    sd_job_free(&job);
    return 0;
  }
  check_job(&job);
  for (int i = 1; i <= MAX_OVERRIDES && len[i]; i++) {
    char *assignment = fuzz_strndup(part[i], len[i]);
    if (sd_job_set_override(&job, assignment, &err) == 0)
      check_job(&job);
    free(assignment);
  }
  sd_job_free(&job);
  return 0;
}
