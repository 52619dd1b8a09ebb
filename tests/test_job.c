/* Job files (io/job.c): every key of tests/data/jobs/full.yaml, the defaults of minimal.yaml, paths
 * relative to the job file, one-line errors with the exact line, overrides of every key (lists and null
 * included, a failed one leaves the job as it was), and oversized or deeply nested files refused. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/job.h"
#include "test_util.h"

static char tmpdir[] = "/tmp/sdprune_test_job_XXXXXX";
static char src_jobs[4096];

static const char *write_tmp(const char *name, const char *text, size_t len) {
  static char path[4200];
  snprintf(path, sizeof path, "%s/%s", tmpdir, name);
  FILE *f = fopen(path, "wb");
  fwrite(text, 1, len, f);
  fclose(f);
  return path;
}

/* Loads text as a job file and expects the error "PATH:" + want ("LINE: message" or " message"). */
static void expect_error(const char *what, const char *text, const char *want) {
  const char *path = write_tmp("e.yaml", text, strlen(text));
  sd_job job;
  sd_error err = {{0}};
  int rc = sd_job_load(path, &job, &err);
  char full[1400];
  snprintf(full, sizeof full, "%s:%s", path, want);
  CHECK(rc != 0 && !strcmp(err.msg, full), "%s: got rc %d '%s', want '%s'", what, rc, err.msg, full);
  if (rc == 0)
    sd_job_free(&job);
}

static void expect_override_error(sd_job *job, const char *assignment, const char *want) {
  sd_error err = {{0}};
  int steps = job->steps;
  int rc = sd_job_set_override(job, assignment, &err);
  CHECK(rc != 0 && !strcmp(err.msg, want), "override %s: got rc %d '%s', want '%s'", assignment, rc, err.msg, want);
  CHECK(job->steps == steps && job->model && job->n_sets > 0, "override %s: the job is unchanged", assignment);
}

static int set_ok(sd_job *job, const char *assignment) {
  sd_error err = {{0}};
  int rc = sd_job_set_override(job, assignment, &err);
  CHECK(rc == 0, "override %s: %s", assignment, err.msg);
  return rc == 0;
}

static int streq(const char *a, const char *b) {
  return a && b && !strcmp(a, b);
}

