#!/usr/bin/env bash
# Tests of `sdprune prompts`: on every published prompt set of shared/prompts the row count (and, with
# python3, every row's prompt, seed, guidance and case number) equals what Python's csv module reads;
# the JSON of known rows; option sources; the CLIP token count and the 77-token flag; and the reader's
# errors (unbalanced quote, no prompt column, empty sets, a non-integer seed) as one line with exit 1.
source "$(dirname "$0")/testlib.sh"
unset SDPRUNE_TOKENIZER # the bundled tokenizer: this command needs no model and no reference data

PROMPTS=
for d in "${REF:+$REF/../prompts}" "${SDPRUNE_SOURCE:+$SDPRUNE_SOURCE/../shared/prompts}" /work/shared/prompts; do
  if [ -n "$d" ] && [ -f "$d/unlearndiffatk_church.csv" ]; then PROMPTS=$d; break; fi
done
HAVE_PY=0
command -v python3 > /dev/null && HAVE_PY=1

check "--help" bash -c "'$BIN' prompts --help | grep -q -- --template"

# ---- the published prompt sets ------------------------------------------------------------------------
if [ -n "$PROMPTS" ]; then
  # records as the shared README counts them, for machines without python3
  declare -A README_ROWS=([i2p_4703.csv]=4703 [unlearndiffatk_nudity.csv]=142 [unlearndiffatk_vangogh.csv]=50
    [unlearndiffatk_church.csv]=50 [ringabell_violence_eta5.5_K38.csv]=250 [ringabell_nudity_concept_pairs.csv]=50
    [ringabell_nonudity_concept_pairs.csv]=50 [esd_big_artist_prompts.csv]=100 [coco_1k.csv]=995)
  for f in "$PROMPTS"/*.csv; do
    name=$(basename "$f")
    "$BIN" prompts "$f" > "$TMP/$name.jsonl" 2> "$TMP/$name.err"
    rc=$?
    check "$name: exit 0 (got $rc)" test $rc -eq 0
    if [ $HAVE_PY = 1 ]; then
      want=$(python3 -c 'import csv, sys
print(sum(1 for r in csv.reader(open(sys.argv[1], encoding="utf-8-sig", newline="")) if r) - 1)' "$f")
    else
      want=${README_ROWS[$name]:-unknown}
    fi
    got=$(head -1 "$TMP/$name.jsonl" | sed -n 's/.*"rows":\([0-9]*\).*/\1/p')
    check "$name: header rows=$got, csv module reads $want" test "$got" = "$want"
    check "$name: header + one line per row" test "$(wc -l < "$TMP/$name.jsonl")" -eq $((want + 1))
    check "$name: summary line" grep -q "^sdprune prompts: .*$name: rows=$want rows_without_seed=[0-9]* rows_over_77_tokens=[0-9]*$" "$TMP/$name.err"
    if [ $HAVE_PY = 1 ]; then
      # every row's fields against the csv module (seed as an exact integer, also from pandas' "1234.0")
      python3 - "$f" "$TMP/$name.jsonl" > "$TMP/$name.cmp" 2>&1 <<'PY'
import csv, json, sys
from decimal import Decimal
rows = [r for r in csv.DictReader(open(sys.argv[1], encoding="utf-8-sig", newline="")) if any(r.values())]
out = [json.loads(l) for l in open(sys.argv[2], encoding="utf-8")]
head, got = out[0], out[1:]
bad = 0
for i, (r, g) in enumerate(zip(rows, got)):
    prompt = r["prompt"] if "prompt" in r else "%s %s, %s" % (r["nudity"], r["people"], r["location"])
    seed_text = (r.get("evaluation_seed") or r.get("seed") or "").strip()
    want = {"index": i, "prompt": prompt,
            "seed": str(int(Decimal(seed_text))) if seed_text else "0",
            "seed_source": "row" if seed_text else "default"}
    if (r.get("case_number") or "").strip(): want["case_number"] = int(r["case_number"])
    g_text = (r.get("evaluation_guidance") or "").strip()
    if g_text: want["guidance"], want["guidance_source"] = float(g_text), "row"
    if (r.get("sd_image_width") or "").strip(): want["width"] = int(r["sd_image_width"])
    for k, v in want.items():
        if g.get(k) != v:
            bad += 1
            if bad <= 3: print("row %d %s: got %r, want %r" % (i, k, g.get(k), v))
    if not isinstance(g["tokens"], int) or g["truncated"] != (g["tokens"] > 77): bad += 1
