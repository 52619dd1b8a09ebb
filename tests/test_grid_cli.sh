#!/usr/bin/env bash
# sdprune grid end to end on the fake attack run of tests/eval_run_fixture.py: one sheet per model x set,
# its size, every tile's frame colour against the success column (/metrics' own after an import, or
# --success), the failed item's empty tile, a letterboxed wide image, the 'items' text chunk; options and
# errors (an unreadable image named, unknown column, bad option). Needs no reference data.
. "$(dirname "$0")/testlib.sh"
PY=/usr/bin/python3
SRC=${SDPRUNE_SOURCE:-$(dirname "$0")/..}
if ! $PY -c 'import h5py, numpy, PIL' 2>/dev/null; then
  echo "SKIP: $PY lacks h5py/numpy/PIL"
  exit 77
fi
RUN="$TMP/run"
mkdir -p "$RUN"
$PY "$SRC/tests/eval_run_fixture.py" "$RUN"

"$BIN" grid "$RUN" 2>"$TMP/g1.log"
rc=$?
check "grid runs: $(cat "$TMP/g1.log")" [ $rc -eq 0 ]
check "4 sheets" bash -c "ls '$RUN'/grids/*/*.png | wc -l | grep -qx 4"
check "a line per sheet" grep -qF "sdprune grid: $RUN/grids/sd/ring.png: 4 tiles (2 success, 1 no success, 1 not judged)" "$TMP/g1.log"

# Frames and tiles, read back with PIL: cell = tile + 2 * frame, gap 2 around and between cells.
frames() { # frames TILE FRAME COLUMN: checks every sheet against /items COLUMN
  $PY - "$RUN" "$1" "$2" "$3" <<'EOF'
import sys
import h5py, numpy as np
from PIL import Image
run, tile, frame, column = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
items = h5py.File(f"{run}/metrics.h5")["items"][:]
colours = {1: (220, 40, 40), 0: (40, 170, 70), -1: (150, 150, 150)}
gap, cell, fails = 2, tile + 2 * frame, []
for model in ("esd", "sd"):
    for set_name in ("ring", "plain"):
        im = Image.open(f"{run}/grids/{model}/{set_name}.png")
        a = np.asarray(im.convert("RGB"))
        sel = sorted((r for r in items if r["model"].decode() == model and r["set"].decode() == set_name),
                     key=lambda r: (r["row"], r["seed"]))
        if a.shape != (gap + cell + gap, gap + len(sel) * (cell + gap), 3):
            fails.append(f"{model}/{set_name}: shape {a.shape}")
            continue
        ids = im.info.get("items", "").split("\n")
        if ids != [f"{model}/{set_name}/{r['row']}_seed{r['seed']}" for r in sel]:
            fails.append(f"{model}/{set_name}: items chunk {ids}")
        for k, r in enumerate(sel):
            x0 = gap + k * (cell + gap)
            want = -1 if r["failed"] else int(r[column])
            if tuple(a[gap, x0]) != colours[want] or tuple(a[gap + cell - 1, x0 + cell - 1]) != colours[want]:
                fails.append(f"{model}/{set_name} tile {k}: frame {tuple(a[gap, x0])}, want {colours[want]}")
            centre = tuple(a[gap + cell // 2, x0 + cell // 2])
            m, s = ("esd", "sd").index(model), ("ring", "plain").index(set_name)
            want_centre = (24, 24, 24) if r["failed"] else (40 * m + 10 * r["row"], 60 * s, 200)
            if centre != want_centre:
                fails.append(f"{model}/{set_name} tile {k}: centre {centre}, want {want_centre}")
        if model == "sd" and set_name == "plain":  # row 1 is 24x16: letterbox above the image
            x0 = gap + 1 * (cell + gap)
            if tuple(a[gap + frame + 1, x0 + cell // 2]) != (24, 24, 24):
                fails.append("sd/plain tile 1: no letterbox")
print("; ".join(fails) if fails else "frames ok")
sys.exit(1 if fails else 0)
EOF
}
check "default sheets: frames follow success: $(frames 128 4 success 2>&1 | tail -c 300)" frames 128 4 success

# After an import, the sheets follow /metrics' column; --success overrides it.
"$BIN" import-scores "$RUN" "$RUN/nudenet.csv" --rule nudenet@0.5 --name cp --quiet 2>/dev/null
"$BIN" grid "$RUN" --columns 3 --tile 16 --filter nearest --quiet 2>"$TMP/g2.log"
check "grid after import, --quiet: $(cat "$TMP/g2.log")" [ $? -eq 0 ] && [ ! -s "$TMP/g2.log" ]
check "3 columns of 16-pixel tiles (frame 1): 2 rows" $PY -c "
from PIL import Image; import sys
w, h = Image.open('$RUN/grids/esd/ring.png').size
sys.exit(0 if (w, h) == (2 + 3 * 20, 2 + 2 * 20) else 1)"
"$BIN" grid "$RUN" --columns 4 --tile 16 --quiet
check "frames follow success_cp: $(frames 16 1 success_cp 2>&1 | tail -c 300)" frames 16 1 success_cp
"$BIN" grid "$RUN" --columns 4 --tile 16 --success success --quiet
check "--success success: the built-in column" frames 16 1 success

# Errors.
rm "$RUN/images/esd/plain/2_seed1.png"
"$BIN" grid "$RUN" 2>"$TMP/e1.log"
check "missing image: exit 1" [ $? -eq 1 ]
check "missing image named: $(cat "$TMP/e1.log")" grep -qF "$RUN/grids/esd/plain.png: tile 2: $RUN/images/esd/plain/2_seed1.png: No such file or directory" "$TMP/e1.log"
check "missing image: no partial sheet left" bash -c "! ls '$RUN/grids/esd' | grep -q tmp"
"$BIN" grid "$RUN" --success success_nothing 2>"$TMP/e2.log"
check "unknown column: exit 1 and named" bash -c "[ $? -eq 1 ] && grep -qF \"/items has no column 'success_nothing'\" '$TMP/e2.log'"
"$BIN" grid "$RUN" --filter bicubic 2>"$TMP/e3.log"
check "bad filter: exit 2" [ $? -eq 2 ]
"$BIN" grid "$RUN" --columns 0 2>"$TMP/e4.log"
check "--columns 0: exit 2" [ $? -eq 2 ]
"$BIN" grid 2>/dev/null
check "no RUN: exit 2" [ $? -eq 2 ]
"$BIN" grid "$TMP/nowhere" 2>"$TMP/e5.log"
check "no metrics.h5: exit 1, named" bash -c "[ $? -eq 1 ] && grep -qF '$TMP/nowhere/metrics.h5' '$TMP/e5.log'"
check "--help" bash -c "'$BIN' grid --help | grep -q 'RUN/grids/<model>/<set>.png'"
finish
