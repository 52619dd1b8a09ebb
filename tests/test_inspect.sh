#!/usr/bin/env bash
# Tests of `sdprune inspect` on every file and folder of the shared reference data. Expected figures
# (tensor counts, dtype counts, byte totals, architecture) come from the reference READMEs and from
# reading the safetensors headers / pickles with Python's json and pickletools, not from sdprune.
# Env: SDPRUNE_BIN (the binary), SDPRUNE_REFERENCE (reference dir; skip with 77 if absent, fail if CI=true).
set -u
BIN=${SDPRUNE_BIN:-build/sdprune}
REF=${SDPRUNE_REFERENCE:-../shared/reference}
if [ ! -d "$REF" ]; then
  if [ "${CI:-}" = true ]; then echo "reference data not found ($REF) and CI=true: failing" >&2; exit 1; fi
  echo "SKIP: reference data not found ($REF)" >&2
  exit 77
fi
passed=0
failed=0
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# run PATH: runs inspect, leaving stdout in $TMP/out, stderr in $TMP/err, status in $rc
run() {
  "$BIN" inspect "$@" >"$TMP/out" 2>"$TMP/err"
  rc=$?
}

# expect PATH LINE...: inspect succeeds and every LINE occurs (fixed string) in the output
expect() {
  local path=$1
  shift
  run "$path"
  if [ "$rc" -ne 0 ]; then bad "$path: exit $rc: $(cat "$TMP/err")"; return; fi
  ok
  for want in "$@"; do
    if grep -qF -- "$want" "$TMP/out"; then ok; else bad "$path: output lacks '$want'"; fi
  done
}

# expect_error PATH FRAGMENT: inspect fails (status 1), prints one stderr line naming PATH and FRAGMENT, no stdout
expect_error() {
  run "$1"
  if [ "$rc" -eq 1 ]; then ok; else bad "$1: exit $rc, want 1"; fi
  if [ "$(wc -l <"$TMP/err")" -eq 1 ] && [ ! -s "$TMP/out" ]; then ok; else bad "$1: error is not exactly one line: $(cat "$TMP/err")"; fi
  if grep -qF -- "$1" "$TMP/err" && grep -qF -- "$2" "$TMP/err"; then ok; else bad "$1: error lacks the path or '$2': $(cat "$TMP/err")"; fi
}

UNET_ARCH="architecture: unet model_channels 32, in_channels 4, out_channels 4, levels 2, context_dim 32, cross-attention blocks 7, proj_in conv (4-D weight)"
TEXT_ARCH="architecture: text width 32, layers 2, vocab 49408, mlp 64, positions 77"
VAE_ARCH="architecture: vae z_channels 4, ch 32, out_channels 3, levels 2"

# ---- single files ----
for f in "$REF/tiny-sd1/model.ckpt" "$REF/tiny-sd1/model.safetensors"; do
  expect "$f" "tensors: 452" "dtypes: F32 4, F16 322, BF16 124, I64 1, I32 1" "parameter bytes: 6640806 " \
    "naming: original single-file (model.diffusion_model.*, cond_stage_model.*, first_stage_model.*, model_ema.*)" \
    "HF CLIPTextModel text encoder (cond_stage_model.transformer.text_model.*" \
    "parts: unet 286 " "text encoder 37 " "vae decoder 70 " "vae encoder 54 " "ema 2 " "schedule buffers 3 " \
    "$UNET_ARCH" "$TEXT_ARCH" "$VAE_ARCH"
done
expect "$REF/tiny-sd1/model.ckpt" "format: torch zip" "other entries: global_step=470000, epoch=6"
expect "$REF/tiny-sd1/model.safetensors" "format: safetensors" "metadata keys: config, format" 'config: {"kind": "tiny-sd1"'

expect "$REF/tiny-sd1-erased/unet-erased-compvis.pt" "format: torch zip" "tensors: 286" "dtypes: F32 286" \
  "parameter bytes: 4220176 " "naming: original single-file (model.diffusion_model.*)" "parts: unet 286 " "$UNET_ARCH"
expect "$REF/tiny-sd1-erased/unet-erased-diffusers.pt" "format: torch zip" "tensors: 286" "dtypes: F32 286" \
  "parameter bytes: 4220176 " "naming: diffusers UNet" "parts: unet 286 " "$UNET_ARCH"