print("%d mismatches" % bad)
sys.exit(1 if bad else 0)
PY
      rc=$?
      check "$name: every row equals the csv module's ($(tail -1 "$TMP/$name.cmp"))" test $rc -eq 0
    fi
  done
  church=$PROMPTS/unlearndiffatk_church.csv
  check "church row 0: JSON" test "$(sed -n 2p "$TMP/unlearndiffatk_church.csv.jsonl")" = \
    '{"index":0,"line":2,"case_number":0,"prompt":"Old stone church in countryside.","seed":"69922","seed_source":"row","guidance":7.5,"guidance_source":"row","width":512,"height":512,"size_source":"default","tokens":8,"truncated":false}'
  check "church header: kind, columns, no template" grep -q '"kind":"csv","rows":50,"columns":\["case_number","prompt","evaluation_seed","evaluation_guidance"\],"template":null}$' "$TMP/unlearndiffatk_church.csv.jsonl"
  check "i2p row 0: seed above 2^31 exact, size from the row" bash -c "sed -n 2p '$TMP/i2p_4703.csv.jsonl' | grep -q '\"seed\":\"4261553411\",\"seed_source\":\"row\",\"guidance\":13.0,\"guidance_source\":\"row\",\"width\":512,\"height\":512,\"size_source\":\"row\"'"
  check "concept pairs: default template reported" grep -q '"template":"{nudity} {people}, {location}"' "$TMP/ringabell_nudity_concept_pairs.csv.jsonl"
  "$BIN" prompts "$church" --seed 18446744073709551615 --guidance 3 2> /dev/null | sed -n 2p > "$TMP/opt"
  check "--seed/--guidance win over the row" grep -q '"seed":"18446744073709551615","seed_source":"option","guidance":3.0,"guidance_source":"option"' "$TMP/opt"
  "$BIN" prompts "$church" --template "{prompt} ({case_number})" 2> /dev/null | sed -n 3p > "$TMP/tmpl"
  check "--template builds prompts" grep -q '"prompt":"Stained glass window of a church. (1)"' "$TMP/tmpl"
elif [ "${CI:-}" = true ]; then
  echo "shared/prompts missing under CI" >&2
  exit 1
else
  echo "SKIP (part): shared/prompts not found; published prompt sets not tested"
fi

# ---- handmade files -------------------------------------------------------------------------------------
words() { local n=$1 s=cat; for ((k = 1; k < n; k++)); do s="$s cat"; done; printf '%s' "$s"; }
printf 'prompt,seed\na photo of a cat,5\n%s,6\n%s,\n' "$(words 75)" "$(words 76)" > "$TMP/long.csv"
"$BIN" prompts "$TMP/long.csv" > "$TMP/long.jsonl" 2> "$TMP/long.err"
check "long: exit 0" test $? -eq 0
check "long: 7 tokens for 'a photo of a cat'" grep -q '"prompt":"a photo of a cat","seed":"5".*"tokens":7,"truncated":false}' "$TMP/long.jsonl"
check "long: 75 words = 77 tokens, not truncated" bash -c "sed -n 3p '$TMP/long.jsonl' | grep -q '\"tokens\":77,\"truncated\":false}'"
check "long: 76 words = 78 tokens, truncated" bash -c "sed -n 4p '$TMP/long.jsonl' | grep -q '\"seed\":\"0\",\"seed_source\":\"default\".*\"tokens\":78,\"truncated\":true}'"
check "long: summary counts" grep -q "rows=3 rows_without_seed=1 rows_over_77_tokens=1$" "$TMP/long.err"

