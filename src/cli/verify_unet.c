/* `sdprune verify` groups unet.case*, unet.case0.ff.* and unet.case0.attn2.*: UNet eps, and the FFN
 * neurons and cross-attention outputs observed through the hook interface. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/verify.h"
#include "model/parts.h"

/* Hook observer that compares activations with the reference as they stream by (case 0 only). */
typedef struct {
  verify_ctx *v;
  int active;
  double *num, *den, *max_abs; /* per site × kind */
  int *seen;
  int n_sites;
} activation_check;

static int wants_all(void *ctx, const char *site, sd_hook_kind kind) { return 1; }

static void observe(void *ctx, int site_index, const char *site, sd_hook_kind kind, int b, float t, float *data,
                    int64_t tokens, int channels) {
  activation_check *a = ctx;
  if (!a->active || site_index >= a->n_sites) return;
  sd_tensor *ref = verify_tensor(a->v, "unet.case0.%s.%s", kind == SD_HOOK_FF_NEURONS ? "ff" : "attn2", site);
  if (!ref || ref->ndim != 3 || ref->shape[1] != tokens || ref->shape[2] != channels || b >= ref->shape[0]) return;
  const float *r = verify_f32(a->v, ref) + (int64_t)b * tokens * channels;
  int slot = site_index * 2 + (int)kind;
  for (int64_t i = 0; i < tokens * channels; i++) {
    double d = (double)data[i] - r[i];
    a->num[slot] += d * d;
    a->den[slot] += (double)r[i] * r[i];
    if (fabs(d) > a->max_abs[slot] || d != d) a->max_abs[slot] = d != d ? INFINITY : fabs(d);
  }
  a->seen[slot]++;
}

static void report_activations(verify_ctx *v, activation_check *a, sd_unet *unet) {
  for (int s = 0; s < a->n_sites; s++) {
    for (int kind = 0; kind < 2; kind++) {
      const char *kname = kind == 0 ? "ff" : "attn2";
      char name[256];
      snprintf(name, sizeof name, "case0.%s.%s", kname, sd_unet_site(unet, s));
      sd_tensor *ref = verify_tensor(v, "unet.%s", name);
      if (!ref) continue;
      int slot = s * 2 + kind;
      if (a->seen[slot] != ref->shape[0]) {
        verify_fail(v, "unet", name, "activation shape differs from the reference");
        continue;
      }
      double rel = a->den[slot] > 0 ? sqrt(a->num[slot] / a->den[slot]) : sqrt(a->num[slot]);
      int ok = rel <= v->tol;
      printf("%-8s %-58s %11.3e %11.3e  %s\n", "unet", name, rel, a->max_abs[slot], ok ? "PASS" : "FAIL");
      if (ok) v->passed++;
      else v->failed++;
    }
  }
  /* Reference activations for sites this UNet does not have. */
  for (int i = 0; i < v->vectors->count; i++) {
    const char *n = v->vectors->tensors[i].name;
    if (strncmp(n, "unet.case0.ff.", 14) && strncmp(n, "unet.case0.attn2.", 17)) continue;
    const char *site = strchr(n + 11, '.') + 1;
    int found = 0;
    for (int s = 0; s < a->n_sites && !found; s++) found = strcmp(sd_unet_site(unet, s), site) == 0;
    if (!found) verify_fail(v, "unet", n + 5, "no such transformer block in this UNet");
  }
}

void verify_unet(verify_ctx *v) {
  if (!verify_has_group(v, "unet.case")) return;
  activation_check a = {.v = v};
  sd_unet_hooks hooks = {.wants = wants_all, .observe = observe, .ctx = &a};
  sd_unet unet;
  sd_error err;
  if (sd_parts_unet(v->model, &hooks, &unet, &err) != 0) {
    verify_fail(v, "unet", "init", err.msg);
    return;
  }
  a.n_sites = unet.n_tblocks;
  a.num = calloc((size_t)a.n_sites * 2, sizeof(double));
  a.den = calloc((size_t)a.n_sites * 2, sizeof(double));
  a.max_abs = calloc((size_t)a.n_sites * 2, sizeof(double));
  a.seen = calloc((size_t)a.n_sites * 2, sizeof(int));
  for (int k = 0;; k++) {
    sd_tensor *x = verify_tensor(v, "unet.case%d.x", k), *t = verify_tensor(v, "unet.case%d.t", k),
              *c = verify_tensor(v, "unet.case%d.context", k), *e = verify_tensor(v, "unet.case%d.eps", k);
    if (!x || !t || !c || !e) break;
    char name[64];
    snprintf(name, sizeof name, "case%d", k);
    if (x->ndim != 4 || c->ndim != 3 || c->shape[2] != unet.cfg.context_dim || x->shape[1] != unet.cfg.in_channels) {
      verify_fail(v, "unet", name, "input shapes do not fit this UNet");
      continue;
    }
    int B = (int)x->shape[0], H = (int)x->shape[2], W = (int)x->shape[3];
    float *eps = malloc(sizeof(float) * (size_t)sd_tensor_numel(e));
    a.active = k == 0;
    if (sd_unet_forward(&unet, verify_f32(v, x), B, H, W, verify_f32(v, t), verify_f32(v, c), (int)c->shape[1], eps,
                        &err) != 0)
      verify_fail(v, "unet", name, err.msg);
    else
      verify_row(v, "unet", name, eps, verify_f32(v, e), sd_tensor_numel(e), v->tol);
    free(eps);
    if (k == 0) report_activations(v, &a, &unet);
  }
  free(a.num);
  free(a.den);
  free(a.max_abs);
  free(a.seen);
  sd_unet_free(&unet);
}
