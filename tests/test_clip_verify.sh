#!/usr/bin/env bash
# `sdprune verify --clip` against tiny-clip (reference/README.md "tiny-clip"): every counted row passes,
# with the figures asserted (text/image embeds and logits at rel-L2 <= 1e-5, tokenizer ids exact, pixel
# values mean-abs < 1e-2 -- in fact 0); the default run finds tiny-clip/ beside the vectors' folder;
# --no-clip, --only, a tight tolerance and a checkpoint without a vision tower behave.
source "$(dirname "$0")/testlib.sh"
require_reference
CLIP="$REF/tiny-clip"
if [ ! -f "$CLIP/vectors.safetensors" ]; then
  [ "${CI:-}" = true ] && { echo "tiny-clip missing under CI: $CLIP" >&2; exit 1; }
  echo "SKIP: $CLIP not found"
  exit 77
fi

# rel-L2 (column 3 from the end) of the row named $2 in file $1 is <= $3
rel_at_most() {
  awk -v name="$2" -v tol="$3" 'index($0, "clip     " name " ") == 1 { found = 1; for (i = 1; i <= NF; i++) if ($i ~ /^(PASS|FAIL|info)/) { if ($(i - 2) + 0 > tol + 0) bad = 1; break } }
    END { exit !(found && !bad) }' "$1"
}

for form in folder file; do
  [ $form = folder ] && path="$CLIP" || path="$CLIP/model.safetensors"
  out="$TMP/clip_$form.txt"
  "$BIN" verify --clip "$path" > "$out" 2>&1
  rc=$?
  check "$form: exit 0 (got $rc)" test $rc -eq 0
  check "$form: 20 passed, 0 failed" grep -q "^verify: 20 passed, 0 failed" "$out"
  check "$form: no FAIL rows" bash -c "! grep -q FAIL '$out'"
  for k in 0 1 2 3; do
    check "$form: text$k embeds (file ids) <= 1e-5" rel_at_most "$out" "text.case$k.embeds (file ids)" 1e-5
    check "$form: text$k embeds (tokenizer) <= 1e-5" rel_at_most "$out" "text.case$k.embeds (tokenizer)" 1e-5
    check "$form: text$k ids exact" rel_at_most "$out" "text.case$k.ids (tokenizer)" 0
  done
  for k in 0 1; do
    check "$form: image$k embeds <= 1e-5" rel_at_most "$out" "image.case$k.embeds (ref pixels)" 1e-5
    check "$form: image$k logits <= 1e-5" rel_at_most "$out" "image.case$k.logits (ref pixels)" 1e-5
    check "$form: image$k logits from our pixels <= 1e-5" rel_at_most "$out" "image.case$k.logits (own pixels, tol 1e-03)" 1e-5
    check "$form: image$k pixel values exact" grep -q "image.case$k.pixel_values .*PASS (mean-abs 0 < 1e-2)" "$out"
  done
  check "$form: 56x40 resized to 45x32 as the reference" grep -q "image.case0.pixel_values (56x40 -> 45x32)" "$out"
  [ $rc -eq 0 ] || cat "$out" >&2
done
check "folder: config.json read" grep -q "config: config.json" "$TMP/clip_folder.txt"
check "file: metadata config read" grep -q "config: safetensors metadata" "$TMP/clip_file.txt"

# The default run includes clip when tiny-clip/ sits beside the vectors' folder; --no-clip and --only drop it.
"$BIN" verify --model "$REF/tiny-sd1/model.safetensors" --vectors "$REF/tiny-sd1/vectors.safetensors" --only rng > "$TMP/rng.txt" 2>&1
check "--only rng: no clip rows" bash -c "! grep -q '^clip ' '$TMP/rng.txt'"
"$BIN" verify --model "$REF/tiny-sd1/model.safetensors" --vectors "$REF/tiny-sd1/vectors.safetensors" --only clip > "$TMP/only.txt" 2>&1
check "--only clip: 20 passed" grep -q "^verify: 20 passed, 0 failed" "$TMP/only.txt"
"$BIN" verify --model "$REF/tiny-sd1/model.safetensors" --vectors "$REF/tiny-sd1/vectors.safetensors" --only unet --no-clip > "$TMP/noclip.txt" 2>&1
check "--no-clip: 17 unet rows only" grep -q "^verify: 17 passed, 0 failed" "$TMP/noclip.txt"

# A too tight tolerance fails: the comparison is real.
"$BIN" verify --clip "$CLIP" --tolerance 1e-9 > "$TMP/tight.txt" 2>&1
check "tolerance 1e-9 fails (exit 1)" test $? -eq 1

# An SD checkpoint is not a CLIP image model: one row naming the file and the missing prefix, exit 1.
"$BIN" verify --clip "$REF/tiny-sd1/model.safetensors" --clip-vectors "$CLIP/vectors.safetensors" > "$TMP/novision.txt" 2>&1
check "no vision tower: exit 1" test $? -eq 1
check "no vision tower: names the file and vision_model." grep -q "FAIL (.*tiny-sd1/model.safetensors: .*'vision_model\.\*'" "$TMP/novision.txt"

# Usage errors.
"$BIN" verify --clip "$CLIP" --no-clip > /dev/null 2>&1
check "--clip with --no-clip: exit 2" test $? -eq 2
check "--help mentions --clip" bash -c "'$BIN' verify --help | grep -q -- --clip"

finish
