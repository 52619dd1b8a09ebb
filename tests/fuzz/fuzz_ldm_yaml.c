/* Fuzzes the ldm inference-config reader (io/ldm_yaml.c: libyaml events into jansson values, the architecture
 * keys) from memory, then hands the JSON it makes to the UNet, text encoder and VAE config readers as
 * `--config FILE.yaml` does. */
#include <jansson.h>

#include "fuzz_common.h"

#include "io/ldm_yaml.h"
#include "model/clip_text.h"
#include "model/unet.h"
#include "model/vae.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  sd_error err = {{0}};
  char *json = sd_ldm_yaml_text_to_json((const char *)data, size, "fuzz.yaml", fuzz_dir(), &err);
  if (!json) {
    FUZZ_ASSERT(err.msg[0], "failure without a message");
    return 0;
  }
  json_t *root = json_loads(json, 0, NULL);
  FUZZ_ASSERT(json_is_object(root), "output is not a JSON object: %.200s", json);
  sd_unet_config u;
  sd_unet_config_from_json(json, &u, &err);
  json_t *t = json_object_get(root, "text"), *v = json_object_get(root, "vae");
  char *ts = json_is_object(t) ? json_dumps(t, JSON_COMPACT) : NULL,
       *vs = json_is_object(v) ? json_dumps(v, JSON_COMPACT) : NULL;
  sd_clip_text_config tc;
  sd_vae_config vc;
  if (ts)
    sd_clip_text_config_from_json(ts, &tc, &err);
  if (vs)
    sd_vae_config_from_json(vs, &vc, &err);
  free(ts);
  free(vs);
  json_decref(root);
  free(json);
  return 0;
}
