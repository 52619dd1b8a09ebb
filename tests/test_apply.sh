#!/usr/bin/env bash
# sdprune apply / restore / generate --mask on the command line, on the tiny reference model:
# apply + restore give back the input byte for byte (cmp) for a single safetensors file, a diffusers
# folder, a .ckpt (its zip CRCs still check) and --unet overrides (.pt in both namings, safetensors);
# the pruned models run in generate and load in verify; generate --mask draws the pruned checkpoint's
# pixels exactly (the PNGs' image data compared); a torch zip with a compressed storage falls back to
# safetensors; errors are one line with nothing left behind: a mask of another architecture, an
# existing output without --force, a wrong restore file, a file size limit (ulimit -f), an
# unwritable folder. Masks come from tests/test_apply.c --write-mask.
source "$(dirname "$0")/testlib.sh"
require_reference
trap 'chmod -R u+w "$TMP" 2>/dev/null; rm -rf "$TMP"' EXIT
HELPER="$(dirname "$BIN")/test_apply"
ST="$REF/tiny-sd1/model.safetensors"
CKPT="$REF/tiny-sd1/model.ckpt"
DIFF="$REF/tiny-sd1-diffusers"
ERASED_C="$REF/tiny-sd1-erased/unet-erased-compvis.pt"
ERASED_D="$REF/tiny-sd1-erased/unet-erased-diffusers.pt"
UNET_ST="$DIFF/unet/diffusion_pytorch_model.safetensors"

"$HELPER" --write-mask "$TMP/mask.h5" "$ST" - 1
check "helper wrote a mask" test -s "$TMP/mask.h5"
"$HELPER" --write-mask "$TMP/mask2.h5" "$ST" - 3
"$HELPER" --write-mask "$TMP/bad-layer.h5" "$ST" - bad-layer
"$HELPER" --write-mask "$TMP/bad-shape.h5" "$ST" - bad-shape

# roundtrip NAME ORIGINAL OUT APPLY-ARGS...: apply, then restore, and compare with the original.
roundtrip() {
  local name=$1 orig=$2 out=$3
  shift 3
  "$BIN" apply "$@" --mask "$TMP/mask.h5" --out "$out" 2> "$TMP/log"
  local rc=$?
  check "$name: apply exit 0 ($(tail -1 "$TMP/log"))" test $rc -eq 0
  check "$name: one summary line" test "$(wc -l < "$TMP/log")" -eq 1
  check "$name: summary" grep -q "pruned [0-9]* of [0-9]* ff.net.2 weights (.*%) in 7 layers; wrote $out" "$TMP/log"
  local base=${out%/}
  for ext in .safetensors .ckpt .pt; do base=${base%"$ext"}; done
  check "$name: restore file beside it" test -s "$base.restore.h5"
  if [ -d "$orig" ]; then check "$name: a folder" test -d "$out"; else check "$name: differs from the input" bash -c "! cmp -s '$orig' '$out'"; fi
  "$BIN" restore --model "$out" --restore "$base.restore.h5" --out "$TMP/back-$name" 2> "$TMP/log"
  rc=$?
  check "$name: restore exit 0 ($(cat "$TMP/log"))" test $rc -eq 0
  if [ -d "$orig" ]; then
    check "$name: restored folder equals the original" diff -r "$orig" "$TMP/back-$name"
  else
    check "$name: restored bytes equal the original" cmp "$orig" "$TMP/back-$name"
  fi
}

roundtrip single "$ST" "$TMP/p.safetensors" --model "$ST"
roundtrip diffusers "$DIFF" "$TMP/pdiff" --model "$DIFF"
roundtrip ckpt "$CKPT" "$TMP/pk.ckpt" --model "$CKPT" --config "$DIFF"
roundtrip override-compvis "$ERASED_C" "$TMP/pec.pt" --model "$ST" --unet "$ERASED_C"
roundtrip override-diffusers "$ERASED_D" "$TMP/ped.pt" --model "$ST" --unet "$ERASED_D"
roundtrip override-st "$UNET_ST" "$TMP/pu.safetensors" --model "$ST" --unet "$UNET_ST"

# The folder: every file but the UNet's is a byte copy; the zip's CRCs still check (Python's zipfile).
for f in $(cd "$DIFF" && find . -type f ! -path ./unet/diffusion_pytorch_model.safetensors); do
  check "diffusers: $f copied unchanged" cmp "$DIFF/$f" "$TMP/pdiff/$f"
done
check "diffusers: UNet file patched" bash -c "! cmp -s '$UNET_ST' '$TMP/pdiff/unet/diffusion_pytorch_model.safetensors'"
check "ckpt: zip CRCs check" /usr/bin/python3 -c "import sys, zipfile; sys.exit(zipfile.ZipFile(sys.argv[1]).testzip() is not None)" "$TMP/pk.ckpt"
check "ckpt: same zip size" test "$(stat -c %s "$CKPT")" -eq "$(stat -c %s "$TMP/pk.ckpt")"

