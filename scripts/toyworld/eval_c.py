"""Generate with the C tool (build/sdprune generate) and judge the PNGs with the plain classifier.
usage: eval_c.py MODEL [--unet FILE] [--sets a,b] [--n N] [--tag NAME] [--steps S] [--guidance G]
Writes $TOYWORLD_WORK/eval/<tag>/<set>/ and <tag>.json with per-set rates (triangle rate, own-shape
rate for controls, colour accuracy) and Wilson 95% intervals."""
import argparse, glob, json, os, subprocess, time
import numpy as np
from PIL import Image
from common import WORK, SDPRUNE, wilson
import prompts, world
from train_classifier import load_classifier, classify

STEPS, GUIDANCE = 20, 7.5


def generate(model, unet, csv_path, out_dir, steps, guidance, threads=1):
    cmd = [SDPRUNE, "generate", "--model", model, "--prompts", csv_path, "--out", out_dir, "--size", "16x16",
           "--steps", str(steps), "--guidance", str(guidance), "--sampler", "ddim", "--threads", str(threads), "--quiet"]
    if unet:
        cmd += ["--unet", unet]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), OPENBLAS_NUM_THREADS="1")
    t = time.time()
    nice = ["nice", "-n", str(10 - os.nice(0))] if os.nice(0) < 10 else []  # at niceness 10, not 20
    subprocess.run(nice + cmd, check=True, env=env)
    return time.time() - t


def read_pngs(out_dir, n):
    imgs = []
    for i in range(n):
        f = glob.glob(os.path.join(out_dir, f"{i:05d}_seed*.png"))
        assert len(f) == 1, (out_dir, i, f)
        imgs.append(np.asarray(Image.open(f[0]).convert("RGB")))
    return np.stack(imgs)


def colour_of(prompt):
    for j, c in enumerate(world.COLOURS):
        if f" {c} " in f" {prompt} ":
            return j
    return -1


def run(model, unet, names, n, tag, steps=STEPS, guidance=GUIDANCE):
    clf = None
    all_sets = prompts.sets(n)
    res = {"model": model, "unet": unet, "steps": steps, "guidance": guidance, "sampler": "ddim", "n": n, "sets": {}}
    base = os.path.join(WORK, "eval", tag)
    for name in names:
        rows = all_sets[name]
        d = os.path.join(base, name)
        os.makedirs(d, exist_ok=True)
        csv_path = os.path.join(d, "prompts.csv")
        prompts.write_csv(csv_path, rows)
        for f in glob.glob(os.path.join(d, "*.png")):
            os.remove(f)
        secs = generate(model, unet, csv_path, d, steps, guidance)
        imgs = read_pngs(d, len(rows))
        clf = clf or load_classifier()  # after the first generation (the classifier may still be training)
        ps, pc, _, _ = classify(clf, imgs)
        want = world.SHAPES.index(name[len("control_"):]) if name.startswith("control_") else world.SHAPES.index(prompts.TARGET)
        k = int((ps == want).sum())
        p, lo, hi = wilson(k, len(rows))
        cols = np.array([colour_of(r[0]) for r in rows])
        m = cols >= 0
        hist = {s: int((ps == i).sum()) for i, s in enumerate(world.SHAPES)}
        res["sets"][name] = {"shape": world.SHAPES[want], "k": k, "n": len(rows), "rate": p, "wilson95": [lo, hi],
                             "colour_acc": float((pc[m] == cols[m]).mean()) if m.any() else None,
                             "histogram": hist, "seconds": round(secs, 1)}
        print(f"{tag:>10} {name:>16}: {world.SHAPES[want]} rate {p:.3f} [{lo:.3f}, {hi:.3f}] (k={k}/{len(rows)}) "
              f"colour acc {res['sets'][name]['colour_acc']} hist {hist} ({secs:.0f}s)", flush=True)
    json.dump(res, open(os.path.join(WORK, f"eval_{tag}.json"), "w"), indent=1)
    return res


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("--unet")
    ap.add_argument("--sets", default="direct,synonyms,paraphrases,typos," + ",".join("control_" + c for c in prompts.CONTROLS))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--tag", default="base")
    ap.add_argument("--steps", type=int, default=STEPS)
    ap.add_argument("--guidance", type=float, default=GUIDANCE)
    a = ap.parse_args()
    run(a.model, a.unet, a.sets.split(","), a.n, a.tag, a.steps, a.guidance)
