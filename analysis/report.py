#!/usr/bin/python3
"""Every analysis plot of a run folder, into RUN/plots/: the ASR bars (plot_asr.py), the concept
neurons per layer (plot_concept_neurons.py), the activation heatmap over sampler steps
(plot_activation_heatmap.py), the re-activation per attack set (plot_reactivation.py) and the tables
as CSV and JSON lines (export_tables.py). Each runs when its input file is there (metrics.h5 for the
attack plots and tables, mask.h5 for the neuron counts, stats.h5 for the heatmap) and is skipped with
a line on stderr otherwise. Prints the path of every file written, one per line.
Exit status: 0 when every step that could run did, 1 when one failed or the folder holds none of the
three files, 2 for bad options.
"""
import argparse
import os
import sys
import traceback

sys.dont_write_bytecode = True  # no __pycache__ left in the checkout
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_tables  # noqa: E402
import plot_activation_heatmap  # noqa: E402
import plot_asr  # noqa: E402
import plot_concept_neurons  # noqa: E402
import plot_reactivation  # noqa: E402
import runfiles  # noqa: E402

# (step, the file it needs, its main)
STEPS = [
    ("ASR bars", runfiles.METRICS, plot_asr.main),
    ("concept neurons per layer", runfiles.MASK, plot_concept_neurons.main),
    ("activation heatmap", runfiles.STATS, plot_activation_heatmap.main),
    ("re-activation", runfiles.METRICS, plot_reactivation.main),
    ("tables", runfiles.METRICS, export_tables.main),
]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Example: analysis/report.py out/demo")
    p.add_argument("run", help="run folder (stats.h5, mask.h5, metrics.h5)")
    p.add_argument("--out", help="output folder (default RUN/plots)")
    p.add_argument("--top", type=int, default=32, help="neurons in the activation heatmap (default 32)")
    return p.parse_args(argv)


def step_argv(main, run, out, top):
    """The command line given to one step's main."""
    argv = [run]
    if main is export_tables.main:
        argv += ["--out", os.path.join(out, "tables")]
    else:
        argv += ["--out", out]
    if main is plot_activation_heatmap.main:
        argv += ["--top", str(top)]
    return argv


def run_step(name, main, argv):
    """Runs one step; returns (paths, ok). Nothing to plot is a skip; a step's own error (SystemExit
    with a message) or a crash is reported, and the report goes on with the next."""
    try:
        return main(argv), True
    except runfiles.NothingToPlot as e:
        print(f"report.py: {name}: skipped: {e.code}", file=sys.stderr)
        return [], True
    except SystemExit as e:
        print(f"report.py: {name}: {e.code}", file=sys.stderr)
    except Exception:  # a bug or an unexpected file: say which step, keep the others
        print(f"report.py: {name}: failed:", file=sys.stderr)
        traceback.print_exc()
    return [], False


def main(argv=None):
    args = parse_args(argv)
    if not any(os.path.isfile(os.path.join(args.run, f)) for f in (runfiles.STATS, runfiles.MASK, runfiles.METRICS)):
        print(f"report.py: {args.run}: no stats.h5, mask.h5 or metrics.h5 (not a run folder?)", file=sys.stderr)
        return 1
    out = runfiles.output_dir(args.run, args.out)
    paths, ok = [], True
    for name, needs, step in STEPS:
        if not os.path.isfile(os.path.join(args.run, needs)):
            print(f"report.py: {name}: skipped, no {needs} in {args.run}", file=sys.stderr)
            continue
        written, step_ok = run_step(name, step, step_argv(step, args.run, out, args.top))
        paths += written
        ok = ok and step_ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
