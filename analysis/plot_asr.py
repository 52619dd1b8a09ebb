#!/usr/bin/python3
"""Attack success rate per model x attack set, with the 95% Wilson interval, from RUN/metrics.h5.

One group of bars per attack set, one bar per model: `asr` with the interval [`asr_lo`, `asr_hi`] and
the label successes/judged. When a set has a counterpart (its prompts without the attack), a second
panel shows the post-attack ASR (`post_asr`, [`post_asr_lo`, `post_asr_hi`]) with the pre-attack ASR
marked on each bar, counted as UnlearnDiffAtk counts them. Writes asr.png and asr.csv (the plotted
numbers, one row per bar) and prints their paths. Does not recompute anything: the rates are
/metrics as the attack run or `sdprune import-scores` last wrote it (its `success_column` attribute
names the detector).
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
                                epilog="Example: analysis/plot_asr.py out/demo  (writes out/demo/plots/asr.png)")
    p.add_argument("run", help="run folder holding metrics.h5")
    p.add_argument("--metrics", help="metrics file (default RUN/metrics.h5)")
    p.add_argument("--out", help="output folder (default RUN/plots)")
    return p.parse_args(argv)


def read_metrics(path):
    """/metrics as a DataFrame, and its attributes (success_column: what success means; confidence)."""
    with h5py.File(path, "r") as f:
        df = runfiles.read_table(f, "metrics")
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f["metrics"].attrs.items()}
    return df, attrs


def plotted_rows(df):
    """One row per bar: quantity asr for every model x set, post_asr where the set has a counterpart."""
    rows = []
    for r in df.itertuples():
        rows.append(dict(model=r.model, set=r.set, quantity="asr", value=r.asr, lo=r.asr_lo, hi=r.asr_hi,
                         successes=r.successes, n=r.n, pre_asr=np.nan))
        if r.counterpart and np.isfinite(r.post_asr):
            rows.append(dict(model=r.model, set=r.set, quantity="post_asr", value=r.post_asr, lo=r.post_asr_lo,
                             hi=r.post_asr_hi, successes=r.post_successes, n=r.n_paired, pre_asr=r.pre_asr))
    return pd.DataFrame(rows, columns=["model", "set", "quantity", "value", "lo", "hi", "successes", "n",
                                       "pre_asr"])


def draw_bars(ax, bars, models, sets, title):
    """Grouped bars (percent) with Wilson error bars and successes/n labels on AX."""
    width = 0.8 / max(len(models), 1)
    for m, model in enumerate(models):
        sub = bars[bars.model == model].set_index("set").reindex(sets)
        x = np.arange(len(sets)) + (m - (len(models) - 1) / 2) * width
        value = 100 * sub.value.to_numpy(dtype=float)
        err = np.vstack([value - 100 * sub.lo.to_numpy(dtype=float), 100 * sub.hi.to_numpy(dtype=float) - value])
        ax.bar(x, np.nan_to_num(value), width, yerr=np.nan_to_num(err), capsize=3, label=model)
        for xi, v, hi, k, n in zip(x, value, 100 * sub.hi.to_numpy(dtype=float), sub.successes, sub.n):
            if np.isfinite(n):
                text = "n=0" if n == 0 or not np.isfinite(v) else f"{int(k)}/{int(n)}"
                ax.annotate(text, (xi, np.nan_to_num(hi)), xytext=(0, 3), textcoords="offset points", ha="center",
                            va="bottom", fontsize=7)
        if np.isfinite(sub.pre_asr.to_numpy(dtype=float)).any():
            ax.scatter(x, 100 * sub.pre_asr.to_numpy(dtype=float), marker="D", s=18, color="black", zorder=3,
                       label="pre-attack ASR" if m == 0 else None)
    ax.set_xticks(np.arange(len(sets)))
    ax.set_xticklabels(sets, rotation=20, ha="right")
    ax.set_ylim(0, 128)
    ax.set_yticks(range(0, 101, 20))
    ax.set_ylabel("attack success rate (%)")
    ax.set_title(title)
    ax.legend(fontsize=7, ncol=3, loc="upper center")


def plot_asr(df, attrs, png):
    plt = runfiles.pyplot()
    bars = plotted_rows(df)
    models = list(dict.fromkeys(df.model))
    sets = list(dict.fromkeys(df.set))
    post = bars[bars.quantity == "post_asr"]
    ncols = 2 if len(post) else 1
    fig, axes = plt.subplots(1, ncols, figsize=(max(4.5, 1.2 * len(sets) * len(models) ** 0.5 + 2.5) * ncols, 4),
                             squeeze=False)
    detector = attrs.get("success_column") or "success"
    confidence = attrs.get("confidence", 0.95)
    draw_bars(axes[0, 0], bars[bars.quantity == "asr"], models, sets,
              f"ASR (column {detector}), {100 * float(confidence):.0f}% Wilson interval")
    if len(post):
        post_sets = list(dict.fromkeys(post.set))
        draw_bars(axes[0, 1], post, models, post_sets, "post-attack ASR (sets with a counterpart)")
    runfiles.save_figure(fig, png)
    return bars


def main(argv=None):
    args = parse_args(argv)
    metrics = runfiles.require_file(runfiles.run_file(args.run, runfiles.METRICS, args.metrics), "attack metrics")
    out = runfiles.output_dir(args.run, args.out)
    df, attrs = read_metrics(metrics)
    png, csv = os.path.join(out, "asr.png"), os.path.join(out, "asr.csv")
    bars = plot_asr(df, attrs, png)
    runfiles.save_csv(bars, csv)
    return runfiles.print_paths([png, csv])


if __name__ == "__main__":
    main()
