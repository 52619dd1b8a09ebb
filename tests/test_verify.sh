#!/usr/bin/env bash
# `sdprune verify` against the public reference: both layouts, the torch .ckpt, and the erased UNets
# given as overrides. Every case must pass at rel-L2 <= 1e-5 and no group may be skipped unexpectedly.
source "$(dirname "$0")/testlib.sh"
require_reference
TOK="$REF/clip-tokenizer"

run_verify() { # name, expected pass count, args...
  local name=$1 want=$2; shift 2
  "$BIN" verify --tolerance 1e-5 "$@" > "$TMP/$name.txt" 2>&1
  local rc=$?
  check "$name: exit 0 (got $rc)" test $rc -eq 0
  check "$name: no FAIL rows" bash -c "! grep -q FAIL '$TMP/$name.txt'"
  check "$name: $want cases passed" grep -q "^verify: $want passed, 0 failed" "$TMP/$name.txt"
  [ $rc -eq 0 ] || cat "$TMP/$name.txt" >&2
}

# 17 unet rows (3 eps + 7 ff + 7 attn2), 3 text, 3 tokens, 2 vae, 1 vae_enc, 9 rng, 10 sampler rows, and the
# 20 clip rows of tiny-clip/, found beside the vectors' folder (tests/test_clip_verify.sh checks those).
run_verify single 65 --model "$REF/tiny-sd1/model.safetensors" --vectors "$REF/tiny-sd1/vectors.safetensors" --tokenizer "$TOK"
check "single: nothing skipped" bash -c "! grep -q '^skipped' '$TMP/single.txt'"
run_verify diffusers 65 --model "$REF/tiny-sd1-diffusers" --vectors "$REF/tiny-sd1/vectors.safetensors"
check "diffusers: uses the folder's config" grep -q "unet config: diffusers config" "$TMP/diffusers.txt"
# The .ckpt carries no architecture: the diffusers folder's configs describe it.
run_verify ckpt 65 --model "$REF/tiny-sd1/model.ckpt" --config "$REF/tiny-sd1-diffusers" --vectors "$REF/tiny-sd1/vectors.safetensors"
run_verify erased_diffusers 23 --model "$REF/tiny-sd1/model.safetensors" --unet "$REF/tiny-sd1-erased/unet-erased-diffusers.pt" --vectors "$REF/tiny-sd1-erased/vectors.safetensors"
run_verify erased_compvis 23 --model "$REF/tiny-sd1/model.safetensors" --unet "$REF/tiny-sd1-erased/unet-erased-compvis.pt" --vectors "$REF/tiny-sd1-erased/vectors.safetensors"
run_verify erased_on_diffusers 23 --model "$REF/tiny-sd1-diffusers" --unet "$REF/tiny-sd1-erased/unet-erased-compvis.pt" --vectors "$REF/tiny-sd1-erased/vectors.safetensors"

# The erased UNet must actually change the output: the base model fails the erased vectors.
"$BIN" verify --model "$REF/tiny-sd1/model.safetensors" --vectors "$REF/tiny-sd1-erased/vectors.safetensors" > "$TMP/base_vs_erased.txt" 2>&1
check "base model fails the erased vectors (exit 1)" test $? -eq 1
check "base model: 3 FAIL rows" test "$(grep -c FAIL "$TMP/base_vs_erased.txt")" -eq 3

# A too tight tolerance fails: the comparison is real.
"$BIN" verify --model "$REF/tiny-sd1/model.safetensors" --vectors "$REF/tiny-sd1/vectors.safetensors" --only unet --tolerance 1e-9 > "$TMP/tight.txt" 2>&1
check "tolerance 1e-9 fails (exit 1)" test $? -eq 1

# Usage errors.
"$BIN" verify --model "$REF/tiny-sd1/model.safetensors" > /dev/null 2> "$TMP/err"; rc=$?
check "missing --vectors: exit 2 (got $rc)" test $rc -eq 2
"$BIN" verify --model /nonexistent.safetensors --vectors "$REF/tiny-sd1/vectors.safetensors" > /dev/null 2> "$TMP/err"; rc=$?
check "missing model: exit 1" test $rc -eq 1
check "missing model: one line naming the file" bash -c "test \$(wc -l < '$TMP/err') -eq 1 && grep -q '/nonexistent.safetensors' '$TMP/err'"
check "--help" bash -c "'$BIN' verify --help | grep -q -- --vectors"

finish