static void test_full(void) {
  char path[4200], want[4300];
  snprintf(path, sizeof path, "%s/full.yaml", src_jobs);
  sd_job j;
  sd_error err = {{0}};
  CHECK(sd_job_load(path, &j, &err) == 0, "full.yaml: %s", err.msg);
  if (!j.source)
    return;
  CHECK(streq(j.path, path), "path %s", j.path);
  CHECK(streq(j.description, "nudity, ESD-u, Ring-A-Bell"), "description %s", j.description);
  /* Relative paths are the job file's neighbours; absolute ones stay; out is the caller's. */
  snprintf(want, sizeof want, "%s/models/sd-v1-4.ckpt", src_jobs);
  CHECK(streq(j.model, want), "model.path %s, want %s", j.model, want);
  snprintf(want, sizeof want, "%s/models/esd-u.pt", src_jobs);
  CHECK(streq(j.unet, want), "model.unet %s", j.unet);
  CHECK(streq(j.text_encoder, "/abs/text_encoder.safetensors"), "model.text_encoder %s", j.text_encoder);
  snprintf(want, sizeof want, "%s/v1-inference.yaml", src_jobs);
  CHECK(streq(j.config, want), "model.config %s", j.config);
  snprintf(want, sizeof want, "%s/clip-tokenizer", src_jobs);
  CHECK(streq(j.tokenizer, want), "model.tokenizer %s", j.tokenizer);
  CHECK(streq(j.prediction, "eps"), "model.prediction %s", j.prediction);
  CHECK(j.n_sets == 4, "n_sets %d", j.n_sets);
  if (j.n_sets == 4) {
    snprintf(want, sizeof want, "%s/prompts/nudity_target.txt", src_jobs);
    CHECK(streq(j.sets[0].name, "nudity") && streq(j.sets[0].role, "target") && streq(j.sets[0].file, want) &&
              !j.sets[0].template_str,
          "set 0: %s %s %s", j.sets[0].name, j.sets[0].role, j.sets[0].file);
    CHECK(streq(j.sets[1].name, "anchor") && streq(j.sets[1].role, "anchor"), "set 1: the role names it: %s",
          j.sets[1].name);
    CHECK(streq(j.sets[2].name, "ring-a-bell") && streq(j.sets[2].role, "adversarial") &&
              streq(j.sets[2].template_str, "{nudity} {people}"),
          "set 2: %s %s", j.sets[2].name, j.sets[2].template_str);
    CHECK(streq(j.sets[3].name, "i2p.sexual") && streq(j.sets[3].file, "/data/i2p.csv"), "set 3: %s %s", j.sets[3].name,
          j.sets[3].file);
  }
  CHECK(j.seed == 4294967296ull, "seeds.default %llu", (unsigned long long)j.seed);
  CHECK(j.n_seeds == 3 && j.seeds[0] == 10 && j.seeds[1] == 11 && j.seeds[2] == 12, "seeds.range [10, 12]: %d seeds",
        j.n_seeds);
  CHECK(streq(j.sampler, "pndm") && j.steps == 25 && j.max_steps == 10 && j.limit == 100, "sampler %s %d %d %d",
        j.sampler, j.steps, j.max_steps, j.limit);
  CHECK(j.guidance == 3.5 && j.guidance_given && j.eta == 0.5, "guidance %g (given %d) eta %g", j.guidance,
        j.guidance_given, j.eta);
  CHECK(j.width == 768 && j.height == 512 && j.size_given, "size %dx%d given %d", j.width, j.height, j.size_given);
  CHECK(streq(j.hooks, "ff,attn2") && j.per_item == 1, "stats %s %d", j.hooks, j.per_item);
  CHECK(streq(j.mask_method, "sensitivity") && j.ratio == 0.02 && j.tau == 5 && j.select_ratio == 0.5,
        "mask %s %g %d %g", j.mask_method, j.ratio, j.tau, j.select_ratio);
  CHECK(streq(j.branch, "both") && streq(j.scope, "global"), "mask %s %s", j.branch, j.scope);
  CHECK(j.n_adversarial == 1 && streq(j.adversarial[0], "ring-a-bell"), "mask.adversarial %d", j.n_adversarial);
  CHECK(j.with_wanda == 1 && j.wanda_ratio == 0.05 && j.wanda_tau == 8 && j.wanda_select_ratio == 0.25,
        "wanda %d %g %d %g", j.with_wanda, j.wanda_ratio, j.wanda_tau, j.wanda_select_ratio);
  CHECK(streq(j.out, "runs/nudity"), "out %s", j.out);
  CHECK(j.threads == 16, "threads %d", j.threads);
  sd_job_free(&j);
}

