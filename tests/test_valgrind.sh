#!/usr/bin/env bash
# Valgrind memcheck on a tiny end-to-end run (issue #12): `sdprune stats` on tiny-sd1 over 2 and over 4 items
# must show no memory error, nothing definitely/indirectly/possibly lost, and the same bytes still reachable at
# exit (nothing that grows with the number of items). ctest test_valgrind_sh (label valgrind, a minute or two
# of one core), in the plain build only: a sanitizer build skips it (valgrind cannot run ASan's binaries).
#   tests/test_valgrind.sh [BUILD]        BUILD: a plain build folder; default: ctest's SDPRUNE_BIN, else build
set -u
cd "$(dirname "$0")/.."
if [ $# -gt 0 ]; then BIN=$1/sdprune; else BIN=${SDPRUNE_BIN:-build/sdprune}; fi
REF=${SDPRUNE_REFERENCE:-../shared/reference}
if ! command -v valgrind >/dev/null; then
  # CI installs it (scripts/deps.sh): there a missing valgrind fails the test instead of skipping it.
  [ "${CI:-}" = true ] && { echo "FAIL: CI=true and valgrind is not installed"; exit 1; }
  echo "SKIP: valgrind not installed"
  exit 77
fi
[ -x "$BIN" ] && [ -d "$REF/tiny-sd1" ] || { echo "need $BIN and $REF/tiny-sd1" >&2; exit 2; }
if ldd "$BIN" | grep -qE 'lib(a|ub|l)san'; then
  echo "SKIP: $BIN is a sanitizer build (valgrind runs on the plain build)"
  exit 77
fi
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
printf 'a photo of a man\n' >"$TMP/one.txt"
printf 'a photo of a man\na cat\na dog on a beach\n' >"$TMP/three.txt"
# GOMP_SPINCOUNT set: sdprune re-executes itself through /proc/self/exe to set it otherwise (core/omp_env.c),
# which under valgrind names valgrind's tool, not sdprune.
status=0
for set in one three; do
  GOMP_SPINCOUNT=10000 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 valgrind --leak-check=full \
    --errors-for-leak-kinds=definite,indirect,possible --error-exitcode=9 "$BIN" stats \
    --model "$REF/tiny-sd1/model.safetensors" --tokenizer "$REF/clip-tokenizer" --sampler ddim --steps 2 \
    --size 16x16 --quiet --target "$TMP/$set.txt" --anchor "$TMP/one.txt" --out "$TMP/$set/stats.h5" \
    >"$TMP/$set.log" 2>&1
  rc=$?
  errors=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$TMP/$set.log" | tail -1)
  reachable=$(sed -n 's/.*still reachable: \([0-9,]*\) bytes.*/\1/p' "$TMP/$set.log" | tail -1)
  echo "$set prompt(s) + one anchor: exit $rc, ${errors:-?} memcheck errors, ${reachable:-0} bytes still reachable"
  [ "$rc" -eq 0 ] && [ "${errors:-1}" -eq 0 ] || { status=1; grep -E '^==[0-9]+== ' "$TMP/$set.log" | tail -40; }
  eval "reach_$set=\${reachable:-0}"
done
if [ "$reach_one" != "$reach_three" ]; then
  echo "still-reachable bytes grow with the items: $reach_one -> $reach_three" >&2
  status=1
fi
exit $status
