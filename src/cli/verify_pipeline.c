/* `sdprune verify` groups beyond the UNet and text encoder: vae.*, vae_enc.* (VAE decode/encode),
 * rng.* (torch-compatible noise) and ddim/pndm/lms/euler.* (whole guided sampling runs). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/verify.h"
#include "model/parts.h"
#include "sample/txt2img.h"

int verify_group_supported(const char *prefix) {
  static const char *const groups[] = {"vae.", "vae_enc.", "rng.", "ddim.", "pndm.", "lms.", "euler."};
  for (size_t i = 0; i < sizeof groups / sizeof *groups; i++)
    if (strcmp(prefix, groups[i]) == 0) return 1;
  return 0;
}

void verify_vae(verify_ctx *v) {
  if (!verify_has_group(v, "vae.case") && !verify_has_group(v, "vae_enc.case")) return;
  sd_vae vae;
  sd_error err;
  if (sd_parts_vae(v->model, &vae, &err) != 0) {
    verify_fail(v, "vae", "init", err.msg);
    return;
  }
  for (int k = 0;; k++) {
    sd_tensor *lat = verify_tensor(v, "vae.case%d.latent", k), *img = verify_tensor(v, "vae.case%d.image", k);
    if (!lat || !img) break;
    char name[64];
    snprintf(name, sizeof name, "case%d", k);
    float *out = malloc(sizeof(float) * (size_t)sd_tensor_numel(img));
    if (lat->ndim != 4 || img->ndim != 4) verify_fail(v, "vae", name, "expected 4-D tensors");
    else if (sd_vae_decode(&vae, verify_f32(v, lat), (int)lat->shape[0], (int)lat->shape[2], (int)lat->shape[3], out,
                           &err) != 0)
      verify_fail(v, "vae", name, err.msg);
    else verify_row(v, "vae", name, out, verify_f32(v, img), sd_tensor_numel(img), v->tol);
    free(out);
  }
  for (int k = 0;; k++) {
    sd_tensor *img = verify_tensor(v, "vae_enc.case%d.image", k), *mom = verify_tensor(v, "vae_enc.case%d.moments", k);
    if (!img || !mom) break;
    char name[64];
    snprintf(name, sizeof name, "case%d", k);
    float *out = malloc(sizeof(float) * (size_t)sd_tensor_numel(mom));
    if (img->ndim != 4 || mom->ndim != 4) verify_fail(v, "vae_enc", name, "expected 4-D tensors");
    else if (sd_vae_encode(&vae, verify_f32(v, img), (int)img->shape[0], (int)img->shape[2], (int)img->shape[3], out,
                           &err) != 0)
      verify_fail(v, "vae_enc", name, err.msg);
    else verify_row(v, "vae_enc", name, out, verify_f32(v, mom), sd_tensor_numel(mom), v->tol);
    free(out);
  }
  sd_vae_free(&vae);
}

void verify_rng(verify_ctx *v) {
  for (int i = 0; i < v->vectors->count; i++) {
    sd_tensor *t = &v->vectors->tensors[i];
    unsigned long long seed;
    if (strncmp(t->name, "rng.seed", 8) != 0 || sscanf(t->name, "rng.seed%llu.", &seed) != 1) continue;
    int64_t n = sd_tensor_numel(t);
    float *out = malloc(sizeof(float) * (size_t)n);
    sd_torch_rng rng;
    sd_torch_rng_seed(&rng, (uint64_t)seed);
    sd_torch_randn(&rng, out, n);
    /* Judged on max-abs (<= 1e-6), which the row's rel-L2 bounds from above for N(0,1) data. */
    const float *ref = verify_f32(v, t);
    double mx = 0;
    for (int64_t j = 0; j < n; j++) mx = fabs((double)out[j] - ref[j]) > mx ? fabs((double)out[j] - ref[j]) : mx;
    int ok = mx <= 1e-6;
    printf("%-8s %-58s %11s %11.3e  %s\n", "rng", t->name + 4, "-", mx, ok ? "PASS" : "FAIL");
    if (ok) v->passed++;
    else v->failed++;
    free(out);
  }
}

