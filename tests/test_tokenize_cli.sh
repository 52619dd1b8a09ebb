#!/usr/bin/env bash
# Tests of `sdprune tokenize`: ids of the reference prompts through stdin, --file and --prompt, and
# its errors (no tokenizer, missing files, invalid UTF-8 naming FILE:LINE).
set -u
BIN=${SDPRUNE_BIN:?SDPRUNE_BIN not set}
REF=${SDPRUNE_REFERENCE:-}
if [ -z "$REF" ] || [ ! -f "$REF/tokenizer_cases.jsonl" ]; then
  if [ "${CI:-}" = true ]; then echo "reference data not found and CI=true"; exit 1; fi
  echo "SKIP: reference data not found (SDPRUNE_REFERENCE=${REF:-unset})"; exit 77
fi
command -v python3 >/dev/null || { echo "SKIP: python3 needed to read the jsonl cases"; exit 77; }
TOK="$REF/clip-tokenizer"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
passed=0 failed=0
check() { # check NAME COMMAND...
  local name=$1; shift
  if "$@"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAIL: $name"; fi
}

# prompts without a line break, one per line, and their expected ids
python3 - "$REF/tokenizer_cases.jsonl" "$TMP/prompts.txt" "$TMP/want.txt" <<'PY'
import json, sys
with open(sys.argv[2], "w", encoding="utf-8", newline="") as p, open(sys.argv[3], "w") as w:
    for line in open(sys.argv[1], encoding="utf-8"):
        case = json.loads(line)
        if "\n" in case["prompt"] or "\r" in case["prompt"]:
            continue
        p.write(case["prompt"] + "\n")
        w.write(" ".join(map(str, case["ids"])) + "\n")
PY
n_cases=$(wc -l < "$TMP/want.txt")

check "--help" bash -c "'$BIN' tokenize --help | grep -q -- --tokenizer"

env -u SDPRUNE_TOKENIZER "$BIN" tokenize --prompt "a photo of a cat" > "$TMP/default.txt" 2> "$TMP/err"
rc=$?
check "bundled default tokenizer: exit 0 (got $rc)" test $rc -eq 0
check "bundled default tokenizer: ids" grep -q "^49406 320 1125 539 320 2368 49407 49407" "$TMP/default.txt"

"$BIN" tokenize --tokenizer "$TMP/nowhere" --prompt x > /dev/null 2> "$TMP/err"
rc=$?
check "missing vocab: exit 1 (got $rc)" test $rc -eq 1
check "missing vocab: message names vocab.json" grep -q "nowhere/vocab.json" "$TMP/err"

SDPRUNE_TOKENIZER="$TOK" "$BIN" tokenize < "$TMP/prompts.txt" > "$TMP/stdin.txt"
check "stdin: $n_cases reference prompts" cmp -s "$TMP/stdin.txt" "$TMP/want.txt"
"$BIN" tokenize --tokenizer "$TOK" --file "$TMP/prompts.txt" > "$TMP/file.txt"
check "--file: $n_cases reference prompts" cmp -s "$TMP/file.txt" "$TMP/want.txt"
"$BIN" tokenize --tokenizer "$TOK" --prompt "$(sed -n 1p "$TMP/prompts.txt")" --prompt "$(sed -n 2p "$TMP/prompts.txt")" > "$TMP/prompt.txt"
check "--prompt twice" cmp -s "$TMP/prompt.txt" <(sed -n 1,2p "$TMP/want.txt")

printf 'a photo of a cat\nbad \xe9 byte\n' > "$TMP/bad.txt"
"$BIN" tokenize --tokenizer "$TOK" --file "$TMP/bad.txt" > "$TMP/out" 2> "$TMP/err"
rc=$?
check "invalid UTF-8: non-zero exit" test $rc -ne 0
check "invalid UTF-8: FILE:LINE message" grep -q "bad.txt:2: invalid UTF-8" "$TMP/err"

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
