#!/usr/bin/env bash
# `--config FILE.yaml` with an ldm inference config: the torch .ckpt of tiny-sd1 (no architecture inside)
# passes every reference case with tests/data/tiny-sd1-inference.yaml, as it does with the diffusers
# folder's configs; the YAML's parameterization reaches the model; a bad YAML is one line with its line.
source "$(dirname "$0")/testlib.sh"
require_reference
SRC=${SDPRUNE_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
YAML="$SRC/tests/data/tiny-sd1-inference.yaml"
MODEL="$REF/tiny-sd1/model.ckpt"

"$BIN" verify --tolerance 1e-5 --model "$MODEL" --config "$YAML" --vectors "$REF/tiny-sd1/vectors.safetensors" --no-clip \
  --tokenizer "$REF/clip-tokenizer" > "$TMP/verify.txt" 2>&1
rc=$?
check "verify with the ldm YAML: exit 0 (got $rc)" test $rc -eq 0
check "verify: 45 passed, 0 failed" grep -q "^verify: 45 passed, 0 failed" "$TMP/verify.txt"
check "verify: no FAIL rows" bash -c "! grep -q FAIL '$TMP/verify.txt'"
check "verify: unet config and prediction from --config" grep -q "unet config: --config, predicts eps: --config" "$TMP/verify.txt"
[ $rc -eq 0 ] || cat "$TMP/verify.txt" >&2

# Without a config the .ckpt's heads cannot be known: the YAML is what makes the run right.
"$BIN" verify --tolerance 1e-5 --model "$MODEL" --vectors "$REF/tiny-sd1/vectors.safetensors" --only unet \
  > "$TMP/noconfig.txt" 2>&1
check "without --config the .ckpt does not pass (heads inferred)" test $? -ne 0

# parameterization "v" in the YAML: the model predicts v (the eps vectors then fail).
sed 's/^    linear_start:/    parameterization: "v"\n    linear_start:/' "$YAML" > "$TMP/tiny-v.yaml"
"$BIN" verify --tolerance 1e-5 --model "$MODEL" --config "$TMP/tiny-v.yaml" --vectors "$REF/tiny-sd1/vectors.safetensors" \
  --only unet > "$TMP/v.txt" 2>&1
check "parameterization v: predicts v: --config" grep -q "predicts v: --config" "$TMP/v.txt"
"$BIN" verify --tolerance 1e-5 --model "$MODEL" --config "$TMP/tiny-v.yaml" --prediction eps \
  --vectors "$REF/tiny-sd1/vectors.safetensors" --only unet > "$TMP/veps.txt" 2>&1
check "--prediction eps wins over the YAML" grep -q "predicts eps: --prediction" "$TMP/veps.txt"

# A bad YAML: exit 1, one line naming the file and line.
printf 'model:\n  params:\n    unet_config:\n      params: {model_channels: 32, channel_mult: [1, 2]\n' > "$TMP/bad.yaml"
"$BIN" verify --model "$MODEL" --config "$TMP/bad.yaml" --vectors "$REF/tiny-sd1/vectors.safetensors" > /dev/null 2> "$TMP/err"
rc=$?
check "bad YAML: exit 1 (got $rc)" test $rc -eq 1
check "bad YAML: one line with FILE:LINE" bash -c "test \$(wc -l < '$TMP/err') -eq 1 && grep -q '$TMP/bad.yaml:5: YAML syntax error' '$TMP/err'"
[ $rc -eq 1 ] || cat "$TMP/err" >&2

finish
