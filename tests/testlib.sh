# Shared by the shell tests (sourced, not run): counters, check, a temporary folder, the reference
# data check, and the closing line "N passed, N failed" with the matching exit status.
set -u
BIN=${SDPRUNE_BIN:?SDPRUNE_BIN must name the sdprune binary}
REF=${SDPRUNE_REFERENCE:-}
passed=0
failed=0
TMP=$(mktemp -d)
trap '[ -n "${KEEP_TMP:-}" ] || rm -rf "$TMP"' EXIT

# check WHAT CMD...: counts CMD's success; prints WHAT on failure.
check() {
  local what=$1
  shift
  if "$@"; then passed=$((passed + 1)); else
    failed=$((failed + 1))
    echo "FAIL: $what" >&2
  fi
}

# Skips the test (77) without the reference data, or fails under CI=true.
require_reference() {
  if [ ! -d "$REF/tiny-sd1" ]; then
    if [ "${CI:-}" = true ]; then
      echo "reference data missing under CI: $REF" >&2
      exit 1
    fi
    echo "SKIP: reference data not found ($REF)"
    exit 77
  fi
}

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
