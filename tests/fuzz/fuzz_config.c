/* Fuzzes the JSON configuration readers (diffusers / HF config.json, ldm-style objects, the --config file's
 * {"unet","text","vae"} form, CLIP preprocessor configs) with one JSON text, and builds the models an accepted
 * configuration describes against tiny-sd1's weights (SDPRUNE_REFERENCE, else the build's reference folder):
 * a config that passes its checks must either bind or be refused with a message, whatever its numbers. */
#include <jansson.h>

#include "fuzz_common.h"

#include "eval/clip_preprocess.h"
#include "model/clip_text.h"
#include "model/clip_vision.h"
#include "model/model.h"
#include "model/unet.h"
#include "model/vae.h"

#ifndef FUZZ_REFERENCE_DIR
#define FUZZ_REFERENCE_DIR ""
#endif

static sd_model *tiny_model(void) {
  static int tried;
  static sd_model *m;
  if (tried)
    return m;
  tried = 1;
  const char *ref = getenv("SDPRUNE_REFERENCE") ? getenv("SDPRUNE_REFERENCE") : FUZZ_REFERENCE_DIR;
  char path[4096];
  snprintf(path, sizeof path, "%s/tiny-sd1/model.safetensors", ref);
  if (access(path, R_OK) != 0) {
    fprintf(stderr, "fuzz_config: %s not found; configs are parsed but not bound to weights\n", path);
    return NULL;
  }
  sd_model_options opt = {.path = path};
  sd_error err = {{0}};
  if (sd_model_open(&opt, &m, &err) != 0) {
    fprintf(stderr, "fuzz_config: %s\n", err.msg);
    m = NULL;
  }
  return m;
}

static void unet(const char *text, sd_model *m) {
  sd_unet_config cfg;
  memset(&cfg, 0, sizeof cfg);
  sd_error err = {{0}};
  if (sd_unet_config_from_json(text, &cfg, &err) != 0)
    return;
  char line[512];
  sd_unet_config_describe(&cfg, line, sizeof line);
  if (!m || !m->unet_view)
    return;
  sd_unet u;
  if (sd_unet_init(&u, &cfg, m->unet_view, NULL, &err) == 0)
    sd_unet_free(&u);
  else
    FUZZ_ASSERT(err.msg[0], "unet init failed without a message");
}

static void text_encoder(const char *text, sd_model *m) {
  sd_clip_text_config cfg;
  sd_error err = {{0}};
  if (sd_clip_text_config_from_json(text, &cfg, &err) != 0 || !m || !m->text_view)
    return;
  sd_clip_text t;
  if (sd_clip_text_init(&t, &cfg, m->text_view, &err) == 0)
    sd_clip_text_free(&t);
}

static void vae(const char *text, sd_model *m) {
  sd_vae_config cfg;
  sd_error err = {{0}};
  if (sd_vae_config_from_json(text, &cfg, &err) != 0)
    return;
  int ho, wo;
  sd_vae_encoded_size(&cfg, 512, 512, &ho, &wo);
  if (!m || !m->vae_view)
    return;
  sd_vae v;
  if (sd_vae_init(&v, &cfg, m->vae_view, &err) == 0)
    sd_vae_free(&v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = fuzz_strndup(data, size);
  sd_model *m = tiny_model();
  unet(text, m);
  text_encoder(text, m);
  vae(text, m);
  /* The --config form: its "text" and "vae" members go to their readers as their own texts. */
  json_t *root = json_loads(text, 0, NULL);
  const char *part[] = {"text", "vae"};
  for (int i = 0; i < 2; i++) {
    json_t *o = json_object_get(root, part[i]);
    char *sub = json_is_object(o) ? json_dumps(o, JSON_COMPACT) : NULL;
    if (sub && i == 0)
      text_encoder(sub, m);
    if (sub && i == 1)
      vae(sub, m);
    free(sub);
  }
  json_decref(root);
  sd_clip_vision_config vc;
  sd_error err = {{0}};
  sd_clip_vision_config_from_json(text, &vc, &err);
  sd_clip_preprocess pp;
  sd_clip_preprocess_defaults(&pp, 224);
  if (sd_clip_preprocess_from_json(text, &pp, &err) == 0) {
    int w, h;
    sd_clip_resize_size(640, 480, pp.resize_shortest, pp.resize_rule, &w, &h);
  }
  free(text);
  return 0;
}
