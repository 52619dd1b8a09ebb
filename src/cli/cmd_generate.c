/* sdprune generate: text to image for one prompt or a prompt set (CSV as published by the attack
 * literature, or one prompt per line), writing PNGs with an A1111 `parameters` chunk and sdprune
 * provenance. Per-row evaluation_seed / evaluation_guidance / image size override the options. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/files.h"
#include "cli/cli_common.h"
#include "cli/commands.h"
#include "core/sha256.h"
#include "io/png_write.h"
#include "io/prompt_csv.h"
#include "model/parts.h"
#include "model/weight_cache.h"
#include "prune/apply.h"
#include "prune/mask_io.h"
#include "sample/txt2img.h"

typedef struct {
  sd_cli_common common;
  const char *prompt, *prompts_path, *negative, *sampler, *out, *template_str, *mask_path;
  int steps, batch, width, height, size_given, quiet, seed_given, guidance_given;
  double guidance, eta;
  uint64_t seed;
  int limit;
} generate_options;

static void usage(FILE *out) {
  fprintf(out,
          "usage: sdprune generate --model PATH (--prompt TEXT | --prompts FILE) --out DIR|FILE.png [options]\n\n"
          "Generates images as diffusers' StableDiffusionPipeline does (same checkpoint, prompt, seed and sampler\n"
          "give the same image; seeds follow torch.manual_seed on CPU). A prompt set is a CSV with a `prompt`\n"
          "column (I2P, UnlearnDiffAtk, Ring-A-Bell, ESD files) or a text file with one prompt per line; its\n"
          "evaluation_seed, evaluation_guidance and sd_image_width/height columns override the options below.\n\n"
          "  --prompt TEXT         one prompt\n"
          "  --prompts FILE        prompt set (CSV or text)\n"
          "  --template T          build prompts from CSV columns, e.g. \"{nudity} {people}, {location}\"\n"
          "  --negative TEXT       negative prompt (default: empty)\n"
          "  --sampler NAME        ddim | pndm | lms | euler (default ddim)\n"
          "  --steps N             sampling steps (default 50)\n"
          "  --guidance G          classifier-free guidance scale (default 7.5)\n"
          "  --eta E               DDIM eta (default 0)\n"
          "  --seed S              seed when the prompt set has none (default 0)\n"
          "  --size WxH            image size, multiple of 8 for SD (default: the row's size, else 512x512)\n"
          "  --batch N             images per prompt, drawn as one noise tensor (default 1)\n"
          "  --limit N             only the first N prompts of the set\n"
          "  --out DIR|FILE.png    output folder (created), or a file name for a single image\n"
          "  --mask FILE           prune in memory with a mask from `sdprune mask` (the same images as the\n"
          "                        checkpoint `sdprune apply` writes with it, bit for bit)\n"
          "  --quiet               no progress on stderr\n");
  sd_cli_common_help(out, 1);
}

static int parse_args(generate_options *o, int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    int r = sd_cli_common_option(&o->common, "generate", argc, argv, &i);
    if (r < 0) return 2;
    if (r > 0) continue;
    const char *a = argv[i], *v = NULL;
    long n;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return -1;
    }
    if (!strcmp(a, "--quiet")) {
      o->quiet = 1;
      continue;
    }
    if (!(v = sd_cli_value("generate", argc, argv, &i))) return 2;
    if (!strcmp(a, "--prompt")) o->prompt = v;
    else if (!strcmp(a, "--prompts")) o->prompts_path = v;
    else if (!strcmp(a, "--template")) o->template_str = v;
    else if (!strcmp(a, "--negative")) o->negative = v;
    else if (!strcmp(a, "--sampler")) o->sampler = v;
    else if (!strcmp(a, "--out")) o->out = v;
    else if (!strcmp(a, "--mask")) o->mask_path = v;
    else if (!strcmp(a, "--steps")) {
      if (sd_cli_int("generate", a, v, 1, 10000, &n)) return 2;
      o->steps = (int)n;
    } else if (!strcmp(a, "--batch")) {
      if (sd_cli_int("generate", a, v, 1, 1024, &n)) return 2;
      o->batch = (int)n;
    } else if (!strcmp(a, "--limit")) {
      if (sd_cli_int("generate", a, v, 1, 100000000, &n)) return 2;
      o->limit = (int)n;
    } else if (!strcmp(a, "--seed")) {
      char *end;
      errno = 0;
      unsigned long long s = strtoull(v, &end, 10);
      if (errno || *end || *v == '-') {
        fprintf(stderr, "sdprune generate: --seed must be a non-negative integer, got '%s'\n", v);
        return 2;
      }
      o->seed = s;
      o->seed_given = 1;
    } else if (!strcmp(a, "--guidance") || !strcmp(a, "--eta")) {
      char *end;
      double d = strtod(v, &end);
      if (*end || d != d || d < 0) {
        fprintf(stderr, "sdprune generate: %s must be a non-negative number, got '%s'\n", a, v);
        return 2;
      }
      if (!strcmp(a, "--eta")) o->eta = d;
      else {
        o->guidance = d;
        o->guidance_given = 1;
      }
    } else if (!strcmp(a, "--size")) {
      if (sd_cli_parse_size(v, &o->width, &o->height)) {
        fprintf(stderr, "sdprune generate: --size must be WIDTHxHEIGHT, got '%s'\n", v);
        return 2;
      }
      o->size_given = 1;
    } else {
      fprintf(stderr, "sdprune generate: unknown option '%s' (see --help)\n", a);
      return 2;
    }
  }
  if (!o->common.model.path || !o->out || (!o->prompt == !o->prompts_path)) {
    fprintf(stderr, "sdprune generate: --model, --out and exactly one of --prompt/--prompts are required (see --help)\n");
    return 2;
  }
  static const char *const samplers[] = {"ddim", "pndm", "lms", "euler"};
  int ok = 0;
  for (int s = 0; s < 4; s++) ok |= !strcmp(o->sampler, samplers[s]);
  if (!ok) {
    fprintf(stderr, "sdprune generate: unknown sampler '%s' (ddim, pndm, lms, euler)\n", o->sampler);
    return 2;
  }
  return 0;
}

static const char *a1111_sampler_name(const char *s) {
  return !strcmp(s, "ddim") ? "DDIM" : !strcmp(s, "pndm") ? "PLMS" : !strcmp(s, "lms") ? "LMS" : "Euler";
}

typedef struct {
  int item, n_items, quiet;
  double t_start, t_item;
  int steps_total_done, steps_total;
  int printed; /* a progress line is open on stderr */
  int tty;     /* stderr is a terminal: rewrite one line; else print a line per image */
} progress_state;

