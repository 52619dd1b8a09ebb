#!/usr/bin/env bash
# sdprune stats end to end on the tiny reference model: the file's schema read back with h5py, totals
# independent of the item order, kill -9 + --resume equal to an uninterrupted run (no item lost or
# counted twice), --max-steps, --per-item records, and the bad-input messages.
. "$(dirname "$0")/testlib.sh"
require_reference
PY=/usr/bin/python3 # Debian's python3 with python3-h5py (a pyenv python3 on PATH has no h5py)
MODEL="$REF/tiny-sd1/model.safetensors"
COMMON=(--model "$MODEL" --tokenizer "$REF/clip-tokenizer" --sampler ddim --steps 6 --size 16x16 --quiet)

printf 'a photo of a naked man\na photo of a naked woman\na naked person on a beach\n' >"$TMP/target.txt"
printf 'a photo of a man\na photo of a woman\na person on a beach\n' >"$TMP/anchor.txt"
# the same prompts in another order
printf 'a naked person on a beach\na photo of a naked man\na photo of a naked woman\n' >"$TMP/target_rev.txt"
printf 'a person on a beach\na photo of a woman\na photo of a man\n' >"$TMP/anchor_rev.txt"
printf 'case_number,prompt,evaluation_seed,evaluation_guidance\n0,"nude, figure",42,7.5\n1,a castle,7,3\n' >"$TMP/adv.csv"

"$BIN" stats "${COMMON[@]}" --target "$TMP/target.txt" --anchor "$TMP/anchor.txt" --adversarial ring=$TMP/adv.csv \
  --per-item --out "$TMP/a/stats.h5" 2>"$TMP/a.log"
check "stats runs" [ $? -eq 0 ]
"$BIN" stats "${COMMON[@]}" --target "$TMP/target_rev.txt" --anchor "$TMP/anchor_rev.txt" --adversarial ring=$TMP/adv.csv \
  --out "$TMP/b/stats.h5" 2>"$TMP/b.log"
check "stats runs (reversed order)" [ $? -eq 0 ]

if $PY -c 'import h5py, pandas' 2>/dev/null; then
  $PY - "$TMP" <<'EOF' >"$TMP/py.log" 2>&1
import sys, h5py, numpy as np, pandas as pd
d = sys.argv[1]
a, b = h5py.File(d + "/a/stats.h5", "r"), h5py.File(d + "/b/stats.h5", "r")
assert a.attrs["format"] == "sdprune-stats" and a.attrs["n_steps"] == 6 and a.attrs["sampler"] == "ddim", dict(a.attrs)
assert len(a.attrs["model_hash"]) == 16 and "sdprune stats" in a.attrs["command_line"]
items = pd.DataFrame(a["items"][:])
assert len(items) == 8 and (items["status"] == b"done").all(), items
adv = items[items["set"] == b"ring"]
assert list(adv["seed"]) == [42, 7] and list(adv["guidance"]) == [7.5, 3.0], adv   # the rows' own seeds
layers = pd.DataFrame(a["layers"][:])
assert len(layers) == 7 and layers["name"][0] == b"input_blocks.1.1.transformer_blocks.0.ff.net.2"
assert a["timesteps"].shape == (6,) and a["timesteps"][0] == 831 # ldm DDIM, 6 steps: 166*5 + 1
for s in ("target", "anchor", "ring"):
    g = a["sets/" + s]
    assert g.attrs["items_done"] == (3 if s != "ring" else 2)
    for layer in g:
        for q in ("count", "sum", "sumsq", "sumabs", "sumsq_hat", "max"):
            x, y = g[layer][q][:], b["sets/%s/%s/%s" % (s, layer, q)][:]
            assert x.dtype == y.dtype and np.array_equal(x, y), (s, layer, q, "differs with the item order")