/* One sampler case: settings from __metadata__, xT from the file, prompt through the tokenizer. */
static void sampler_case(verify_ctx *v, sd_pipeline *p, const char *sampler, int k) {
  char key[64], name[64];
  snprintf(key, sizeof key, "%s.case%d", sampler, k);
  snprintf(name, sizeof name, "case%d", k);
  sd_tensor *xT = verify_tensor(v, "%s.xT", key), *lat = verify_tensor(v, "%s.latent", key),
            *img = verify_tensor(v, "%s.image", key);
  char *settings = verify_metadata(v, key);
  json_t *js = settings ? json_loads(settings, 0, NULL) : NULL;
  free(settings);
  if (!xT || !lat || !js) {
    verify_fail(v, sampler, name, "case tensors or settings missing");
    json_decref(js);
    return;
  }
  sd_txt2img_params pr = {
      .prompt = json_string_value(json_object_get(js, "prompt")),
      .negative = json_string_value(json_object_get(js, "negative_prompt")),
      .sampler = sampler,
      .steps = (int)json_integer_value(json_object_get(js, "steps")),
      .guidance = json_number_value(json_object_get(js, "guidance")),
      .eta = json_number_value(json_object_get(js, "eta")),
      .latent_h = (int)xT->shape[2],
      .latent_w = (int)xT->shape[3],
      .batch = (int)xT->shape[0],
      .v_prediction = v->model->v_prediction,
  };
  int width = p->text->cfg.hidden;
  float *uncond = malloc(sizeof(float) * 77 * (size_t)width), *cond = malloc(sizeof(float) * 77 * (size_t)width);
  int64_t n = sd_tensor_numel(xT);
  float *latent = malloc(sizeof(float) * (size_t)n);
  memcpy(latent, verify_f32(v, xT), sizeof(float) * (size_t)n);
  sd_error err;
  sd_torch_rng rng;
  sd_torch_rng_seed(&rng, 0);
  if (sd_encode_prompt(p, pr.negative ? pr.negative : "", uncond, &err) != 0 || sd_encode_prompt(p, pr.prompt, cond, &err) != 0 ||
      sd_txt2img_sample(p, &pr, uncond, cond, latent, &rng, &err) != 0) {
    verify_fail(v, sampler, name, err.msg);
  } else {
    char row[80];
    snprintf(row, sizeof row, "%s.latent", name);
    verify_row(v, sampler, row, latent, verify_f32(v, lat), n, v->tol);
    if (img && p->vae) {
      float *image = malloc(sizeof(float) * (size_t)sd_tensor_numel(img));
      snprintf(row, sizeof row, "%s.image", name);
      if (sd_vae_decode(p->vae, latent, pr.batch, pr.latent_h, pr.latent_w, image, &err) != 0) verify_fail(v, sampler, row, err.msg);
      else verify_row(v, sampler, row, image, verify_f32(v, img), sd_tensor_numel(img), v->tol);
      free(image);
    }
  }
  free(uncond);
  free(cond);
  free(latent);
  json_decref(js);
}

void verify_samplers(verify_ctx *v) {
  static const char *const samplers[] = {"ddim", "pndm", "lms", "euler"};
  int any = 0;
  for (int s = 0; s < 4; s++) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s.case", samplers[s]);
    any |= verify_has_group(v, prefix);
  }
  if (!any) return;
  sd_error err;
  if (!v->model->tokenizer_dir[0]) {
    verify_skip(v, "ddim/pndm/lms/euler", "no tokenizer: pass --tokenizer");
    return;
  }
  sd_unet unet;
  sd_clip_text text;
  sd_vae vae;
  sd_tokenizer *tok = NULL;
  int have_unet = 0, have_text = 0, have_vae = 0;
  if (sd_parts_tokenizer(v->model, &tok, &err) != 0 ||
      !(have_unet = sd_parts_unet(v->model, NULL, &unet, &err) == 0) ||
      !(have_text = sd_parts_text(v->model, &text, &err) == 0)) {
    verify_fail(v, "sampler", "init", err.msg);
  } else {
    have_vae = sd_parts_vae(v->model, &vae, &err) == 0;
    sd_pipeline p = {.unet = &unet, .text = &text, .vae = have_vae ? &vae : NULL, .tokenizer = tok};
    for (int s = 0; s < 4; s++)
      for (int k = 0;; k++) {
        char key[64];
        snprintf(key, sizeof key, "%s.case%d.xT", samplers[s], k);
        if (!sd_store_find(v->vectors, key)) break;
        sampler_case(v, &p, samplers[s], k);
      }
  }
  if (have_vae) sd_vae_free(&vae);
  if (have_text) sd_clip_text_free(&text);
  if (have_unet) sd_unet_free(&unet);
  sd_tokenizer_free(tok);
}
