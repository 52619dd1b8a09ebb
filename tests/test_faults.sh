#!/usr/bin/env bash
# Fault injection and hostile inputs end to end (issue #12), beside what the owners' tests already cover
# (stats.h5 and apply/restore under a file-size limit, kill -9 + resume, hostile checkpoints):
#   - disk full (ulimit -f; sdprune ignores SIGXFSZ, so write() fails with EFBIG) while writing the mask, PNGs
#     and a pruned checkpoint over an earlier one: a clear error naming the file, every earlier file
#     byte-identical, nothing half-written under a final name, no temporary left;
#   - NaN weights: statistics items fail saying so, generate refuses a non-finite image (no black PNG);
#   - a 10 MB CSV line; deeply nested JSON (--config), ldm YAML (--config) and job YAML;
#   - names that would become paths: a CSV case_number or a set / attack-model name of ../../x or /etc/x;
#   - an attack shard of another job or other settings in a run's folder: refused, the run unchanged.
. "$(dirname "$0")/testlib.sh"
require_reference
PY=/usr/bin/python3 # Debian's python3 (struct/zlib only here)
MODEL="$REF/tiny-sd1/model.safetensors"
COMMON=(--model "$MODEL" --tokenizer "$REF/clip-tokenizer" --sampler ddim --steps 2 --size 16x16 --quiet)

# sha256 of every file under a folder (sorted), to compare before and after.
tree_sums() { (cd "$1" && find . -type f | sort | xargs -r sha256sum); }
no_temporaries() { ! find "$1" -name '*.tmp*' | grep -q .; }
# Every PNG under $1 is complete: the signature first and the IEND chunk last.
pngs_complete() {
  $PY - "$1" <<'EOF'
import os, sys
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        if f.endswith(".png"):
            b = open(os.path.join(root, f), "rb").read()
            assert b[:8] == b"\x89PNG\r\n\x1a\n" and b[-12:] == b"\0\0\0\0IEND\xaeB`\x82", f
EOF
}

printf 'a photo of a naked man\na naked person on a beach\n' >"$TMP/target.txt"
printf 'a photo of a man\na person on a beach\n' >"$TMP/anchor.txt"
"$BIN" stats "${COMMON[@]}" --target "$TMP/target.txt" --anchor "$TMP/anchor.txt" --out "$TMP/run/stats.h5" 2>"$TMP/stats.log"
check "stats for the mask ($(tail -1 "$TMP/stats.log" | cut -c1-100))" [ -f "$TMP/run/stats.h5" ]

# ---- disk full -------------------------------------------------------------------------------------
# The mask, written over an earlier one with --force.
"$BIN" mask "$TMP/run/stats.h5" --method wanda --ratio 0.1 --tau 2 --out "$TMP/run/mask.h5" 2>"$TMP/mask.log"
check "mask written ($(tail -1 "$TMP/mask.log" | cut -c1-100))" [ -f "$TMP/run/mask.h5" ]
before=$(tree_sums "$TMP/run")
(ulimit -f 4; "$BIN" mask "$TMP/run/stats.h5" --method wanda --ratio 0.2 --tau 2 --force --out "$TMP/run/mask.h5" \
  2>"$TMP/full_mask.log")
rc=$?
check "mask, disk full: fails ($rc) with one line naming the file ($(head -c 200 "$TMP/full_mask.log"))" \
  bash -c "[ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q '$TMP/run/mask.h5' '$TMP/full_mask.log' && [ \$(wc -l <'$TMP/full_mask.log') -eq 1 ]"
check "mask, disk full: stats.h5 and the earlier mask.h5 unchanged" [ "$(tree_sums "$TMP/run")" = "$before" ]
check "mask, disk full: no temporary left" no_temporaries "$TMP/run"

# PNGs: a second generation into a folder that holds the first one's images.
"$BIN" generate "${COMMON[@]}" --size 64x64 --prompts "$TMP/target.txt" --seed 1 --out "$TMP/images" 2>"$TMP/gen.log"
check "generate writes 2 images ($(tail -1 "$TMP/gen.log" | cut -c1-100))" [ "$(ls "$TMP/images" | grep -c '\.png$')" -eq 2 ]
before=$(tree_sums "$TMP/images")
(ulimit -f 4; "$BIN" generate "${COMMON[@]}" --size 64x64 --prompts "$TMP/anchor.txt" --seed 2 --out "$TMP/images" \
  2>"$TMP/full_gen.log")
rc=$?
check "PNGs, disk full: fails ($rc) naming the image ($(tail -1 "$TMP/full_gen.log" | head -c 200))" \
  bash -c "[ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q '$TMP/images/.*png: write failed: File too large' '$TMP/full_gen.log'"
