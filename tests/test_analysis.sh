#!/usr/bin/env bash
# The analysis scripts on a real run: the demo job with small settings over 2 MPI ranks (stats with 4
# steps, mask tau 4, then the attack with 4 steps on 2 rows of demo.csv and a counterpart set, the detector's
# threshold lowered so that some items succeed), then analysis/report.py RUN. Checks that every PNG is
# written, and that the plotted numbers (the CSV each script writes beside its PNG) equal the HDF5
# files: ASR and Wilson bounds against /metrics, concept-neuron counts against mask.h5, heatmap cells
# recomputed from stats.h5 sums and counts, re-activation curves against /reactivation; the tables
# exported as CSV and JSON lines read back by pandas equal /items; each script's --help and errors.
. "$(dirname "$0")/testlib.sh"
SRC=${SDPRUNE_SOURCE:-$(cd "$(dirname "$0")/.." && pwd)}
MPI_BIN=${SDPRUNE_MPI_BIN:-$(dirname "$BIN")/sdprune-mpi}
PY=/usr/bin/python3
skip() {
  if [ "${CI:-}" = true ]; then
    echo "$1 (under CI)" >&2
    exit 1
  fi
  echo "SKIP: $1"
  exit 77
}
[ -x "$MPI_BIN" ] || skip "no sdprune-mpi beside $BIN (SDPRUNE_BUILD_MPI=OFF?)"
$PY -c 'import h5py, numpy, pandas, matplotlib' 2>/dev/null ||
  skip "Debian's python3-h5py/numpy/pandas/matplotlib missing (scripts/deps.sh installs them)"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1
export SDPRUNE_SYNTH_CACHE="$TMP/synth"
RUN="$TMP/run"
run_np() { (cd "$SRC" && "${MPIEXEC:-mpirun}" --oversubscribe -np 2 "$MPI_BIN" "$@"); }

t0=$(date +%s)
run_np run jobs/demo-synth.yaml --out "$RUN" --set sampler.steps=4 --set sampler.max_steps=4 --set mask.tau=4 \
  2>"$TMP/run.log"
check "the small demo run (log: $(tail -n 2 "$TMP/run.log" | tr '\n' ' '))" [ $? -eq 0 ]
run_np attack jobs/demo-synth.yaml --out "$RUN" --set sampler.steps=4 --set sampler.limit=2 --set attack.detector.threshold=0.04 \
  --set 'attack.sets=[{name: demo, file: jobs/prompts/demo.csv, counterpart: plain}, {name: plain, file: jobs/prompts/demo.csv}]' \
  >/dev/null 2>"$TMP/attack.log"
check "the small demo attack (log: $(tail -n 2 "$TMP/attack.log" | tr '\n' ' '))" [ $? -eq 0 ]
echo "run + attack: $(($(date +%s) - t0)) s"

t0=$(date +%s)
$PY "$SRC/analysis/report.py" "$RUN" >"$TMP/report.out" 2>"$TMP/report.err"
check "report.py RUN exits 0 ($(tr '\n' ' ' <"$TMP/report.err"))" [ $? -eq 0 ]
echo "report.py: $(($(date +%s) - t0)) s"
for f in asr.png concept_neurons.png activation_heatmap.png reactivation_curves.png reactivation_items.png \
  asr.csv concept_neurons.csv activation_heatmap.csv reactivation_curves.csv \
  tables/items.csv tables/items.jsonl tables/metrics.csv tables/metrics.jsonl; do
  check "report.py wrote plots/$f and printed its path" grep -qx "$RUN/plots/$f" "$TMP/report.out"
  check "... plots/$f is there and not empty" [ -s "$RUN/plots/$f" ]
done
check "the PNGs are PNG images of a plausible size" $PY -c "
import glob, struct, sys
pngs = glob.glob('$RUN/plots/*.png'); assert len(pngs) == 5, pngs
for p in pngs:
    b = open(p, 'rb').read(24)
    w, h = struct.unpack('>II', b[16:24])
    assert b[:8] == b'\x89PNG\r\n\x1a\n' and 200 < w < 4000 and 150 < h < 4000, (p, w, h)
"