static void test_defaults(void) {
  char path[4200];
  snprintf(path, sizeof path, "%s/minimal.yaml", src_jobs);
  sd_job j;
  sd_error err = {{0}};
  CHECK(sd_job_load(path, &j, &err) == 0, "minimal.yaml: %s", err.msg);
  if (!j.source)
    return;
  CHECK(!j.description && !j.unet && !j.text_encoder && !j.config && !j.tokenizer && !j.prediction, "no overrides");
  CHECK(j.n_sets == 1 && streq(j.sets[0].name, "target") && !j.sets[0].template_str, "one set named by its role");
  CHECK(j.seed == 0 && !j.seeds && j.n_seeds == 0, "seeds: the rows', else 0");
  CHECK(streq(j.sampler, "ddim") && j.steps == 50 && j.max_steps == 0 && j.limit == 0, "sampler %s %d %d %d", j.sampler,
        j.steps, j.max_steps, j.limit);
  CHECK(j.guidance == 7.5 && !j.guidance_given && j.eta == 0, "guidance %g given %d eta %g", j.guidance,
        j.guidance_given, j.eta);
  CHECK(j.width == 512 && j.height == 512 && !j.size_given, "size: the rows', else 512x512");
  CHECK(streq(j.hooks, "ff") && j.per_item == 0, "stats %s %d", j.hooks, j.per_item);
  CHECK(!j.mask_method && j.ratio == 0.01 && j.tau == 0 && j.select_ratio == 0, "mask defaults %g %d %g", j.ratio,
        j.tau, j.select_ratio);
  CHECK(streq(j.branch, "cond") && streq(j.scope, "layer") && j.n_adversarial == 0 && !j.with_wanda, "mask defaults");
  CHECK(j.wanda_ratio == 0.01 && j.wanda_tau == 10 && j.wanda_select_ratio == 0, "with_wanda defaults");
  CHECK(streq(j.out, "runs/minimal") && j.threads == 0, "out %s threads %d", j.out, j.threads);
  sd_job_free(&j);
}

