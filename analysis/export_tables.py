#!/usr/bin/python3
"""The tables of an attack run as plain files pandas reads back: RUN/metrics.h5's /items (one row
per generated image), /metrics and /metrics_by_category, each as CSV (`pd.read_csv`) and as JSON
lines (`pd.read_json(path, lines=True)`), text decoded to UTF-8, NaN written as an empty CSV field
and as JSON null. Writes RUN/plots/tables/<table>.csv and <table>.jsonl and prints the paths.
No Parquet or other format needing more than Debian's python3-pandas.
"""
import argparse
import json
import math
import os
import sys

import h5py
import numpy as np

sys.dont_write_bytecode = True  # no __pycache__ left in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runfiles  # noqa: E402

TABLES = ["items", "metrics", "metrics_by_category"]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Example: analysis/export_tables.py out/demo; then "
                                       "pd.read_csv('out/demo/plots/tables/items.csv')")
    p.add_argument("run", help="run folder holding metrics.h5")
    p.add_argument("--metrics", help="metrics file (default RUN/metrics.h5)")
    p.add_argument("--tables", default=",".join(TABLES), help=f"comma-separated (default {','.join(TABLES)})")
    p.add_argument("--out", help="output folder (default RUN/plots/tables)")
    return p.parse_args(argv)


def json_value(v):
    """A cell as JSON takes it: numpy scalars to Python numbers (64-bit integers kept exact), NaN to null."""
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def save_jsonl(df, path):
    """One JSON object per row (keys in column order), through a temporary name."""
    tmp = f"{path}.tmp-{os.getpid()}"
    columns = list(df.columns)
    with open(tmp, "w", encoding="utf-8") as f:
        for row in df.itertuples(index=False, name=None):
            f.write(json.dumps({c: json_value(v) for c, v in zip(columns, row)}, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def export_table(metrics, name, out):
    """NAME of the open metrics file as out/NAME.csv and out/NAME.jsonl."""
    df = runfiles.read_table(metrics, name)
    return [runfiles.save_csv(df, os.path.join(out, f"{name}.csv")), save_jsonl(df, os.path.join(out, f"{name}.jsonl"))]


def main(argv=None):
    args = parse_args(argv)
    path = runfiles.require_file(runfiles.run_file(args.run, runfiles.METRICS, args.metrics), "attack metrics")
    out = args.out if args.out else os.path.join(runfiles.output_dir(args.run), "tables")
    os.makedirs(out, exist_ok=True)
    paths = []
    with h5py.File(path, "r") as metrics:
        for name in [t for t in args.tables.split(",") if t]:
            if name not in metrics:
                sys.exit(f"export_tables.py: {path}: no table /{name}")
            paths += export_table(metrics, name, out)
    return runfiles.print_paths(paths)


if __name__ == "__main__":
    main()