# plotted values against the HDF5 files (tolerance: the CSVs print doubles with 17 digits, exact)
check "asr.csv: one bar per model x set with /metrics' asr, asr_lo, asr_hi, successes, n; post_asr for the counterpart set" $PY -c "
import h5py, numpy as np, pandas as pd
m = pd.DataFrame(h5py.File('$RUN/metrics.h5')['metrics'][:])
for c in ('model', 'set', 'counterpart'): m[c] = m[c].str.decode('utf-8')
bars = pd.read_csv('$RUN/plots/asr.csv', keep_default_na=False, na_values=[''], float_precision='round_trip')
asr = bars[bars.quantity == 'asr'].merge(m, on=['model', 'set'])
assert len(asr) == len(m) == 4, (len(asr), len(m))
for a, b in (('value', 'asr'), ('lo', 'asr_lo'), ('hi', 'asr_hi'), ('successes_x', 'successes_y'), ('n_x', 'n_y')):
    assert np.array_equal(asr[a].to_numpy(float), asr[b].to_numpy(float)), (a, asr[[a, b]])
assert asr.value.gt(0).any() and asr.value.lt(1).any(), 'the lowered threshold gives some successes'
post = bars[bars.quantity == 'post_asr'].merge(m, on=['model', 'set'])
assert len(post) == 2 and (post.counterpart == 'plain').all(), post
for a, b in (('value', 'post_asr'), ('lo', 'post_asr_lo'), ('hi', 'post_asr_hi'), ('pre_asr_x', 'pre_asr_y')):
    assert np.array_equal(post[a].to_numpy(float), post[b].to_numpy(float)), (a, post[[a, b]])
"
check "concept_neurons.csv: per layer the mask's pruned columns and weights" $PY -c "
import h5py, numpy as np, pandas as pd
f = h5py.File('$RUN/mask.h5'); c = pd.read_csv('$RUN/plots/concept_neurons.csv')
assert len(c) == len(f['masks']) == 7, len(c)
for r in c.itertuples():
    g = f['masks'][r.layer]
    cols = set((g['weights'][:] % g.attrs['cols']).tolist()) | set(g['neurons'][:].tolist())
    assert r.concept_neurons == len(cols) and r.width == g.attrs['cols'], r
assert c.pruned_weights.sum() == f.attrs['pruned_weights'], (c.pruned_weights.sum(), f.attrs['pruned_weights'])
"
check "activation_heatmap.csv: every cell is sum * 2^-24 / count of the cond branch in stats.h5" $PY -c "
import h5py, numpy as np, pandas as pd
f = h5py.File('$RUN/stats.h5'); h = pd.read_csv('$RUN/plots/activation_heatmap.csv', float_precision='round_trip')
scale = f.attrs['fixed_point_scale']
assert set(h.set) == {'target', 'anchor', 'demo'} and h['rank'].nunique() == 32 and h.step.nunique() == 4, h.describe()
g = {(s, l): f['sets'][s][l] for s in set(h.set) for l in set(h.layer)}
want = [g[s, l]['sum'][t, 1, j] * scale / g[s, l]['count'][t, 1] for s, l, j, t in zip(h.set, h.layer, h.neuron, h.step)]
err = np.max(np.abs(h['mean'].to_numpy() - np.array(want)))
print('heatmap worst abs error', err); assert err <= 1e-12
m = h5py.File('$RUN/mask.h5')
assert all(j in set((m['masks'][l]['weights'][:] % m['masks'][l].attrs['cols']).tolist()) for l, j in zip(h.layer, h.neuron)), 'shown neurons are concept neurons'
assert np.array_equal(h.groupby('step').timestep.first().to_numpy(), f['timesteps'][:])
"
check "reactivation_curves.csv: the /reactivation/<model>/<set> curves over /timesteps" $PY -c "
import h5py, numpy as np, pandas as pd
f = h5py.File('$RUN/metrics.h5'); c = pd.read_csv('$RUN/plots/reactivation_curves.csv')
assert len(c.groupby(['model', 'set'])) == 4
for (model, s), g in c.groupby(['model', 'set']):
    want = f['reactivation'][model][s][:]
    assert np.allclose(g.reactivation.to_numpy(), want, rtol=0, atol=1e-7, equal_nan=True), (model, s)
    assert np.array_equal(g.timestep.to_numpy(), f['timesteps'][:])
"
check "tables/items.csv and items.jsonl read by pandas equal /items (text decoded, 8 rows)" $PY -c "
import h5py, numpy as np, pandas as pd
d = pd.DataFrame(h5py.File('$RUN/metrics.h5')['items'][:])
a = pd.read_csv('$RUN/plots/tables/items.csv', keep_default_na=False, dtype={'case_id': str}, float_precision='round_trip')
b = pd.read_json('$RUN/plots/tables/items.jsonl', lines=True, dtype=False, precise_float=True)
assert len(d) == len(a) == len(b) == 8 and list(a.columns) == list(b.columns) == list(d.columns)
for c in ('model', 'set', 'prompt', 'image', 'case_id'):
    want = d[c].str.decode('utf-8').tolist()
    assert a[c].tolist() == want and b[c].tolist() == want, c
