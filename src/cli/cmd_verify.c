/* sdprune verify: runs every case of a reference vectors file that the engine supports and prints
 * one row per case (group, case, rel-L2, max-abs, PASS/FAIL). Not a test framework: the ctest
 * tests call this command and judge its exit status. */
#include <jansson.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_common.h"
#include "cli/commands.h"
#include "cli/verify.h"
#include "core/files.h"
#include "model/parts.h"
#include "model/tokenizer.h"

void verify_row(verify_ctx *v, const char *group, const char *name, const float *got, const float *ref, int64_t n,
                double tol) {
  double num = 0, den = 0, mx = 0;
  for (int64_t i = 0; i < n; i++) {
    double d = (double)got[i] - (double)ref[i];
    num += d * d;
    den += (double)ref[i] * ref[i];
    if (fabs(d) > mx || d != d)
      mx = d != d ? INFINITY : fabs(d);
  }
  double rel = den > 0 ? sqrt(num / den) : sqrt(num);
  if (!(rel == rel))
    rel = INFINITY;
  int ok = rel <= tol;
  printf("%-8s %-58s %11.3e %11.3e  %s\n", group, name, rel, mx, ok ? "PASS" : "FAIL");
  fflush(stdout);
  if (ok)
    v->passed++;
  else
    v->failed++;
}

void verify_fail(verify_ctx *v, const char *group, const char *name, const char *why) {
  printf("%-8s %-58s %11s %11s  FAIL (%s)\n", group, name, "-", "-", why);
  v->failed++;
}

