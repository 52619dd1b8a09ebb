/* Fake activations for testing the statistics plumbing without a model (ior's DUMMY backend): small
 * integers per (prompt, seed, UNet evaluation, branch, token, neuron) for a few fake FFN layers, folded
 * into an item's fixed-point totals exactly as the collector does. Used by sdprune-mpi --backend fake;
 * not a model of anything, and never used by the engine's own commands. */
#ifndef SD_FAKE_ACTIVATIONS_H
#define SD_FAKE_ACTIVATIONS_H

#include <stdint.h>

#include "stats/concept_stats.h"

#define SD_FAKE_TOKENS 4 /* tokens per fake evaluation */

/* The fake layer list (3 FFN layers, widths 16, 24, 16, named as SD-1's). Caller frees with
 * sd_stats_layers_free. */
int sd_stats_fake_layers(sd_stats_layer **out, int *n_layers, sd_error *err);
/* A 16-hex-digit fake model hash for variant v ("fake" backend, --fake-hash V). */
void sd_stats_fake_model_hash(unsigned v, char out[17]);
/* Fills acc[n_layers] (allocated by the caller with sd_stats_acc_alloc) with item it's totals: activations
 * x = hash(prompt, seed, evaluation, branch, token, neuron) mod 9 - 4. Deterministic. */
int sd_stats_fake_item(const sd_stats *s, const sd_stats_item *it, sd_stats_acc *acc, sd_error *err);
/* Adds one item's totals acc[n_layers] into its set and marks the item done (sd_stats_add_item for
 * totals that do not come from a collector). */
void sd_stats_add_item_acc(sd_stats *s, int64_t item, const sd_stats_acc *acc, double seconds);

#endif
