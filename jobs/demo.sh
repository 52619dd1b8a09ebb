#!/usr/bin/env bash
# The main job (`make demo`) over MPI with 2 ranks, on the trained toy world of jobs/toyworld/: the
# pruning pipeline of jobs/demo.yaml (statistics of the ESD-u erased model over target/anchor/attack
# sets -> reduce -> sensitivity mask -> pruned checkpoint + restore file), then its attack evaluation (base,
# esd-u and esd-u+mask on the direct prompts, three attack sets and two controls: images, the judge CLIP,
# re-activation of the concept neurons, metrics.h5, summary.md), contact sheets and the analysis plots.
# Usage: jobs/demo.sh [BUILD_DIR] [JOB] (default build, jobs/demo.yaml; jobs/demo-synth.yaml runs the
# same on the synthesised random model); output in the job's `out` (out/demo) or $DEMO_OUT.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
job=${2:-jobs/demo.yaml}
case "$build" in /*) ;; *) build="$root/$build" ;; esac
out=${DEMO_OUT:-$root/out/demo}
ranks=${DEMO_RANKS:-2}
mpi=(mpirun -np "$ranks")
if [ "$(id -u)" -eq 0 ]; then # Open MPI refuses root unless told; a container or CI runs as root
  export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
fi
mpi+=(--oversubscribe) # 2 ranks on a 1-core machine too
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} # one thread per rank: the ranks share the cores
cd "$root"
t0=$(date +%s)
"${mpi[@]}" "$build/sdprune-mpi" run "$job" --out "$out" --progress-every 5
"${mpi[@]}" "$build/sdprune-mpi" attack "$job" --out "$out" --progress-every 5 >/dev/null
"$build/sdprune" grid "$out" --columns 10 --tile 32 --filter nearest --quiet
/usr/bin/python3 analysis/report.py "$out" | grep '\.png$' >"$out/plots.txt" # Debian's python3-h5py/matplotlib
echo
echo "Attack success rate per set and model (the share of images the job's detector judges to show the concept):"
/usr/bin/python3 analysis/before_after.py "$out"
echo "(every column, with 95% Wilson intervals, CLIP score and re-activation: $out/summary.md)"
echo
echo "demo: $(($(date +%s) - t0)) s on $ranks ranks; in $out:"
echo "  stats.h5 (statistics), mask.h5 (sensitivity mask), pruned.safetensors + pruned.restore.h5 (pruned model)"
echo "  images/<model>/<set>/*.png (A1111 'parameters' chunk), metrics.h5 (per-item table, metrics), summary.md"
echo "  grids/<model>/<set>.png (contact sheets); plots (analysis/report.py):"
sed 's/^/    /' "$out/plots.txt"
echo "  read them: /usr/bin/python3 -c \"import h5py, pandas as pd; print(pd.DataFrame(h5py.File('$out/metrics.h5')['metrics'][:]))\""
