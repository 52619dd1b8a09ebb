#!/usr/bin/python3
"""Mean activation of concept neurons over the sampler's steps, target vs anchor vs adversarial sets,
from RUN/stats.h5 (and RUN/mask.h5 for which neurons).

The mean activation of neuron j of layer l at recorded UNet evaluation t is sum / count of the CFG
branch shown (cond by default: the prompt's half of the batch), over all tokens of all items of a set
(README "stats.h5 schema"). The neurons shown are the mask's concept neurons (ff.net.2 input columns
with a pruned weight), or with --neurons top (or without a mask) every FFN neuron; of those the --top
N with the largest mean over steps of (target - anchor) are kept, strongest first. One heatmap per set
(rows neurons, columns steps, one colour scale for all), then the mean over the shown neurons per step
for each set as lines. Writes activation_heatmap.png and activation_heatmap.csv (every plotted cell)
and prints the paths.
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
                                epilog="Example: analysis/plot_activation_heatmap.py out/demo --top 24")
    p.add_argument("run", help="run folder holding stats.h5 (and mask.h5)")
    p.add_argument("--stats", help="statistics file (default RUN/stats.h5)")
    p.add_argument("--mask", help="mask file (default RUN/mask.h5 when it exists)")
    p.add_argument("--neurons", choices=["auto", "mask", "top"], default="auto",
                   help="mask: the mask's concept neurons; top: all FFN neurons; auto: mask when there is one")
    p.add_argument("--top", type=int, default=32, help="neurons shown (default 32)")
    p.add_argument("--branch", choices=["cond", "uncond"], default="cond", help="CFG branch (default cond)")
    p.add_argument("--out", help="output folder (default RUN/plots)")
    args = p.parse_args(argv)
    if args.top < 1:
        p.error("--top must be at least 1")
    return args


def ff_layers(stats):
    """The ff layers of /layers, in forward order."""
    layers = runfiles.read_table(stats, "layers")
    return list(layers[layers.kind == "ff"].sort_values("index").name)


def candidate_neurons(stats, mask_path, mode):
    """{layer: neuron indices} to rank: the mask's concept neurons, or every neuron of every layer."""
    layers = ff_layers(stats)
    if mode == "mask":
        with h5py.File(mask_path, "r") as mask:
            return {l: runfiles.concept_neurons(mask, l) for l in layers if l in mask["masks"]}
    widths = runfiles.read_table(stats, "layers").set_index("name").width
    return {l: np.arange(int(widths[l])) for l in layers}


def ranking_sets(sets):
    """(plus, minus): the sets whose difference ranks neurons (target - anchor, else the first set alone)."""
    roles = dict((r, n) for n, r in reversed(sets))
    if "target" in roles and "anchor" in roles:
        return roles["target"], roles["anchor"]
    return sets[0][0], None


def select_neurons(stats, candidates, sets, branch, top):
    """The TOP (layer, neuron, score) with the largest mean over steps of the ranking difference."""
    plus, minus = ranking_sets(sets)
    picked = []
    for layer, neurons in candidates.items():
        if len(neurons) == 0:
            continue
        diff = runfiles.mean_activation(stats, plus, layer, branch)[:, neurons]
        if minus is not None:
            diff = diff - runfiles.mean_activation(stats, minus, layer, branch)[:, neurons]
        score = np.nanmean(diff, axis=0)
        picked += [(layer, int(j), float(s)) for j, s in zip(neurons, score)]
    picked.sort(key=lambda p: (-np.nan_to_num(p[2], nan=-np.inf), p[0], p[1]))
    return picked[:top]


def activation_table(stats, sets, picked, branch):
    """Long table: set, role, rank, layer, neuron, step, timestep, mean (every cell of the heatmaps)."""
    timesteps = stats["timesteps"][:]
    rows = []
    for set_name, role in sets:
        means = {}
        for rank, (layer, j, _) in enumerate(picked):
            if layer not in means:
                means[layer] = runfiles.mean_activation(stats, set_name, layer, branch)
            for step, value in enumerate(means[layer][:, j]):
                rows.append((set_name, role, rank, layer, j, step, float(timesteps[step]), float(value)))
    return pd.DataFrame(rows, columns=["set", "role", "rank", "layer", "neuron", "step", "timestep", "mean"])


