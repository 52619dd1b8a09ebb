#!/usr/bin/env bash
# The main job on the embedded default, over MPI with 2 ranks: the pruning pipeline of jobs/demo.yaml
# (statistics over target/anchor/adversarial sets -> reduce -> Wanda mask -> pruned checkpoint + restore
# file), then its attack evaluation (the model with and without the mask on the adversarial set: images,
# CLIP detector, re-activation of the concept neurons, metrics.h5, summary.md), contact sheets and the
# analysis plots.
# The model (synth:tiny-sd1) and the detector (synth:tiny-clip) are synthesised on first use: random
# weights, so images are noise and rates mean nothing, but every stage is the real one.
# Usage: jobs/demo.sh [BUILD_DIR] (default build); output in out/demo/.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
out="$root/out/demo"
ranks=${DEMO_RANKS:-2}
mpi=(mpirun -np "$ranks")
if [ "$(id -u)" -eq 0 ]; then # Open MPI refuses root unless told; a container or CI runs as root
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
mpi+=(--oversubscribe) # 2 ranks on a 1-core machine too
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} # one thread per rank: the ranks share the cores
cd "$root"
t0=$(date +%s)
"${mpi[@]}" "$build/sdprune-mpi" run jobs/demo.yaml --out "$out" --progress-every 5
"${mpi[@]}" "$build/sdprune-mpi" attack jobs/demo.yaml --out "$out" --progress-every 5 >/dev/null
"$build/sdprune" grid "$out" --columns 4 --tile 64
/usr/bin/python3 analysis/report.py "$out" | grep '\.png$' >"$out/plots.txt" # Debian's python3-h5py/matplotlib
echo
cat "$out/summary.md"
echo
echo "demo: $(($(date +%s) - t0)) s on $ranks ranks; in $out:"
echo "  stats.h5 (statistics), mask.h5 (Wanda mask), pruned.safetensors + pruned.restore.h5 (pruned model)"
echo "  images/<model>/<set>/*.png (A1111 'parameters' chunk), metrics.h5 (per-item table, metrics), summary.md"
echo "  grids/<model>/<set>.png (contact sheets); plots (analysis/report.py):"
sed 's/^/    /' "$out/plots.txt"
echo "  read them: python3 -c \"import h5py, pandas as pd; print(pd.DataFrame(h5py.File('$out/metrics.h5')['metrics'][:]))\""
