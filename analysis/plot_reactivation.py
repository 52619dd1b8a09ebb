#!/usr/bin/python3
"""Re-activation of the concept neurons per attack set, from RUN/metrics.h5.

Re-activation is the paper's detector-free measure (README "Attack evaluation"): over the mask's
concept neurons, r_t = sum(x - mu_anchor) / sum(mu_target - mu_anchor) at each matched step, 0 when the
item's activations look like the anchor set's, 1 when they look like the target set's. Two figures:
reactivation_curves.png, one panel per attack set with the mean curve r_t of each model over the
attack's timesteps (/reactivation/<model>/<set>; steps without a reference step are gaps), and
reactivation_items.png, the per-item `reactivation` column of /items (the same ratio with both sums
taken over all the item's matched steps) as points and a box per model and set. Writes
reactivation_curves.csv (the plotted curves) beside them and prints the paths.
"""
import argparse
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
                                epilog="Example: analysis/plot_reactivation.py out/demo")
    p.add_argument("run", help="run folder holding metrics.h5")
    p.add_argument("--metrics", help="metrics file (default RUN/metrics.h5)")
    p.add_argument("--out", help="output folder (default RUN/plots)")
    return p.parse_args(argv)


def read_curves(metrics):
    """Long table model, set, step, timestep, reactivation of every /reactivation/<model>/<set> curve,
    models and sets in the order of /items."""
    items = runfiles.read_table(metrics, "items")
    group = metrics.get("reactivation")
    timesteps = metrics["timesteps"][:] if "timesteps" in metrics else None
    rows = []
    for model in dict.fromkeys(items.model):
        for set_name in dict.fromkeys(items.set):
            key = f"{model}/{set_name}"
            if group is None or key not in group:
                continue
            curve = group[key][:]
            rows += [(model, set_name, t, float(timesteps[t]) if timesteps is not None else np.nan, float(v))
                     for t, v in enumerate(curve)]
    return pd.DataFrame(rows, columns=["model", "set", "step", "timestep", "reactivation"]), items


def reference_lines(ax):
    ax.axhline(0, color="tab:green", lw=0.8, ls="--", label="anchor-like (0)")
    ax.axhline(1, color="tab:red", lw=0.8, ls="--", label="target-like (1)")


def plot_curves(curves, png):
    plt = runfiles.pyplot()
    sets = list(dict.fromkeys(curves.set))
    fig, axes = plt.subplots(1, max(len(sets), 1), figsize=(4.2 * max(len(sets), 1), 3.4), squeeze=False, sharey=True)
    for ax, set_name in zip(axes[0], sets):
        sub = curves[curves.set == set_name]
        for model in dict.fromkeys(sub.model):
            c = sub[sub.model == model]
            ax.plot(c.timestep, c.reactivation, marker=".", label=model)
        reference_lines(ax)
        ax.invert_xaxis()  # sampling runs from high to low timesteps
        ax.set_xlabel("timestep")
        ax.set_title(set_name, fontsize=9)
    axes[0, 0].set_ylabel("mean re-activation r_t")
    axes[0, 0].legend(fontsize=7)
    runfiles.save_figure(fig, png)


def plot_items(items, png):
    plt = runfiles.pyplot()
    sets = list(dict.fromkeys(items.set))
    models = list(dict.fromkeys(items.model))
    fig, axes = plt.subplots(1, len(sets), figsize=(max(3.2, 1.1 * len(models) + 1.5) * len(sets), 3.6),
                             squeeze=False, sharey=True)
    rng = np.random.default_rng(0)  # fixed jitter: the same run draws the same picture
    for ax, set_name in zip(axes[0], sets):
        values = [items[(items.set == set_name) & (items.model == m)].reactivation.to_numpy(dtype=float)
                  for m in models]
        finite = [v[np.isfinite(v)] for v in values]
        ax.boxplot([v if len(v) else [np.nan] for v in finite], labels=models, showfliers=False)
        for k, v in enumerate(finite):
            ax.scatter(k + 1 + rng.uniform(-0.15, 0.15, len(v)), v, s=10, alpha=0.7, zorder=3)
        reference_lines(ax)
        ax.set_title(set_name, fontsize=9)
        ax.tick_params(axis="x", labelrotation=20)
    axes[0, 0].set_ylabel("item re-activation (all matched steps)")
    axes[0, 0].legend(fontsize=7)
    runfiles.save_figure(fig, png)


def main(argv=None):
    args = parse_args(argv)
    path = runfiles.require_file(runfiles.run_file(args.run, runfiles.METRICS, args.metrics), "attack metrics")
    out = runfiles.output_dir(args.run, args.out)
    with h5py.File(path, "r") as metrics:
        curves, items = read_curves(metrics)
    if "reactivation" not in items or not np.isfinite(items.reactivation.to_numpy(dtype=float)).any():
        raise runfiles.NothingToPlot(f"plot_reactivation.py: {path}: no re-activation measured (no mask or reference "
                                     "statistics)")
    paths = []
    if len(curves):
        png, csv = os.path.join(out, "reactivation_curves.png"), os.path.join(out, "reactivation_curves.csv")
        plot_curves(curves, png)
        paths += [png, runfiles.save_csv(curves, csv)]
    png = os.path.join(out, "reactivation_items.png")
    plot_items(items, png)
    paths.append(png)
    return runfiles.print_paths(paths)


if __name__ == "__main__":
    main()
