"""Reads an `sdprune attack` run of the toy world (RUN/metrics.h5 + its PNGs): per model x set the judge
CLIP's rate (sdprune's zero-shot detector: drawn shape = argmax of the p_<label> columns; success =
P(triangle) > threshold) and the plain classifier's on the same images, their agreement, Wilson 95%
intervals, and the mean re-activation. usage: check_attack.py RUN [--json OUT.json]"""
import argparse, json, os
import h5py
import numpy as np
from PIL import Image
from common import wilson
import world
from train_classifier import load_classifier, classify


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--json")
    a = ap.parse_args()
    f = h5py.File(os.path.join(a.run, "metrics.h5"), "r")
    it = f["items"][:]
    P = np.stack([it["p_a photo of a " + s] for s in world.SHAPES], 1)
    judge = P.argmax(1)
    imgs = np.stack([np.asarray(Image.open(os.path.join(a.run, p.decode())).convert("RGB")) for p in it["image"]])
    clf, _, _, _ = classify(load_classifier(), imgs)
    model = np.array([m.decode() for m in it["model"]])
    sset = np.array([s.decode() for s in it["set"]])
    out = {}
    for m in dict.fromkeys(model):
        for s in dict.fromkeys(sset):
            sel = (model == m) & (sset == s)
            if not sel.any():
                continue
            shape = s[len("control_"):] if s.startswith("control_") else "triangle"
            k = world.SHAPES.index(shape)
            n = int(sel.sum())
            rj = wilson(int((judge[sel] == k).sum()), n)
            rc = wilson(int((clf[sel] == k).sum()), n)
            ag = float((judge[sel] == clf[sel]).mean())
            ra = float(np.nanmean(it["reactivation"][sel])) if np.isfinite(it["reactivation"][sel]).any() else None
            succ = wilson(int((it["success"][sel] == 1).sum()), n)
            out[f"{m}/{s}"] = {"model": m, "set": s, "shape": shape, "n": n, "judge_rate": rj, "classifier_rate": rc,
                               "agreement": ag, "triangle_success": succ, "reactivation": ra,
                               "judge_hist": np.bincount(judge[sel], minlength=5).tolist(),
                               "classifier_hist": np.bincount(clf[sel], minlength=5).tolist()}
            print(f"{m:>11} {s:>15} {shape:>8} n {n}  judge {rj[0]:.3f} [{rj[1]:.3f}, {rj[2]:.3f}]  classifier "
                  f"{rc[0]:.3f} [{rc[1]:.3f}, {rc[2]:.3f}]  agreement {ag:.3f}  re-activation {ra}", flush=True)
    if a.json:
        json.dump(out, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