static void test_overrides(void) {
  char path[4200];
  snprintf(path, sizeof path, "%s/full.yaml", src_jobs);
  sd_job j;
  sd_error err = {{0}};
  CHECK(sd_job_load(path, &j, &err) == 0, "full.yaml: %s", err.msg);
  if (!j.source)
    return;
  /* Every key, with a value of its type. Paths given as overrides are the caller's (not resolved). */
  if (set_ok(&j, "description=another run"))
    CHECK(streq(j.description, "another run"), "description");
  if (set_ok(&j, "model.path=m.ckpt"))
    CHECK(streq(j.model, "m.ckpt"), "model.path %s", j.model);
  if (set_ok(&j, "model.unet=u.pt"))
    CHECK(streq(j.unet, "u.pt"), "model.unet");
  if (set_ok(&j, "model.text_encoder=te.safetensors"))
    CHECK(streq(j.text_encoder, "te.safetensors"), "text_encoder");
  if (set_ok(&j, "model.config=cfg.json"))
    CHECK(streq(j.config, "cfg.json"), "model.config");
  if (set_ok(&j, "model.tokenizer=tok"))
    CHECK(streq(j.tokenizer, "tok"), "model.tokenizer");
  if (set_ok(&j, "model.prediction=v"))
    CHECK(streq(j.prediction, "v"), "model.prediction");
  if (set_ok(&j, "seeds.default=7"))
    CHECK(j.seed == 7, "seeds.default");
  if (set_ok(&j, "seeds.list=[0,1]"))
    CHECK(j.n_seeds == 2 && j.seeds[0] == 0 && j.seeds[1] == 1, "seeds.list replaces the range");
  if (set_ok(&j, "seeds.range=[3, 5]"))
    CHECK(j.n_seeds == 3 && j.seeds[2] == 5, "seeds.range replaces the list");
  if (set_ok(&j, "sampler.name=euler"))
    CHECK(streq(j.sampler, "euler"), "sampler.name");
  if (set_ok(&j, "sampler.steps=20"))
    CHECK(j.steps == 20, "sampler.steps %d", j.steps);
  if (set_ok(&j, "sampler.max_steps=4"))
    CHECK(j.max_steps == 4, "sampler.max_steps");
  if (set_ok(&j, "sampler.guidance=9"))
    CHECK(j.guidance == 9 && j.guidance_given, "sampler.guidance");
  if (set_ok(&j, "sampler.eta=1"))
    CHECK(j.eta == 1, "sampler.eta");
  if (set_ok(&j, "sampler.size=64x32"))
    CHECK(j.width == 64 && j.height == 32, "sampler.size");
  if (set_ok(&j, "sampler.limit=2"))
    CHECK(j.limit == 2, "sampler.limit");
  if (set_ok(&j, "stats.hooks=attn2"))
    CHECK(streq(j.hooks, "attn2"), "stats.hooks");
  if (set_ok(&j, "stats.per_item=false"))
    CHECK(j.per_item == 0, "stats.per_item");
  if (set_ok(&j, "mask.method=wanda"))
    CHECK(streq(j.mask_method, "wanda"), "mask.method");
  if (set_ok(&j, "mask.ratio=0.5"))
    CHECK(j.ratio == 0.5, "mask.ratio %g", j.ratio);
  if (set_ok(&j, "mask.tau=3"))
    CHECK(j.tau == 3, "mask.tau");
  if (set_ok(&j, "mask.select_ratio=0.1"))
    CHECK(j.select_ratio == 0.1, "mask.select_ratio");
  if (set_ok(&j, "mask.branch=uncond"))
    CHECK(streq(j.branch, "uncond"), "mask.branch");
  if (set_ok(&j, "mask.scope=layer"))
    CHECK(streq(j.scope, "layer"), "mask.scope");
  if (set_ok(&j, "mask.adversarial=[ring-a-bell, i2p.sexual]"))
    CHECK(j.n_adversarial == 2 && streq(j.adversarial[1], "i2p.sexual"), "mask.adversarial");
  if (set_ok(&j, "mask.with_wanda=false"))
    CHECK(j.with_wanda == 0, "mask.with_wanda");
  if (set_ok(&j, "mask.wanda_ratio=0.2"))
    CHECK(j.wanda_ratio == 0.2, "mask.wanda_ratio");
  if (set_ok(&j, "mask.wanda_tau=2"))
    CHECK(j.wanda_tau == 2, "mask.wanda_tau");
  if (set_ok(&j, "mask.wanda_select_ratio=0.3"))
    CHECK(j.wanda_select_ratio == 0.3, "mask.wanda_select_ratio");
  if (set_ok(&j, "out=elsewhere/run1"))
    CHECK(streq(j.out, "elsewhere/run1"), "out %s", j.out);
  if (set_ok(&j, "threads=2"))
    CHECK(j.threads == 2, "threads");
  /* A whole section as a mapping merges key by key; lists replace. */
  if (set_ok(&j, "sampler={steps: 30, name: lms}"))
    CHECK(j.steps == 30 && streq(j.sampler, "lms") && j.max_steps == 4, "sampler mapping merged");
  /* Replacing the sets while the mask names one that goes: the conflict names the override and the key. */
  expect_override_error(
      &j, "sets=[{role: target, file: t.txt}, {name: x, role: adversarial, file: x.csv}]",
      "override 'sets=[{role: target, file: t.txt}, {name: x, role: adversarial, file: x.csv}]': "
      "override 'mask.adversarial=[ring-a-bell, i2p.sexual]': mask.adversarial[0]: no adversarial set "
      "named 'ring-a-bell' in sets");
  CHECK(j.n_sets == 4 && j.n_adversarial == 2, "the failed override did not apply");
  if (set_ok(&j, "mask.adversarial=[]"))
    CHECK(j.n_adversarial == 0, "mask.adversarial=[]: every adversarial set");
  if (set_ok(&j, "sets=[{role: target, file: t.txt}, {name: x, role: adversarial, file: x.csv}]"))
    CHECK(j.n_sets == 2 && streq(j.sets[0].file, "t.txt") && streq(j.sets[1].name, "x"), "sets replaced (%d)",
          j.n_sets);
  if (set_ok(&j, "mask={adversarial: [x], ratio: null}"))
    CHECK(j.n_adversarial == 1 && j.ratio == 0.01 && streq(j.mask_method, "wanda"), "mask mapping: %d %g",
          j.n_adversarial, j.ratio);
  /* null returns a key or a section to its default. */
  if (set_ok(&j, "sampler.steps=null"))
    CHECK(j.steps == 50, "sampler.steps=null: %d", j.steps);
  if (set_ok(&j, "sampler.size="))
    CHECK(!j.size_given && j.width == 512, "sampler.size= (empty is null)");
  if (set_ok(&j, "mask=null"))
    CHECK(!j.mask_method && j.ratio == 0.01 && j.n_adversarial == 0, "mask=null");
  if (set_ok(&j, "model.unet=~"))
    CHECK(!j.unet, "model.unet=~");
  if (set_ok(&j, "seeds=null"))
    CHECK(j.n_seeds == 0 && j.seed == 0, "seeds=null");
  CHECK(streq(j.model, "m.ckpt") && streq(j.out, "elsewhere/run1"), "earlier overrides still hold");

  /* Errors name the override; the job keeps its previous values. */
  expect_override_error(&j, "sampler.stepz=3", "override 'sampler.stepz=3': key 'sampler.stepz': unknown key");
  expect_override_error(&j, "sampler.steps=abc",
                        "override 'sampler.steps=abc': sampler.steps: expected an integer, got 'abc'");
  expect_override_error(&j, "sampler.steps=0", "override 'sampler.steps=0': sampler.steps: must be 1 to 1000, got 0");
  expect_override_error(&j, "seeds.list=[1, x]",
                        "override 'seeds.list=[1, x]': seeds.list[1]: expected a non-negative integer, got 'x'");
  expect_override_error(&j, "out=null", "override 'out=null': key 'out': required key missing (the output folder)");
  expect_override_error(&j, "model.path=", "override 'model.path=': key 'model.path': required key missing");
  expect_override_error(
      &j, "sampler.steps",
      "override 'sampler.steps': expected KEY=VALUE with KEY like sampler.steps (see the job-file keys)");
  expect_override_error(
      &j, "sets[0].file=x",
      "override 'sets[0].file=x': list entries cannot be set one by one: give the whole list (sets=[...])");
  expect_override_error(
      &j, "sampler..steps=1",
      "override 'sampler..steps=1': expected KEY=VALUE with KEY like sampler.steps (see the job-file keys)");
  expect_override_error(
      &j, "mask.adversarial=[nope]",
      "override 'mask.adversarial=[nope]': mask.adversarial[0]: no adversarial set named 'nope' in sets");
  expect_override_error(&j, "sampler.steps=[1]",
                        "override 'sampler.steps=[1]': sampler.steps: expected an integer, got a list");
  /* A value cannot reach another key: its lines are indented below the key being set. */
  expect_override_error(
      &j, "out=a\nthreads: 3",
      "override 'out=a\nthreads: 3': YAML syntax error: mapping values are not allowed in this context");
  CHECK(j.threads == 2, "threads unchanged: %d", j.threads);
  sd_job_free(&j);
}

