#!/usr/bin/env bash
# sdprune generate end to end: the PNG of the PNDM reference case equals diffusers' image pixel for
# pixel, outputs are deterministic and carry the A1111 parameters chunk, prompt sets use their per-row
# seeds, and bad input fails with one line and no file left behind.
source "$(dirname "$0")/testlib.sh"
require_reference
PROMPTS=${SDPRUNE_SOURCE:?}/../shared/prompts
MODEL="$REF/tiny-sd1/model.safetensors"

# pndm.case0 of the reference was drawn with torch.manual_seed(5): same prompt, seed, sampler and steps.
"$BIN" generate --model "$MODEL" --prompt "a red fox in the snow, watercolor" --sampler pndm --steps 10 \
  --guidance 7.5 --seed 5 --size 16x16 --out "$TMP/fox.png" --quiet 2> "$TMP/log"
check "fox: exit 0" test $? -eq 0
check "fox: summary line" grep -q "wrote 1 image" "$TMP/log"
check "fox: parameters chunk" grep -aq "Steps: 10, Sampler: PLMS, CFG scale: 7.5, Seed: 5, Size: 16x16, Model hash: " "$TMP/fox.png"
check "fox: provenance chunk" grep -aq '"sdprune_version"' "$TMP/fox.png"
/usr/bin/python3 - "$REF/tiny-sd1/vectors.safetensors" "$TMP/fox.png" > "$TMP/pix" <<'PY'
import json, struct, sys, zlib
import numpy as np
f = open(sys.argv[1], 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n)); e = h['pndm.case0.image']
f.seek(8 + n + e['data_offsets'][0])
img = np.frombuffer(f.read(e['data_offsets'][1] - e['data_offsets'][0]), np.float32).reshape(e['shape'])[0]
ref = (np.clip(img * 0.5 + 0.5, 0, 1) * 255).round().astype(np.uint8).transpose(1, 2, 0)  # diffusers' numpy_to_pil
d = open(sys.argv[2], 'rb').read(); i = 8; idat = b''
while i < len(d):
    ln = struct.unpack('>I', d[i:i + 4])[0]; t = d[i + 4:i + 8]
    if t == b'IHDR': w, hh = struct.unpack('>II', d[i + 8:i + 16])
    if t == b'IDAT': idat += d[i + 8:i + 8 + ln]
    i += 12 + ln
raw = zlib.decompress(idat); stride = w * 3 + 1; prev = bytearray(w * 3); rows = []
for y in range(hh):
    ft = raw[y * stride]; line = bytearray(raw[y * stride + 1:(y + 1) * stride])
    for x in range(w * 3):
        a = line[x - 3] if x >= 3 else 0; b = prev[x]; c = prev[x - 3] if x >= 3 else 0
        if ft == 1: line[x] = (line[x] + a) & 255
        elif ft == 2: line[x] = (line[x] + b) & 255
        elif ft == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif ft == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else (b if pb <= pc else c))) & 255
    rows.append(bytes(line)); prev = line
got = np.frombuffer(b''.join(rows), np.uint8).reshape(hh, w, 3)
print(int(np.abs(got.astype(int) - ref).max()), got.shape[0], got.shape[1])
PY
check "fox: python decoded the PNG" test -s "$TMP/pix"
read -r maxdiff ph pw < "$TMP/pix"
check "fox: 16x16 image (got ${ph}x${pw})" test "$ph" = 16 -a "$pw" = 16
check "fox: pixels equal diffusers' (max diff $maxdiff)" test "$maxdiff" = 0

# Deterministic: the same command writes the same bytes; another seed writes another image.
"$BIN" generate --model "$MODEL" --prompt "a red fox in the snow, watercolor" --sampler pndm --steps 10 \
  --guidance 7.5 --seed 5 --size 16x16 --out "$TMP/fox.png" --quiet 2>/dev/null
cp "$TMP/fox.png" "$TMP/fox2.png"
"$BIN" generate --model "$MODEL" --prompt "a red fox in the snow, watercolor" --sampler pndm --steps 10 \
  --guidance 7.5 --seed 5 --size 16x16 --out "$TMP/fox.png" --quiet 2>/dev/null
check "same seed, same bytes" cmp -s "$TMP/fox.png" "$TMP/fox2.png"
"$BIN" generate --model "$MODEL" --prompt "a red fox in the snow, watercolor" --sampler pndm --steps 10 \
  --seed 6 --size 16x16 --out "$TMP/fox6.png" --quiet 2>/dev/null