def step_ticks(ax, timesteps, max_ticks):
    """Up to MAX_TICKS x ticks, labelled with the timestep of the recorded UNet evaluation."""
    n = len(timesteps)
    ticks = np.unique(np.linspace(0, n - 1, min(n, max_ticks)).round().astype(int))
    ax.set_xticks(ticks)
    ax.set_xticklabels([f"{timesteps[t]:.0f}" for t in ticks], fontsize=7, rotation=90)
    ax.set_xlabel("timestep")


def plot_heatmaps(table, sets, picked, timesteps, branch, png):
    plt = runfiles.pyplot()
    n_sets = len(sets)
    fig, axes = plt.subplots(1, n_sets + 1, figsize=(3.2 * n_sets + 4, 0.22 * len(picked) + 2.2), squeeze=False,
                             gridspec_kw={"width_ratios": [1] * n_sets + [1.3]})
    axes = axes[0]
    vmax = np.nanmax(np.abs(table["mean"].to_numpy())) if len(table) else 1.0
    vmax = vmax if np.isfinite(vmax) and vmax > 0 else 1.0
    labels = [f"{runfiles.short_layer_name(l)}:{j}" for l, j, _ in picked]
    image = None
    for ax, (set_name, role) in zip(axes, sets):
        grid = table[table.set == set_name].pivot(index="rank", columns="step", values="mean").to_numpy()
        image = ax.imshow(grid, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
        ax.set_title(f"{set_name} ({role})", fontsize=9)
        step_ticks(ax, timesteps, 5)
        ax.set_yticks(np.arange(len(picked)))
        ax.set_yticklabels(labels if ax is axes[0] else [], fontsize=6)
    fig.colorbar(image, ax=list(axes[:n_sets]), shrink=0.8, label=f"mean activation ({branch} branch)")
    lines = axes[n_sets]
    for set_name, role in sets:
        per_step = table[table.set == set_name].groupby("step")["mean"].mean()
        lines.plot(per_step.index, per_step.to_numpy(), marker=".", label=f"{set_name} ({role})")
    step_ticks(lines, timesteps, 10)
    lines.set_ylabel(f"mean over the {len(picked)} neurons")
    lines.legend(fontsize=7)
    lines.set_title("target vs anchor vs adversarial", fontsize=9)
    runfiles.save_figure(fig, png)


def main(argv=None):
    args = parse_args(argv)
    stats_path = runfiles.require_file(runfiles.run_file(args.run, runfiles.STATS, args.stats), "statistics")
    mask_path = runfiles.run_file(args.run, runfiles.MASK, args.mask)
    mode = args.neurons
    if mode == "auto":
        mode = "mask" if os.path.isfile(mask_path) else "top"
    if mode == "mask":
        runfiles.require_file(mask_path, "pruning mask for --neurons mask")
    branch = runfiles.COND if args.branch == "cond" else 0
    out = runfiles.output_dir(args.run, args.out)
    with h5py.File(stats_path, "r") as stats:
        sets = runfiles.set_roles(stats)
        picked = select_neurons(stats, candidate_neurons(stats, mask_path, mode), sets, branch, args.top)
        if not picked:
            raise runfiles.NothingToPlot(f"plot_activation_heatmap.py: {mask_path}: the mask has no concept neurons")
        table = activation_table(stats, sets, picked, branch)
        timesteps = stats["timesteps"][:]
    png, csv = os.path.join(out, "activation_heatmap.png"), os.path.join(out, "activation_heatmap.csv")
    plot_heatmaps(table, sets, picked, timesteps, args.branch, png)
    runfiles.save_csv(table, csv)
    return runfiles.print_paths([png, csv])


if __name__ == "__main__":
    main()
