#!/usr/bin/env bash
# sdprune-mpi with the engine on the tiny reference model: mpirun -np 1/2/3 give identical stats.h5
# totals, equal to the single-process `sdprune stats` at the same threads per process (the engine's
# float results depend on the BLAS thread count, so every run here uses --threads 1), and equal to
# `sdprune reduce` of the shards; a rerun has nothing left to do; --per-item records equal the single
# process's.
. "$(dirname "$0")/../../tests/testlib.sh"
require_reference
MPI_BIN=${SDPRUNE_MPI_BIN:?SDPRUNE_MPI_BIN must name sdprune-mpi}
PY=/usr/bin/python3
CMP="$(dirname "$0")/compare_stats.py"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
if ! $PY -c 'import h5py' 2>/dev/null; then
  echo "SKIP: /usr/bin/python3 with h5py not found (needed to compare the statistics)"
  exit 77
fi
run_np() { local n=$1; shift; "${MPIEXEC:-mpirun}" --oversubscribe -np "$n" "$MPI_BIN" "$@"; }
MODEL=(--model "$REF/tiny-sd1/model.safetensors" --tokenizer "$REF/clip-tokenizer" --threads 1)
printf 'a photo of a naked man\na photo of a naked woman\na naked person on a beach\n' >"$TMP/target.txt"
printf 'a photo of a man\na photo of a woman\n' >"$TMP/anchor.txt"
SETS=(--target "$TMP/target.txt" --anchor "$TMP/anchor.txt" --seeds 0-1 --steps 4 --size 16x16 --quiet)

"$BIN" stats "${MODEL[@]}" "${SETS[@]}" --per-item --out "$TMP/single/stats.h5" 2>"$TMP/single.log"
check "sdprune stats (one process) runs" [ $? -eq 0 ]
for n in 1 2 3; do
  run_np $n stats "${MODEL[@]}" "${SETS[@]}" --out "$TMP/np$n" 2>"$TMP/np$n.log"
  check "mpirun -np $n sdprune-mpi stats runs" [ $? -eq 0 ]
done
check "-np 1/2/3 identical, and equal to sdprune stats" $PY "$CMP" "$TMP/single/stats.h5" "$TMP/np1/stats.h5" \
  "$TMP/np2/stats.h5" "$TMP/np3/stats.h5"
check "the model hash is recorded" $PY -c "
import h5py
a, b = h5py.File('$TMP/single/stats.h5'), h5py.File('$TMP/np3/stats.h5')
assert a.attrs['model_hash'] == b.attrs['model_hash'] and b.attrs['format'] == 'sdprune-stats'
"
"$BIN" reduce "$TMP/np3" --out "$TMP/offline3.h5" --quiet
check "sdprune reduce of the 3 shards equals the in-job reduce" $PY "$CMP" "$TMP/np3/stats.h5" "$TMP/offline3.h5"
run_np 2 stats "${MODEL[@]}" "${SETS[@]}" --out "$TMP/np3" 2>"$TMP/again.log"
check "a rerun on 2 ranks has nothing to do" grep -q ' 0 items done, 0 failed, 10 done before' "$TMP/again.log"
check "... and the result is unchanged" $PY "$CMP" "$TMP/single/stats.h5" "$TMP/np3/stats.h5"

# --per-item: records in DIR/stats.items/, linked from DIR/stats.h5, equal to the single process's
run_np 2 stats "${MODEL[@]}" "${SETS[@]}" --per-item --out "$TMP/pi" 2>"$TMP/pi.log"
check "--per-item on 2 ranks runs" [ $? -eq 0 ]
check "--per-item: totals unchanged" $PY "$CMP" "$TMP/single/stats.h5" "$TMP/pi/stats.h5"
check "--per-item: every item's record linked from stats.h5, equal to sdprune stats --per-item" $PY -c "
import h5py, numpy as np
a, b = h5py.File('$TMP/single/stats.h5'), h5py.File('$TMP/pi/stats.h5')
assert b.attrs['per_item'] == 1
n = 0
for s in a['per_item']:
    for rec in a['per_item'][s]:
        x, y = a['per_item'][s][rec], b['per_item'][s][rec]
        for layer in x:
            for q in ('mean', 'max'):
                assert np.array_equal(x[layer][q][:], y[layer][q][:]), (s, rec, layer, q)
        n += 1
assert n == 10, n
"
run_np 1 stats "${MODEL[@]}" "${SETS[@]}" --out "$TMP/pi" 2>"$TMP/pi2.log"
check "continuing a --per-item run without it is refused" bash -c "[ $? -ne 0 ] && grep -q 'written with --per-item' '$TMP/pi2.log'"
finish