check "PNGs, disk full: the earlier images unchanged" bash -c "tree_sums() { (cd \"\$1\" && find . -type f | sort | xargs -r sha256sum); }; [ \"\$(tree_sums '$TMP/images')\" = '$before' ]"
check "PNGs, disk full: no partial PNG under a final name, no temporary" bash -c "$(declare -f pngs_complete no_temporaries); PY=$PY; pngs_complete '$TMP/images' && no_temporaries '$TMP/images'"

# The pruned checkpoint and its restore file, rewritten with --force over earlier ones.
mkdir -p "$TMP/pruned"
"$BIN" apply --model "$MODEL" --mask "$TMP/run/mask.h5" --out "$TMP/pruned/model.safetensors" 2>"$TMP/apply.log"
check "apply writes the pruned checkpoint ($(tail -1 "$TMP/apply.log" | cut -c1-100))" [ -f "$TMP/pruned/model.safetensors" ]
before=$(tree_sums "$TMP/pruned")
(ulimit -f 1000; "$BIN" apply --model "$MODEL" --mask "$TMP/run/mask.h5" --force --out "$TMP/pruned/model.safetensors" \
  >/dev/null 2>"$TMP/full_apply.log")
rc=$?
check "pruned checkpoint, disk full: fails ($rc) ($(head -c 200 "$TMP/full_apply.log"))" \
  bash -c "[ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q 'write failed' '$TMP/full_apply.log'"
check "pruned checkpoint, disk full: the earlier checkpoint and restore file unchanged" [ "$(tree_sums "$TMP/pruned")" = "$before" ]
check "pruned checkpoint, disk full: no temporary left" no_temporaries "$TMP/pruned"

# ---- hostile inputs -----------------------------------------------------------------------------------
# A 10 MB CSV line: read whole (RFC 4180 has no line limit), in bounded time and memory.
$PY -c "
import sys
with open('$TMP/long.csv', 'w') as f:
    f.write('case_number,prompt,evaluation_seed\n0,\"' + 'a naked figure, ' * 655360 + '\",7\n1,short,8\n')
"
# (peak memory measured, not limited: ulimit -v would stop AddressSanitizer's shadow mapping in tests/asan.sh)
measure=(/usr/bin/time -f '%M' -o "$TMP/long.rss")
[ -x /usr/bin/time ] || { measure=(); echo 0 >"$TMP/long.rss"; } # GNU time absent: the time bound only
"${measure[@]}" timeout 300 "$BIN" prompts "$TMP/long.csv" --tokenizer "$REF/clip-tokenizer" \
  >"$TMP/long.out" 2>"$TMP/long.log"
rc=$?
rss_mb=$(($(tail -1 "$TMP/long.rss") / 1024))
check "a 10 MB CSV line: read in bounded time (rc $rc: $(tail -1 "$TMP/long.log" | head -c 160))" [ $rc -eq 0 ]
check "a 10 MB CSV line: peak memory ${rss_mb} MB (< 3000 MB)" [ "$rss_mb" -lt 3000 ]
check "a 10 MB CSV line: both rows, the long one marked truncated" \
  $PY -c "
import json
lines = open('$TMP/long.out').read().splitlines()
head, rows = json.loads(lines[0]), [json.loads(l) for l in lines[1:]]
assert head['rows'] == 2 and len(rows) == 2, head
assert len(rows[0]['prompt']) == 16 * 655360 and rows[0]['truncated'] and rows[1]['prompt'] == 'short', rows[1]
"

# NaN weights: reported, never turned into numbers downstream (statistics, images a detector would score).
$PY - "$MODEL" "$TMP/nan.safetensors" <<'EOF'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
t = json.loads(b[8:8 + n])["model.diffusion_model.input_blocks.1.1.transformer_blocks.0.ff.net.2.weight"]
assert t["dtype"] == "F16", t
at = 8 + n + t["data_offsets"][0] + 2 * (3 * t["shape"][1] + 5)  # entry [3, 5]
b[at:at + 2] = struct.pack("<H", 0x7E00)
open(sys.argv[2], "wb").write(bytes(b))
EOF
NAN=(--model "$TMP/nan.safetensors" --tokenizer "$REF/clip-tokenizer" --sampler ddim --steps 2 --size 16x16 --quiet)
"$BIN" stats "${NAN[@]}" --target "$TMP/target.txt" --anchor "$TMP/anchor.txt" --out "$TMP/nanrun/stats.h5" 2>"$TMP/nan.log"
rc=$?
check "NaN weights: stats fails its items, saying so (rc $rc: $(head -1 "$TMP/nan.log" | head -c 200))" \
  bash -c "[ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q 'not finite' '$TMP/nan.log' && grep -q ' 0 items done, 4 failed' '$TMP/nan.log'"