sd_tensor *verify_tensor(verify_ctx *v, const char *fmt, ...) {
  char name[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  return sd_store_find(v->vectors, name);
}

const float *verify_f32(verify_ctx *v, sd_tensor *t) {
  sd_error err;
  return t ? sd_tensor_f32(t, &err) : NULL;
}

char *verify_metadata(verify_ctx *v, const char *key) {
  if (!v->vectors->metadata_json)
    return NULL;
  json_t *md = json_loads(v->vectors->metadata_json, 0, NULL);
  json_t *val = json_object_get(md, key);
  char *out = json_is_string(val) ? sd_strdup(json_string_value(val)) : NULL;
  json_decref(md);
  return out;
}

void verify_skip(verify_ctx *v, const char *group, const char *why) {
  size_t n = strlen(v->skipped);
  snprintf(v->skipped + n, sizeof v->skipped - n, "%s%s (%s)", n ? ", " : "", group, why);
}

int verify_has_group(verify_ctx *v, const char *prefix) {
  size_t n = strlen(prefix);
  for (int i = 0; i < v->vectors->count; i++)
    if (strncmp(v->vectors->tensors[i].name, prefix, n) == 0)
      return 1;
  return 0;
}

/* ---- text: ids -> last hidden state; tokenizer ids when the prompt is in the metadata ---- */
static void verify_text(verify_ctx *v) {
  if (!verify_has_group(v, "text.case"))
    return;
  sd_clip_text clip;
  sd_error err;
  if (sd_parts_text(v->model, &clip, &err) != 0) {
    verify_fail(v, "text", "init", err.msg);
    return;
  }
  sd_tokenizer *tok = NULL;
  if (v->model->tokenizer_dir[0] && sd_parts_tokenizer(v->model, &tok, &err) != 0)
    tok = NULL;
  for (int k = 0;; k++) {
    sd_tensor *ids_t = verify_tensor(v, "text.case%d.ids", k), *hid_t = verify_tensor(v, "text.case%d.hidden", k);
    if (!ids_t || !hid_t)
      break;
    const float *idsf = verify_f32(v, ids_t), *ref = verify_f32(v, hid_t);
    int32_t ids[77];
    for (int i = 0; i < 77; i++)
      ids[i] = (int32_t)idsf[i];
    char name[64];
    snprintf(name, sizeof name, "case%d", k);
    float *hidden = malloc(sizeof(float) * (size_t)sd_tensor_numel(hid_t));
    if (sd_tensor_numel(hid_t) != 77 * clip.cfg.hidden)
      verify_fail(v, "text", name, "hidden size mismatch");
    else if (sd_clip_text_forward(&clip, ids, hidden, &err) != 0)
      verify_fail(v, "text", name, err.msg);
    else
      verify_row(v, "text", name, hidden, ref, sd_tensor_numel(hid_t), v->tol);
    free(hidden);
    char key[64];
    snprintf(key, sizeof key, "text.case%d.prompt", k);
    char *prompt = verify_metadata(v, key);
    if (tok && prompt) {
      int32_t got[77];
      float gotf[77], reff[77];
      if (sd_tokenizer_encode(tok, prompt, got, NULL, &err) != 0) {
        verify_fail(v, "tokens", name, err.msg);
      } else {
        for (int i = 0; i < 77; i++) {
          gotf[i] = (float)got[i];
          reff[i] = (float)ids[i];
        }
        verify_row(v, "tokens", name, gotf, reff, 77, 0.0);
      }
    }
    free(prompt);
  }
  if (!tok)
    verify_skip(v, "tokens", "no tokenizer: pass --tokenizer");
  sd_tokenizer_free(tok);
  sd_clip_text_free(&clip);
}

/* The CLIP reference to check, into model/vectors (n bytes each); 0 when there is none:
 *   --clip PATH: that model (folder or file), its vectors --clip-vectors or vectors.safetensors beside it;
 *   else tiny-clip/ beside the folder of --vectors (reference/tiny-sd1/vectors.safetensors ->
 *   reference/tiny-clip), when it holds model.safetensors and vectors.safetensors. */
static int clip_paths(const char *clip, const char *clip_vectors, const char *vectors, char *model, char *vec,
                      size_t n) {
  char copy[4096], probe[4200];
  if (clip) {
    snprintf(model, n, "%s", clip);
    snprintf(copy, sizeof copy, "%s", clip);
    if (clip_vectors)
      snprintf(vec, n, "%s", clip_vectors);
    else
      snprintf(vec, n, "%s/vectors.safetensors", sd_is_dir(clip) ? clip : dirname(copy));
    return 1;
  }
  if (!vectors) return 0;
  snprintf(copy, sizeof copy, "%s", vectors);
  char *vectors_dir = dirname(copy); /* reference/tiny-sd1 */
  char parent_copy[4096];
  snprintf(parent_copy, sizeof parent_copy, "%s", vectors_dir);
  const char *parent = dirname(parent_copy); /* reference */
  snprintf(probe, sizeof probe, "%s/tiny-clip/model.safetensors", parent);
  if (!sd_is_file(probe)) return 0;
  snprintf(model, n, "%s/tiny-clip", parent);
  snprintf(vec, n, "%s/tiny-clip/vectors.safetensors", parent);
  return sd_is_file(vec);
}

static void usage(FILE *out) {
  fprintf(out, "usage: sdprune verify --model PATH --vectors FILE [--tolerance 1e-5] [options]\n"
               "       sdprune verify --clip DIR|FILE [--clip-vectors FILE] [--tolerance 1e-5]\n\n"
               "Runs every case of a reference vectors file (safetensors) that the engine supports and prints\n"
               "group, case, rel-L2 = ||out-ref||/||ref||, max-abs and PASS/FAIL; exits 1 if any case fails.\n"
               "Groups: unet.case*, unet.case0.ff.*, unet.case0.attn2.*, text.case*, vae.case*, vae_enc.case*,\n"
               "ddim/pndm/lms/euler.case*, rng.*; tokenizer ids too when a tokenizer is known; clip.* (the CLIP\n"
               "detector: text and image embeds, logits, pixel values) when a CLIP reference is given or found.\n\n"
               "  --vectors FILE        reference vectors (e.g. ../shared/reference/tiny-sd1/vectors.safetensors)\n"
               "  --tolerance X         rel-L2 limit per case (default 1e-5; rng uses max(X/10, 1e-6) on max-abs)\n"
               "  --only GROUP          run only groups starting with GROUP (e.g. unet, clip)\n"
               "  --clip PATH           CLIP model (HF folder or .safetensors) to check; default: tiny-clip/ beside\n"
               "                        the folder of --vectors when present. --model/--vectors are then optional\n"
               "  --clip-vectors FILE   its reference vectors (default: vectors.safetensors beside the model)\n"
               "  --no-clip             skip the CLIP group even when tiny-clip/ is found\n");
  sd_cli_common_help(out, 1);
}

int cmd_verify(int argc, char **argv) {
  sd_cli_common common = {0};
  const char *vectors_path = NULL, *only = NULL, *clip = NULL, *clip_vectors = NULL;
  int no_clip = 0;
  double tol = 1e-5;
  for (int i = 1; i < argc; i++) {
    int r = sd_cli_common_option(&common, "verify", argc, argv, &i);
    if (r < 0)
      return 2;
    if (r > 0)
      continue;
    if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else if (strcmp(argv[i], "--vectors") == 0) {
      if (!(vectors_path = sd_cli_value("verify", argc, argv, &i)))
        return 2;
    } else if (strcmp(argv[i], "--clip") == 0) {
      if (!(clip = sd_cli_value("verify", argc, argv, &i)))
        return 2;
    } else if (strcmp(argv[i], "--clip-vectors") == 0) {
      if (!(clip_vectors = sd_cli_value("verify", argc, argv, &i)))
        return 2;
    } else if (strcmp(argv[i], "--no-clip") == 0) {
      no_clip = 1;
    } else if (strcmp(argv[i], "--only") == 0) {
      if (!(only = sd_cli_value("verify", argc, argv, &i)))
        return 2;
    } else if (strcmp(argv[i], "--tolerance") == 0) {
      const char *s = sd_cli_value("verify", argc, argv, &i);
      char *end;
      if (!s)
        return 2;
      tol = strtod(s, &end);
      if (*end || !(tol > 0)) {
        fprintf(stderr, "sdprune verify: --tolerance must be a positive number, got '%s'\n", s);
        return 2;
      }
    } else {
      fprintf(stderr, "sdprune verify: unknown option '%s' (see --help)\n", argv[i]);
      return 2;
    }
  }
  if (clip && no_clip) {
    fprintf(stderr, "sdprune verify: --clip and --no-clip contradict each other\n");
    return 2;
  }
  const int sd_groups = common.model.path || vectors_path;
  if (sd_groups ? !common.model.path || !vectors_path : !clip) {
    fprintf(stderr, "sdprune verify: --model and --vectors are required (or --clip alone; see --help)\n");
    return 2;
  }
  char clip_model[4096], clip_vec[4096];
  const int with_clip = !no_clip && (!only || strncmp("clip", only, strlen(only)) == 0) &&
                        clip_paths(clip, clip_vectors, vectors_path, clip_model, clip_vec, sizeof clip_model);
  sd_cli_apply_threads(&common, "verify");
  sd_error err;
  verify_ctx v = {.tol = tol};
  if (sd_groups) {
    if (sd_cli_open_model(&common, "verify", &v.model) != 0)
      return 1;
    if (sd_store_open(vectors_path, &v.vectors, &err) != 0) {
      fprintf(stderr, "sdprune verify: %s\n", err.msg);
      sd_model_close(v.model);
      return 1;
    }
    printf("sdprune %s verify: model %s (%s, hash %s, unet config: %s, predicts %s: %s), vectors %s, tolerance %.1e\n",
           SDPRUNE_VERSION, v.model->path, v.model->layout, v.model->hash, v.model->unet_cfg_source,
           v.model->v_prediction ? "v" : "eps", v.model->prediction_source, vectors_path, tol);
  } else {
    printf("sdprune %s verify: CLIP only, tolerance %.1e\n", SDPRUNE_VERSION, tol);
  }
  printf("%-8s %-58s %11s %11s  %s\n", "group", "case", "rel-L2", "max-abs", "result");
  static const struct {
    const char *group;
    void (*run)(verify_ctx *);
  } groups[] = {{"unet", verify_unet},
                {"text", verify_text},
                {"vae", verify_vae},
                {"rng", verify_rng},
                {"sampler", verify_samplers}};
  for (size_t g = 0; sd_groups && g < sizeof groups / sizeof *groups; g++)
    if (!only || strncmp(groups[g].group, only, strlen(only)) == 0)
      groups[g].run(&v);
  if (with_clip)
    verify_clip(&v, clip_model, clip_vec);
  const char *known[] = {"vae.", "vae_enc.", "ddim.", "pndm.", "lms.", "euler.", "rng."};
  for (size_t k = 0; sd_groups && k < sizeof known / sizeof *known; k++)
    if (verify_has_group(&v, known[k]) && !verify_group_supported(known[k]))
      verify_skip(&v, known[k], "not supported yet");
  if (sd_groups && verify_has_group(&v, "clip.") && !(with_clip && strcmp(clip_vec, vectors_path) == 0))
    verify_skip(&v, "clip.", "these vectors need a CLIP model: --clip DIR");
  if (v.skipped[0])
    printf("skipped: %s\n", v.skipped);
  printf("verify: %d passed, %d failed\n", v.passed, v.failed);
  sd_store_close(v.vectors);
  sd_model_close(v.model);
  return v.failed ? 1 : (v.passed ? 0 : 1);
}