# The pruned models run; generate --mask draws exactly the pruned checkpoint's image.
idat() { # sha256 of the concatenated IDAT chunks of a PNG (the pixels; text chunks name paths and commands)
  /usr/bin/python3 - "$1" << 'PY'
import hashlib, struct, sys
d = open(sys.argv[1], 'rb').read(); i = 8; h = hashlib.sha256()
while i < len(d):
    n = struct.unpack('>I', d[i:i + 4])[0]
    if d[i + 4:i + 8] == b'IDAT': h.update(d[i + 8:i + 8 + n])
    i += 12 + n
print(h.hexdigest())
PY
}
gen() { # OUT.png MODEL-ARGS...
  local out=$1
  shift
  "$BIN" generate "$@" --prompt "a red fox in the snow" --sampler ddim --steps 3 --seed 5 --size 16x16 \
    --out "$out" --quiet 2> "$TMP/glog"
}
gen "$TMP/orig.png" --model "$ST"
gen "$TMP/pruned.png" --model "$TMP/p.safetensors"
check "generate with the pruned checkpoint ($(cat "$TMP/glog"))" test -s "$TMP/pruned.png"
gen "$TMP/masked.png" --model "$ST" --mask "$TMP/mask.h5"
check "generate --mask ($(cat "$TMP/glog"))" test -s "$TMP/masked.png"
check "generate --mask: provenance names the mask" grep -aq '"mask_sha256"' "$TMP/masked.png"
check "pruning changes the image" test "$(idat "$TMP/orig.png")" != "$(idat "$TMP/pruned.png")"
check "generate --mask equals the pruned checkpoint's image" test "$(idat "$TMP/masked.png")" = "$(idat "$TMP/pruned.png")"
gen "$TMP/pdiff.png" --model "$TMP/pdiff"
check "pruned diffusers folder: same image" test "$(idat "$TMP/pdiff.png")" = "$(idat "$TMP/pruned.png")"
gen "$TMP/pckpt.png" --model "$TMP/pk.ckpt" --config "$DIFF"
check "pruned .ckpt: same image" test "$(idat "$TMP/pckpt.png")" = "$(idat "$TMP/pruned.png")"
gen "$TMP/pec.png" --model "$ST" --unet "$TMP/pec.pt"
gen "$TMP/pec-mask.png" --model "$ST" --unet "$ERASED_C" --mask "$TMP/mask.h5"
check "pruned --unet override: runs" test -s "$TMP/pec.png"
check "pruned --unet override equals --unet + --mask" test "$(idat "$TMP/pec.png")" = "$(idat "$TMP/pec-mask.png")"
"$BIN" verify --model "$TMP/p.safetensors" --vectors "$REF/tiny-sd1/vectors.safetensors" \
  --tokenizer "$REF/clip-tokenizer" > "$TMP/verify.out" 2> "$TMP/verify.err"
check "verify loads the pruned model (UNet parity fails, as it must)" grep -q "^unet .*case0 .*FAIL" "$TMP/verify.out"
check "verify: the text encoder still passes" grep -q "^text .*PASS" "$TMP/verify.out"

# A torch zip with compressed storages cannot be patched in place: safetensors with the same keys.
/usr/bin/python3 - "$CKPT" "$TMP/comp.ckpt" << 'PY'
import sys, zipfile
src = zipfile.ZipFile(sys.argv[1])
with zipfile.ZipFile(sys.argv[2], 'w', zipfile.ZIP_DEFLATED) as dst:
    for info in src.infolist():
        dst.writestr(info.filename, src.read(info.filename))
PY
"$BIN" apply --model "$TMP/comp.ckpt" --config "$DIFF" --mask "$TMP/mask.h5" --out "$TMP/pc.ckpt" 2> "$TMP/log"
rc=$?
check "compressed zip: exit 0 ($(cat "$TMP/log"))" test $rc -eq 0
check "compressed zip: says so" grep -q "note: .*compressed.*safetensors.*pc.safetensors" "$TMP/log"
check "compressed zip: wrote pc.safetensors, not pc.ckpt" test -s "$TMP/pc.safetensors" -a ! -e "$TMP/pc.ckpt"
gen "$TMP/pc.png" --model "$TMP/pc.safetensors" --config "$DIFF"
check "compressed zip: same image as the other pruned copies" test "$(idat "$TMP/pc.png")" = "$(idat "$TMP/pruned.png")"
"$BIN" restore --model "$TMP/pc.safetensors" --restore "$TMP/pc.restore.h5" --out "$TMP/pc-back.safetensors" 2> "$TMP/log"
rc=$?
check "compressed zip: restore ($(cat "$TMP/log"))" test $rc -eq 0
gen "$TMP/pc-back.png" --model "$TMP/pc-back.safetensors" --config "$DIFF"
check "compressed zip: restored tensors give the original image" test "$(idat "$TMP/pc-back.png")" = "$(idat "$TMP/orig.png")"

