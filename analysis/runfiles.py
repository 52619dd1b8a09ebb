"""Shared helpers of the analysis scripts: the files of a run folder, HDF5 tables as pandas DataFrames
with text columns decoded, fixed-point totals turned into mean activations, layer names shortened for
axis labels, and the writing of a figure with the numbers it plots beside it.

Reads only what sdprune writes (RUN/stats.h5, RUN/mask.h5, RUN/metrics.h5; README "stats.h5 schema",
"mask.h5", "Attack metrics"); needs only Debian's python3-h5py, numpy, pandas and matplotlib. Not a
library of sdprune itself: nothing here runs a model or changes a file of the run.
"""
import os
import sys

import numpy as np
import pandas as pd

STATS, MASK, METRICS = "stats.h5", "mask.h5", "metrics.h5"
COND = 1  # CFG branch index in stats.h5: 0 unconditional, 1 the prompt


def run_file(run, name, override=None):
    """The path of NAME in the run folder RUN, or OVERRIDE when given."""
    return override if override else os.path.join(run, name)


def output_dir(run, out=None):
    """The folder the plots go to (default RUN/plots), created if missing."""
    path = out if out else os.path.join(run, "plots")
    os.makedirs(path, exist_ok=True)
    return path


def decode_text(df):
    """Byte-string columns (h5py's view of HDF5 strings) decoded to str, in place; returns df."""
    for col in df.columns:
        if df[col].dtype == object and len(df) and isinstance(df[col].iloc[0], bytes):
            df[col] = df[col].str.decode("utf-8")
    return df


def read_table(h5, path):
    """The compound dataset PATH of an open h5py file as a DataFrame with text columns decoded."""
    return decode_text(pd.DataFrame(h5[path][:]))


def short_layer_name(layer):
    """input_blocks.1.1.transformer_blocks.0.ff.net.2 -> input_blocks.1.1.tb0 (axis labels)."""
    name = layer[:-len(".ff.net.2")] if layer.endswith(".ff.net.2") else layer
    return name.replace(".transformer_blocks.", ".tb")


def set_roles(stats):
    """[(set name, role)] of an open stats.h5 in the order target, anchor, then adversarial (file order)."""
    order = {"target": 0, "anchor": 1, "adversarial": 2}
    sets = [(name, stats["sets"][name].attrs["role"]) for name in stats["sets"]]
    sets = [(n, r.decode() if isinstance(r, bytes) else str(r)) for n, r in sets]
    return sorted(sets, key=lambda s: order.get(s[1], 3))


def mean_activation(stats, set_name, layer, branch=COND):
    """Mean activation per recorded evaluation and neuron, [n_steps, width]: sum * 2^-24 / count of one
    CFG branch (NaN where a step saw no tokens)."""
    group = stats["sets"][set_name][layer]
    scale = float(stats.attrs["fixed_point_scale"])
    count = group["count"][:, branch].astype(np.float64)
    total = group["sum"][:, branch, :].astype(np.float64) * scale
    with np.errstate(invalid="ignore", divide="ignore"):
        return total / np.where(count > 0, count, np.nan)[:, None]


def concept_neurons(mask, layer):
    """Sorted input columns of LAYER's ff.net.2 with at least one pruned weight (the mask's concept
    neurons): the columns of /masks/<layer>/weights (flat i*cols + j) and the whole neurons."""
    group = mask["masks"][layer]
    cols = int(group.attrs["cols"])
    from_weights = group["weights"][:] % cols
    return np.union1d(from_weights, group["neurons"][:]).astype(np.int64)


def save_figure(fig, path):
    """Writes FIG as a PNG at PATH (through a temporary name, then renamed) and closes it."""
    tmp = f"{path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    os.replace(tmp, path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def save_csv(df, path):
    """Writes DF as CSV (no index) through a temporary name; returns PATH."""
    tmp = f"{path}.tmp-{os.getpid()}"
    df.to_csv(tmp, index=False)
    os.replace(tmp, path)
    return path


class NothingToPlot(SystemExit):
    """The input holds nothing this plot shows (no re-activation measured, an empty mask). Uncaught it
    ends a script like sys.exit(message), status 1; report.py counts it as a skipped step, not a failure."""


def require_file(path, what):
    """Exits with one line on stderr when PATH is missing (the scripts' only error path)."""
    if not os.path.isfile(path):
        sys.exit(f"{os.path.basename(sys.argv[0])}: {path}: no such file ({what})")
    return path


def print_paths(paths):
    for p in paths:
        print(p)
    return paths


def pyplot():
    """matplotlib.pyplot on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
