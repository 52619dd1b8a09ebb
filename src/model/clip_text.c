/* CLIP text transformer (see clip_text.h): configuration, weight binding and the forward pass.
 * Checkpoint layouts and name conversion are in io/names_text.c, not here. */
#include "model/clip_text.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/store_view.h"

/* ---- configuration ---------------------------------------------------------------------- */

/* transformers CLIPTextConfig defaults, used for keys a saved config.json omits. */
static void config_defaults(sd_clip_text_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->vocab_size = 49408;
  cfg->max_positions = 77;
  cfg->hidden = 512;
  cfg->layers = 12;
  cfg->heads = 8;
  cfg->intermediate = 2048;
  cfg->act_quick_gelu = 1;
  cfg->ln_eps = 1e-5f;
}

static int json_int(json_t *obj, const char *key, int *out, sd_error *err) {
  json_t *v = json_object_get(obj, key);
  if (!v) return 0;
  if (!json_is_integer(v) || json_integer_value(v) <= 0 || json_integer_value(v) > (1 << 30))
    return sd_fail(err, "text config: '%s' must be a positive integer", key);
  *out = (int)json_integer_value(v);
  return 0;
}

static int config_from_object(json_t *o, sd_clip_text_config *cfg, sd_error *err) {
  config_defaults(cfg);
  if (json_int(o, "vocab_size", &cfg->vocab_size, err) ||
      json_int(o, "max_position_embeddings", &cfg->max_positions, err) ||
      json_int(o, "hidden_size", &cfg->hidden, err) || json_int(o, "num_hidden_layers", &cfg->layers, err) ||
      json_int(o, "num_attention_heads", &cfg->heads, err) || json_int(o, "intermediate_size", &cfg->intermediate, err))
    return -1;
  json_t *act = json_object_get(o, "hidden_act");
  if (act) {
    const char *s = json_string_value(act);
    if (s && strcmp(s, "quick_gelu") == 0)
      cfg->act_quick_gelu = 1;
    else if (s && strcmp(s, "gelu") == 0)
      cfg->act_quick_gelu = 0;
    else
      return sd_fail(err, "text config: hidden_act %s is not supported (quick_gelu or gelu)", s ? s : "(not a string)");
  }
  json_t *eps = json_object_get(o, "layer_norm_eps");
  if (eps) {
    if (!json_is_number(eps) || json_number_value(eps) <= 0)
      return sd_fail(err, "text config: layer_norm_eps must be a positive number");
    cfg->ln_eps = (float)json_number_value(eps);
  }
  if (cfg->hidden % cfg->heads != 0)
    return sd_fail(err, "text config: hidden_size %d is not a multiple of num_attention_heads %d", cfg->hidden,
                   cfg->heads);
  return 0;
}

int sd_clip_text_config_from_json(const char *text, sd_clip_text_config *cfg, sd_error *err) {
  json_error_t jerr;
  json_t *root = json_loads(text, 0, &jerr);
  if (!root) return sd_fail(err, "text config: invalid JSON at line %d: %s", jerr.line, jerr.text);
  int rc;
  json_t *inner_root = NULL, *o = root;
  /* safetensors __metadata__: {"config": "<json text>", ...} */
  json_t *conf = json_object_get(o, "config");
  if (json_is_string(conf) && !json_object_get(o, "hidden_size")) {
    inner_root = json_loads(json_string_value(conf), 0, &jerr);
    if (!inner_root) {
      rc = sd_fail(err, "text config: __metadata__ \"config\" is not valid JSON (line %d: %s)", jerr.line, jerr.text);
      goto free_root;
    }
    o = inner_root;
  }
  json_t *text_obj = json_object_get(o, "text");
  if (json_is_object(text_obj) && !json_object_get(o, "hidden_size")) o = text_obj;
  if (!json_is_object(o) || !json_object_get(o, "hidden_size")) {
    rc =
        sd_fail(err, "text config: no \"hidden_size\" (neither a CLIPTextConfig nor an object with a \"text\" member)");
    goto free_inner;
  }
  rc = config_from_object(o, cfg, err);
free_inner:
  json_decref(inner_root);
free_root:
  json_decref(root);
  return rc;
}

int sd_clip_text_config_infer(sd_tensor_store *view, sd_clip_text_config *cfg, sd_error *err) {
  config_defaults(cfg);
  const sd_tensor *tok = sd_store_find(view, "text_model.embeddings.token_embedding.weight");
  const sd_tensor *pos = sd_store_find(view, "text_model.embeddings.position_embedding.weight");
  const sd_tensor *fc1 = sd_store_find(view, "text_model.encoder.layers.0.mlp.fc1.weight");
  if (!tok || !pos || !fc1)
    return sd_fail(err, "%s: cannot infer the text encoder: missing tensor '%s'", view->path,
                   !tok   ? "text_model.embeddings.token_embedding.weight"
                   : !pos ? "text_model.embeddings.position_embedding.weight"
                          : "text_model.encoder.layers.0.mlp.fc1.weight");
  if (tok->ndim != 2 || pos->ndim != 2 || fc1->ndim != 2)
    return sd_fail(err, "%s: cannot infer the text encoder: embeddings and fc1 must be 2-D", view->path);
  cfg->vocab_size = (int)tok->shape[0];
  cfg->hidden = (int)tok->shape[1];
  cfg->max_positions = (int)pos->shape[0];
  cfg->intermediate = (int)fc1->shape[0];
  char name[160];
  int n = 0;
  for (;; n++) {
    snprintf(name, sizeof name, "text_model.encoder.layers.%d.self_attn.q_proj.weight", n);
    if (!sd_store_find(view, name)) break;
  }
  cfg->layers = n;
  if (cfg->hidden % 64 != 0)
    return sd_fail(err,
                   "%s: cannot infer the number of attention heads for width %d (head size 64 assumed): pass a config",
                   view->path, cfg->hidden);
  cfg->heads = cfg->hidden / 64;
  cfg->act_quick_gelu = cfg->hidden != 1024;
  return 0;
}

