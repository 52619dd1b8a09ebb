#!/usr/bin/env bash
# An SD-1.5-shaped synthesised checkpoint goes through the whole text-to-image path like a real one:
# one sampling step at 64x64 pixels writes a PNG with the A1111 parameters chunk. (~1 minute, 2 GB in /tmp.)
source "$(dirname "$0")/testlib.sh"
"$BIN" synth --arch sd15 --dtype f16 --seed 7 --out "$TMP/sd15.safetensors" --quiet 2> "$TMP/synth.log"
check "synth sd15: exit 0" test $? -eq 0
"$BIN" generate --model "$TMP/sd15.safetensors" --prompt "a photo of a cat" --steps 1 --sampler ddim \
  --size 64x64 --seed 3 --out "$TMP/cat.png" --quiet 2> "$TMP/gen.log"
check "generate: exit 0 ($(cat "$TMP/gen.log"))" test $? -eq 0
check "generate: PNG written" bash -c "head -c 8 '$TMP/cat.png' | od -An -tx1 | grep -q '89 50 4e 47'"
check "generate: parameters chunk" grep -aq "Steps: 1, Sampler: DDIM, CFG scale: 7.5, Seed: 3, Size: 64x64, Model hash: " "$TMP/cat.png"
check "generate: the model is described as SD 1.5-shaped" bash -c "'$BIN' inspect '$TMP/sd15.safetensors' | grep -q 'model_channels 320'"
finish
