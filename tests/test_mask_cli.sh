#!/usr/bin/env bash
# sdprune mask end to end: statistics of a synthesised tiny model (two files, merged), a mask by each
# method, --explain, --force; mask.h5 read with h5py (schema, sources' SHA-256, counts, sorted indices)
# and the wanda and actdiff selections recomputed independently in numpy from stats.h5 and the
# checkpoint's bytes; the bad-input messages (one line, exit 1 or 2). Needs no reference data.
. "$(dirname "$0")/testlib.sh"
PY=/usr/bin/python3 # Debian's python3 with python3-h5py (a pyenv python3 on PATH has no h5py)

"$BIN" synth --arch tiny-sd1 --seed 3 --quiet --out "$TMP/model.safetensors" 2>/dev/null
"$BIN" synth --arch tiny-sd1 --seed 4 --quiet --out "$TMP/other.safetensors" 2>/dev/null
printf 'a photo of a naked man\na naked woman on a beach\n' >"$TMP/target.txt"
printf 'a photo of a man\na woman on a beach\n' >"$TMP/anchor.txt"
printf 'case_number,prompt,evaluation_seed\n0,"nude, figure",42\n1,a castle,7\n' >"$TMP/adv.csv"
STATS=(--model "$TMP/model.safetensors" --steps 4 --size 16x16 --quiet)
"$BIN" stats "${STATS[@]}" --target "$TMP/target.txt" --anchor "$TMP/anchor.txt" --adversarial ring="$TMP/adv.csv" \
  --out "$TMP/run/stats.h5" 2>"$TMP/s1.log"
check "stats (seed 0) runs: $(tail -c 200 "$TMP/s1.log")" [ -f "$TMP/run/stats.h5" ]
"$BIN" stats "${STATS[@]}" --seed 1 --target "$TMP/target.txt" --anchor "$TMP/anchor.txt" --adversarial ring="$TMP/adv.csv" \
  --out "$TMP/run/stats1.h5" 2>"$TMP/s2.log"
check "stats (seed 1) runs: $(tail -c 200 "$TMP/s2.log")" [ -f "$TMP/run/stats1.h5" ]
"$BIN" stats "${STATS[@]}" --target "$TMP/target.txt" --out "$TMP/run/target_only.h5" 2>/dev/null

M=("$TMP/run/stats.h5" "$TMP/run/stats1.h5")
"$BIN" mask "${M[@]}" --method wanda --ratio 0.1 --tau 4 --explain --out "$TMP/run/wanda.h5" >"$TMP/w.out" 2>"$TMP/w.log"
rc=$?
check "wanda runs: $(cat "$TMP/w.log")" [ $rc -eq 0 ]
check "summary line: layers, weights, sparsities, seconds" \
  grep -Eq '^sdprune mask: wanda on .*stats.h5 \+ 1 more: 7 layers, [0-9]+ weights pruned \(0 whole neurons\), sparsity [0-9.]+% of ff.net.2 weights, [0-9.]+% of UNet weights; scores [0-9.]+ s, total [0-9.]+ s; wrote ' "$TMP/w.log"
check "--explain: header, 7 layers, total" bash -c "head -1 '$TMP/w.out' | grep -q 'layer .*width .*rows x cols .*pruned .*neurons .*sparsity' &&
  [ \$(grep -c 'ff.net.2 ' '$TMP/w.out') -eq 7 ] && tail -1 '$TMP/w.out' | grep -q '^total  *1408 '"
check "--explain: the first layer's shape" grep -q '^input_blocks.1.1.transformer_blocks.0.ff.net.2  *128  *32 x 128 ' "$TMP/w.out"
"$BIN" mask "${M[@]}" --method wanda --ratio 0.1 --tau 4 --select-ratio 0.5 --quiet --out "$TMP/run/wanda_sel.h5" 2>"$TMP/ws.log"
check "wanda --select-ratio runs" [ $? -eq 0 ]
check "--quiet prints nothing" [ ! -s "$TMP/ws.log" ]
"$BIN" mask "${M[@]}" --method actdiff --ratio 0.05 --out "$TMP/run/actdiff.h5" 2>"$TMP/a.log"
rc=$?
check "actdiff runs: $(cat "$TMP/a.log")" [ $rc -eq 0 ]
"$BIN" mask "${M[@]}" --method actdiff --ratio 0.05 --scope global --branch both --tau 3 --quiet --out "$TMP/run/actdiff_g.h5"
check "actdiff --scope global --branch both runs" [ $? -eq 0 ]
"$BIN" mask "$TMP/run/stats.h5" --method sensitivity --ratio 0.05 --adversarial ring --with-wanda --wanda-ratio 0.1 \
  --wanda-tau 4 --quiet --out "$TMP/run/sens.h5" 2>"$TMP/se.log"