static void on_step(void *ctx, int step, int total) {
  progress_state *p = ctx;
  if (p->quiet) return;
  double now = sd_now(), el = now - p->t_start;
  int done = p->steps_total_done + step;
  double rate = done / (el > 0 ? el : 1e-9);
  double eta = (p->steps_total - done) / (rate > 0 ? rate : 1e-9);
  if (p->tty) { /* one line rewritten in place */
    p->printed = 1;
    fprintf(stderr, "\rimage %d/%d  step %d/%d  %.2f it/s  ETA %.0fs   ", p->item, p->n_items, step, total, rate, eta);
  } else if (step == total) { /* a log file (Slurm): one line per image */
    fprintf(stderr, "image %d/%d done  %.2f it/s  elapsed %.0fs  ETA %.0fs\n", p->item, p->n_items, rate, el, eta);
  }
  if (step == total) p->steps_total_done += total;
}

/* Provenance stored in each PNG's `sdprune` chunk: enough to regenerate the image. */
static char *provenance_json(const generate_options *o, const sd_model *m, const sd_prompt_set *set, const sd_prompt *row,
                             const sd_txt2img_params *pr, int k, const char *cmdline, const char *mask_sha256) {
  json_t *j = json_object();
  json_object_set_new(j, "sdprune_version", json_string(SDPRUNE_VERSION));
  json_object_set_new(j, "model", json_string(m->path));
  json_object_set_new(j, "model_hash", json_string(m->hash));
  if (o->common.model.unet_path) json_object_set_new(j, "unet_override", json_string(o->common.model.unet_path));
  if (o->common.model.text_encoder_path) json_object_set_new(j, "text_encoder_override", json_string(o->common.model.text_encoder_path));
  if (o->mask_path) {
    json_object_set_new(j, "mask", json_string(o->mask_path));
    json_object_set_new(j, "mask_sha256", json_string(mask_sha256));
  }
  if (set) {
    json_object_set_new(j, "prompt_set", json_string(set->path));
    json_object_set_new(j, "prompt_set_sha256", json_string(set->sha256_hex));
    json_object_set_new(j, "case_number", json_integer(row->case_number));
    json_object_set_new(j, "row", json_integer(row->index));
  }
  json_object_set_new(j, "prompt", json_string(pr->prompt));
  json_object_set_new(j, "negative_prompt", json_string(pr->negative ? pr->negative : ""));
  char seed[32];
  snprintf(seed, sizeof seed, "%llu", (unsigned long long)pr->seed);
  json_object_set_new(j, "seed", json_string(seed));
  json_object_set_new(j, "batch_index", json_integer(k));
  json_object_set_new(j, "sampler", json_string(pr->sampler));
  json_object_set_new(j, "steps", json_integer(pr->steps));
  json_object_set_new(j, "guidance", json_real(pr->guidance));
  json_object_set_new(j, "eta", json_real(pr->eta));
  json_object_set_new(j, "command_line", json_string(cmdline));
  char *s = json_dumps(j, JSON_COMPACT);
  json_decref(j);
  return s;
}