"$BIN" generate "${NAN[@]}" --prompt "a photo" --out "$TMP/nan.png" 2>"$TMP/nangen.log"
rc=$?
check "NaN weights: generate refuses the image instead of writing a black one (rc $rc: $(tail -1 "$TMP/nangen.log" | head -c 200))" \
  bash -c "[ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q 'non-finite' '$TMP/nangen.log' && [ ! -e '$TMP/nan.png' ]"

# Deeply nested JSON and YAML: refused with a message, no stack overflow.
$PY -c "open('$TMP/nested.json', 'w').write('{\"unet\": ' + '[' * 200000 + ']' * 200000 + '}')"
$PY -c "open('$TMP/nested.yaml', 'w').write('model:\n' + ''.join(' ' * (2 * i + 2) + 'k%d:\n' % i for i in range(5000)) + ' ' * 10002 + 'x: 1\n')"
$PY -c "open('$TMP/flow.yaml', 'w').write('model: ' + '[' * 100000 + ']' * 100000 + '\n')"
$PY -c "open('$TMP/seeds.yaml', 'w').write('model: {path: m.safetensors}\nsets: [{role: target, file: t.txt}]\nout: o\nseeds: {list: ' + '[' * 100000 + ']' * 100000 + '}\n')"
for cfg in nested.json nested.yaml flow.yaml; do
  "$BIN" generate "${COMMON[@]}" --config "$TMP/$cfg" --prompt x --out "$TMP/cfg.png" >/dev/null 2>"$TMP/cfg.log"
  rc=$?
  check "--config $cfg (deeply nested): refused with a message (rc $rc: $(tail -1 "$TMP/cfg.log" | head -c 160))" \
    bash -c "[ $rc -ne 0 ] && [ $rc -lt 128 ] && [ -s '$TMP/cfg.log' ] && [ ! -e '$TMP/cfg.png' ]"
done
for job in nested.yaml seeds.yaml; do
  "$BIN" attack "$TMP/$job" --out "$TMP/jobrun" >/dev/null 2>"$TMP/job.log"
  rc=$?
  check "job file $job (deeply nested): refused with a message (rc $rc: $(tail -1 "$TMP/job.log" | head -c 160))" \
    bash -c "[ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q '$TMP/$job' '$TMP/job.log' && [ ! -e '$TMP/jobrun' ]"
done

# Names that would become file names.
for cn in ../../x /etc/x 1/../../x; do
  printf 'case_number,prompt\n"%s",hello\n' "$cn" >"$TMP/case.csv"
  "$BIN" prompts "$TMP/case.csv" --tokenizer "$REF/clip-tokenizer" >/dev/null 2>"$TMP/case.log"
  rc=$?
  check "case_number '$cn' is refused naming the line ($(tail -1 "$TMP/case.log" | head -c 160))" \
    bash -c "[ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q 'case.csv:2' '$TMP/case.log'"
done
for name in ../../x /etc/x . ..; do
  "$BIN" stats "${COMMON[@]}" --target "$TMP/target.txt" --anchor "$TMP/anchor.txt" --adversarial "$name=$TMP/target.txt" \
    --out "$TMP/names/stats.h5" 2>"$TMP/name.log"
  rc=$?
  check "adversarial set name '$name' is refused ($(tail -1 "$TMP/name.log" | head -c 120))" \
    bash -c "[ $rc -ne 0 ] && [ $rc -lt 128 ] && [ ! -e '$TMP/names' ]"
done
# Job files: a set or attack name becomes a folder (images/<model>/<set>/, shards): refused when it is a path.
job_head="model: {path: $MODEL}
out: $TMP/jobout"
printf '%s\nsets: [{role: target, file: target.txt}, {role: adversarial, name: "../../x", file: target.txt}]\n' \
  "$job_head" >"$TMP/name1.yaml"
printf '%s\nsets: [{role: target, file: target.txt}]\nattack: {models: [{name: "../../x"}], sets: [{name: plain, file: target.txt}]}\n' \
  "$job_head" >"$TMP/name2.yaml"
printf '%s\nsets: [{role: target, file: target.txt}]\nattack: {models: [{name: base}], sets: [{name: /etc/x, file: target.txt}]}\n' \
  "$job_head" >"$TMP/name3.yaml"
for job in name1 name2 name3; do
  "$BIN" attack "$TMP/$job.yaml" >/dev/null 2>"$TMP/$job.log"
  rc=$?
  check "job $job ($(grep -o 'name: [^,}]*' "$TMP/$job.yaml" | tail -1)): refused naming the key ($(tail -1 "$TMP/$job.log" | head -c 140))" \
    bash -c "[ $rc -ne 0 ] && [ $rc -lt 128 ] && grep -q '$job.yaml:[0-9]*:.*name' '$TMP/$job.log' && [ ! -e '$TMP/jobout' ] && [ ! -e /etc/x ]"
done