/* ---- weights ---------------------------------------------------------------------------- */

static int check_config(const sd_clip_text_config *c, sd_error *err) {
  if (c->vocab_size <= 0 || c->hidden <= 0 || c->layers <= 0 || c->heads <= 0 || c->intermediate <= 0 || c->ln_eps <= 0)
    return sd_fail(err,
                   "text config: sizes must be positive (vocab %d, hidden %d, layers %d, heads %d, intermediate %d)",
                   c->vocab_size, c->hidden, c->layers, c->heads, c->intermediate);
  if (c->hidden % c->heads != 0)
    return sd_fail(err, "text config: hidden %d is not a multiple of heads %d", c->hidden, c->heads);
  if (c->max_positions < SD_CLIP_TEXT_TOKENS)
    return sd_fail(err, "text config: max_position_embeddings %d < %d tokens", c->max_positions, SD_CLIP_TEXT_TOKENS);
  if (c->skip_last_layers < 0 || c->skip_last_layers >= c->layers)
    return sd_fail(err, "text config: skip_last_layers %d must be in [0, %d)", c->skip_last_layers, c->layers);
  return 0;
}

int sd_clip_text_init(sd_clip_text *m, const sd_clip_text_config *cfg, sd_tensor_store *view, sd_error *err) {
  memset(m, 0, sizeof *m);
  if (check_config(cfg, err) != 0) return -1;
  m->cfg = *cfg;
  m->n_run = cfg->layers - cfg->skip_last_layers;
  m->layers = sd_calloc((size_t)m->n_run, sizeof *m->layers, err);
  if (!m->layers) return -1;
  const int d = cfg->hidden, f = cfg->intermediate;
  sd_weight_binder b = {.view = view};
  m->token_embedding =
      sd_bind_tensor(&b, 2, (int64_t[]){cfg->vocab_size, d}, "text_model.embeddings.token_embedding.weight");
  m->position_embedding =
      sd_bind_tensor(&b, 2, (int64_t[]){cfg->max_positions, d}, "text_model.embeddings.position_embedding.weight");
  char prefix[96];
  for (int i = 0; i < m->n_run; i++) {
    snprintf(prefix, sizeof prefix, "text_model.encoder.layers.%d", i);
    sd_bind_clip_encoder_layer(&b, &m->layers[i], d, f, prefix);
  }
  sd_bind_norm(&b, &m->final_layer_norm, d, "text_model.final_layer_norm");
  if (sd_bind_finish(&b, "text encoder", err) != 0) goto fail;
  return 0;
fail:
  sd_clip_text_free(m);
  return -1;
}

void sd_clip_text_free(sd_clip_text *m) {
  if (!m) return;
  free(m->layers);
  sd_arena_free(&m->arena);
  memset(m, 0, sizeof *m);
}

/* ---- forward ---------------------------------------------------------------------------- */

int sd_clip_text_forward(sd_clip_text *m, const int32_t *ids, float *hidden, sd_error *err) {
  const sd_clip_text_config *c = &m->cfg;
  const int T = SD_CLIP_TEXT_TOKENS, d = c->hidden;
  for (int t = 0; t < T; t++)
    if (ids[t] < 0 || ids[t] >= c->vocab_size)
      return sd_fail(err, "text encoder: token %d has id %d, outside the vocabulary [0, %d)", t, (int)ids[t],
                     c->vocab_size);

  sd_arena_reset(&m->arena);
  float *x = hidden; /* [T, d] residual stream, written in place */
  const sd_clip_encoder_dims dims = {.hidden = d,
                                     .heads = c->heads,
                                     .intermediate = c->intermediate,
                                     .act_quick_gelu = c->act_quick_gelu,
                                     .ln_eps = c->ln_eps,
                                     .causal = 1};
  sd_clip_encoder_scratch s;
  if (sd_clip_encoder_scratch_alloc(&s, T, &dims, &m->arena, err) != 0) return sd_fail_prefix(err, "text encoder");

  /* CLIPTextEmbeddings: token embedding + learned position embedding of positions 0..T-1. */
  for (int t = 0; t < T; t++) {
    const float *te = m->token_embedding + (int64_t)ids[t] * d, *pe = m->position_embedding + (int64_t)t * d;
    for (int j = 0; j < d; j++) x[(int64_t)t * d + j] = te[j] + pe[j];
  }

  /* Pre-LN blocks with a causal mask: token t sees tokens 0..t. */
  for (int i = 0; i < m->n_run; i++)
    if (sd_clip_encoder_layer_forward(&m->layers[i], &dims, x, T, &s, &m->arena, err) != 0)
      return sd_fail_prefix(err, "text encoder layer %d", i);
  sd_layer_norm(x, x, T, d, c->ln_eps, &m->final_layer_norm);
  return 0;
}