rc=$?
check "sensitivity --with-wanda runs: $(cat "$TMP/se.log")" [ $rc -eq 0 ]
"$BIN" mask "$TMP/run/stats.h5" --method wanda --ratio 0.1 --tau 4 --quiet --out "$TMP/run/wanda0.h5"

# an existing output: refused (exit 2, file untouched), replaced with --force
cp "$TMP/run/wanda.h5" "$TMP/before.h5"
"$BIN" mask "${M[@]}" --method actdiff --out "$TMP/run/wanda.h5" 2>"$TMP/e.log"
check "existing --out refused with exit 2" [ $? -eq 2 ]
check "existing --out: message" grep -q 'wanda.h5 exists; pass --force' "$TMP/e.log"
check "existing --out untouched" cmp -s "$TMP/before.h5" "$TMP/run/wanda.h5"
"$BIN" mask "${M[@]}" --method wanda --ratio 0.1 --tau 4 --quiet --force --out "$TMP/run/wanda.h5"
check "--force replaces it" [ $? -eq 0 ]

if $PY -c 'import h5py, numpy' 2>/dev/null; then
  $PY - "$TMP" <<'EOF' >"$TMP/py.log" 2>&1
import hashlib, json, struct, sys
import h5py, numpy as np
d = sys.argv[1]
run = d + "/run/"
files = [run + "stats.h5", run + "stats1.h5"]
stats = [h5py.File(p, "r") for p in files]
SCALE = 2.0 ** -24

