/* Mask from statistics and model (see mask_build.h). */
#include "prune/mask_build.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/store_view.h"

static int is_float(sd_dtype d) {
  return d == SD_DTYPE_F32 || d == SD_DTYPE_F16 || d == SD_DTYPE_BF16 || d == SD_DTYPE_F64;
}

int sd_mask_build(const char *method, const sd_stats *s, sd_model *model, const sd_score_params *p, sd_mask *m,
                  sd_mask_build_info *info, sd_error *err) {
  sd_mask_build_info local = {0};
  if (!info) info = &local;
  memset(info, 0, sizeof *info);
  if (!s->settings.model_hash || strcmp(model->hash, s->settings.model_hash) != 0)
    return sd_fail(err, "model %s has hash %s, but the statistics were taken on a model with hash %s", model->path,
                   model->hash, s->settings.model_hash ? s->settings.model_hash : "(none)");
  if (!model->unet_view) return sd_fail(err, "model %s has no UNet", model->path);
  /* ff.net.2 weights [out, in = the layer's width] of the hooked layers, and the UNet's weight count. */
  sd_ff_weight *w2 = sd_calloc((size_t)s->n_layers + 1, sizeof *w2, err);
  if (!w2) return -1;
  int rc = -1;
  for (int l = 0; l < s->n_layers; l++) {
    if (s->layers[l].kind != SD_HOOK_FF_NEURONS) continue;
    char name[1100];
    snprintf(name, sizeof name, "%s.weight", s->layers[l].name);
    int64_t shape[2] = {-1, s->layers[l].width};
    const float *w = sd_view_get(model->unet_view, name, 2, shape, err);
    if (!w) goto done;
    w2[l].rows = (int)sd_store_find(model->unet_view, name)->shape[0];
    w2[l].w = w;
    info->ff_weights += (int64_t)w2[l].rows * s->layers[l].width;
  }
  for (int i = 0; i < model->unet_view->count; i++)
    if (is_float(model->unet_view->tensors[i].dtype)) info->unet_weights += sd_tensor_numel(&model->unet_view->tensors[i]);
  double t0 = omp_get_wtime();
  rc = sd_score_mask(method, s, w2, p, m, err);
  info->score_seconds = omp_get_wtime() - t0;
done:
  free(w2);
  return rc;
}
