#!/usr/bin/python3
"""Concept neurons per layer of a pruning mask, from RUN/mask.h5.

A concept neuron is an input column of a transformer block's ff.net.2 (an FFN neuron, the GEGLU
output) with at least one pruned weight: the columns of /masks/<layer>/weights plus the whole neurons
of /masks/<layer>/neurons. For every masked layer, in forward order, the left panel shows how many of
its neurons are concept neurons (the bar's label gives the share of the layer's width), the right
panel how many ff.net.2 weights are pruned. Writes concept_neurons.png and concept_neurons.csv (one
row per layer: width, concept neurons, whole neurons, pruned weights, sparsity) and prints the paths.
"""
import argparse
import json
import os
import sys

import h5py
import numpy as np
import pandas as pd

sys.dont_write_bytecode = True  # no __pycache__ left in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runfiles  # noqa: E402


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Example: analysis/plot_concept_neurons.py out/demo")
    p.add_argument("run", help="run folder holding mask.h5")
    p.add_argument("--mask", help="mask file (default RUN/mask.h5)")
    p.add_argument("--out", help="output folder (default RUN/plots)")
    return p.parse_args(argv)


def layer_counts(mask):
    """One row per layer of /layers (forward order): width, concept neurons, pruned weights."""
    layers = runfiles.read_table(mask, "layers")
    rows = []
    for r in layers.itertuples():
        neurons = runfiles.concept_neurons(mask, r.layer)
        rows.append(dict(layer=r.layer, width=int(r.cols), rows=int(r.rows), concept_neurons=len(neurons),
                         whole_neurons=int(r.n_neurons), pruned_weights=int(r.pruned), sparsity=float(r.sparsity)))
    return pd.DataFrame(rows)


def mask_title(mask):
    """method, its parameters and the overall sparsity, for the figure title."""
    attrs = mask.attrs
    method = attrs["method"].decode() if isinstance(attrs["method"], bytes) else str(attrs["method"])
    try:
        params = json.loads(attrs["params"])
        shown = ", ".join(f"{k}={v}" for k, v in params.items() if not isinstance(v, list))
    except (KeyError, ValueError, TypeError):
        shown = ""
    return f"{method} ({shown}): {int(attrs['pruned_weights'])} weights, sparsity {100 * float(attrs['sparsity']):.3g}%"


def plot_counts(counts, title, png):
    plt = runfiles.pyplot()
    labels = [runfiles.short_layer_name(l) for l in counts.layer]
    y = np.arange(len(counts))
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 0.35 * len(counts) + 1.6), sharey=True)
    left.barh(y, counts.concept_neurons, color="tab:red")
    for yi, (k, w) in enumerate(zip(counts.concept_neurons, counts.width)):
        left.annotate(f"{k}/{w} ({100 * k / w:.1f}%)", (k, yi), xytext=(3, 0), textcoords="offset points",
                      va="center", fontsize=7)
    left.set_xlabel("concept neurons (ff.net.2 inputs with a pruned weight)")
    left.set_xlim(0, max(1, counts.concept_neurons.max()) * 1.45)
    right.barh(y, counts.pruned_weights, color="tab:gray")
    right.set_xlabel("pruned ff.net.2 weights")
    left.set_yticks(y)
    left.set_yticklabels(labels, fontsize=8)
    left.invert_yaxis()
    fig.suptitle(title, fontsize=10)
    runfiles.save_figure(fig, png)


def main(argv=None):
    args = parse_args(argv)
    path = runfiles.require_file(runfiles.run_file(args.run, runfiles.MASK, args.mask), "pruning mask")
    out = runfiles.output_dir(args.run, args.out)
    with h5py.File(path, "r") as mask:
        counts = layer_counts(mask)
        title = mask_title(mask)
    png, csv = os.path.join(out, "concept_neurons.png"), os.path.join(out, "concept_neurons.csv")
    plot_counts(counts, title, png)
    runfiles.save_csv(counts, csv)
    return runfiles.print_paths([png, csv])


if __name__ == "__main__":
    main()
