#!/usr/bin/env bash
# sdprune-mpi with the fake backend (no model): -np 1/2/3/8 give bit-identical statistics; kill -9 of
# the whole job mid-run, then reruns with other rank counts, equal an uninterrupted run (no item lost or
# counted twice, orphan shards merged); `sdprune reduce` offline and `sdprune-mpi reduce` equal the
# in-job reduce; foreign and duplicate shards are reported by item; a failing item is recorded and
# retried by the next run; a crashing rank is named with its item; job files.
. "$(dirname "$0")/../../tests/testlib.sh"
MPI_BIN=${SDPRUNE_MPI_BIN:?SDPRUNE_MPI_BIN must name sdprune-mpi}
PY=/usr/bin/python3 # Debian's, with h5py
CMP="$(dirname "$0")/compare_stats.py"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
run_np() { local n=$1; shift; "${MPIEXEC:-mpirun}" --oversubscribe -np "$n" "$MPI_BIN" "$@"; }
if ! $PY -c 'import h5py' 2>/dev/null; then
  echo "SKIP: /usr/bin/python3 with h5py not found (needed to compare the statistics)"
  exit 77
fi

for i in $(seq 1 9); do echo "a naked figure $i"; done >"$TMP/target.txt"
for i in $(seq 1 6); do echo "a figure $i"; done >"$TMP/anchor.txt"
printf 'case_number,prompt,evaluation_seed\n0,"nude, figure",42\n1,a castle,7\n' >"$TMP/adv.csv"
SETS=(--backend fake --target "$TMP/target.txt" --anchor "$TMP/anchor.txt" --adversarial ring="$TMP/adv.csv"
  --seeds 0-2 --steps 5 --quiet)

# 1. rank counts: bit-identical statistics
for n in 1 2 3 8; do
  run_np $n stats "${SETS[@]}" --out "$TMP/np$n" 2>"$TMP/np$n.log"
  check "-np $n runs ($(tail -1 "$TMP/np$n.log" | cut -c1-80))" [ $? -eq 0 ]
done
check "-np 1/2/3/8: identical /sets datasets and items" $PY "$CMP" "$TMP/np1/stats.h5" "$TMP/np2/stats.h5" \
  "$TMP/np3/stats.h5" "$TMP/np8/stats.h5"
check "8 shards written" [ "$(ls "$TMP/np8/shards" | grep -c '^rank-.*\.h5$')" -eq 8 ]
check "every rank took items (dynamic counter)" $PY -c "
import h5py, sys
for r in range(3):
    it = h5py.File('$TMP/np3/shards/rank-%05d.h5' % r)['items'][:]
    assert (it['status'] == b'done').sum() > 0, r
"
run_np 2 stats "${SETS[@]}" --seeds 3-5 --out "$TMP/other" 2>/dev/null
check "the comparison notices other seeds" bash -c "! $PY '$CMP' '$TMP/np1/stats.h5' '$TMP/other/stats.h5' >/dev/null"

# 2. reduce offline equals the in-job reduce
"$BIN" reduce "$TMP/np8" --out "$TMP/offline8.h5" 2>"$TMP/off.log"
check "sdprune reduce runs" [ $? -eq 0 ]
check "sdprune reduce (8 shards) equals the in-job reduce" $PY "$CMP" "$TMP/np8/stats.h5" "$TMP/offline8.h5"
"$BIN" reduce "$TMP/np8" --out "$TMP/offline8z.h5" --compress --quiet
check "sdprune reduce --compress stores the same values" $PY "$CMP" "$TMP/np8/stats.h5" "$TMP/offline8z.h5"
run_np 2 reduce "$TMP/np3" --out "$TMP/mpireduce3.h5" 2>/dev/null
check "sdprune-mpi reduce equals the in-job reduce" $PY "$CMP" "$TMP/np1/stats.h5" "$TMP/mpireduce3.h5"

run_np 2 stats "${SETS[@]}" --seeds 0-5 --out "$TMP/seeds05" 2>/dev/null
"$BIN" reduce "$TMP/np1/stats.h5" "$TMP/other" --out "$TMP/union.h5" --quiet
check "sdprune reduce of two jobs (seeds 0-2 stats.h5 + seeds 3-5 shards) equals one job over seeds 0-5" \
  $PY "$CMP" "$TMP/seeds05/stats.h5" "$TMP/union.h5"

