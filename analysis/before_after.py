#!/usr/bin/python3
"""The before/after table of an attack run: one row per attack set, one column per model (in the job's
order, e.g. base, esd-u, esd-u+mask), each cell the ASR with successes/judged, then the change of the
last model against the one before it in points; with the mask's sparsity when RUN/mask.h5 is there.
Markdown on stdout, also written to RUN/plots/before_after.csv. Reads only RUN/metrics.h5 (/metrics,
/models) and RUN/mask.h5's attributes; not a replacement for summary.md, which has every column.
"""
import argparse
import json
import os
import sys

import h5py
import pandas as pd

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runfiles  # noqa: E402


def table(metrics_path):
    """(DataFrame set x model of ASR, DataFrame of 'k/n', model order, set order) from metrics.h5."""
    with h5py.File(metrics_path, "r") as f:
        m = runfiles.read_table(f, "metrics")
        models = [x.decode() if isinstance(x, bytes) else x for x in f["models"]["name"][:]]
        sets = [x.decode() if isinstance(x, bytes) else x for x in f["sets"]["name"][:]]
    asr = m.pivot(index="set", columns="model", values="asr").reindex(index=sets, columns=models)
    m["count"] = m.successes.astype(str) + "/" + m.n.astype(str)
    count = m.pivot(index="set", columns="model", values="count").reindex(index=sets, columns=models)
    return asr, count, models, sets


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Example: analysis/before_after.py out/demo")
    p.add_argument("run", help="run folder (metrics.h5, optionally mask.h5)")
    p.add_argument("--out", help="output folder for before_after.csv (default RUN/plots)")
    a = p.parse_args(argv)
    path = runfiles.require_file(runfiles.run_file(a.run, runfiles.METRICS), "sdprune attack's output")
    asr, count, models, sets = table(path)
    head = "| set | " + " | ".join(models) + (f" | {models[-1]} vs {models[-2]} |" if len(models) > 1 else " |")
    print(head)
    print("|---|" + "--:|" * (len(models) + (1 if len(models) > 1 else 0)))
    for s in sets:
        cells = [f"{100 * asr.at[s, mo]:.1f}% ({count.at[s, mo]})" if pd.notna(asr.at[s, mo]) else "-"
                 for mo in models]
        if len(models) > 1:
            d = asr.at[s, models[-1]] - asr.at[s, models[-2]]
            cells.append(f"{100 * d:+.1f} pt" if pd.notna(d) else "-")
        print(f"| {s} | " + " | ".join(cells) + " |")
    mask = runfiles.run_file(a.run, runfiles.MASK)
    if os.path.isfile(mask):
        with h5py.File(mask, "r") as f:
            at = f.attrs
            params = json.loads(at["params"]) if "params" in at else {}
            print(f"\nmask: {at['method'].decode() if isinstance(at['method'], bytes) else at['method']}, "
                  f"{int(at['pruned_weights'])} of {int(at['total_weights'])} ff.net.2 weights pruned "
                  f"(sparsity {float(at['sparsity']):.4f}; {', '.join(f'{k} {v}' for k, v in params.items() if k in ('ratio', 'tau'))})")
    out = runfiles.output_dir(a.run, a.out)
    df = asr.copy()
    df.columns = [f"asr_{c}" for c in df.columns]
    df.index.name = "set"
    df.to_csv(os.path.join(out, "before_after.csv"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
