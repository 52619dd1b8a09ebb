/* CLIP encoder layer and weight binder shared by the text and vision towers (see clip_encoder.h). */
#include "model/clip_encoder.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "io/store_view.h"

/* ---- forward ---------------------------------------------------------------------------- */

int sd_clip_encoder_scratch_alloc(sd_clip_encoder_scratch *s, int T, const sd_clip_encoder_dims *dims, sd_arena *arena,
                                  sd_error *err) {
  const size_t td = (size_t)T * dims->hidden;
  s->h = sd_arena_floats(arena, td, err);
  s->q = sd_arena_floats(arena, td, err);
  s->k = sd_arena_floats(arena, td, err);
  s->v = sd_arena_floats(arena, td, err);
  s->ctx = sd_arena_floats(arena, td, err); /* heads concatenated */
  s->mlp = sd_arena_floats(arena, (size_t)T * dims->intermediate, err);
  return s->h && s->q && s->k && s->v && s->ctx && s->mlp ? 0 : -1;
}

int sd_clip_encoder_layer_forward(const sd_clip_encoder_layer *L, const sd_clip_encoder_dims *dims, float *x, int T,
                                  sd_clip_encoder_scratch *s, sd_arena *arena, sd_error *err) {
  const int d = dims->hidden, dh = d / dims->heads, f = dims->intermediate;
  const float scale = 1.0f / sqrtf((float)dh);
  sd_layer_norm(s->h, x, T, d, dims->ln_eps, &L->layer_norm1);
  sd_linear_forward(s->q, s->h, T, &L->q_proj);
  sd_linear_forward(s->k, s->h, T, &L->k_proj);
  sd_linear_forward(s->v, s->h, T, &L->v_proj);
  if (sd_attention(s->ctx, d, s->q, d, s->k, s->v, d, T, T, dims->heads, dh, scale, dims->causal, arena, err) != 0)
    return -1;
  sd_linear_forward_acc(x, s->ctx, T, &L->out_proj);
  sd_layer_norm(s->h, x, T, d, dims->ln_eps, &L->layer_norm2);
  sd_linear_forward(s->mlp, s->h, T, &L->fc1);
  if (dims->act_quick_gelu)
    sd_quick_gelu_inplace(s->mlp, (int64_t)T * f);
  else
    sd_gelu_inplace(s->mlp, (int64_t)T * f);
  sd_linear_forward_acc(x, s->mlp, T, &L->fc2);
  return 0;
}

/* ---- weights ---------------------------------------------------------------------------- */

const float *sd_bind_tensor(sd_weight_binder *b, int ndim, const int64_t *shape, const char *fmt, ...) {
  char name[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  if (!sd_store_find(b->view, name)) {
    size_t len = strlen(b->missing);
    if (len + strlen(name) + 8 < sizeof b->missing)
      snprintf(b->missing + len, sizeof b->missing - len, "%s%s", b->n_missing ? ", " : "", name);
    else if (len + 6 < sizeof b->missing && !strstr(b->missing, ", ..."))
      snprintf(b->missing + len, sizeof b->missing - len, ", ...");
    b->n_missing++;
    return NULL;
  }
  sd_error e = {{0}};
  const float *p = sd_view_get(b->view, name, ndim, shape, &e);
  if (!p && b->n_bad++ == 0)
    b->first_bad = e;
  return p;
}

void sd_bind_linear(sd_weight_binder *b, sd_linear *lin, int out, int in, int with_bias, const char *base) {
  lin->out = out;
  lin->in = in;
  lin->w = sd_bind_tensor(b, 2, (int64_t[]){out, in}, "%s.weight", base);
  lin->b = with_bias ? sd_bind_tensor(b, 1, (int64_t[]){out}, "%s.bias", base) : NULL;
}

void sd_bind_norm(sd_weight_binder *b, sd_norm *n, int c, const char *base) {
  n->c = c;
  n->gamma = sd_bind_tensor(b, 1, (int64_t[]){c}, "%s.weight", base);
  n->beta = sd_bind_tensor(b, 1, (int64_t[]){c}, "%s.bias", base);
}

void sd_bind_clip_encoder_layer(sd_weight_binder *b, sd_clip_encoder_layer *L, int d, int f, const char *prefix) {
  char base[200];
#define PART(part) (snprintf(base, sizeof base, "%s.%s", prefix, part), base)
  sd_bind_norm(b, &L->layer_norm1, d, PART("layer_norm1"));
  sd_bind_linear(b, &L->q_proj, d, d, 1, PART("self_attn.q_proj"));
  sd_bind_linear(b, &L->k_proj, d, d, 1, PART("self_attn.k_proj"));
  sd_bind_linear(b, &L->v_proj, d, d, 1, PART("self_attn.v_proj"));
  sd_bind_linear(b, &L->out_proj, d, d, 1, PART("self_attn.out_proj"));
  sd_bind_norm(b, &L->layer_norm2, d, PART("layer_norm2"));
  sd_bind_linear(b, &L->fc1, f, d, 1, PART("mlp.fc1"));
  sd_bind_linear(b, &L->fc2, d, f, 1, PART("mlp.fc2"));
#undef PART
}

int sd_bind_finish(const sd_weight_binder *b, const char *part, sd_error *err) {
  if (b->n_missing)
    return sd_fail(err, "%s: %s: %d missing tensor%s: %s%s", b->view->path, part, b->n_missing,
                   b->n_missing > 1 ? "s" : "", b->missing, b->n_bad ? " (and wrong shapes)" : "");
  if (b->n_bad > 1)
    return sd_fail(err, "%s (and %d more wrong tensors)", b->first_bad.msg, b->n_bad - 1);
  if (b->n_bad) {
    *err = b->first_bad;
    return -1;
  }
  return 0;
}