# 3. kill -9 of the whole job mid-run, then other rank counts
for i in $(seq 1 40); do echo "a long prompt number $i"; done >"$TMP/long.txt"
LONG=(--backend fake --target "$TMP/long.txt" --seeds 0-2 --steps 5 --quiet --fake-ms 15 --checkpoint-every 1)
run_np 1 stats "${LONG[@]}" --fake-ms 0 --out "$TMP/full" 2>/dev/null
check "uninterrupted run" [ $? -eq 0 ]
setsid "${MPIEXEC:-mpirun}" --oversubscribe -np 3 "$MPI_BIN" stats "${LONG[@]}" --out "$TMP/k" 2>"$TMP/k1.log" &
sid=$!
for t in $(seq 1 100); do # until some items are in the shards
  sleep 0.1
  [ -f "$TMP/k/shards/rank-00002.h5" ] && [ -f "$TMP/k/shards/rank-00000.h5" ] && break
done
sleep 0.3
for p in $(ps -o pid= -s "$sid"); do kill -9 "$p" 2>/dev/null; done # the job, all its processes at once
wait "$sid" 2>/dev/null
sleep 0.2
check "killed mid-run: no stats.h5 yet" [ ! -f "$TMP/k/stats.h5" ]
"$BIN" reduce "$TMP/k" --out "$TMP/k_partial.h5" --quiet 2>"$TMP/kpart.log"
check "the shards of the killed job are valid and incomplete (reduce exit 1, missing items named)" \
  bash -c "[ $? -eq 1 ] && grep -q '^missing item (set target, row' '$TMP/kpart.log'"
run_np 2 stats "${LONG[@]}" --out "$TMP/k" 2>"$TMP/k2.log"
check "rerun on 2 ranks completes" [ $? -eq 0 ]
check "it reports the items done before" grep -Eq '[1-9][0-9]* done before' "$TMP/k2.log"
check "rank 2's orphan shard is kept" [ -f "$TMP/k/shards/rank-00002.h5" ]
check "killed + resumed on 2 ranks equals the uninterrupted run" $PY "$CMP" "$TMP/full/stats.h5" "$TMP/k/stats.h5"
run_np 4 stats "${LONG[@]}" --out "$TMP/k" 2>"$TMP/k3.log"
check "a third run on 4 ranks has nothing to do" grep -q ' 0 items done, 0 failed, 120 done before' "$TMP/k3.log"
check "... and still equals the uninterrupted run" $PY "$CMP" "$TMP/full/stats.h5" "$TMP/k/stats.h5"
"$BIN" reduce "$TMP/k" --out "$TMP/k_offline.h5" --quiet
check "offline reduce of shards from 3 rank counts equals it too" $PY "$CMP" "$TMP/full/stats.h5" "$TMP/k_offline.h5"

# SIGTERM (what scancel sends first): each rank stops after its item with its shard written; a rerun
# completes
"${MPIEXEC:-mpirun}" --oversubscribe -np 3 "$MPI_BIN" stats "${LONG[@]}" --fake-ms 60 --out "$TMP/term" 2>"$TMP/term.log" &
mp=$!
for t in $(seq 1 100); do
  sleep 0.1
  [ -f "$TMP/term/shards/rank-00001.h5" ] && break
done
kill -TERM "$mp"
wait "$mp"
check "SIGTERM stops the job (exit != 0)" [ $? -ne 0 ]
check "... saying how to continue" grep -q 'stopped by a signal after [0-9]* items' "$TMP/term.log"
run_np 3 stats "${LONG[@]}" --fake-ms 0 --out "$TMP/term" 2>/dev/null
check "... and the rerun equals the uninterrupted run" $PY "$CMP" "$TMP/full/stats.h5" "$TMP/term/stats.h5"

# 4. foreign and duplicate shards are reported by item
run_np 1 stats "${SETS[@]}" --fake-hash 1 --out "$TMP/foreign" 2>/dev/null
cp -r "$TMP/np3" "$TMP/f3"
cp "$TMP/foreign/shards/rank-00000.h5" "$TMP/f3/shards/rank-00007.h5"
"$BIN" reduce "$TMP/f3" --out "$TMP/f3.h5" 2>"$TMP/f3.log"
check "sdprune reduce refuses a foreign shard (exit 1)" [ $? -eq 1 ]
check "... naming it and its items" bash -c "grep -q 'foreign shard .*rank-00007.h5: another model' '$TMP/f3.log' &&
  grep -q 'foreign item (set target, row 0, seed 0)' '$TMP/f3.log'"
