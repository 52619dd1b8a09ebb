#!/usr/bin/env bash
# `sdprune synth` on the command line: --help, a tiny-sd1 file whose names and shapes equal the reference
# file's (read with Python's json from the safetensors headers when python3 is there), the summary line,
# same seed => same bytes, and the one-line errors (unknown arch, bad dtype, bad seed, missing or
# unwritable output directory) with a non-zero status and no file left behind.
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
trap 'chmod -R u+w "$TMP"; rm -rf "$TMP"' EXIT
ok() { passed=$((passed + 1)); }
bad() { failed=$((failed + 1)); echo "FAIL: $*" >&2; }

# fails CMD...: the command exits non-zero with exactly one line on stderr containing $WANT
fails() {
  "$BIN" synth "$@" >"$TMP/out" 2>"$TMP/err"
  local rc=$?
  if [ $rc -ne 0 ] && [ "$(wc -l <"$TMP/err")" -eq 1 ] && grep -qF -- "$WANT" "$TMP/err"; then ok; else
    bad "synth $* -> rc $rc, stderr: $(cat "$TMP/err")"; fi
}

"$BIN" synth --help >"$TMP/out" 2>&1 && grep -q -- "--arch" "$TMP/out" && grep -q "tiny-sd1|sd15|sd21" "$TMP/out" && ok ||
  bad "--help"

if "$BIN" synth --arch tiny-sd1 --seed 5 --out "$TMP/a.safetensors" 2>"$TMP/err"; then ok; else bad "write: $(cat "$TMP/err")"; fi
# 6640798: the data bytes of the reference file's non-EMA tensors (its VAE is BF16, the same size as F16)
grep -q "synth: wrote $TMP/a.safetensors: arch tiny-sd1, dtype f16, seed 5, 450 tensors, 6640798 data bytes" "$TMP/err" &&
  ok || bad "summary line: $(tail -1 "$TMP/err")"
grep -q "tensor 450/450" "$TMP/err" && ok || bad "no progress lines"
"$BIN" synth --arch tiny-sd1 --seed 5 --quiet --out "$TMP/b.safetensors" 2>"$TMP/err" && cmp -s "$TMP/a.safetensors" "$TMP/b.safetensors" &&
  ok || bad "same seed, different bytes"
[ "$(wc -l <"$TMP/err")" -eq 1 ] && ok || bad "--quiet printed $(wc -l <"$TMP/err") lines"
"$BIN" synth --arch tiny-sd1 --seed 6 --quiet --out "$TMP/c.safetensors" 2>/dev/null && ! cmp -s "$TMP/a.safetensors" "$TMP/c.safetensors" &&
  ok || bad "seeds 5 and 6 give the same bytes"
# f32: the 3,314,091 weights (6,640,798 f16 bytes less 12,000 schedule and 616 position_ids bytes, / 2) take 4 bytes
"$BIN" synth --arch tiny-sd1 --dtype f32 --quiet --out "$TMP/d.safetensors" 2>"$TMP/err" &&
  grep -q " $((4 * (6640798 - 12000 - 616) / 2 + 12000 + 616)) data bytes" "$TMP/err" &&
  ok || bad "f32: $(cat "$TMP/err")"

if command -v python3 >/dev/null; then
  python3 - "$TMP/a.safetensors" "$REF/tiny-sd1/model.safetensors" "$TMP/d.safetensors" <<'EOF' && ok || bad "header comparison with the reference"
import json, struct, sys
def header(p):
    with open(p, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
    return h.pop("__metadata__", {}), h
md, ours = header(sys.argv[1])
_, ref = header(sys.argv[2])
_, f32 = header(sys.argv[3])
ref = {k: v for k, v in ref.items() if not k.startswith("model_ema.")}
assert set(ours) == set(ref), sorted(set(ours) ^ set(ref))[:5]
for k in ref:
    assert ours[k]["shape"] == ref[k]["shape"], k
    want = ref[k]["dtype"] if k.endswith("position_ids") or "." not in k else "F16"
    assert ours[k]["dtype"] == want, (k, ours[k]["dtype"])
    assert f32[k]["dtype"] == (want if want != "F16" else "F32"), k
cfg = json.loads(md["config"])
assert cfg["kind"] == "tiny-sd1" and cfg["unet"]["num_heads"] == 2 and cfg["text"]["hidden_size"] == 32
assert md["synth_seed"] == "5" and md["synth_arch"] == "tiny-sd1" and md["sdprune_version"]
print("python: %d tensors, names/shapes/dtypes as the reference" % len(ours))
EOF
fi

WANT="unknown architecture 'sd3' (expected tiny-sd1|sd15|sd21|tiny-clip)" fails --arch sd3 --out "$TMP/x.safetensors"
WANT="unknown --dtype 'bf8' (expected f16 or f32)" fails --arch tiny-sd1 --dtype bf8 --out "$TMP/x.safetensors"
WANT="--seed must be an integer" fails --arch tiny-sd1 --seed -3 --out "$TMP/x.safetensors"
WANT="--arch is required" fails --out "$TMP/x.safetensors"
WANT="--out is required" fails --arch tiny-sd1
WANT="unknown option '--bogus'" fails --arch tiny-sd1 --bogus --out "$TMP/x.safetensors"
WANT="output directory $TMP/nodir does not exist" fails --arch tiny-sd1 --out "$TMP/nodir/x.safetensors"
WANT="is a directory" fails --arch tiny-sd1 --out "$TMP"
mkdir "$TMP/ro" && chmod a-w "$TMP/ro"
if [ "$(id -u)" -ne 0 ]; then
  WANT="output directory $TMP/ro is not writable" fails --arch tiny-sd1 --out "$TMP/ro/x.safetensors"
fi
ls "$TMP" "$TMP/ro" | grep -q "x.safetensors" && bad "a file was left behind: $(ls "$TMP" "$TMP/ro")" || ok

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
