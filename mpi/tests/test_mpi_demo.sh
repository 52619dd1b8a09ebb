#!/usr/bin/env bash
# The demo job end to end, as a user runs it from the repository root: `mpirun -np 2 sdprune-mpi run
# jobs/demo-synth.yaml` (into a temporary --out, the model synthesised into a temporary SDPRUNE_SYNTH_CACHE)
# leaves stats.h5, mask.h5, pruned.safetensors and its restore file; `sdprune restore` gives back the
# synthesised model byte for byte; a rerun replaces the derived outputs; `sdprune-mpi mask` alone; a job
# without a mask section stops after the reduce; a failing mask stage fails every rank's exit status;
# `sdprune-mpi attack jobs/demo-synth.yaml` writes the images, metrics.h5 and summary.md with synth:tiny-clip.
# Then `make demo`'s job, jobs/demo.yaml on the trained toy world, with 2 rows a set and 4 steps: the
# statistics, mask and pruned UNet, and the attack of its three models on its six sets with the judge CLIP.
. "$(dirname "$0")/../../tests/testlib.sh"
MPI_BIN=${SDPRUNE_MPI_BIN:?SDPRUNE_MPI_BIN must name sdprune-mpi}
SRC=${SDPRUNE_SOURCE:-$(cd "$(dirname "$0")/../.." && pwd)}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export SDPRUNE_SYNTH_CACHE="$TMP/synth"
run_np() { local n=$1; shift; (cd "$SRC" && "${MPIEXEC:-mpirun}" --oversubscribe -np "$n" "$MPI_BIN" "$@"); }
OUT="$TMP/demo"
MODEL="$SDPRUNE_SYNTH_CACHE/tiny-sd1-seed0-f16.safetensors"

run_np 2 run jobs/demo-synth.yaml --out "$OUT" 2>"$TMP/run.log"
check "mpirun -np 2 sdprune-mpi run jobs/demo-synth.yaml runs (log: $(tail -n 3 "$TMP/run.log" | tr '\n' ' '))" [ $? -eq 0 ]
for f in stats.h5 mask.h5 pruned.safetensors pruned.restore.h5; do
  check "run leaves $f" [ -s "$OUT/$f" ]
done
check "the model synth:tiny-sd1 was synthesised into SDPRUNE_SYNTH_CACHE" [ -s "$MODEL" ]
check "the pruned checkpoint differs from the model" bash -c "! cmp -s '$OUT/pruned.safetensors' '$MODEL'"
"$BIN" restore --model "$OUT/pruned.safetensors" --restore "$OUT/pruned.restore.h5" --out "$TMP/restored.safetensors" \
  2>"$TMP/restore.log"
check "sdprune restore runs" [ $? -eq 0 ]
check "... and gives back the synthesised model's bytes" cmp "$TMP/restored.safetensors" "$MODEL"
"$BIN" mask "$OUT/stats.h5" --method wanda --ratio 0.01 --tau 10 --out "$TMP/cli-mask.h5" --quiet
"$BIN" apply --model "$MODEL" --mask "$TMP/cli-mask.h5" --out "$TMP/cli-pruned.safetensors" 2>/dev/null
check "the pruned weights equal sdprune mask + sdprune apply's (data section compared)" /usr/bin/python3 -c "
import json, struct, sys
def data(p):
    b = open(p, 'rb').read(); n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n]); h.pop('__metadata__', None)
    return h, b[8 + n:]
sys.exit(0 if data('$OUT/pruned.safetensors') == data('$TMP/cli-pruned.safetensors') else 1)"

# the attack stage of the demo job: the model with and without the mask, judged by synth:tiny-clip
run_np 2 attack jobs/demo-synth.yaml --out "$OUT" --threads 1 >"$TMP/attack.md" 2>"$TMP/attack.log"
check "mpirun -np 2 sdprune-mpi attack jobs/demo-synth.yaml runs (log: $(tail -n 2 "$TMP/attack.log" | tr '\n' ' '))" [ $? -eq 0 ]
check "... 8 images, metrics.h5 and summary.md" bash -c "[ \$(find '$OUT/images' -name '*.png' | wc -l) -eq 8 ] && [ -s '$OUT/metrics.h5' ] && [ -s '$OUT/summary.md' ]"
check "... the table names both models" bash -c "grep -q '| base | demo |' '$TMP/attack.md' && grep -q '| base+mask | demo |' '$TMP/attack.md'"
check "... judged with probabilities over the 4 labels, re-activation measured" /usr/bin/python3 -c "
import h5py, pandas as pd, numpy as np
d = pd.DataFrame(h5py.File('$OUT/metrics.h5')['items'][:])
p = d[[c for c in d.columns if c.startswith('p_')]].to_numpy()
assert p.shape == (8, 4) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
assert (d.success >= 0).all() and np.isfinite(d.reactivation).all()
"