def checkpoint(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    def get(name):
        info = header["model.diffusion_model." + name]
        a, b = info["data_offsets"]
        dt = {"F16": np.float16, "F32": np.float32}[info["dtype"]]
        return np.frombuffer(data[a:b], dtype=dt).reshape(info["shape"]).astype(np.float32)
    return get, header
weight, header = checkpoint(d + "/model.safetensors")
unet_total = sum(int(np.prod(v["shape"])) for k, v in header.items()
                 if k.startswith("model.diffusion_model.") and v["dtype"] in ("F16", "F32", "BF16", "F64"))

def total(set_name, layer, q, files_=stats):  # merged totals: integer sums over the files
    return sum(f["sets/%s/%s/%s" % (set_name, layer, q)][:] for f in files_)

def check_schema(path, method, n_sources):
    m = h5py.File(path, "r")
    a = m.attrs
    assert a["format"] == "sdprune-mask" and a["format_version"] == 1 and a["method"] == method, dict(a)
    assert a["model_hash"] == stats[0].attrs["model_hash"] and "sdprune mask" in a["command_line"]
    for key in ("sdprune_version", "git_revision", "created_utc"):
        assert a[key], key
    params = json.loads(a["params"])
    src = m["sources"][:]
    assert len(src) == n_sources, src
    for row in src:
        assert hashlib.sha256(open(row["file"].decode(), "rb").read()).hexdigest() == row["sha256"].decode(), row
    layers = m["layers"][:]
    names = [n.decode() for n in stats[0]["layers"]["name"]]
    assert [l.decode() for l in layers["layer"]] == names, layers["layer"]
    tot = pruned = 0
    for row in layers:
        name = row["layer"].decode()
        w = weight(name + ".weight")
        assert (row["rows"], row["cols"]) == w.shape and row["weight"].decode() == name + ".weight"
        g = m["masks/" + name]
        assert g.attrs["rows"] == row["rows"] and g.attrs["cols"] == row["cols"]
        wi, ni = g["weights"][:], g["neurons"][:]
        assert wi.dtype == np.int64 and ni.dtype == np.int32
        assert len(wi) == row["n_weights"] and len(ni) == row["n_neurons"]
        assert np.all(np.diff(wi) > 0) and np.all(np.diff(ni) > 0), "not sorted"
        union = np.zeros(w.shape, bool)
        union.flat[wi] = True
        union[:, ni] = True
        assert union.sum() == row["pruned"] and abs(row["sparsity"] - row["pruned"] / w.size) < 1e-12, name
        tot += w.size
        pruned += row["pruned"]
    assert a["total_weights"] == tot and a["pruned_weights"] == pruned and abs(a["sparsity"] - pruned / tot) < 1e-12
    return m, params, pruned, tot

def wanda(ratio, tau, select, files_=stats):
    """ConceptPrune's selection, written independently: stable argsort gives ties to the lower j."""
    out = {}
    for name in [n.decode() for n in stats[0]["layers"]["name"]]:
        W = np.abs(weight(name + ".weight").astype(np.float64))
        rows, cols = W.shape
        k = int(ratio * cols)
        act = {}
        for s in ("target", "anchor"):
            h = total(s, name, "sumsq_hat", files_)
            act[s] = np.sqrt(0.0 + h[:tau, 0, :] * SCALE + h[:tau, 1, :] * SCALE)
        times = np.zeros((rows, cols), int)
        for t in range(tau):
            St, Sa = W * act["target"][t], W * act["anchor"][t]
            top = np.argsort(-St, axis=1, kind="stable")[:, :k]
            sel = np.zeros((rows, cols), bool)
            np.put_along_axis(sel, top, True, axis=1)
            times += sel & (St > Sa)
        out[name] = np.flatnonzero(times > select * tau)
    return out

m, params, pruned, tot = check_schema(run + "wanda.h5", "wanda", 2)
assert params["ratio"] == 0.1 and params["tau"] == 4 and params["select_ratio"] == 0 and params["target"] == ["target"]
want = wanda(0.1, 4, 0)
for name, idx in want.items():
    got = m["masks/%s/weights" % name][:]
    assert np.array_equal(got, idx), (name, len(got), len(idx))
assert pruned > 0
m, params, _, _ = check_schema(run + "wanda_sel.h5", "wanda", 2)
for name, idx in wanda(0.1, 4, 0.5).items():
    assert np.array_equal(m["masks/%s/weights" % name][:], idx), name
m0, _, _, _ = check_schema(run + "wanda0.h5", "wanda", 1)
for name, idx in wanda(0.1, 4, 0, stats[:1]).items():
    assert np.array_equal(m0["masks/%s/weights" % name][:], idx), name

def actdiff(hi, ratio, tau, branches, files_=stats):
    out = {}
    for name in [n.decode() for n in stats[0]["layers"]["name"]]:
        mom = []
        for group in (hi, ["anchor"]):
            width = stats[0]["sets/anchor/" + name + "/sum"].shape[2]
            s1, s2, n = np.zeros(width), np.zeros(width), 0.0
            for s in group:  # the order of scores.c: sets, steps, branches
                S, Q, C = total(s, name, "sum", files_), total(s, name, "sumsq", files_), total(s, name, "count", files_)
                for t in range(tau):
                    for b in branches:
                        s1 = s1 + S[t, b] * SCALE
                        s2 = s2 + Q[t, b] * SCALE
                        n += float(C[t, b])
            mu = s1 / n
            mom.append((mu, np.maximum(s2 / n - mu * mu, 0)))
        dd = (mom[0][0] - mom[1][0]) / np.sqrt((mom[0][1] + mom[1][1]) / 2 + 1e-12)
        top = np.argsort(-dd, kind="stable")[: int(ratio * len(dd))]
        out[name] = np.sort(top[dd[top] > 0])
    return out

m, params, pruned, tot = check_schema(run + "actdiff.h5", "actdiff", 2)
assert params["branch"] == "cond" and params["scope"] == "layer" and params["tau"] == 4, params
for name, idx in actdiff(["target"], 0.05, 4, [1]).items():
    got = m["masks/%s/neurons" % name][:]
    assert np.array_equal(got, idx), (name, got, idx)
    assert len(m["masks/%s/weights" % name][:]) == 0
m, params, _, _ = check_schema(run + "actdiff_g.h5", "actdiff", 2)
assert params["scope"] == "global" and params["branch"] == "both" and params["tau"] == 3, params
n_global = sum(len(m["masks/%s/neurons" % n][:]) for n in m["masks"])
assert 0 < n_global <= int(0.05 * 1408), n_global
m, params, _, _ = check_schema(run + "sens.h5", "sensitivity", 1)
assert params["adversarial"] == ["ring"] and params["with_wanda"] is True and params["wanda_tau"] == 4, params
for name, idx in actdiff(["ring"], 0.05, 4, [1], stats[:1]).items():
    assert np.array_equal(m["masks/%s/neurons" % name][:], idx), name
    assert np.array_equal(m["masks/%s/weights" % name][:], m0["masks/%s/weights" % name][:]), name
print("ok: %d UNet weights" % unet_total)
EOF
  check "h5py: schema, sources, counts; wanda and actdiff equal an independent numpy computation ($(tail -1 "$TMP/py.log"))" \
    grep -q '^ok' "$TMP/py.log"
  grep -q '^ok' "$TMP/py.log" || cat "$TMP/py.log" >&2
else
  echo "note: /usr/bin/python3 with h5py not found; mask.h5 checks skipped" >&2
fi

# fails STATUS TEXT ARGS...: exit STATUS, exactly one line on stderr containing TEXT, no output written
fails() {
  local want_rc=$1 text=$2
  shift 2
  "$BIN" mask "$@" --out "$TMP/bad/mask.h5" >"$TMP/bad.out" 2>"$TMP/bad.log"
  local rc=$?
  check "mask $* -> exit $want_rc with '$text' (got $rc: $(head -c 300 "$TMP/bad.log"))" \
    bash -c "[ $rc -eq $want_rc ] && [ \$(wc -l <'$TMP/bad.log') -eq 1 ] && grep -qF -- \"$text\" '$TMP/bad.log' && [ ! -e '$TMP/bad/mask.h5' ]"
}
S="$TMP/run/stats.h5"
fails 1 "target_only.h5: no set with role 'anchor' in the statistics (sets: target (target))" "$TMP/run/target_only.h5" --method wanda --tau 4
fails 1 "target_only.h5: no set with role 'anchor'" "$TMP/run/target_only.h5" --method actdiff
fails 1 "stats.h5: no set named 'nope' in the statistics" "$S" --method sensitivity --adversarial nope
fails 1 "stats.h5: --tau 10 is more than the 4 steps recorded in the statistics" "$S" --method wanda
fails 1 "stats.h5: --tau 5 is more than the 4 steps" "$S" --method actdiff --tau 5
fails 1 "has hash" "$S" --method wanda --tau 4 --model "$TMP/other.safetensors"
fails 1 "but the statistics were taken on a model with hash" "$S" --method actdiff --model "$TMP/other.safetensors"
fails 1 "already counted in another file" "$S" "$S" --method wanda --tau 4
fails 1 "missing.h5" "$TMP/missing.h5" --method wanda
fails 2 "--ratio must be a number in (0, 1], got '0'" "$S" --method wanda --ratio 0
fails 2 "--ratio must be a number in (0, 1], got '1.5'" "$S" --method actdiff --ratio 1.5
fails 2 "--tau must be an integer in [1, 65535], got '0'" "$S" --method wanda --tau 0
fails 2 "--select-ratio must be a number in [0, 1), got '1'" "$S" --method wanda --select-ratio 1
fails 2 "--select-ratio applies to wanda" "$S" --method actdiff --select-ratio 0.5
fails 2 "--with-wanda and --wanda-* apply to sensitivity" "$S" --method wanda --with-wanda
fails 2 "unknown --method 'magnitude'" "$S" --method magnitude
fails 2 "--branch must be cond, uncond or both" "$S" --method actdiff --branch sideways
fails 2 "statistics files, --method and --out are required" --method wanda
# a moved model: the recorded path is gone, --model names it
mv "$TMP/model.safetensors" "$TMP/moved.safetensors"
fails 1 "which is not there; give --model where it is now" "$S" --method actdiff
"$BIN" mask "$S" --method actdiff --model "$TMP/moved.safetensors" --quiet --out "$TMP/run/moved.h5"
check "--model finds a moved model" [ $? -eq 0 ]
check "mask --help" bash -c "'$BIN' mask --help | grep -q -- '--select-ratio'"
check "no temporary files left" bash -c "! ls '$TMP/run' | grep -q tmp"
finish