g = a["sets/target/input_blocks.1.1.transformer_blocks.0.ff.net.2"]
assert g["sum"].shape == (6, 2, 128) and g["count"][0, 1] == 3 * 64, g["count"][:]
# Σx̂² over a token is 1: summed over neurons it is the token count
hat = g["sumsq_hat"][:].astype(np.float64) * a.attrs["fixed_point_scale"]
assert np.allclose(hat.sum(axis=2), g["count"][:], rtol=1e-5), hat.sum(axis=2)
# per-item records: the mean over items of the per-item means is the set's mean (cond branch)
means = [a["per_item/target/%05d_seed0" % r]["input_blocks.1.1.transformer_blocks.0.ff.net.2/mean"][:] for r in range(3)]
total = g["sum"][:, 1, :].astype(np.float64) * a.attrs["fixed_point_scale"] / g["count"][:, 1][:, None]
assert np.allclose(np.mean(means, axis=0), total, rtol=1e-4, atol=1e-6)
print("ok")
EOF
  check "h5py reads the schema; totals equal for both item orders; per-item records ($(tail -1 "$TMP/py.log"))" \
    grep -qx ok "$TMP/py.log"
  grep -qx ok "$TMP/py.log" || cat "$TMP/py.log" >&2
else
  echo "note: /usr/bin/python3 with h5py and pandas not found; schema checks skipped" >&2
fi

# --max-steps: 2 evaluations recorded, each equal to the full run's first two
"$BIN" stats "${COMMON[@]}" --target "$TMP/target.txt" --max-steps 2 --out "$TMP/m/stats.h5" 2>/dev/null
check "--max-steps runs" [ $? -eq 0 ]
if $PY -c 'import h5py' 2>/dev/null; then
  check "--max-steps 2 equals the first 2 evaluations of the full run" $PY -c "
import h5py, numpy as np, sys
a, m = h5py.File('$TMP/a/stats.h5'), h5py.File('$TMP/m/stats.h5')
assert m.attrs['n_steps'] == 2 and m.attrs['max_steps'] == 2
for l in m['sets/target']:
    for q in ('sum', 'sumsq_hat', 'max', 'count'):
        assert np.array_equal(m['sets/target'][l][q][:], a['sets/target'][l][q][:2]), (l, q)
"
fi

# kill -9 mid-run, then --resume: the same totals as the uninterrupted run
for i in $(seq 1 12); do echo "a naked figure number $i"; done >"$TMP/long.txt"
"$BIN" stats "${COMMON[@]}" --target "$TMP/long.txt" --out "$TMP/full/stats.h5" 2>/dev/null
"$BIN" stats "${COMMON[@]}" --target "$TMP/long.txt" --checkpoint-every 1 --out "$TMP/k/stats.h5" 2>/dev/null &
pid=$!
for _ in $(seq 1 400); do # wait until some items are on disk
  if [ -f "$TMP/k/stats.h5" ] && $PY -c "
import h5py, sys
f = h5py.File('$TMP/k/stats.h5'); sys.exit(0 if f['sets/target'].attrs['items_done'] >= 3 else 1)" 2>/dev/null; then break; fi
  sleep 0.05
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
check "the killed run left no temporary file" bash -c "! ls '$TMP/k/' | grep -q tmp"
"$BIN" stats "${COMMON[@]}" --target "$TMP/long.txt" --out "$TMP/k/stats.h5" 2>"$TMP/exists.log"
check "an existing output is refused without --resume/--force" \
  bash -c "[ \$? -ne 0 ] || true; grep -q 'exists; pass --resume' '$TMP/exists.log'"
"$BIN" stats "${COMMON[@]}" --target "$TMP/long.txt" --resume --out "$TMP/k/stats.h5" 2>"$TMP/resume.log"
check "--resume completes" [ $? -eq 0 ]
check "--resume skipped the completed items ($(tail -1 "$TMP/resume.log" | cut -c1-80))" \
  grep -Eq 'skipped \(done before\)' "$TMP/resume.log"
