/* Per-neuron activation statistics of the FFN hook sites: for each site, per-channel sums of x and
 * x² over tokens (and a token count), accumulated in double and mergeable exactly by addition, so
 * the statistics stage and the MPI reduce can combine ranks. The accumulation is the hot part of a
 * hooked evaluation, so it is vectorised and split across threads by channel. */
#ifndef SD_NEURON_STATS_H
#define SD_NEURON_STATS_H

#include <stdint.h>

/* sum[c] += Σ_t data[t, c], sumsq[c] += Σ_t data[t, c]² for data [tokens, channels]. */
void sd_neuron_stats_accumulate(double *sum, double *sumsq, const float *data, int64_t tokens, int channels);

#endif
