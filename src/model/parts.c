/* Part construction for a loaded model (see parts.h). */
#include "model/parts.h"

#include <string.h>

int sd_parts_unet(sd_model *m, const sd_unet_hooks *hooks, sd_unet *unet, sd_error *err) {
  return sd_unet_init(unet, &m->unet_cfg, m->unet_view, hooks, err);
}

int sd_parts_text(sd_model *m, sd_clip_text *text, sd_error *err) {
  if (!m->text_view) return sd_fail(err, "%s: the model has no text encoder", m->path);
  sd_clip_text_config cfg;
  int rc = m->text_config_json ? sd_clip_text_config_from_json(m->text_config_json, &cfg, err)
                               : sd_clip_text_config_infer(m->text_view, &cfg, err);
  if (rc != 0) return sd_fail_prefix(err, "%s: text encoder config", m->path);
  if (strcmp(m->text_layout, "openclip") == 0) cfg.skip_last_layers = 1; /* SD 2.x: penultimate layer */
  return sd_clip_text_init(text, &cfg, m->text_view, err);
}

int sd_parts_vae(sd_model *m, sd_vae *vae, sd_error *err) {
  if (!m->vae_view) return sd_fail(err, "%s: the model has no VAE", m->path);
  return sd_vae_load(vae, m->vae_view, m->vae_config_json, err);
}

int sd_parts_tokenizer(sd_model *m, sd_tokenizer **tok, sd_error *err) {
  if (!m->tokenizer_dir[0]) return sd_fail(err, "%s: no tokenizer found: pass --tokenizer DIR", m->path);
  if (sd_tokenizer_load(m->tokenizer_dir, tok, err) != 0) return -1;
  /* ldm's FrozenOpenCLIPEmbedder tokenises with open_clip.tokenize, which pads with 0 */
  if (strcmp(m->text_layout, "openclip") == 0) sd_tokenizer_set_pad(*tok, 0);
  return 0;
}
