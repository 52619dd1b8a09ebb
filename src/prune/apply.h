/* Applying a pruning mask: in memory to a built UNet (copies of the masked ff.net.2 weights with the
 * pruned entries zeroed), and to checkpoints on disk (the input's layout, names and dtypes, every
 * untouched byte identical, pruned elements zero) with a restore file that gives the original bytes
 * back exactly. Not the scores that choose the mask (scores.c) nor its file format (mask_io.c).
 *
 * On disk: a safetensors file keeps its header's tensor entries and data offsets (the header gains a
 * `__metadata__["sdprune_mask"]` entry) and its data section byte for byte; a torch zip is patched in
 * place (storage bytes and the CRC-32 of the entry in the local header, the data descriptor and the
 * central directory); a diffusers folder is copied whole with only the UNet weights file patched. */
#ifndef SD_APPLY_H
#define SD_APPLY_H

#include <stdint.h>

#include "core/error.h"
#include "model/model.h"
#include "model/unet.h"
#include "prune/mask.h"

/* ---- in memory ---- */

/* The float32 weight copies made by sd_mask_apply_unet (owned by the caller). */
typedef struct {
  float **copies;
  int n;
} sd_mask_unet_copies;

/* For each mask layer, finds the transformer block whose `site` + ".ff.net.2" is the layer name,
 * copies its ff_out weight [rows, cols], zeroes the pruned entries and points ff_out.w at the copy.
 * A layer with no such block, or of another shape, is an error naming it ("mask from another
 * architecture?"); on error the unet is left as it was. *owned is zeroed first. */
int sd_mask_apply_unet(sd_unet *unet, const sd_mask *mask, sd_mask_unet_copies *owned, sd_error *err);
/* Frees the copies. The unet's ff_out.w still point at them: free the unet first, or never run it again. */
void sd_mask_unet_copies_free(sd_mask_unet_copies *owned);

/* ---- checkpoints ---- */

typedef struct {
  const char *out;          /* output file, or folder for a diffusers model */
  int force;                /* replace existing outputs (the checkpoint and its restore file) */
  int unet_override;        /* the model was opened with --unet: write a patched copy of that file */
  const char *mask_path;    /* recorded in the metadata and the restore file */
  const char *mask_sha256;  /* hex SHA-256 of the mask file, or NULL */
  const char *command_line; /* provenance, or NULL */
} sd_apply_options;

typedef struct {
  char out_path[4096];     /* what was written: opt.out, or its .safetensors name after a fallback */
  char restore_path[4096]; /* the restore file beside it */
  const char *layout;      /* "single-file", "diffusers" or "unet-override" */
  const char *format;      /* "safetensors", "torch-zip" or "safetensors-from-torch" */
  char source[4096];       /* the patched input file */
  char note[512];          /* why a torch zip became safetensors; empty otherwise */
  int n_layers;
  int64_t pruned, total; /* pruned weights / weights of the masked tensors */
  uint64_t bytes;        /* bytes written (checkpoint file or folder, not the restore file) */
} sd_apply_result;

/* Restore file name of an output: `<out minus .safetensors/.ckpt/.pt/.pth/.bin>.restore.h5`, for a
 * folder `<DIR>.restore.h5`. */
void sd_restore_path_for(const char *out, char *buf, size_t size);

/* Writes the pruned checkpoint and its restore file, both atomically (temporary names, then rename;
 * on any error the temporaries are removed and existing files are untouched). m must be opened
 * without the weight cache, so that its UNet view points into the source files. A torch zip whose
 * patched storage is compressed (or not contiguous) is written as safetensors with the same keys;
 * res->note says so. An --out ending in .safetensors converts a torch zip likewise. */
int sd_apply_mask_checkpoint(const sd_model *m, const sd_mask *mask, const sd_apply_options *opt, sd_apply_result *res,
                             sd_error *err);

typedef struct {
  char out_path[4096];
  const char *format; /* as recorded by apply */
  int n_files;        /* files written (1, or every file of a folder) */
  int n_tensors;      /* tensors restored */
  int64_t restored;   /* elements restored */
  uint64_t bytes;
} sd_restore_result;

/* Rebuilds the original checkpoint from a pruned one and its restore file: checks the pruned input's
 * SHA-256 against the record first and the result's after (a mismatch is an error naming the file),
 * writes atomically, refuses an existing out unless force. */
int sd_restore_checkpoint(const char *pruned, const char *restore_path, const char *out, int force,
                          sd_restore_result *res, sd_error *err);

#endif