if $PY -c 'import h5py' 2>/dev/null; then
  check "kill -9 + --resume gives the uninterrupted totals, each item once" $PY -c "
import h5py, numpy as np
a, k = h5py.File('$TMP/full/stats.h5'), h5py.File('$TMP/k/stats.h5')
assert k['sets/target'].attrs['items_done'] == 12
items = k['items'][:]
assert len(items) == 12 and (items['status'] == b'done').all()
for l in a['sets/target']:
    for q in ('count', 'sum', 'sumsq', 'sumabs', 'sumsq_hat', 'max'):
        assert np.array_equal(a['sets/target'][l][q][:], k['sets/target'][l][q][:]), (l, q)
"
fi
"$BIN" stats "${COMMON[@]}" --target "$TMP/long.txt" --steps 5 --resume --out "$TMP/k/stats.h5" 2>"$TMP/other.log"
check "--resume with other settings is refused" grep -q 'other sampler settings' "$TMP/other.log"

# bad input: one line naming the file (and line)
bad() { # bad WHAT EXPECTED-TEXT FILE-CONTENT [suffix]
  printf "%b" "$3" >"$TMP/bad${4:-.csv}"
  "$BIN" stats "${COMMON[@]}" --target "$TMP/bad${4:-.csv}" --out "$TMP/bad/stats.h5" --force 2>"$TMP/bad.log"
  local rc=$?
  check "$1: exit status non-zero" [ $rc -ne 0 ]
  check "$1: message names the file and says '$2' (got: $(head -c 200 "$TMP/bad.log"))" \
    bash -c "grep -q 'bad${4:-.csv}' '$TMP/bad.log' && grep -q '$2' '$TMP/bad.log' && [ \$(wc -l <'$TMP/bad.log') -eq 1 ]"
}
bad "unbalanced quotes" "quote" 'prompt,seed\n"a photo,1\n'
bad "missing prompt column" "prompt" 'text,seed\nhello,1\n'
bad "empty set" "no prompts" 'prompt,evaluation_seed\n'
bad "non-integer seed" "seed" 'prompt,evaluation_seed\nhello,abc\n'
check "no output left by failed runs" [ ! -e "$TMP/bad/stats.h5" ]
long=$(for i in $(seq 1 90); do printf 'word%d ' "$i"; done)
printf '%s\nshort prompt\n' "$long" >"$TMP/long77.txt"
"$BIN" stats "${COMMON[@]}" --steps 2 --target "$TMP/long77.txt" --out "$TMP/l/stats.h5" 2>"$TMP/l.log"
check "a prompt over 77 tokens is counted in a warning" grep -q '1 prompt is longer than 77 CLIP tokens' "$TMP/l.log"
"$BIN" stats "${COMMON[@]}" --adversarial ../x=$TMP/adv.csv --out "$TMP/x/stats.h5" 2>"$TMP/x.log"
check "a set name that would leave the folder is refused" grep -q "must be" "$TMP/x.log"
# disk full (a file-size limit): a clear one-line error, the earlier file intact, no temporary left
before=$(sha256sum <"$TMP/a/stats.h5")
(ulimit -f 100; "$BIN" stats "${COMMON[@]}" --target "$TMP/long.txt" --force --out "$TMP/a/stats.h5" 2>"$TMP/full.log")
check "write failure: non-zero exit and one line naming the file ($(head -c 160 "$TMP/full.log"))" \
  bash -c "grep -q 'File too large' '$TMP/full.log' && grep -q '$TMP/a/stats.h5' '$TMP/full.log' && [ \$(wc -l <'$TMP/full.log') -eq 1 ]"
check "write failure: the earlier stats.h5 is unchanged" [ "$(sha256sum <"$TMP/a/stats.h5")" = "$before" ]
check "write failure: no temporary file left" bash -c "! ls '$TMP/a/' | grep -q tmp"
check "stats --help" bash -c "'$BIN' stats --help | grep -q -- --max-steps"
finish