for c in ('seed', 'success', 'reactivation', 'score'):
    assert np.array_equal(a[c].to_numpy(float), d[c].to_numpy(float)) and np.array_equal(b[c].to_numpy(float), d[c].to_numpy(float)), c
"

# the before/after table: one row per set, one ASR column per model in /models order, the change in points
$PY "$SRC/analysis/before_after.py" "$RUN" >"$TMP/ba.md" 2>"$TMP/ba.err"
check "before_after.py RUN exits 0 ($(tr '\n' ' ' <"$TMP/ba.err"))" [ $? -eq 0 ]
check "... its cells and before_after.csv are /metrics' asr and successes/n (header: $(head -n 1 "$TMP/ba.md"))" $PY -c "
import h5py, numpy as np, pandas as pd
f = h5py.File('$RUN/metrics.h5')
m = pd.DataFrame(f['metrics'][:])
for c in ('model', 'set'): m[c] = m[c].str.decode('utf-8')
models = [x.decode() for x in f['models']['name'][:]]
lines = open('$TMP/ba.md').read().splitlines()
assert lines[0] == '| set | ' + ' | '.join(models) + ' | %s vs %s |' % (models[-1], models[-2]), lines[0]
rows = {l.split(' | ')[0][2:]: l.strip('| ').split(' | ')[1:] for l in lines[2:] if l.startswith('| ')}
assert set(rows) == set(m.set), rows
for r in m.itertuples():
    cell = rows[r.set][models.index(r.model)]
    assert cell == '%.1f%% (%d/%d)' % (100 * r.asr, r.successes, r.n), (cell, r)
for s, cells in rows.items():
    a = m[m.set == s].set_index('model').asr
    assert cells[-1] == '%+.1f pt' % (100 * (a[models[-1]] - a[models[-2]])), (s, cells)
csv = pd.read_csv('$RUN/plots/before_after.csv', index_col='set', float_precision='round_trip')
for r in m.itertuples(): assert csv.at[r.set, 'asr_' + r.model] == r.asr
assert any(l.startswith('mask: wanda, ') for l in lines), lines[-1]
"
# each script alone, --help, and its errors
for s in plot_asr plot_concept_neurons plot_activation_heatmap plot_reactivation export_tables report before_after; do
  check "$s.py --help" bash -c "$PY '$SRC/analysis/$s.py' --help | grep -q usage"
done
$PY "$SRC/analysis/plot_activation_heatmap.py" "$RUN" --neurons top --top 5 --out "$TMP/alone" >"$TMP/alone.out"
check "plot_activation_heatmap.py --neurons top --out DIR prints its two paths" \
  bash -c "[ \$(wc -l <'$TMP/alone.out') -eq 2 ] && [ -s '$TMP/alone/activation_heatmap.png' ]"
check "... --top 5 shows 5 neurons" $PY -c "
import pandas as pd; assert pd.read_csv('$TMP/alone/activation_heatmap.csv')['rank'].nunique() == 5"
mkdir -p "$TMP/statsonly" && cp "$RUN/stats.h5" "$TMP/statsonly/"
$PY "$SRC/analysis/report.py" "$TMP/statsonly" >"$TMP/statsonly.out" 2>"$TMP/statsonly.err"
check "report.py on a folder with stats.h5 alone: exit 0, the heatmap of the top neurons, the rest skipped" bash -c \
  "[ $? -eq 0 ] && [ \$(wc -l <'$TMP/statsonly.out') -eq 2 ] && grep -q 'ASR bars: skipped, no metrics.h5' '$TMP/statsonly.err'"
$PY "$SRC/analysis/report.py" "$TMP/nothing" 2>"$TMP/nothing.err"
check "report.py on a folder without run files: exit 1 and one line" bash -c \
  "[ $? -eq 1 ] && grep -q 'no stats.h5, mask.h5 or metrics.h5' '$TMP/nothing.err' && [ ! -e '$TMP/nothing/plots' ]"
$PY "$SRC/analysis/plot_asr.py" "$TMP/statsonly" 2>"$TMP/noasr.err"
check "plot_asr.py without metrics.h5: exit 1 naming the file" bash -c \
  "[ $? -eq 1 ] && grep -q 'statsonly/metrics.h5: no such file' '$TMP/noasr.err'"
finish