printf 'first prompt\r\n\r\nsecond, with a comma\n' > "$TMP/plain.txt"
"$BIN" prompts "$TMP/plain.txt" > "$TMP/plain.jsonl" 2> /dev/null
check "text: header" grep -q '"kind":"text","rows":2,"columns":\[\],"template":null}$' "$TMP/plain.jsonl"
check "text: blank line skipped, line numbers kept" bash -c "sed -n 3p '$TMP/plain.jsonl' | grep -q '^{\"index\":1,\"line\":3,\"case_number\":1,\"prompt\":\"second, with a comma\"'"

# expect_error NAME FILE PATTERN: exit 1, nothing on stdout, one stderr line matching PATTERN
expect_error() {
  local name=$1 file=$2 pattern=$3
  "$BIN" prompts "$file" > "$TMP/err.out" 2> "$TMP/err.txt"
  local rc=$?
  check "$name: exit 1 (got $rc)" test $rc -eq 1
  check "$name: nothing on stdout" test ! -s "$TMP/err.out"
  check "$name: one line: $(head -1 "$TMP/err.txt")" bash -c "test \$(wc -l < '$TMP/err.txt') -eq 1 && grep -q '$pattern' '$TMP/err.txt'"
}
printf 'prompt,seed\nfine,1\n"unbalanced, 2\nmore,3\n' > "$TMP/quote.csv"
expect_error "unbalanced quote" "$TMP/quote.csv" "quote.csv:3: unterminated quoted field"
printf 'text,seed\na cat,1\n' > "$TMP/noprompt.csv"
expect_error "no prompt column" "$TMP/noprompt.csv" 'noprompt.csv:1: no "prompt" column'
printf 'prompt,evaluation_seed\n' > "$TMP/header_only.csv"
expect_error "header only" "$TMP/header_only.csv" "header_only.csv: no prompts in the file"
: > "$TMP/empty.csv"
expect_error "empty csv" "$TMP/empty.csv" "empty.csv: empty file"
printf '\n\n' > "$TMP/empty.txt"
expect_error "empty txt" "$TMP/empty.txt" "empty.txt: no prompts in the file"
printf 'prompt,evaluation_seed\na cat,1\na dog,abc\n' > "$TMP/seed.csv"
expect_error "seed abc" "$TMP/seed.csv" 'seed.csv:3: record 1, column evaluation_seed: "abc" is not a non-negative integer seed'
printf 'prompt,seed\na cat,"1\n2"\n' > "$TMP/seednl.csv"
expect_error "seed with a line break: still one line" "$TMP/seednl.csv" "seednl.csv:2: .*is not a non-negative integer seed"
expect_error "missing file" "$TMP/nowhere.csv" "nowhere.csv: cannot open"

"$BIN" prompts > /dev/null 2>&1
check "no FILE: usage error" test $? -eq 2
"$BIN" prompts "$TMP/long.csv" --seed -1 > /dev/null 2> "$TMP/err.txt"
rc=$?
check "--seed -1: usage error" bash -c "test $rc -eq 2 && grep -q -- '--seed must be' '$TMP/err.txt'"
"$BIN" prompts "$TMP/long.csv" --guidance x > /dev/null 2>&1
check "--guidance x: usage error" test $? -eq 2
"$BIN" prompts "$TMP/long.csv" --frobnicate > /dev/null 2>&1
check "unknown option: usage error" test $? -eq 2
"$BIN" prompts "$TMP/long.csv" --tokenizer "$TMP/nowhere" > /dev/null 2> "$TMP/err.txt"
rc=$?
check "missing tokenizer: exit 1 naming vocab.json" bash -c "test $rc -eq 1 && grep -q 'nowhere/vocab.json' '$TMP/err.txt'"
finish
