#!/usr/bin/env bash
# The whole test suite (engine, CLI, MPI driver, fuzz replays) built with AddressSanitizer +
# UndefinedBehaviorSanitizer (cmake -DSDPRUNE_SANITIZE=ON, gcc or clang) and run by ctest:
#   tests/asan.sh [CTEST ARGS...]        e.g. tests/asan.sh -R torch_zip
# Environment: ASAN_BUILD (build folder, default build-asan; configured and built when needed), ASAN_JOBS (2).
# Any sanitizer report fails its test: UBSan stops at the first finding (-fno-sanitize-recover), ASan and LSan
# exit non-zero. Per-binary options come from tests/asan/BINARY.options (ASan's include_if_exists with %b):
# sdprune-mpi runs without LeakSanitizer, because Open MPI 4.1 dlcloses its components in MPI_Finalize, so the
# allocations they keep until exit show as "<unknown module>" and no suppression can name them (ASan and
# UBSan stay on). tests/asan/lsan.supp names the libraries whose exit-time leaks are not sdprune's.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${ASAN_BUILD:-build-asan}
JOBS=${ASAN_JOBS:-2}
if [ ! -f "$BUILD/CMakeCache.txt" ]; then
  cmake -S . -B "$BUILD" -DSDPRUNE_SANITIZE=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
fi
cmake --build "$BUILD" -j "$JOBS"
# detect_leaks: on (the default on Linux, said for clarity); abort_on_error off, so the exit status is the
# test's failure and the report stays on stderr; the binaries are run by shell tests and by mpirun, which
# pass these variables on.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:include_if_exists=$PWD/tests/asan/%b.options}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/tests/asan/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
cd "$BUILD"
ctest --output-on-failure -j "$JOBS" "$@"
