#!/bin/bash
# Developer tool, not needed by users: sdprune bench against the PyTorch + CompVis ldm UNet
# (../shared/tools/peer-bench/run.sh) in interleaved pairs on this machine, same latent, batch and
# threads, and the two ratios torch/sdprune of the forward minima and medians. Needs Debian's
# python3-torch and `time` (apt-get install python3-torch time); sdprune itself never does.
set -euo pipefail

usage() {
  cat <<'USAGE'
usage: scripts/peer-ab.sh --ldm-git GITDIR [--latent 32] [--batch 2] [--pairs 3] [--repeat 3]
                          [--threads 2] [--background-load N] [--sdprune BIN] [--peer-bench DIR]

  --ldm-git GITDIR      git dir of CompVis/stable-diffusion (run.sh --ldm-git; default $SDPRUNE_LDM_GIT)
  --latent L            latent side LxL for both (default 32; 64 is a 512x512 image)
  --batch B             UNet batch (default 2, one guided step)
  --pairs P             interleaved pairs, at least 3 (default 3); odd pairs start with torch, even
                        pairs with sdprune, so neither always runs first
  --repeat R            timed forwards per process on each side (default 3)
  --threads T           threads on both sides (default 2)
  --background-load N   N single-threaded busy loops at nice 19 for the whole run (default 0): the
                        shared-node case of issue #13; stopped when the script exits
  --sdprune BIN         sdprune binary (default build/sdprune under the source tree)
  --peer-bench DIR      folder of run.sh (default ../shared/tools/peer-bench beside the tree)

One line per side and pair (forward minimum and median, load average before it), then
  ratio_min=X.XX    torch minimum over all its forwards / sdprune minimum (the stable figure)
  ratio_median=X.XX median of torch's per-process medians / median of sdprune's
Ratios above 1 mean sdprune is faster.
USAGE
}
die() { echo "peer-ab.sh: $*" >&2; exit 2; }

SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LDM_GIT=${SDPRUNE_LDM_GIT:-} LATENT=32 BATCH=2 PAIRS=3 REPEAT=3 THREADS=2 LOAD=0
BIN=$SRC/build/sdprune PEER=$SRC/../shared/tools/peer-bench
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --ldm-git|--latent|--batch|--pairs|--repeat|--threads|--background-load|--sdprune|--peer-bench)
      [ $# -ge 2 ] || die "$1 needs a value"
      case "$1" in
        --ldm-git) LDM_GIT=$2 ;; --latent) LATENT=$2 ;; --batch) BATCH=$2 ;; --pairs) PAIRS=$2 ;;
        --repeat) REPEAT=$2 ;; --threads) THREADS=$2 ;; --background-load) LOAD=$2 ;;
        --sdprune) BIN=$2 ;; --peer-bench) PEER=$2 ;;
      esac
      shift 2 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
[ -n "$LDM_GIT" ] || { usage >&2; die "--ldm-git GITDIR is required (or SDPRUNE_LDM_GIT)"; }
for v in LATENT BATCH PAIRS REPEAT THREADS; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--${v,,} must be a positive integer (got '${!v}')"
done
[[ $LOAD =~ ^[0-9]+$ ]] || die "--background-load must be a non-negative integer (got '$LOAD')"
[ "$PAIRS" -ge 3 ] || die "--pairs must be at least 3: one pair on a shared machine says little"
[ -x "$BIN" ] || die "no sdprune binary at $BIN (build it, or pass --sdprune)"
[ -x "$PEER/run.sh" ] || die "no run.sh in $PEER (pass --peer-bench)"

TMP=$(mktemp -d /tmp/peer-ab.XXXXXX)
LOAD_PIDS=()
cleanup() {
  for p in "${LOAD_PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
for i in $(seq 1 "$LOAD"); do
  # own session: under autogroup scheduling nice only ranks threads within a session, so the loops
  # compete like a neighbour job (as `sdprune bench --background-load` does)
  setsid nice -n 19 bash -c 'while :; do :; done' &
  LOAD_PIDS+=($!)
done

loadavg() { cut -d' ' -f1 /proc/loadavg; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {
             if (NR % 2) printf "%.3f", a[(NR+1)/2]; else printf "%.3f", (a[NR/2]+a[NR/2+1])/2 }'; }
minimum() { printf '%s\n' "$@" | sort -g | head -n 1; }

echo "# peer-ab: latent=${LATENT}x${LATENT} batch=$BATCH pairs=$PAIRS repeat=$REPEAT threads=$THREADS" \
     "background_load=$LOAD nproc=$(nproc) host=$(hostname) $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "# sdprune: $BIN ($("$BIN" --version)); OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-unset} GOMP_SPINCOUNT=${GOMP_SPINCOUNT:-unset}"

T_MIN=() T_MED=() S_MIN=() S_MED=()
run_torch() {
  local i=$1 l; l=$(loadavg)
  "$PEER/run.sh" --ldm-git "$LDM_GIT" --latent "$LATENT" --batch "$BATCH" --repeat "$REPEAT" \
    --threads "$THREADS" >"$TMP/torch$i.out" 2>&1 || { tail -n 20 "$TMP/torch$i.out" >&2; die "run.sh failed"; }
  local line; line=$(grep -m1 '^torch_unet ' "$TMP/torch$i.out") || die "run.sh printed no torch_unet line"
  local med mn
  med=$(sed -n 's/.* median_s=\([0-9.]*\).*/\1/p' <<<"$line") mn=$(sed -n 's/.* min_s=\([0-9.]*\).*/\1/p' <<<"$line")
  T_MIN+=("$mn") T_MED+=("$med")
  echo "pair $i torch   min_s=$mn median_s=$med load_before=$l"
}
run_sdprune() {
  local i=$1 l; l=$(loadavg)
  "$BIN" bench --latent "${LATENT}x${LATENT}" --batch "$BATCH" --repeat "$REPEAT" --threads "$THREADS" \
    >"$TMP/sdprune$i.out" 2>&1 || { tail -n 20 "$TMP/sdprune$i.out" >&2; die "sdprune bench failed"; }
  # the shape row: latent batch seconds GFLOP GFLOP/s sgemm fraction peakRSS min_s sgemm_max frac_min
  local row; row=$(awk -v s="${LATENT}x${LATENT}" '$1 == s && NF >= 11 {print; exit}' "$TMP/sdprune$i.out")
  [ -n "$row" ] || die "sdprune bench printed no ${LATENT}x${LATENT} row"
  local med mn frac
  med=$(awk '{print $3}' <<<"$row") mn=$(awk '{print $9}' <<<"$row") frac=$(awk '{print $11}' <<<"$row")
  S_MIN+=("$mn") S_MED+=("$med")
  echo "pair $i sdprune min_s=$mn median_s=$med load_before=$l sgemm_frac_min=$frac"
}
for i in $(seq 1 "$PAIRS"); do
  if [ $((i % 2)) -eq 1 ]; then run_torch "$i"; run_sdprune "$i"; else run_sdprune "$i"; run_torch "$i"; fi
done
tmin=$(minimum "${T_MIN[@]}") smin=$(minimum "${S_MIN[@]}")
tmed=$(median "${T_MED[@]}") smed=$(median "${S_MED[@]}")
echo "torch   min_s=$tmin median_s=$tmed"
echo "sdprune min_s=$smin median_s=$smed"
awk -v a="$tmin" -v b="$smin" 'BEGIN {printf "ratio_min=%.2f\n", a / b}'
awk -v a="$tmed" -v b="$smed" 'BEGIN {printf "ratio_median=%.2f\n", a / b}'