static char *join_args(int argc, char **argv) {
  size_t n = 16;
  for (int i = 0; i < argc; i++) n += strlen(argv[i]) + 3;
  char *s = malloc(n);
  strcpy(s, "sdprune");
  for (int i = 0; i < argc; i++) {
    strcat(s, " ");
    strcat(s, argv[i]);
  }
  return s;
}

int cmd_generate(int argc, char **argv) {
  generate_options o = {.sampler = "ddim", .steps = 50, .guidance = 7.5, .batch = 1, .width = 512, .height = 512, .negative = ""};
  int rc = parse_args(&o, argc, argv);
  if (rc) return rc < 0 ? 0 : rc;
  int status = 1;
  sd_error err;
  sd_model *m = NULL;
  sd_prompt_set *set = NULL;
  sd_tokenizer *tok = NULL;
  sd_unet unet;
  sd_clip_text text;
  sd_vae vae;
  int have_unet = 0, have_text = 0, have_vae = 0;
  sd_mask mask = {0};
  sd_mask_unet_copies masked = {0};
  char mask_sha256[65] = "";
  float *image = NULL;
  char *cmdline = join_args(argc, argv), model_hash[16] = "";
  int single_file = strlen(o.out) > 4 && !strcmp(o.out + strlen(o.out) - 4, ".png");
  int threads = sd_cli_apply_threads(&o.common, "generate");
  progress_state prog = {.quiet = o.quiet, .tty = isatty(STDERR_FILENO)};

  if (o.prompts_path && sd_prompt_set_load(o.prompts_path, o.template_str, &set, &err) != 0) goto fail;
  int n_items = set ? set->n_rows : 1;
  if (set && o.limit && o.limit < n_items) n_items = o.limit;
  if (single_file && (n_items > 1 || o.batch > 1)) {
    fprintf(stderr, "sdprune generate: --out %s names one file but %d images would be written; give a folder\n", o.out,
            n_items * o.batch);
    status = 2;
    goto done;
  }
  if (sd_cli_open_model(&o.common, "generate", &m) != 0) goto done;
  if (sd_parts_tokenizer(m, &tok, &err) != 0) goto fail;
  if (!(have_unet = sd_parts_unet(m, NULL, &unet, &err) == 0)) goto fail;
  if (o.mask_path) { /* copies of the masked ff.net.2 weights, pruned entries zero: the pruned checkpoint's weights */
    uint8_t digest[32];
    if (sd_mask_read(o.mask_path, &mask, &err) != 0 || sd_sha256_file(o.mask_path, digest, &err) != 0) goto fail;
    sd_sha256_hex(digest, mask_sha256);
    if (sd_mask_apply_unet(&unet, &mask, &masked, &err) != 0) {
      sd_fail_prefix(&err, "%s", o.mask_path);
      goto fail;
    }
  }
  if (!(have_text = sd_parts_text(m, &text, &err) == 0)) goto fail;
  if (!(have_vae = sd_parts_vae(m, &vae, &err) == 0)) goto fail;
  sd_model_release_source_pages(m);
  if (strcmp(m->layout, "single-file") == 0 && !o.common.model.unet_path) {
    if (sd_a1111_autov2_hash(m->path, model_hash, &err) != 0) goto fail;
  } else {
    snprintf(model_hash, sizeof model_hash, "%.10s", m->hash);
  }
  int factor = 1 << (vae.cfg.n_levels - 1); /* pixels per latent: 8 for SD (diffusers: size % 8 == 0) */
  {
    char folder[4096];
    snprintf(folder, sizeof folder, "%s", o.out);
    char *slash = strrchr(folder, '/');
    if (single_file && slash) *slash = 0;
    if ((!single_file || slash) && sd_mkdir_p(folder) != 0) {
      sd_fail(&err, "%s: cannot create output folder: %s", folder, strerror(errno));
      goto fail;
    }
  }
  sd_pipeline p = {.unet = &unet, .text = &text, .vae = &vae, .tokenizer = tok};
  prog.n_items = n_items;
  prog.t_start = sd_now();
  int evals = 0;
  {
    sd_sampler_config sc = {.name = o.sampler, .steps = o.steps, .eta = o.eta};
    evals = sd_sampler_evaluations(&sc, &err);
    if (evals < 0) goto fail;
  }
  prog.steps_total = evals * n_items;
  int written = 0;
  for (int item = 0; item < n_items; item++) {
    const sd_prompt *row = set ? &set->rows[item] : NULL;
    int W = o.width, H = o.height;
    if (row && !o.size_given && row->width > 0 && row->height > 0) {
      W = row->width;
      H = row->height;
    }
    if (W % factor || H % factor) {
      sd_fail(&err, "%s%s%d: image size %dx%d must be a multiple of %d for this model", set ? set->path : "",
              set ? ":" : "", row ? row->line : 0, W, H, factor);
      if (!set) snprintf(err.msg, sizeof err.msg, "image size %dx%d must be a multiple of %d for this model", W, H, factor);
      goto fail;
    }
    sd_txt2img_params pr = {
        .prompt = row ? row->prompt : o.prompt,
        .negative = o.negative,
        .sampler = o.sampler,
        .steps = o.steps,
        .guidance = (row && row->has_guidance && !o.guidance_given) ? row->guidance : o.guidance,
        .eta = o.eta,
        .seed = (row && row->has_seed && !o.seed_given) ? row->seed : o.seed,
        .latent_h = H / factor,
        .latent_w = W / factor,
        .batch = o.batch,
        .v_prediction = m->v_prediction,
        .progress = on_step,
        .progress_ctx = &prog,
    };
    prog.item = item + 1;
    free(image);
    image = malloc(sizeof(float) * 3 * (size_t)W * H * o.batch);
    if (!image) {
      sd_fail(&err, "out of memory for a %dx%d image batch", W, H);
      goto fail;
    }
    if (sd_txt2img(&p, &pr, NULL, image, &err) != 0) {
      if (row) sd_fail_prefix(&err, "%s:%d", set->path, row->line);
      goto fail;
    }
    for (int k = 0; k < o.batch; k++) {
      char path[4400];
      if (single_file) snprintf(path, sizeof path, "%s", o.out);
      else if (o.batch > 1) snprintf(path, sizeof path, "%s/%05lld_seed%llu_%d.png", o.out, row ? (long long)row->case_number : 0LL, (unsigned long long)pr.seed, k);
      else snprintf(path, sizeof path, "%s/%05lld_seed%llu.png", o.out, row ? (long long)row->case_number : 0LL, (unsigned long long)pr.seed);
      const char *slash = strrchr(m->path, '/');
      char *params = sd_a1111_parameters(pr.prompt, pr.negative, pr.steps, a1111_sampler_name(pr.sampler), pr.guidance,
                                         pr.seed, W, H, model_hash, slash ? slash + 1 : m->path, NULL);
      char *prov = provenance_json(&o, m, set, row, &pr, k, cmdline, mask_sha256);
      sd_png_text texts[2] = {{"parameters", params}, {"sdprune", prov}};
      int wrc = sd_png_write_rgb(path, image + (size_t)k * 3 * W * H, H, W, texts, 2, &err);
      free(params);
      free(prov);
      if (wrc != 0) goto fail;
      written++;
    }
  }
  if (prog.printed) fprintf(stderr, "\n");
  double el = sd_now() - prog.t_start;
  fprintf(stderr, "sdprune generate: wrote %d image%s to %s in %.1f s (%d prompt%s, %s %d steps, %d threads, model %s)\n",
          written, written == 1 ? "" : "s", o.out, el, n_items, n_items == 1 ? "" : "s", o.sampler, o.steps, threads,
          model_hash);
  status = 0;
  goto done;
fail:
  fprintf(stderr, "%ssdprune generate: %s\n", prog.printed ? "\n" : "", err.msg);
done:
  free(image);
  free(cmdline);
  if (have_vae) sd_vae_free(&vae);
  if (have_text) sd_clip_text_free(&text);
  if (have_unet) sd_unet_free(&unet);
  sd_mask_unet_copies_free(&masked); /* after the UNet that points at them */
  sd_mask_free(&mask);
  sd_tokenizer_free(tok);
  sd_prompt_set_free(set);
  sd_model_close(m);
  return status;
}