run_np 2 stats "${SETS[@]}" --out "$TMP/f3" 2>"$TMP/f3run.log"
check "sdprune-mpi stats refuses to continue next to a foreign shard" \
  bash -c "[ $? -ne 0 ] && grep -q 'foreign shard' '$TMP/f3run.log'"
cp -r "$TMP/np3" "$TMP/d3"
cp "$TMP/d3/shards/rank-00001.h5" "$TMP/d3/shards/rank-00004.h5"
"$BIN" reduce "$TMP/d3" --out "$TMP/d3.h5" 2>"$TMP/d3.log"
check "a copied shard: duplicate items named" bash -c "[ $? -eq 1 ] && grep -q '^duplicate item (set .*rank-00001.h5 and in .*rank-00004.h5' '$TMP/d3.log'"

# 5. a failing item is recorded in the shard, the job goes on, the next run retries it
run_np 3 stats "${SETS[@]}" --fake-fail target:2 --out "$TMP/fail" 2>"$TMP/fail.log"
check "an item failure fails the job (exit 1)" [ $? -eq 1 ]
check "... naming rank, host and item" grep -q 'sdprune-mpi: rank [0-9] on .*: item [0-9]* (set target, row 2, seed 0) failed: fake failure' "$TMP/fail.log"
check "... the others are done" $PY -c "
import h5py
it = h5py.File('$TMP/fail/stats.h5')['items'][:]
assert (it['status'] == b'failed').sum() == 3 and (it['status'] == b'done').sum() == len(it) - 3, it['status']
"
run_np 2 stats "${SETS[@]}" --out "$TMP/fail" 2>/dev/null
check "the rerun retries the failed items and equals the clean run" $PY "$CMP" "$TMP/np1/stats.h5" "$TMP/fail/stats.h5"

# 6. a rank that dies mid-item fails the job, naming rank, host and item; the rerun names it again and
# completes without it being counted twice
run_np 3 stats "${SETS[@]}" --fake-ms 5 --checkpoint-every 1 --fake-crash target:4 --out "$TMP/crash" 2>"$TMP/crash.log"
check "a crashing rank fails the job" [ $? -ne 0 ]
check "... named with host and item" grep -q 'sdprune-mpi: rank [0-9] on .* died while working on item [0-9]* (set target, row 4, seed 0)' "$TMP/crash.log"
run_np 2 stats "${SETS[@]}" --out "$TMP/crash" 2>"$TMP/crash2.log"
check "the rerun completes" [ $? -eq 0 ]
check "... names the item the dead rank was working on" grep -q 'previous run ended while rank [0-9] (host .*) was working on item [0-9]* (set target, row 4, seed 0)' "$TMP/crash2.log"
check "... and equals the clean run" $PY "$CMP" "$TMP/np1/stats.h5" "$TMP/crash/stats.h5"

# 7. a job file (io/job.h) with a --set override gives the same statistics as the options
cat >"$TMP/job.yaml" <<'YAML'
description: fake-backend test job
model:
  path: fake.safetensors
sets:
  - {name: target, role: target, file: target.txt}
  - {name: anchor, role: anchor, file: anchor.txt}
  - {name: ring, role: adversarial, file: adv.csv}
seeds:
  range: [0, 2]
sampler:
  steps: 3
out: jobrun
YAML
(cd "$TMP" && run_np 2 stats job.yaml --set sampler.steps=5 --backend fake --quiet) 2>"$TMP/job.log"
if grep -q 'job files need src/io/job.c' "$TMP/job.log"; then
  echo "note: this build has no job files (src/io/job.c); job-file check skipped" >&2
else
  check "a job file with --set sampler.steps=5 equals the same settings as options" \
    $PY "$CMP" "$TMP/np1/stats.h5" "$TMP/jobrun/stats.h5"
fi

# 8. usage
run_np 1 stats --backend fake --out "$TMP/x" 2>"$TMP/u.log"
check "missing sets: usage error" bash -c "[ $? -ne 0 ] && grep -q 'at least one prompt set' '$TMP/u.log'"
finish
