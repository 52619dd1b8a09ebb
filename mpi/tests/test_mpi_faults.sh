#!/usr/bin/env bash
# Disk full while sdprune-mpi writes its shards (issue #12), with the fake backend: a rerun that adds seeds
# to a finished job, under a file-size limit (ulimit -f; the ranks ignore SIGXFSZ, so write() fails with
# EFBIG), stops with an error naming the shard; every file of the earlier run stays byte-identical and no
# half-written shard or temporary is left; a rerun without the limit then equals an uninterrupted run.
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

# The HDF5 files under a folder (a rank's .current note of its item may appear: it is no result).
tree_sums() { (cd "$1" && find . -type f -name '*.h5' | sort | xargs -r sha256sum); }

for i in $(seq 1 6); do echo "a naked figure $i"; done >"$TMP/target.txt"
for i in $(seq 1 4); do echo "a figure $i"; done >"$TMP/anchor.txt"
SETS=(--backend fake --target "$TMP/target.txt" --anchor "$TMP/anchor.txt" --steps 5 --quiet --checkpoint-every 1)

run_np 2 stats "${SETS[@]}" --seeds 0-1 --out "$TMP/run" 2>"$TMP/first.log"
check "first run (seeds 0-1)" [ $? -eq 0 ] && [ -f "$TMP/run/stats.h5" ]
run_np 2 stats "${SETS[@]}" --seeds 0-3 --out "$TMP/full" 2>/dev/null
check "uninterrupted run (seeds 0-3)" [ $? -eq 0 ]
before=$(tree_sums "$TMP/run")
smallest=$(find "$TMP/run/shards" -name 'rank-*.h5' -printf '%s\n' | sort -n | head -1)
limit=$((smallest / 1024 / 2)) # KiB blocks: half a shard
[ "$limit" -ge 1 ] || limit=1

# The limit is set inside each rank, not on mpirun: Open MPI's own shared-memory files (PMIx store, the vader
# BTL's segments) would hit it first, so the limited run also talks over TCP and keeps PMIx data in memory.
# SIGXFSZ is ignored (inherited through exec) so that write() fails as on a full disk (ENOSPC sends no signal);
# sdprune-mpi's stats stage does not ignore it itself (its mask stage and sdprune do).
printf '#!/usr/bin/env bash\nulimit -f %d\ntrap "" XFSZ\nexec "%s" "$@"\n' "$limit" "$MPI_BIN" >"$TMP/limited.sh"
chmod +x "$TMP/limited.sh"
PMIX_MCA_gds=hash "${MPIEXEC:-mpirun}" --oversubscribe --mca btl self,tcp -np 2 "$TMP/limited.sh" stats "${SETS[@]}" \
  --seeds 0-3 --out "$TMP/run" 2>"$TMP/full.log"
rc=$?
check "disk full: the job stops (rc $rc)" [ $rc -ne 0 ]
check "disk full: the error names a shard and the cause ($(grep -m1 -i 'too large' "$TMP/full.log" | head -c 200))" \
  grep -q "shards/rank-0000[01].h5.*File too large" "$TMP/full.log"
after=$(tree_sums "$TMP/run")
check "disk full: every file of the earlier run unchanged (shards, stats.h5)" [ "$after" = "$before" ]
[ "$after" = "$before" ] || diff <(echo "$before") <(echo "$after") >&2
check "disk full: no temporary left" bash -c "! find '$TMP/run' -name '*tmp*' | grep -q ."

run_np 2 stats "${SETS[@]}" --seeds 0-3 --out "$TMP/run" 2>"$TMP/again.log"
check "rerun without the limit completes" [ $? -eq 0 ]
check "... and equals the uninterrupted run (no item lost or counted twice)" $PY "$CMP" "$TMP/full/stats.h5" "$TMP/run/stats.h5"
finish