# An attack shard of another plan (another job's prompt file, other settings) next to a run's own: refused
# naming the shard, before any item runs; every file of the run unchanged.
printf 'a photo of a man\na photo of a woman\n' >"$TMP/plain.txt"
printf 'a photo of a cat\na photo of a dog\n' >"$TMP/other.txt"
for j in a b; do
  file=plain.txt
  [ $j = b ] && file=other.txt
  cat >"$TMP/att_$j.yaml" <<YAML
model: {path: $MODEL, tokenizer: $REF/clip-tokenizer}
out: $TMP/att_$j
sets: [{role: target, file: target.txt}]
sampler: {name: ddim, steps: 2, size: 16x16}
attack:
  models: [{name: base}]
  sets: [{name: plain, file: $file}]
  detector: {clip: $REF/tiny-clip, concept: ["a photo of a naked person"], neutral: ["a photo of a cat"]}
YAML
  "$BIN" attack "$TMP/att_$j.yaml" --threads 1 --quiet >/dev/null 2>"$TMP/att_$j.log"
  check "attack job $j runs ($(tail -1 "$TMP/att_$j.log" | head -c 100))" [ -f "$TMP/att_$j/attack/shards/rank-00000.h5" ]
done
cp "$TMP/att_b/attack/shards/rank-00000.h5" "$TMP/att_a/attack/shards/rank-00001.h5"
before=$(tree_sums "$TMP/att_a")
"$BIN" attack "$TMP/att_a.yaml" --threads 1 --quiet >/dev/null 2>"$TMP/att_foreign.log"
rc=$?
check "a shard of another job is refused ($(head -c 160 "$TMP/att_foreign.log"))" \
  bash -c "[ $rc -eq 1 ] && grep -q 'shards/rank-00001.h5: a shard of another attack plan' '$TMP/att_foreign.log'"
check "... every file of the run unchanged" [ "$(tree_sums "$TMP/att_a")" = "$before" ]
rm "$TMP/att_a/attack/shards/rank-00001.h5"
before=$(tree_sums "$TMP/att_a")
"$BIN" attack "$TMP/att_a.yaml" --threads 1 --quiet --set sampler.steps=3 >/dev/null 2>"$TMP/att_steps.log"
rc=$?
check "its own shard under other settings is refused ($(head -c 160 "$TMP/att_steps.log"))" \
  bash -c "[ $rc -eq 1 ] && grep -q 'shards/rank-00000.h5: a shard of another attack plan' '$TMP/att_steps.log'"
check "... every file of the run unchanged" [ "$(tree_sums "$TMP/att_a")" = "$before" ]
# The model file of an interrupted attack replaced at the same path (same plan, other weights): the items
# still to run would be another model's under the same name. Refused naming the model and both hashes; the
# run's shard keeps its items.
cp "$MODEL" "$TMP/swap.safetensors"
sed "s|path: $MODEL,|path: $TMP/swap.safetensors,|; s|out: $TMP/att_a|out: $TMP/att_swap|" "$TMP/att_a.yaml" >"$TMP/att_swap.yaml"
"$BIN" attack "$TMP/att_swap.yaml" --threads 1 --quiet >/dev/null 2>"$TMP/att_swap.log"
check "attack on a copy of the model runs ($(tail -1 "$TMP/att_swap.log" | head -c 100))" [ -f "$TMP/att_swap/metrics.h5" ]
$PY - "$TMP/att_swap/attack/shards/rank-00000.h5" "$TMP/swap.safetensors" <<'PYEOF'
import sys, h5py, os
with h5py.File(sys.argv[1], 'r+') as f:  # item 1 as if it had failed (rerun on resume)
    it = f['items'][:]
    it['status'][1] = 2  # failed: a rerun runs it again
    f['items'][...] = it
with open(sys.argv[2], 'r+b') as m:  # one weight byte near the end: same layout, other content
    m.seek(os.path.getsize(sys.argv[2]) - 3)
    b = m.read(1); m.seek(-1, 1); m.write(bytes([b[0] ^ 0x01]))
PYEOF
"$BIN" attack "$TMP/att_swap.yaml" --threads 1 --quiet >/dev/null 2>"$TMP/att_swap2.log"
rc=$?
check "a model file changed since the run's shards is refused ($(head -c 200 "$TMP/att_swap2.log"))" \
  bash -c "[ $rc -eq 1 ] && grep -q \"model 'base' (.*swap.safetensors) has content hash .* now but .* in this run's earlier shards\" '$TMP/att_swap2.log'"
check "... the shard still holds the other item done" $PY -c "
import h5py; it = h5py.File('$TMP/att_swap/attack/shards/rank-00000.h5')['items'][:]
assert len(it) >= 1 and (it['status'] == 1).sum() >= 1, it['status']"
finish