# Errors: one line, non-zero exit, nothing under the output names, no temporaries.
fails() { # name, expected message fragment, command args...
  local name=$1 msg=$2
  shift 2
  "$BIN" "$@" > /dev/null 2> "$TMP/err"
  local rc=$?
  check "$name: non-zero exit" test $rc -ne 0
  check "$name: one line" test "$(wc -l < "$TMP/err")" -eq 1
  check "$name: message has '$msg' ($(cat "$TMP/err"))" grep -q -- "$msg" "$TMP/err"
}
fails "unknown layer" "input_blocks.9.1.transformer_blocks.0.ff.net.2' is not in .*model.safetensors (mask from another architecture?)" \
  apply --model "$ST" --mask "$TMP/bad-layer.h5" --out "$TMP/bad1.safetensors"
fails "wrong shape" "another architecture" apply --model "$ST" --mask "$TMP/bad-shape.h5" --out "$TMP/bad2.safetensors"
check "refused masks: nothing written" test ! -e "$TMP/bad1.safetensors" -a ! -e "$TMP/bad2.safetensors" -a ! -e "$TMP/bad1.restore.h5"
cp "$TMP/p.safetensors" "$TMP/keep"
fails "existing output" "exists (use --force" apply --model "$ST" --mask "$TMP/mask2.h5" --out "$TMP/p.safetensors"
check "existing output untouched" cmp "$TMP/p.safetensors" "$TMP/keep"
"$BIN" apply --model "$ST" --mask "$TMP/mask2.h5" --out "$TMP/p2.safetensors" 2> /dev/null
fails "wrong restore file" "p.safetensors: SHA-256 does not match" \
  restore --model "$TMP/p.safetensors" --restore "$TMP/p2.restore.h5" --out "$TMP/wrong.safetensors"
check "wrong restore file: nothing written" test ! -e "$TMP/wrong.safetensors"
fails "restore: existing output" "exists (use --force" restore --model "$TMP/p.safetensors" --restore "$TMP/p.restore.h5" --out "$ST"
"$BIN" apply --model "$ST" --mask "$TMP/mask2.h5" --out "$TMP/p.safetensors" --force 2> /dev/null
check "--force replaces" bash -c "! cmp -s '$TMP/p.safetensors' '$TMP/keep'"
cp "$TMP/pdiff/unet/diffusion_pytorch_model.safetensors" "$TMP/keep-unet"
fails "existing folder" "exists (use --force" apply --model "$DIFF" --mask "$TMP/mask2.h5" --out "$TMP/pdiff"
"$BIN" apply --model "$DIFF" --mask "$TMP/mask2.h5" --out "$TMP/pdiff" --force 2> /dev/null
check "--force replaces a folder" bash -c "! cmp -s '$TMP/pdiff/unet/diffusion_pytorch_model.safetensors' '$TMP/keep-unet'"
check "--force: nothing set aside is left" bash -c "! ls '$TMP' | grep -q 'pdiff\.old-'"
fails "no model" "--model, --mask and --out are required" apply --mask "$TMP/mask.h5" --out "$TMP/x.safetensors"
fails "torch name for a safetensors input" "name the output .safetensors" apply --model "$ST" --mask "$TMP/mask.h5" --out "$TMP/x.ckpt"

# A file size limit in the middle of writing: the error is reported, the temporaries removed.
(ulimit -f 1000; "$BIN" apply --model "$ST" --mask "$TMP/mask.h5" --out "$TMP/lim.safetensors" > /dev/null 2> "$TMP/err")
check "ulimit -f: apply fails ($(cat "$TMP/err"))" grep -q "write failed" "$TMP/err"
check "ulimit -f: no output, no restore file" test ! -e "$TMP/lim.safetensors" -a ! -e "$TMP/lim.restore.h5"
(ulimit -f 1000; "$BIN" apply --model "$DIFF" --mask "$TMP/mask.h5" --out "$TMP/limdir" > /dev/null 2> "$TMP/err")
check "ulimit -f: folder apply fails ($(cat "$TMP/err"))" grep -q "write failed" "$TMP/err"
check "ulimit -f: no output folder" test ! -e "$TMP/limdir" -a ! -e "$TMP/limdir.restore.h5"
(ulimit -f 1000; "$BIN" restore --model "$TMP/pdiff" --restore "$TMP/pdiff.restore.h5" --out "$TMP/limback" > /dev/null 2> "$TMP/err")
check "ulimit -f: restore fails ($(cat "$TMP/err"))" grep -q "write failed" "$TMP/err"
check "ulimit -f: no restored folder" test ! -e "$TMP/limback"
fails "missing output folder" "cannot create" apply --model "$ST" --mask "$TMP/mask.h5" --out "$TMP/none/x.safetensors"
check "missing output folder: no restore file" test ! -e "$TMP/none"
mkdir "$TMP/ro"
chmod a-w "$TMP/ro"
if [ ! -w "$TMP/ro" ]; then # root writes anyway
  fails "unwritable folder" "cannot create" apply --model "$ST" --mask "$TMP/mask.h5" --out "$TMP/ro/x.safetensors"
  check "unwritable folder: empty" test -z "$(ls -A "$TMP/ro")"
fi
check "no temporaries left" bash -c "! find '$TMP' -name '*.tmp-*' | grep -q ."

check "apply --help" bash -c "'$BIN' apply --help | grep -q -- --mask"
check "restore --help" bash -c "'$BIN' restore --help | grep -q -- --restore"
finish
