/* Fake activations (fake_activations.h): deterministic small integers instead of a UNet, so the MPI
 * driver's distribution, shards, resume and reduce are tested in seconds. Not used for real statistics. */
#include "stats/fake_activations.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t mix64(uint64_t x) { /* splitmix64's finaliser */
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

static uint64_t hash_str(const char *s) { /* FNV-1a */
  uint64_t h = 0xcbf29ce484222325ull;
  for (; s && *s; s++)
    h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
  return h;
}

static const struct {
  const char *block, *diffusers;
  int width;
} fake_layers[] = {
    {"input_blocks.1.1.transformer_blocks.0", "down_blocks.0.attentions.0.transformer_blocks.0", 16},
    {"middle_block.1.transformer_blocks.0", "mid_block.attentions.0.transformer_blocks.0", 24},
    {"output_blocks.3.1.transformer_blocks.0", "up_blocks.1.attentions.0.transformer_blocks.0", 16},
};
#define N_FAKE_LAYERS ((int)(sizeof fake_layers / sizeof *fake_layers))

int sd_stats_fake_layers(sd_stats_layer **out, int *n_layers, sd_error *err) {
  sd_stats_layer *l = sd_calloc(N_FAKE_LAYERS, sizeof *l, err);
  if (!l)
    return -1;
  for (int i = 0; i < N_FAKE_LAYERS; i++) {
    char name[256], dname[256];
    snprintf(name, sizeof name, "%s.ff.net.2", fake_layers[i].block);
    snprintf(dname, sizeof dname, "%s.ff.net.2", fake_layers[i].diffusers);
    l[i].name = sd_strdup(name);
    l[i].block = sd_strdup(fake_layers[i].block);
    l[i].diffusers = sd_strdup(dname);
    l[i].kind = SD_HOOK_FF_NEURONS;
    l[i].width = fake_layers[i].width;
    l[i].site_index = i;
    if (!l[i].name || !l[i].block || !l[i].diffusers) {
      sd_stats_layers_free(l, N_FAKE_LAYERS);
      return sd_fail(err, "out of memory");
    }
  }
  *out = l;
  *n_layers = N_FAKE_LAYERS;
  return 0;
}

void sd_stats_fake_model_hash(unsigned v, char out[17]) {
  snprintf(out, 17, "%016llx", (unsigned long long)mix64(0xfa4eull + v));
}

int sd_stats_fake_item(const sd_stats *s, const sd_stats_item *it, sd_stats_acc *acc, sd_error *err) {
  const double unit = (double)(1 << SD_STATS_FIX_BITS);
  uint64_t base = mix64(hash_str(it->prompt) ^ mix64(it->seed));
  for (int l = 0; l < s->n_layers; l++) {
    int w = s->layers[l].width;
    if (w > 4096)
      return sd_fail(err, "fake layer %s is too wide (%d)", s->layers[l].name, w);
    sd_stats_acc_zero(&acc[l], s->n_steps, w);
    double q[SD_STATS_NQ][4096];
    int x[4096];
    for (int t = 0; t < s->n_steps; t++)
      for (int br = 0; br < SD_STATS_BRANCHES; br++) {
        size_t off = ((size_t)t * SD_STATS_BRANCHES + br) * (size_t)w;
        memset(q, 0, sizeof(double) * SD_STATS_NQ * 4096);
        for (int tok = 0; tok < SD_FAKE_TOKENS; tok++) {
          uint64_t h = mix64(base ^ mix64(((uint64_t)l << 48) ^ ((uint64_t)t << 24) ^ ((uint64_t)br << 16) ^ tok));
          double norm2 = 0;
          for (int j = 0; j < w; j++) {
            x[j] = (int)(mix64(h + (uint64_t)j) % 9) - 4;
            norm2 += (double)x[j] * x[j];
          }
          double inv = 1.0 / fmax(sqrt(norm2), 1e-12);
          for (int j = 0; j < w; j++) {
            double v = x[j], vh = v * inv;
            q[SD_Q_SUM][j] += v;
            q[SD_Q_SUMSQ][j] += v * v;
            q[SD_Q_SUMABS][j] += fabs(v);
            q[SD_Q_SUMSQ_HAT][j] += vh * vh;
            if ((float)v > acc[l].max[off + j])
              acc[l].max[off + j] = (float)v;
          }
        }
        acc[l].count[t * SD_STATS_BRANCHES + br] = SD_FAKE_TOKENS;
        for (int k = 0; k < SD_STATS_NQ; k++)
          for (int j = 0; j < w; j++)
            acc[l].q[k][off + j] = llround(q[k][j] * unit);
      }
  }
  return 0;
}

void sd_stats_add_item_acc(sd_stats *s, int64_t item, const sd_stats_acc *acc, double seconds) {
  sd_stats_item *it = &s->items[item];
  sd_stats_set *set = &s->sets[it->set];
  for (int l = 0; l < s->n_layers; l++)
    sd_stats_acc_add(&set->layers[l], &acc[l], s->n_steps, s->layers[l].width);
  set->items_done++;
  it->status = SD_ITEM_DONE;
  it->seconds = seconds;
  free(it->error);
  it->error = NULL;
}