D="$REF/tiny-sd1-diffusers"
expect "$D/unet/diffusion_pytorch_model.safetensors" "format: safetensors" "tensors: 286" "dtypes: F16 286" \
  "parameter bytes: 2110088 " "naming: diffusers UNet" "$UNET_ARCH"
expect "$D/vae/diffusion_pytorch_model.safetensors" "tensors: 124" "dtypes: BF16 124" "parameter bytes: 1316750 " \
  "naming: diffusers VAE" "parts: vae decoder 70 " "vae encoder 54 " "$VAE_ARCH"
expect "$D/text_encoder/model.safetensors" "tensors: 37" "dtypes: F16 36, I64 1" "parameter bytes: 3201960 " \
  "naming: HF CLIPTextModel (text_model.*)" "$TEXT_ARCH"
expect "$REF/tiny-clip/model.safetensors" "tensors: 80" "dtypes: F32 1, F16 77, I64 2" "parameter bytes: 3285300 " \
  "HF CLIP vision (vision_model.*)" "clip vision 40 " "architecture: text width 32, layers 2, vocab 49408, mlp 128" \
  "architecture: vision width 32, patch 8, layers 2" '"projection_dim": 16'
expect "$REF/tiny-sd1/vectors.safetensors" "tensors: 67" "dtypes: F32 62, I32 5" "parameter bytes: 561568 " "naming: unrecognised"
expect "$REF/tiny-sd1-erased/vectors.safetensors" "tensors: 12" "dtypes: F32 12" "metadata keys: note"
expect "$REF/tiny-clip/vectors.safetensors" "tensors: 10" "dtypes: F32 7, I32 1, U8 2"

# ---- folders ----
expect "$D" "format: diffusers folder" "pipeline: StableDiffusionPipeline" "part unet: diffusers.UNet2DConditionModel" \
  "part vae: diffusers.AutoencoderKL" "part text_encoder: transformers.CLIPTextModel" "part scheduler: diffusers.DDIMScheduler" \
  '"cross_attention_dim":32' '"beta_schedule":"scaled_linear"' "part safety_checker: none" "weight files: 3" \
  "  tensors: 286" "  tensors: 124" "  tensors: 37" "  $UNET_ARCH" "  $VAE_ARCH" "  $TEXT_ARCH"
expect "$REF/tiny-sd1" "file: $REF/tiny-sd1/model.ckpt" "file: $REF/tiny-sd1/model.safetensors" "tensors: 67"
expect "$REF/tiny-sd1-erased" "file: $REF/tiny-sd1-erased/unet-erased-compvis.pt" "tensors: 12"
expect "$REF/tiny-clip" "tensors: 80"
expect "$D/unet" "tensors: 286"
expect_error "$REF/clip-tokenizer" "no model_index.json and no checkpoint files"

# ---- every file of the reference: checkpoints are inspected, anything else is one clean error ----
while IFS= read -r -d '' f; do
  case "$f" in
  *.safetensors | *.ckpt | *.pt)
    run "$f"
    if [ "$rc" -eq 0 ] && grep -q '^tensors: [1-9]' "$TMP/out" && grep -q '^format: ' "$TMP/out"; then ok; else bad "$f: exit $rc"; fi
    ;;
  *) expect_error "$f" "" ;;
  esac
done < <(find "$REF" -type f -print0)

# ---- the engine's own view: configuration source and what it would run ----
expect "$REF/tiny-sd1/model.safetensors" "engine: unet: in 4 out 4 ch 32 mult 1,2 res 1,1 attn 1,1 heads 2 context 32 proj conv (from checkpoint metadata)"
expect "$REF/tiny-sd1-diffusers" "heads 2 context 32 proj conv (from diffusers config); predicts eps (scheduler config)"
expect "$REF/tiny-sd1/model.ckpt" "(from inferred: heads are not in the shapes"

# ---- bad input and usage ----
head -c 3000000 "$REF/tiny-sd1/model.ckpt" >"$TMP/truncated.ckpt"
expect_error "$TMP/truncated.ckpt" "truncated"
printf 'not a checkpoint at all\n' >"$TMP/text.pt"
expect_error "$TMP/text.pt" "not safetensors"
expect_error "$TMP/missing.safetensors" "no such file"
run --help
if [ "$rc" -eq 0 ] && grep -q "usage: sdprune inspect" "$TMP/out"; then ok; else bad "--help: exit $rc"; fi
run
if [ "$rc" -eq 2 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ]; then ok; else bad "no argument: exit $rc"; fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
