#!/usr/bin/env bash
# sdprune bench on a synthesised tiny model (table, hooks, last line), its bad input, and the float32
# weight cache: written once, then mapped; verify still passes through it; a broken or unusable cache
# falls back with a warning.
source "$(dirname "$0")/testlib.sh"

"$BIN" bench --arch tiny-sd1 --latent 16x16,8x16 --repeat 2 --hooks --profile --cache-dir "$TMP/bench" > "$TMP/bench.txt" 2>&1
check "bench: exit 0" test $? -eq 0
check "bench: last line sgemm_fraction=0.NN" bash -c "tail -1 '$TMP/bench.txt' | grep -Eq '^sgemm_fraction=[0-9]+\.[0-9]{2}$'"
check "bench: a row per latent shape" bash -c "grep -Eq '^16x16 +2 ' '$TMP/bench.txt' && grep -Eq '^8x16 +2 ' '$TMP/bench.txt'"
check "bench: hook overhead reported" grep -q "with FFN statistics hooks" "$TMP/bench.txt"
check "bench: profile reported" grep -q "profile per evaluation: conv" "$TMP/bench.txt"
check "bench: second rank measured" grep -q "second rank on this node: adds" "$TMP/bench.txt"
check "bench: synthesised model kept" test -f "$TMP/bench/tiny-sd1-f16-seed0.safetensors"
check "bench: weight cache written" bash -c "ls '$TMP/bench'/sdprune-*.f32.safetensors >/dev/null"
"$BIN" bench --arch tiny-sd1 --threads 0 > /dev/null 2> "$TMP/err"; rc=$?
check "--threads 0: usage error (got $rc)" test $rc -eq 2
check "--threads 0: message" grep -q -- "--threads must be" "$TMP/err"
"$BIN" bench --arch tiny-sd1 --cache-dir /proc/sdprune-no > /dev/null 2> "$TMP/err"; rc=$?
check "unusable cache dir: exit 1" test $rc -eq 1
check "unusable cache dir: one line naming it" bash -c "test \$(wc -l < '$TMP/err') -eq 1 && grep -q /proc/sdprune-no '$TMP/err'"
"$BIN" bench --arch nope --cache-dir "$TMP/b2" > /dev/null 2> "$TMP/err"
check "unknown arch: fails" test $? -ne 0
"$BIN" bench --arch tiny-sd1 --latent 16x16 --repeat 1 --threads 64 --cache-dir "$TMP/bench" > /dev/null 2> "$TMP/err"
check "more threads than cores: runs with a warning" bash -c "grep -q 'cores online' '$TMP/err'"

if [ -d "$REF/tiny-sd1" ]; then
  V=(--model "$REF/tiny-sd1/model.safetensors" --vectors "$REF/tiny-sd1/vectors.safetensors" --tokenizer "$REF/clip-tokenizer" --no-clip)
  "$BIN" verify "${V[@]}" --weights-cache "$TMP/wc" > "$TMP/v1.txt" 2>&1
  check "verify writing the cache: all pass" grep -q "^verify: 45 passed, 0 failed" "$TMP/v1.txt"
  cache=$(ls "$TMP"/wc/sdprune-*.f32.safetensors 2>/dev/null | head -1)
  check "cache file exists" test -n "$cache"
  "$BIN" verify "${V[@]}" --weights-cache "$TMP/wc" > "$TMP/v2.txt" 2>&1
  check "verify through the cache: all pass, no warning" bash -c "grep -q '^verify: 45 passed, 0 failed' '$TMP/v2.txt' && ! grep -q warning '$TMP/v2.txt'"
  head -c 1000 "$cache" > "$TMP/trunc" && cp "$TMP/trunc" "$cache"
  "$BIN" verify "${V[@]}" --weights-cache "$TMP/wc" > "$TMP/v3.txt" 2>&1
  check "truncated cache: warning and fallback" bash -c "grep -q 'warning: weight cache not used' '$TMP/v3.txt' && grep -q '^verify: 45 passed, 0 failed' '$TMP/v3.txt'"
  SDPRUNE_WEIGHTS_CACHE=/proc/sdprune-no "$BIN" verify "${V[@]}" > "$TMP/v4.txt" 2>&1
  check "unwritable cache dir: warning and fallback" bash -c "grep -q 'cannot create' '$TMP/v4.txt' && grep -q '^verify: 45 passed, 0 failed' '$TMP/v4.txt'"
elif [ "${CI:-}" = true ]; then
  echo "reference data missing under CI" >&2; exit 1
fi
finish
