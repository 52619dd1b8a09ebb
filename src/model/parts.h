/* Builds the model parts (UNet, text encoder, VAE) of a loaded sd_model with the right configuration
 * for its layout: the glue between model.c (files, views, configs) and the part files. */
#ifndef SD_PARTS_H
#define SD_PARTS_H

#include "model/clip_text.h"
#include "model/model.h"
#include "model/tokenizer.h"
#include "model/unet.h"
#include "model/vae.h"

int sd_parts_unet(sd_model *m, const sd_unet_hooks *hooks, sd_unet *unet, sd_error *err);
int sd_parts_text(sd_model *m, sd_clip_text *text, sd_error *err);
int sd_parts_vae(sd_model *m, sd_vae *vae, sd_error *err);
/* The model's tokenizer (see model.h for where it is found), padding as the model's text stack does. */
int sd_parts_tokenizer(sd_model *m, sd_tokenizer **tok, sd_error *err);

#endif