cp "$OUT/stats.h5" "$TMP/stats-before.h5"
run_np 2 run jobs/demo-synth.yaml --out "$OUT" 2>"$TMP/rerun.log"
check "a rerun after completion succeeds (mask and pruned checkpoint replaced)" [ $? -eq 0 ]
check "... with nothing left to compute" grep -q ' 0 items done, 0 failed, 12 done before' "$TMP/rerun.log"
check "... and writes the pruned checkpoint again" grep -q 'sdprune-mpi apply: pruned' "$TMP/rerun.log"

rm -f "$OUT/mask.h5" "$OUT/pruned.safetensors"
run_np 2 mask jobs/demo-synth.yaml --out "$OUT" 2>"$TMP/mask.log"
check "sdprune-mpi mask JOB (the stages after the reduce alone) writes mask.h5 and the checkpoint" \
  bash -c "[ -s '$OUT/mask.h5' ] && [ -s '$OUT/pruned.safetensors' ]"

run_np 2 run jobs/demo-synth.yaml --out "$OUT" --set mask=null 2>"$TMP/nomask.log"
check "a job without a mask section stops after the reduce" bash -c \
  "[ $? -eq 0 ] && grep -q 'no mask section' '$TMP/nomask.log' && ! grep -q 'sdprune-mpi apply' '$TMP/nomask.log'"

run_np 2 mask jobs/demo-synth.yaml --out "$TMP/nostats" 2>"$TMP/fail.log"
rc=$?
check "a failing mask stage (no stats.h5) exits non-zero on every rank (rc $rc)" [ $rc -eq 1 ]
check "... saying why" grep -q 'mask stage: .*nostats/stats.h5' "$TMP/fail.log"

TOY="$TMP/toy"
toy_small=(--set sampler.limit=2 --set sampler.steps=4 --set sampler.max_steps=4 --set mask.tau=4)
run_np 2 run jobs/demo.yaml --out "$TOY" "${toy_small[@]}" 2>"$TMP/toy-run.log"
check "jobs/demo.yaml (toy world) run, 2 rows a set: 2 x 6 sets = 12 items ($(tail -n 1 "$TMP/toy-run.log"))" \
  bash -c "[ $? -eq 0 ] && grep -q 'sdprune-mpi: 12 items done, 0 failed' '$TMP/toy-run.log' && [ -s '$TOY/pruned.safetensors' ]"
run_np 2 attack jobs/demo.yaml --out "$TOY" "${toy_small[@]}" >"$TMP/toy.md" 2>"$TMP/toy-attack.log"
check "jobs/demo.yaml attack: 3 models x 6 sets x 2 rows judged by the toy world's CLIP ($(tail -n 1 "$TMP/toy-attack.log"))" \
  bash -c "[ $? -eq 0 ] && grep -q '36 items (36 run now, 0 failed in all)' '$TMP/toy-attack.log'"
check "... metrics.h5 has base, esd-u, esd-u+mask (the erased UNet, then with the run's mask) on every set" /usr/bin/python3 -c "
import h5py
f = h5py.File('$TOY/metrics.h5')
mo = {r['name'].decode(): (r['unet'].decode(), r['mask'].decode()) for r in f['models'][:]}
assert sorted(mo) == ['base', 'esd-u', 'esd-u+mask'], mo
assert mo['base'][0] == '' and mo['esd-u'][0].endswith('esd-u-triangle.safetensors') and mo['esd-u'][1] == '', mo
assert mo['esd-u+mask'][0] == mo['esd-u'][0] and mo['esd-u+mask'][1].endswith('toy/mask.h5'), mo
m = f['metrics'][:]
assert len(m) == 18 and set(m['n']) == {2}, m[['model', 'set', 'n']]
assert {s.decode() for s in m['set']} == {'direct', 'synonyms', 'paraphrases', 'searched', 'control_square', 'control_bar'}
"
finish
