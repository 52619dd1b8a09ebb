/* Validation of a job's merged YAML layout into sd_job (job_layout.h): names, ranges and consistency, with
 * messages that name the file and line, or the override that set the key. Not whether the files exist:
 * that is for the stage that opens them. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/job_layout.h"

/* ---------------------------------------------------------------- validation into sd_job */

static int has_path_prefix(const char *path, const char *prefix, size_t n) {
  return !strncmp(path, prefix, n) && (!path[n] || path[n] == '.' || path[n] == '[');
}

/* "FILE:LINE: message", or "override 'KEY=VALUE': message" when the last layer to set path was one. */
static int bad(const job_checker *c, const char *path, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int bad(const job_checker *c, const char *path, const char *fmt, ...) {
  char msg[700];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  for (int k = c->src->n_overrides - 1; k >= 0; k--) {
    const char *o = c->src->overrides[k];
    size_t n = strcspn(o, "=");
    if (has_path_prefix(path, o, n))
      return sd_fail(c->err, "override '%.160s%s': %s", o, strlen(o) > 160 ? "..." : "", msg);
  }
  int line = sd_yaml_line_of(c->lines, path);
  if (line > 0)
    return sd_fail(c->err, "%s:%d: %s", c->file, line, msg);
  return sd_fail(c->err, "%s: %s", c->file, msg);
}

static int copy_str(const job_checker *c, char **dst, const char *src) {
  if (!src)
    return 0;
  if (!(*dst = sd_strdup(src)))
    return sd_fail(c->err, "out of memory");
  return 0;
}

static int one_of(const char *v, const char *const *words) {
  for (int i = 0; words[i]; i++)
    if (!strcmp(v, words[i]))
      return 1;
  return 0;
}

static int check_word(const job_checker *c, const char *path, const char *v, const char *const *words,
                      const char *list) {
  if (one_of(v, words))
    return 0;
  return bad(c, path, "%s: expected %s, got '%.60s'", path, list, v);
}

static int valid_set_name(const char *name) {
  if (!name[0] || name[0] == '.' || strlen(name) > 64)
    return 0;
  return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == strlen(name);
}

static int convert_model(const job_checker *c, const y_model *m, sd_job *j) {
  if (!m || !m->path || !m->path[0])
    return bad(c, "model.path", "key 'model.path': required key missing");
  static const char *const predictions[] = {"eps", "v", NULL};
  if (m->prediction && check_word(c, "model.prediction", m->prediction, predictions, "eps or v"))
    return -1;
  return copy_str(c, &j->model, m->path) || copy_str(c, &j->unet, m->unet) ||
         copy_str(c, &j->text_encoder, m->text_encoder) || copy_str(c, &j->config, m->config) ||
         copy_str(c, &j->tokenizer, m->tokenizer) || copy_str(c, &j->prediction, m->prediction);
}

static int convert_sets(const job_checker *c, const y_job *y, sd_job *j) {
  if ((!y->sets || !y->sets_count) && y->attack)
    return 0; /* an attack-only job */
  if (!y->sets || !y->sets_count)
    return bad(c, "sets", "key 'sets': required key missing");
  if (!(j->sets = sd_calloc(y->sets_count, sizeof *j->sets, c->err)))
    return -1;
  j->n_sets = (int)y->sets_count;
  static const char *const roles[] = {"target", "anchor", "adversarial", NULL};
  int first_of_role[2] = {-1, -1};
  for (int i = 0; i < j->n_sets; i++) {
    const y_set *s = &y->sets[i];
    char p[64], pk[80];
    snprintf(p, sizeof p, "sets[%d]", i);
    if (!s->role)
      return bad(c, p, "key '%s.role': required key missing (target, anchor or adversarial)", p);
    snprintf(pk, sizeof pk, "%s.role", p);
    if (check_word(c, pk, s->role, roles, "target, anchor or adversarial"))
      return -1;
    int r = !strcmp(s->role, "target") ? 0 : !strcmp(s->role, "anchor") ? 1 : -1;
    if (r >= 0 && first_of_role[r] >= 0)
      return bad(c, pk, "%s: a second %s set (sets[%d] is one); at most one target and one anchor", pk, s->role,
                 first_of_role[r]);
    if (r >= 0)
      first_of_role[r] = i;
    if (!s->file || !s->file[0])
      return bad(c, p, "key '%s.file': required key missing", p);
    const char *name = s->name ? s->name : r >= 0 ? s->role : NULL;
    snprintf(pk, sizeof pk, "%s.name", p);
    if (!name)
      return bad(c, p, "key '%s': required key missing (adversarial sets need a name)", pk);
    if (!valid_set_name(name))
      return bad(c, pk, "%s: '%.60s' must be 1-64 characters of A-Z a-z 0-9 _ . - and not start with '.'", pk, name);
    for (int k = 0; k < i; k++)
      if (!strcmp(j->sets[k].name, name))
        return bad(c, pk, "%s: '%s' is used twice (also sets[%d])", pk, name, k);
    if (copy_str(c, &j->sets[i].name, name) || copy_str(c, &j->sets[i].role, s->role) ||
        copy_str(c, &j->sets[i].file, s->file) || copy_str(c, &j->sets[i].template_str, s->template_str))
      return -1;
  }
  return 0;
}

static int convert_seeds(const job_checker *c, const y_seeds *s, sd_job *j) {
  j->seed = 0;
  if (!s)
    return 0;
  if (s->default_seed)
    j->seed = *s->default_seed;
  if (s->list && s->range)
    return bad(c, "seeds.range", "seeds: give list or range, not both");
  uint64_t n = 0;
  if (s->list)
    n = s->list_count;
  if (s->range) {
    uint64_t a = s->range[0], b = s->range[1];
    if (b < a || b - a >= JOB_MAX_SEEDS)
      return bad(c, "seeds.range",
                 "seeds.range: [first, last] with first <= last and at most %d seeds, got [%llu, %llu]", JOB_MAX_SEEDS,
                 (unsigned long long)a, (unsigned long long)b);
    n = b - a + 1;
  }
  if (!n)
    return 0;
  if (!(j->seeds = sd_calloc((size_t)n, sizeof *j->seeds, c->err)))
    return -1;
  for (uint64_t i = 0; i < n; i++)
    j->seeds[i] = s->list ? s->list[i] : s->range[0] + i;
  j->n_seeds = (int)n;
  return 0;
}

static int int_at_least(const job_checker *c, const char *path, const int *v, int min, int max, int *out) {
  if (!v)
    return 0;
  if (*v < min || *v > max) {
    if (max == 1 << 30)
      return bad(c, path, "%s: must be at least %d, got %d", path, min, *v);
    return bad(c, path, "%s: must be %d to %d, got %d", path, min, max, *v);
  }
  *out = *v;
  return 0;
}

/* lo_open/hi_open: whether the bounds are excluded; hi = INFINITY for none. */
static int number_in(const job_checker *c, const char *path, const double *v, double lo, int lo_open, double hi,
                     int hi_open, double *out) {
  if (!v)
    return 0;
  double x = *v;
  int ok = (lo_open ? x > lo : x >= lo) && (hi_open ? x < hi : x <= hi);
  if (!ok) {
    if (isinf(hi))
      return bad(c, path, "%s: must be %s %g, got %g", path, lo_open ? "above" : "at least", lo, x);
    return bad(c, path, "%s: must be in %c%g, %g%c, got %g", path, lo_open ? '(' : '[', lo, hi, hi_open ? ')' : ']', x);
  }
  *out = x;
  return 0;
}

static int convert_sampler(const job_checker *c, const y_sampler *s, sd_job *j) {
  const char *name = s && s->name ? s->name : "ddim";
  static const char *const samplers[] = {"ddim", "pndm", "lms", "euler", NULL};
  if (check_word(c, "sampler.name", name, samplers, "ddim, pndm, lms or euler") || copy_str(c, &j->sampler, name))
    return -1;
  j->steps = 50;
  j->guidance = 7.5;
  j->width = j->height = 512;
  if (!s)
    return 0;
  if (int_at_least(c, "sampler.steps", s->steps, 1, 1000, &j->steps) ||
      int_at_least(c, "sampler.max_steps", s->max_steps, 1, 1 << 30, &j->max_steps) ||
      int_at_least(c, "sampler.limit", s->limit, 1, 1 << 30, &j->limit) ||
      number_in(c, "sampler.guidance", s->guidance, 0, 0, INFINITY, 0, &j->guidance) ||
      number_in(c, "sampler.eta", s->eta, 0, 0, INFINITY, 0, &j->eta))
    return -1;
  j->guidance_given = s->guidance != NULL;
  if (s->size) {
    char *end;
    errno = 0;
    long w = strtol(s->size, &end, 10), h = 0;
    int ok = end != s->size && s->size[0] >= '0' && s->size[0] <= '9' && (*end == 'x' || *end == 'X');
    if (ok) {
      const char *hp = end + 1;
      h = strtol(hp, &end, 10);
      ok = end != hp && hp[0] >= '0' && hp[0] <= '9' && !*end && !errno;
    }
    if (!ok || w < 1 || h < 1 || w > 16384 || h > 16384)
      return bad(c, "sampler.size", "sampler.size: expected WIDTHxHEIGHT like 512x512 (1 to 16384), got '%.60s'",
                 s->size);
    j->width = (int)w;
    j->height = (int)h;
    j->size_given = 1;
  }
  return 0;
}

static int convert_stats(const job_checker *c, const y_stats *s, sd_job *j) {
  const char *hooks = s && s->hooks ? s->hooks : "ff";
  static const char *const allowed[] = {"ff", "attn2", "ff,attn2", "attn2,ff", NULL};
  if (check_word(c, "stats.hooks", hooks, allowed, "ff, attn2 or ff,attn2") || copy_str(c, &j->hooks, hooks))
    return -1;
  j->per_item = s && s->per_item && *s->per_item;
  return 0;
}

static int convert_mask(const job_checker *c, const y_mask *m, sd_job *j) {
  static const char *const methods[] = {"wanda", "actdiff", "sensitivity", NULL};
  static const char *const branches[] = {"cond", "uncond", "both", NULL};
  static const char *const scopes[] = {"layer", "global", NULL};
  j->ratio = 0.01;
  j->wanda_ratio = 0.01;
  j->wanda_tau = 10;
  const char *branch = m && m->branch ? m->branch : "cond", *scope = m && m->scope ? m->scope : "layer";
  if ((m && m->method && check_word(c, "mask.method", m->method, methods, "wanda, actdiff or sensitivity")) ||
      check_word(c, "mask.branch", branch, branches, "cond, uncond or both") ||
      check_word(c, "mask.scope", scope, scopes, "layer or global") || copy_str(c, &j->branch, branch) ||
      copy_str(c, &j->scope, scope))
    return -1;
  if (!m)
    return 0;
  if (copy_str(c, &j->mask_method, m->method) || number_in(c, "mask.ratio", m->ratio, 0, 1, 1, 0, &j->ratio) ||
      int_at_least(c, "mask.tau", m->tau, 1, 1 << 30, &j->tau) ||
      number_in(c, "mask.select_ratio", m->select_ratio, 0, 0, 1, 1, &j->select_ratio) ||
      number_in(c, "mask.wanda_ratio", m->wanda_ratio, 0, 1, 1, 0, &j->wanda_ratio) ||
      int_at_least(c, "mask.wanda_tau", m->wanda_tau, 1, 1 << 30, &j->wanda_tau) ||
      number_in(c, "mask.wanda_select_ratio", m->wanda_select_ratio, 0, 0, 1, 1, &j->wanda_select_ratio))
    return -1;
  j->with_wanda = m->with_wanda && *m->with_wanda;
  if (m->adversarial_count) {
    if (!(j->adversarial = sd_calloc(m->adversarial_count, sizeof *j->adversarial, c->err)))
      return -1;
    j->n_adversarial = (int)m->adversarial_count;
  }
  for (int i = 0; i < j->n_adversarial; i++) {
    char p[64];
    snprintf(p, sizeof p, "mask.adversarial[%d]", i);
    int found = 0;
    for (int k = 0; k < j->n_sets && !found; k++)
      found = !strcmp(j->sets[k].role, "adversarial") && !strcmp(j->sets[k].name, m->adversarial[i]);
    if (!found)
      return bad(c, p, "%s: no adversarial set named '%.60s' in sets", p, m->adversarial[i]);
    if (copy_str(c, &j->adversarial[i], m->adversarial[i]))
      return -1;
  }
  return 0;
}

/* Model names become folder names under OUT/images and labels in metrics.h5: the set-name alphabet and '+'. */
static int valid_model_name(const char *name) {
  if (!name[0] || name[0] == '.' || strlen(name) > 64)
    return 0;
  return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.+-") == strlen(name);
}

static int copy_labels(const job_checker *c, char **src, unsigned n, char ***dst, int *n_dst) {
  if (!n)
    return 0;
  if (!(*dst = sd_calloc(n, sizeof **dst, c->err)))
    return -1;
  *n_dst = (int)n;
  for (unsigned i = 0; i < n; i++)
    if (copy_str(c, &(*dst)[i], src[i]))
      return -1;
  return 0;
}

static int convert_attack_models(const job_checker *c, const y_attack *a, sd_job *j) {
  if (!a->models_count)
    return bad(c, "attack", "key 'attack.models': required key missing (the models to attack)");
  if (!(j->attack_models = sd_calloc(a->models_count, sizeof *j->attack_models, c->err)))
    return -1;
  j->n_attack_models = (int)a->models_count;
  for (int i = 0; i < j->n_attack_models; i++) {
    const y_attack_model *m = &a->models[i];
    char p[64], pk[80];
    snprintf(p, sizeof p, "attack.models[%d]", i);
    snprintf(pk, sizeof pk, "%s.name", p);
    if (!m->name)
      return bad(c, p, "key '%s': required key missing", pk);
    if (!valid_model_name(m->name))
      return bad(c, pk, "%s: '%.60s' must be 1-64 characters of A-Z a-z 0-9 _ . + - and not start with '.'", pk,
                 m->name);
    for (int k = 0; k < i; k++)
      if (!strcmp(j->attack_models[k].name, m->name))
        return bad(c, pk, "%s: '%s' is used twice (also attack.models[%d])", pk, m->name, k);
    sd_job_attack_model *d = &j->attack_models[i];
    if (copy_str(c, &d->name, m->name) || copy_str(c, &d->path, m->path) || copy_str(c, &d->unet, m->unet) ||
        copy_str(c, &d->text_encoder, m->text_encoder) || copy_str(c, &d->mask, m->mask))
      return -1;
  }
  return 0;
}

static int convert_attack_sets(const job_checker *c, const y_attack *a, sd_job *j) {
  if (!a->sets_count)
    return bad(c, "attack", "key 'attack.sets': required key missing (the attack prompt sets)");
  if (!(j->attack_sets = sd_calloc(a->sets_count, sizeof *j->attack_sets, c->err)))
    return -1;
  j->n_attack_sets = (int)a->sets_count;
  for (int i = 0; i < j->n_attack_sets; i++) {
    const y_attack_set *s = &a->sets[i];
    char p[64], pk[80];
    snprintf(p, sizeof p, "attack.sets[%d]", i);
    snprintf(pk, sizeof pk, "%s.name", p);
    if (!s->name)
      return bad(c, p, "key '%s': required key missing", pk);
    if (!valid_set_name(s->name))
      return bad(c, pk, "%s: '%.60s' must be 1-64 characters of A-Z a-z 0-9 _ . - and not start with '.'", pk, s->name);
    for (int k = 0; k < i; k++)
      if (!strcmp(j->attack_sets[k].name, s->name))
        return bad(c, pk, "%s: '%s' is used twice (also attack.sets[%d])", pk, s->name, k);
    if (!s->file || !s->file[0])
      return bad(c, p, "key '%s.file': required key missing", p);
    sd_job_attack_set *d = &j->attack_sets[i];
    if (copy_str(c, &d->name, s->name) || copy_str(c, &d->file, s->file) ||
        copy_str(c, &d->template_str, s->template_str) || copy_str(c, &d->counterpart, s->counterpart))
      return -1;
  }
  for (int i = 0; i < j->n_attack_sets; i++) { /* counterparts name another set of the list */
    const char *cp = j->attack_sets[i].counterpart;
    if (!cp)
      continue;
    char pk[80];
    snprintf(pk, sizeof pk, "attack.sets[%d].counterpart", i);
    int found = 0;
    for (int k = 0; k < j->n_attack_sets && !found; k++)
      found = k != i && !strcmp(j->attack_sets[k].name, cp);
    if (!found)
      return bad(c, pk, "%s: no other attack set named '%.60s'", pk, cp);
  }
  return 0;
}

static int convert_attack(const job_checker *c, const y_attack *a, sd_job *j) {
  j->threshold = 0.5;
  if (!a)
    return 0;
  if (convert_attack_models(c, a, j) || convert_attack_sets(c, a, j) ||
      copy_str(c, &j->reference_stats, a->reference) || copy_str(c, &j->reactivation_mask, a->reactivation_mask))
    return -1;
  const y_detector *d = a->detector;
  if (!d)
    return 0;
  if (!d->clip || !d->clip[0])
    return bad(c, "attack.detector", "key 'attack.detector.clip': required key missing (a CLIPModel checkpoint)");
  if (!d->concept_count)
    return bad(c, "attack.detector", "key 'attack.detector.concept': required key missing (the concept's labels)");
  if (!d->neutral_count)
    return bad(c, "attack.detector", "key 'attack.detector.neutral': required key missing (neutral labels)");
  return copy_str(c, &j->clip, d->clip) ||
         copy_labels(c, d->concept, d->concept_count, &j->concept_labels, &j->n_concept) ||
         copy_labels(c, d->neutral, d->neutral_count, &j->neutral_labels, &j->n_neutral) ||
         number_in(c, "attack.detector.threshold", d->threshold, 0, 0, 1, 1, &j->threshold);
}

int job_convert(const job_checker *c, const y_job *y, sd_job *j) {
  if (copy_str(c, &j->description, y->description) || convert_model(c, y->model, j) || convert_sets(c, y, j) ||
      convert_seeds(c, y->seeds, j) || convert_sampler(c, y->sampler, j) || convert_stats(c, y->stats, j) ||
      convert_mask(c, y->mask, j) || convert_attack(c, y->attack, j))
    return -1;
  if (!y->out || !y->out[0])
    return bad(c, "out", "key 'out': required key missing (the output folder)");
  if (copy_str(c, &j->out, y->out))
    return -1;
  int threads = 0;
  if (y->threads && *y->threads != 0 && int_at_least(c, "threads", y->threads, 1, 4096, &threads))
    return -1;
  j->threads = threads;
  return 0;
}