check "other seed, other image" bash -c "! cmp -s '$TMP/fox6.png' '$TMP/fox.png'"

# A prompt set: per-row evaluation_seed, file names from case_number and seed; every sampler runs.
for s in ddim pndm lms euler; do
  "$BIN" generate --model "$REF/tiny-sd1-diffusers" --prompts "$PROMPTS/unlearndiffatk_vangogh.csv" --limit 2 \
    --size 32x32 --steps 3 --sampler $s --out "$TMP/vg_$s" --quiet 2> "$TMP/log_$s"
  check "prompt set with $s: exit 0" test $? -eq 0
  check "prompt set with $s: 2 images" test "$(ls "$TMP/vg_$s" | wc -l)" -eq 2
done
first_seed=$(/usr/bin/python3 -c "import csv,sys; r=list(csv.DictReader(open(sys.argv[1]))); print(r[0]['case_number'], r[0]['evaluation_seed'])" "$PROMPTS/unlearndiffatk_vangogh.csv")
set -- $first_seed
check "row seed in file name" test -f "$(printf '%s/vg_ddim/%05d_seed%s.png' "$TMP" "$1" "$2")"
"$BIN" generate --model "$MODEL" --prompt "two cats" --batch 2 --size 16x16 --steps 2 --out "$TMP/batch" --quiet 2>/dev/null
check "--batch 2 writes 2 files" test "$(ls "$TMP/batch" | wc -l)" -eq 2

# Progress in a log (stderr not a terminal): one line per image, then the summary.
"$BIN" generate --model "$MODEL" --prompts "$PROMPTS/unlearndiffatk_church.csv" --limit 3 --size 16x16 --steps 3 \
  --sampler euler --out "$TMP/progress" 2> "$TMP/progress.log"
check "progress: exit 0" test $? -eq 0
check "progress: a line per image" test "$(grep -c '^image [1-3]/3 done' "$TMP/progress.log")" -eq 3
check "progress: summary last" bash -c "tail -1 '$TMP/progress.log' | grep -q 'wrote 3 images'"

# Sizes whose latents are not a multiple of 2^(levels-1) work as in diffusers (upsampling to the skip's size).
"$BIN" generate --model "$MODEL" --prompt "odd" --size 18x22 --steps 2 --out "$TMP/odd.png" --quiet 2>/dev/null
check "odd latent size (9x11): image written" test -s "$TMP/odd.png"
check "odd latent size: parameters" grep -aq "Size: 18x22" "$TMP/odd.png"

# Bad input: one line, non-zero exit, nothing written.
fails() { # name, expected message fragment, args...
  local name=$1 msg=$2; shift 2
  "$BIN" generate --model "$MODEL" --quiet "$@" > /dev/null 2> "$TMP/err"
  local rc=$?
  check "$name: non-zero exit" test $rc -ne 0
  check "$name: one line" test "$(wc -l < "$TMP/err")" -eq 1
  check "$name: message has '$msg' ($(cat "$TMP/err"))" grep -q -- "$msg" "$TMP/err"
}
fails "size not multiple" "multiple of" --prompt x --size 31x30 --out "$TMP/bad/size.png"
check "size not multiple: no file" test ! -e "$TMP/bad/size.png"
fails "unknown sampler" "unknown sampler" --prompt x --sampler heun --out "$TMP/bad/s.png"
fails "bad size syntax" "--size" --prompt x --size 512 --out "$TMP/bad/s.png"
fails "missing tokenizer" "vocab.json" --prompt x --tokenizer "$TMP/none" --out "$TMP/bad/t.png"
printf 'prompt,evaluation_seed\n"a cat",1\n"bad \xff\xfe byte",2\n' > "$TMP/bad.csv"
fails "invalid UTF-8 prompt file" "bad.csv:3" --prompts "$TMP/bad.csv" --out "$TMP/bad/dir"
check "invalid UTF-8: nothing written" test ! -e "$TMP/bad/dir"
fails "one file for many images" "give a folder" --prompts "$PROMPTS/unlearndiffatk_church.csv" --out "$TMP/bad/x.png"
fails "missing model" "cannot open" --prompt x --model /nonexistent.safetensors --out "$TMP/bad/m.png"
check "--help" bash -c "'$BIN' generate --help | grep -q -- --sampler"
check "no temporary files left" bash -c "! find '$TMP' -name '*.tmp.*' | grep -q ."

finish