static void test_errors(void) {
  const char *head = "model: {path: m}\nsets: [{role: target, file: a}]\nout: o\n";
  char text[2000];
  snprintf(text, sizeof text, "%ssampler:\n  steps: 20\n  stepz: 3\n", head);
  expect_error("unknown key", text, "6: key 'sampler.stepz': unknown key");
  snprintf(text, sizeof text, "%ssampler:\n  steps: abc\n", head);
  expect_error("wrong type", text, "5: sampler.steps: expected an integer, got 'abc'");
  expect_error("missing model.path", "# a job\nmodel:\n  unet: u.pt\nsets: [{role: target, file: a}]\nout: o\n",
               "2: key 'model.path': required key missing");
  expect_error("missing out", "model: {path: m}\nsets: [{role: target, file: a}]\n",
               "1: key 'out': required key missing (the output folder)");
  expect_error("missing sets", "\n\nmodel: {path: m}\nout: o\n", "3: key 'sets': required key missing");
  expect_error("unknown top key", "model: {path: m}\nsets: [{role: target, file: a}]\nout: o\nsampelr: {steps: 3}\n",
               "4: key 'sampelr': unknown key");
  expect_error("set without file", "model: {path: m}\nsets:\n  - role: target\n  - role: anchor\n    file: b\nout: o\n",
               "3: key 'sets[0].file': required key missing");
  expect_error("adversarial set without name",
               "model: {path: m}\nsets:\n  - {role: target, file: a}\n  - {role: adversarial, file: b}\nout: o\n",
               "4: key 'sets[1].name': required key missing (adversarial sets need a name)");
  expect_error("bad role",
               "model: {path: m}\nsets:\n  - role: target\n    file: a\n  - role: victim\n    file: b\nout: o\n",
               "5: sets[1].role: expected target, anchor or adversarial, got 'victim'");
  expect_error("two targets",
               "model: {path: m}\nsets:\n  - {role: target, file: a}\n  - {role: target, file: b}\nout: o\n",
               "4: sets[1].role: a second target set (sets[0] is one); at most one target and one anchor");
  expect_error("two anchors",
               "model: {path: m}\nsets:\n  - {role: anchor, file: a}\n  - {name: b, role: anchor, file: b}\nout: o\n",
               "4: sets[1].role: a second anchor set (sets[0] is one); at most one target and one anchor");
  expect_error(
      "name twice",
      "model: {path: m}\nsets:\n  - {role: target, file: a}\n  - {name: target, role: adversarial, file: b}\nout: o\n",
      "4: sets[1].name: 'target' is used twice (also sets[0])");
  expect_error(
      "bad name",
      "model: {path: m}\nsets:\n  - {role: target, file: a}\n  - {name: .hidden, role: adversarial, file: b}\nout: o\n",
      "4: sets[1].name: '.hidden' must be 1-64 characters of A-Z a-z 0-9 _ . - and not start with '.'");
  expect_error("name with a slash", "model: {path: m}\nsets:\n  - {name: a/b, role: adversarial, file: b}\nout: o\n",
               "3: sets[0].name: 'a/b' must be 1-64 characters of A-Z a-z 0-9 _ . - and not start with '.'");
  expect_error("empty sets", "model: {path: m}\nsets: []\nout: o\n", "2: sets: expected at least 1 entry, got 0");
  snprintf(text, sizeof text, "%ssampler: {name: plms}\n", head);
  expect_error("sampler name", text, "4: sampler.name: expected ddim, pndm, lms or euler, got 'plms'");
  snprintf(text, sizeof text, "%ssampler: {steps: 0}\n", head);
  expect_error("steps 0", text, "4: sampler.steps: must be 1 to 1000, got 0");
  snprintf(text, sizeof text, "%ssampler: {steps: 12abc}\n", head);
  expect_error("steps 12abc", text, "4: sampler.steps: expected an integer, got '12abc'");
  snprintf(text, sizeof text, "%ssampler: {steps: 010}\n", head);
  expect_error("steps 010 (octal in YAML 1.1)", text, "4: sampler.steps: expected an integer, got '010'");
  snprintf(text, sizeof text, "%ssampler: {steps: 99999999999}\n", head);
  expect_error("steps too large", text, "4: sampler.steps: integer out of range, got '99999999999'");
  snprintf(text, sizeof text, "%ssampler:\n  size: 512\n", head);
  expect_error("size", text, "5: sampler.size: expected WIDTHxHEIGHT like 512x512 (1 to 16384), got '512'");
  snprintf(text, sizeof text, "%ssampler: {guidance: -1}\n", head);
  expect_error("guidance", text, "4: sampler.guidance: must be at least 0, got -1");
  snprintf(text, sizeof text, "%ssampler: {guidance: nan}\n", head);
  expect_error("guidance nan", text, "4: sampler.guidance: expected a number, got 'nan'");
  snprintf(text, sizeof text, "%sseeds: {list: [1, -1]}\n", head);
  expect_error("negative seed", text, "4: seeds.list[1]: expected a non-negative integer, got '-1'");
  snprintf(text, sizeof text, "%sseeds: {list: [18446744073709551616]}\n", head);
  expect_error("seed above 2^64", text, "4: seeds.list[0]: integer out of range, got '18446744073709551616'");
  snprintf(text, sizeof text, "%sseeds:\n  list: [1]\n  range: [1, 3]\n", head);
  expect_error("list and range", text, "6: seeds: give list or range, not both");
  snprintf(text, sizeof text, "%sseeds: {range: [1]}\n", head);
  expect_error("range of one", text, "4: seeds.range: expected 2 entries, got 1");
  snprintf(text, sizeof text, "%sseeds: {range: [9, 3]}\n", head);
  expect_error("range backwards", text,
               "4: seeds.range: [first, last] with first <= last and at most 4096 seeds, got [9, 3]");
  snprintf(text, sizeof text, "%sstats: {per_item: maybe}\n", head);
  expect_error("bool", text, "4: stats.per_item: expected true or false, got 'maybe'");
  snprintf(text, sizeof text, "%sstats: {hooks: attn1}\n", head);
  expect_error("hooks", text, "4: stats.hooks: expected ff, attn2 or ff,attn2, got 'attn1'");
  snprintf(text, sizeof text, "%smask: {method: magnitude}\n", head);
  expect_error("mask method", text, "4: mask.method: expected wanda, actdiff or sensitivity, got 'magnitude'");
  snprintf(text, sizeof text, "%smask:\n  method: wanda\n  ratio: 0\n", head);
  expect_error("ratio 0", text, "6: mask.ratio: must be in (0, 1], got 0");
  snprintf(text, sizeof text, "%smask: {ratio: 1.5}\n", head);
  expect_error("ratio 1.5", text, "4: mask.ratio: must be in (0, 1], got 1.5");
  snprintf(text, sizeof text, "%smask: {tau: 0}\n", head);
  expect_error("tau 0", text, "4: mask.tau: must be at least 1, got 0");
  snprintf(text, sizeof text, "%smask: {select_ratio: 1}\n", head);
  expect_error("select_ratio 1", text, "4: mask.select_ratio: must be in [0, 1), got 1");
  snprintf(text, sizeof text, "%smask: {branch: left}\n", head);
  expect_error("branch", text, "4: mask.branch: expected cond, uncond or both, got 'left'");
  snprintf(text, sizeof text, "%smask: {scope: model}\n", head);
  expect_error("scope", text, "4: mask.scope: expected layer or global, got 'model'");
  snprintf(text, sizeof text, "%smask:\n  adversarial:\n    - target\n", head);
  expect_error("adversarial names a target", text, "6: mask.adversarial[0]: no adversarial set named 'target' in sets");
  expect_error("prediction", "model:\n  path: m\n  prediction: x0\nsets: [{role: target, file: a}]\nout: o\n",
               "3: model.prediction: expected eps or v, got 'x0'");
  snprintf(text, sizeof text, "%sthreads: -2\n", head);
  expect_error("threads", text, "4: threads: must be 1 to 4096, got -2");
  snprintf(text, sizeof text, "%sout: [o]\n", head);
  expect_error("out twice", text, "4: key 'out': given twice");
  expect_error("out a list", "model: {path: m}\nsets: [{role: target, file: a}]\nout: [o]\n",
               "3: out: expected a string, got a list");
  expect_error("model a string", "model: m.ckpt\nsets: [{role: target, file: a}]\nout: o\n",
               "1: model: expected a mapping, got 'm.ckpt'");
  expect_error("alias", "model: &m {path: m}\nsets: [{role: target, file: a}]\nout: *m\n",
               "3: aliases (*m) are not supported");
  expect_error("two documents", "model: {path: m}\n---\nout: o\n", "2: only one YAML document is allowed");
  expect_error("syntax", "model: {path: m\nout: o\n",
               "2: YAML syntax error: did not find expected ',' or '}' (while parsing a flow mapping)");
  expect_error("tab", "model:\n\tpath: m\n",
               "2: YAML syntax error: found character that cannot start any token (while scanning for the next token)");
  expect_error("not a mapping", "- model\n", "1: (top): expected a mapping, got a list");
  expect_error("empty", "# nothing\n", " empty document: expected a mapping");
  expect_error("key a list", "model: {path: m}\n[a]: b\n", "2: (top): keys must be plain names, not lists");

  /* Size and nesting: refused cleanly, nothing parsed past what is needed. */
  size_t big = 2u << 20;
  char *huge = malloc(big + 1);
  memset(huge, '#', big);
  huge[big] = 0;
  expect_error("2 MiB file", huge, " larger than 1 MiB: not a job file");
  size_t depth = 10000, n = 0;
  n += (size_t)sprintf(huge + n, "sets: ");
  for (size_t i = 0; i < depth; i++)
    huge[n++] = '[';
  for (size_t i = 0; i < depth; i++)
    huge[n++] = ']';
  huge[n++] = '\n';
  huge[n] = 0;
  expect_error("10,000 nested lists", huge, "1: sets[0]: expected a mapping, got a list");
  n = (size_t)sprintf(huge, "model: {path: ");
  for (size_t i = 0; i < depth; i++)
    n += (size_t)sprintf(huge + n, "{a: ");
  for (size_t i = 0; i <= depth; i++)
    huge[n++] = '}';
  huge[n] = 0;
  expect_error("10,000 nested mappings", huge, "1: model.path: expected a string, got a mapping");
  n = 0;
  for (size_t i = 0; i < depth; i++)
    n += (size_t)sprintf(huge + n, "{a: ");
  for (size_t i = 0; i < depth; i++)
    huge[n++] = '}';
  huge[n] = 0;
  expect_error("10,000 nested mappings at the top", huge, "1: key 'a': unknown key");
  free(huge);
  expect_error("a folder", "", " empty document: expected a mapping");
  sd_job j;
  sd_error err;
  CHECK(sd_job_load(tmpdir, &j, &err) != 0 && strstr(err.msg, "is a folder"), "folder: %s", err.msg);
  CHECK(sd_job_load("/nonexistent/job.yaml", &j, &err) != 0 && strstr(err.msg, "/nonexistent/job.yaml: cannot open"),
        "missing file: %s", err.msg);
}

