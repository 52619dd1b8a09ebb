#!/usr/bin/python3
"""Developer tool (not needed by users): where the PyTorch + CompVis ldm SD-1.5 UNet of
../shared/tools/peer-bench spends its time, in the operation kinds that `sdprune bench --profile`
prints (conv, linear, attention, norm, geglu, rest), so the two can be compared kind by kind.

usage: /usr/bin/python3 scripts/peer-profile.py --ldm-git GITDIR [--latent 32] [--batch 2]
                                                [--threads 2] [--repeat 2] [--peer-bench DIR]

Needs Debian's python3-torch. One process: ldm extracted as run.sh does, one warm-up forward, then
--repeat forwards under torch.profiler; prints seconds per forward per kind (mean over the profiled
forwards, self CPU time of the aten operators) and the wall time of each forward.
"""
import argparse
import os
import sys
import tempfile
import time

# aten operator -> sdprune bench kind. Attention in ldm is einsum -> bmm, softmax, and the q/k/v/out
# projections (Linear, counted as linear as sdprune does); GEGLU is the chunk + gelu + mul.
KIND_OF = {
    "aten::mkldnn_convolution": "conv", "aten::_convolution": "conv", "aten::convolution": "conv",
    "aten::conv2d": "conv", "aten::thnn_conv2d": "conv", "aten::_slow_conv2d_forward": "conv",
    "aten::addmm": "linear", "aten::mm": "linear", "aten::linear": "linear",
    "aten::bmm": "attention", "aten::baddbmm": "attention", "aten::einsum": "attention",
    "aten::softmax": "attention", "aten::_softmax": "attention",
    "aten::native_group_norm": "norm", "aten::group_norm": "norm", "aten::native_layer_norm": "norm",
    "aten::layer_norm": "norm",
    "aten::gelu": "geglu",
}


def main(argv):
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ldm-git", required=True, help="git dir of CompVis/stable-diffusion")
    ap.add_argument("--latent", type=int, default=32)
    ap.add_argument("--batch", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--peer-bench", default=os.path.join(here, "..", "..", "shared", "tools", "peer-bench"))
    a = ap.parse_args(argv)
    sys.path.insert(0, os.path.abspath(a.peer_bench))
    import unet_torch as ut  # the peer's own model builder and inputs, unchanged

    with tempfile.TemporaryDirectory(prefix="peer-profile.") as tmp:
        ldm = os.path.join(tmp, "ldm")
        ut.extract(a.ldm_git, ldm, ut.DEFAULT_COMMIT)
        torch, UNetModel, _ = ut.setup(ldm, a.threads)
        model, _, _ = ut.build_unet(UNetModel)
        x, t, ctx = ut.make_inputs(a.batch, a.latent)
        from torch.profiler import profile, ProfilerActivity
        with torch.no_grad():
            ut.forward(model, x, t, ctx)  # warm-up
            walls = []
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(a.repeat):
                    t0 = time.perf_counter()
                    ut.forward(model, x, t, ctx)
                    walls.append(time.perf_counter() - t0)
    kinds = {k: 0.0 for k in ("conv", "linear", "attention", "norm", "geglu", "rest")}
    total = 0.0
    rest = []
    for ev in prof.key_averages():
        s = ev.self_cpu_time_total / 1e6 / a.repeat
        total += s
        kind = KIND_OF.get(ev.key, "rest")
        kinds[kind] += s
        if kind == "rest":
            rest.append((s, ev.key))
    print("torch %s latent=%dx%d batch=%d threads=%d forward_s=%s"
          % (torch.__version__, a.latent, a.latent, a.batch, a.threads,
             ",".join("%.3f" % w for w in walls)))
    print("profile per evaluation: " + " ".join("%s %.3f" % (k, v) for k, v in kinds.items())
          + " (self CPU time of the aten operators, mean of %d forwards; sum %.3f)" % (a.repeat, total))
    rest.sort(reverse=True)
    print("largest in rest: " + ", ".join("%s %.3f" % (k, v) for v, k in rest[:6]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
