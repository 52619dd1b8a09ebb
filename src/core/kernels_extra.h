/* Kernels added beside kernels.c for the VAE: a convolution whose im2col scratch is bounded by
 * working in bands of output rows, so full-resolution decoder layers (512×512×256 channels would
 * need a 2.4 GB im2col matrix) stay within a small arena. Same semantics as sd_conv2d_forward. */
#ifndef SD_KERNELS_EXTRA_H
#define SD_KERNELS_EXTRA_H

#include <stddef.h>

#include "core/kernels.h"

/* y[cout, ho, wo] = conv(x[cin, h, w]) like sd_conv2d_forward (stride, zero padding, accumulate),
 * with the im2col matrix built for as many output rows at a time as fit in max_scratch_floats
 * (at least one row). y may not alias x. */
int sd_conv2d_forward_banded(float *y, const float *x, int h, int w, const sd_conv2d *conv, int stride, int pad,
                             int accumulate, size_t max_scratch_floats, sd_arena *arena, sd_error *err);

#endif