/* A job file in the current folder keeps its relative paths as they are; one in "/" joins without "//". */
static void test_relative(void) {
  const char *text = "model: {path: m.ckpt, config: /etc/c.yaml}\nsets: [{role: target, file: p/t.txt}]\nout: o\n";
  write_tmp("rel.yaml", text, strlen(text));
  char cwd[4096];
  CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
  CHECK(chdir(tmpdir) == 0, "chdir");
  sd_job j;
  sd_error err = {{0}};
  CHECK(sd_job_load("rel.yaml", &j, &err) == 0, "rel.yaml: %s", err.msg);
  if (j.source) {
    CHECK(streq(j.model, "m.ckpt") && streq(j.sets[0].file, "p/t.txt") && streq(j.config, "/etc/c.yaml"),
          "beside the file in the current folder: %s %s", j.model, j.sets[0].file);
    sd_job_free(&j);
  }
  CHECK(sd_job_load("./rel.yaml", &j, &err) == 0, "./rel.yaml: %s", err.msg);
  if (j.source) {
    CHECK(streq(j.model, "./m.ckpt") && streq(j.sets[0].file, "./p/t.txt") && streq(j.out, "o"), "./rel.yaml: %s",
          j.model);
    sd_job_free(&j);
  }
  CHECK(chdir(cwd) == 0, "chdir back");
}

int main(void) {
  const char *src = getenv("SDPRUNE_SOURCE");
  snprintf(src_jobs, sizeof src_jobs, "%s/tests/data/jobs", src ? src : ".");
  if (!mkdtemp(tmpdir)) {
    perror("mkdtemp");
    return 1;
  }
  test_full();
  test_defaults();
  test_overrides();
  test_errors();
  test_relative();
  char cmd[200];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system(cmd) != 0)
    fprintf(stderr, "could not remove %s\n", tmpdir);
  return test_finish();
}
