#!/usr/bin/env bash
# Runs every libFuzzer harness of tests/fuzz for a bounded time and prints executions and crashes per harness.
#   tests/fuzz/run.sh [SECONDS] [HARNESS...]      SECONDS per harness (default 10), all harnesses by default
# Environment: FUZZ_BUILD (build folder, default build-fuzz; configured with clang and SDPRUNE_FUZZ=ON and built
# when missing), FUZZ_JOBS (build parallelism, 2), FUZZ_NO_BUILD (1: no rebuild of existing harnesses), FUZZ_ARGS
# (extra libFuzzer options, e.g. -runs=10000000).
# Inputs that found new coverage go to FUZZ_BUILD/fuzz-work/NAME (kept between runs: longer runs resume from
# them), crashes to FUZZ_BUILD/fuzz-crashes/NAME/; a crash input belongs in tests/fuzz/regress/NAME/ once the
# reader is fixed. Exit status 1 when any harness crashed. The harnesses run one at a time on one thread.
set -u
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-10}
shift || true
BUILD=${FUZZ_BUILD:-build-fuzz}
HARNESSES=${*:-safetensors torch_zip pickle config ldm_yaml job tokenizer_load tokenizer_encode prompt_csv stats_h5 mask_h5 h5_edit scores_csv}

if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  CC=clang cmake -S . -B "$BUILD" -DSDPRUNE_FUZZ=ON -DSDPRUNE_BUILD_MPI=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null || exit 2
fi
mkdir -p "$BUILD"
# FUZZ_NO_BUILD=1: use the harnesses as built (a long campaign while others commit: no rebuild between harnesses).
if [ "${FUZZ_NO_BUILD:-0}" != 1 ]; then
  cmake --build "$BUILD" -j "${FUZZ_JOBS:-2}" --target fuzz >"$BUILD/fuzz-build.log" 2>&1 ||
    { tail -30 "$BUILD/fuzz-build.log" >&2; echo "build of the fuzz targets failed ($BUILD/fuzz-build.log)" >&2; exit 2; }
fi

# Large seeds (real checkpoints, the whole prompt files, the CLIP vocabulary): built once, never checked in.
SEEDS=$BUILD/fuzz-seeds
if [ ! -d "$SEEDS" ]; then
  python3 tests/fuzz/make_seeds.py large "$SEEDS" "${SDPRUNE_SHARED:-../shared}" || mkdir -p "$SEEDS"
fi

export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
# The harnesses' scratch files (fuzz_common.c), in one folder removed at the end: a crashed harness or a
# fork-mode child killed on a hang leaves its own folder behind.
shm=/dev/shm
[ -d "$shm" ] && [ -w "$shm" ] || shm=${TMPDIR:-/tmp}
FUZZ_TMPDIR=$(mktemp -d "$shm/sdprune-fuzz-run.XXXXXX") || exit 2
export FUZZ_TMPDIR
trap 'rm -rf "$FUZZ_TMPDIR"' EXIT
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
crashed=0
printf '%-18s %12s %10s %8s %8s  %s\n' harness executions exec/s corpus crashes result
for name in $HARNESSES; do
  bin=$BUILD/tests/fuzz/fuzz_$name
  work=$BUILD/fuzz-work/$name
  crashes=$BUILD/fuzz-crashes/$name
  log=$BUILD/fuzz-logs/$name.log
  mkdir -p "$work" "$crashes" "$(dirname "$log")"
  dict=tests/fuzz/dict/$name.dict
  dict_arg=()
  [ -f "$dict" ] && dict_arg=(-dict="$dict")
  dirs=("$work" "tests/fuzz/corpus/$name")
  [ -d "tests/fuzz/regress/$name" ] && dirs+=("tests/fuzz/regress/$name")
  [ -d "$SEEDS/$name" ] && dirs+=("$SEEDS/$name")
  # Small inputs run faster; the HDF5 seeds need more room. Raw HDF5 bytes run in a child process that is
  # restarted past libhdf5's own hangs and crashes on damaged files (README.md), and without leak checks
  # (libhdf5 leaks on its error paths; h5_edit checks sdprune's handles on well-formed files, leaks on). A crash
  # there counts against sdprune only when its innermost frame with a name is not inside libhdf5.
  max_len=16384
  mode=()
  case $name in
    stats_h5 | mask_h5) max_len=65536 mode=(-fork=1 -ignore_timeouts=1 -ignore_crashes=1 -detect_leaks=0) ;;
  esac
  touch "$log.start"
  before=$(ls "$crashes" | grep -vc '^timeout-')
  hangs_before=$(ls "$crashes" | grep -c '^timeout-')
  # shellcheck disable=SC2086
  "$bin" "${mode[@]}" -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=3072 -malloc_limit_mb=2048 -print_final_stats=1 \
    -max_len="$max_len" -artifact_prefix="$crashes/" "${dict_arg[@]}" ${FUZZ_ARGS:-} "${dirs[@]}" >"$log" 2>&1
  rc=$?
  after=$(ls "$crashes" | grep -vc '^timeout-')
  hangs=$(($(ls "$crashes" | grep -c '^timeout-') - hangs_before))
  upstream=0 unrepro=0
  if [ ${#mode[@]} -gt 0 ]; then
    # Raw HDF5: each new crash, out-of-memory or hang is replayed; it is libhdf5's when the innermost frame with
    # a name (a function of libhdf5, or a .c line of sdprune or the harness) is inside libhdf5.
    after=$before hangs=0
    # A replay that passes does not reproduce (fork mode also leaves an empty crash-da39a3.. when a child dies
    # outside any input): counted apart, as not reproduced.
    for c in $(find "$crashes" -type f -newer "$log.start"); do
      # A crash is replayed 20 times over: some depend on state libhdf5 keeps from reading the same damaged file
      # before (a fork-mode child reads many inputs); a hang once.
      runs=20
      case $(basename "$c") in timeout-*) runs=1 ;; esac
      replay=$("$bin" -runs=$runs -timeout=10 -rss_limit_mb=3072 -malloc_limit_mb=2048 "$c" 2>&1) &&
        { unrepro=$((unrepro + 1)) && continue; }
      top=$(echo "$replay" | grep -E '^ +#[0-9]+ ' | grep -m1 -E 'libhdf5|\.c:[0-9]+')
      case $top in
        *libhdf5*) upstream=$((upstream + 1)) ;;
        *) after=$((after + 1)) && echo "$name: $c: $top" >>"$log" ;;
      esac
    done
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if [ -z "$execs" ]; then # fork mode: "#N: cov: .. corp: .. exec/s: R .."
    execs=$(grep -o '^#[0-9]*:' "$log" | tail -1 | tr -d '#:')
    rate=$((${execs:-0} / SECONDS_EACH))
  fi
  units=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | sed 's/corp: //')
  result=ok
  [ "$hangs" -gt 0 ] && result="ok ($hangs hang(s))"
  [ "$upstream" -gt 0 ] && result="ok ($upstream crash(es)/hang(s)/OOM(s) inside libhdf5, in $crashes)"
  [ "$unrepro" -gt 0 ] && result="$result, $unrepro not reproduced"
  if { [ $rc -ne 0 ] && [ ${#mode[@]} -eq 0 ]; } || [ "$after" -gt "$before" ]; then
    result="CRASH (rc $rc; see $log)"
    crashed=1
  fi
  printf '%-18s %12s %10s %8s %8s  %s\n' "$name" "${execs:-?}" "${rate:-?}" "${units:-?}" $((after - before)) "$result"
done
exit $crashed
