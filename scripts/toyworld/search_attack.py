"""A searched attack set against the erased model, in the spirit of UnlearnDiffAtk / Ring-A-Bell but
discrete and black-box: prompts built only from the trained vocabulary (training templates, the
triangle's trained synonyms alone and in pairs, colours, backgrounds) are scored by how often the ERASED
model draws a triangle (the plain classifier on `build/sdprune generate` images) on search seeds; the best
survive a second round on new search seeds; the winners are written with HELD-OUT evaluation seeds
(never used in the search), so the set's measured rate is not the search's own score.

usage: search_attack.py BASE.safetensors UNET.safetensors OUT.csv [--candidates 160] [--seeds1 4]
       [--top 24] [--seeds2 8] [--keep 10] [--rows 200]
Search seeds: 70000 + 100 * candidate + k (round 1), 120000 + 100 * prompt + k (round 2); evaluation seeds: 90000 + row. Log and scores:
$TOYWORLD_WORK/search/search.json"""
import argparse, json, os
import numpy as np
from common import WORK, Timer, log
import prompts, world
from eval_c import generate, read_pngs
from train_classifier import load_classifier, classify

LOG = f"{WORK}/search.log"
SEARCH_SEED0, EVAL_SEED0 = 70000, 90000  # round 2: SEARCH_SEED0 + 50000 + ...


def phrases():
    syn = world.SYNONYMS[prompts.TARGET]
    return list(syn) + [f"{a} {b}" for a in syn for b in syn]


def candidates(n, rng, templates=None, phr=None, colours=None, bgs=None, exclude=()):
    """n distinct prompts t.format(s, c, b) drawn from the given attribute values (default: all)"""
    templates, phr = templates or world.TRAIN_TEMPLATES, phr or phrases()
    colours, bgs = colours or world.COLOURS, bgs or world.BACKGROUNDS
    out, tries = set(), 0
    while len(out) < n and tries < 100 * n:
        tries += 1
        t = templates[rng.integers(len(templates))]
        p = t.format(s=phr[rng.integers(len(phr))], c=colours[rng.integers(len(colours))], b=bgs[rng.integers(len(bgs))])
        if p not in exclude:
            out.add(p)
    return sorted(out)


def attributes(prompt):
    """(template, phrase, colour, background) of a candidate, by matching the generating grammar"""
    for t in world.TRAIN_TEMPLATES:
        for ph in phrases():
            for c in world.COLOURS:
                for b in world.BACKGROUNDS:
                    if t.format(s=ph, c=c, b=b) == prompt:
                        return t, ph, (c if "{c}" in t else None), (b if "{b}" in t else None)
    return None


def best_values(cands, hits, idx, values, k):
    """the k attribute values (position idx of attributes()) with the highest round-1 hit rate"""
    rate = {}
    for v in values:
        hs = [h for p, h in zip(cands, hits) if (attributes(p) or (None,) * 4)[idx] == v]
        rate[v] = sum(hs) / len(hs) if hs else -1
    return sorted(values, key=lambda v: -rate[v])[:k], rate


def score(model, unet, clf, cands, seeds_of, tag):
    d = os.path.join(WORK, "search", tag)
    os.makedirs(d, exist_ok=True)
    rows = [(p, s) for i, p in enumerate(cands) for s in seeds_of(i)]
    csv_path = os.path.join(d, "prompts.csv")
    old = open(csv_path).read() if os.path.exists(csv_path) else None
    prompts.write_csv(csv_path, rows)
    same = old == open(csv_path).read() and os.path.exists(os.path.join(d, "model.txt")) and \
        open(os.path.join(d, "model.txt")).read() == f"{model} {unet}"
    if not same or len([f for f in os.listdir(d) if f.endswith(".png")]) != len(rows):  # else: reuse the images
        for f in os.listdir(d):
            if f.endswith(".png"):
                os.remove(os.path.join(d, f))
        generate(model, unet, csv_path, d, 20, 7.5)
        open(os.path.join(d, "model.txt"), "w").write(f"{model} {unet}")
    ps, _, _, _ = classify(clf, read_pngs(d, len(rows)))
    hit = (ps == world.SHAPES.index(prompts.TARGET)).reshape(len(cands), -1)
    return hit.sum(1), hit.shape[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("unet")
    ap.add_argument("out")
    ap.add_argument("--candidates", type=int, default=160)
    ap.add_argument("--seeds1", type=int, default=4)
    ap.add_argument("--top", type=int, default=24)
    ap.add_argument("--seeds2", type=int, default=8)
    ap.add_argument("--keep", type=int, default=10)
    ap.add_argument("--rows", type=int, default=200)
    a = ap.parse_args()
    tm = Timer()
    rng = np.random.default_rng(0)
    clf = load_classifier()
    cands = candidates(a.candidates, rng)
    k1, n1 = score(a.base, a.unet, clf, cands, lambda i: [SEARCH_SEED0 + 100 * i + k for k in range(a.seeds1)], "round1")
    order = np.argsort(-k1, kind="stable")[:a.top]
    log(LOG, f"round 1: {len(cands)} candidates x {n1} seeds, mean rate {k1.mean() / n1:.3f}; top {a.top} rate "
        f"{k1[order].mean() / n1:.3f}")
    # round 2: the round-1 top, plus prompts recombined from the attribute values with the best round-1
    # rates (templates, phrases, colours, backgrounds: one rate per value over every candidate holding it)
    bt, rt = best_values(cands, k1, 0, world.TRAIN_TEMPLATES, 4)
    bp, rp = best_values(cands, k1, 1, phrases(), 5)
    bc, rc = best_values(cands, k1, 2, world.COLOURS, 2)
    bb, rb = best_values(cands, k1, 3, world.BACKGROUNDS, 1)
    log(LOG, f"best values: templates {bt}, phrases {bp}, colours {bc} {rc}, backgrounds {bb} {rb}")
    top = [cands[i] for i in order]
    top += candidates(a.top, rng, bt, bp, bc, bb, exclude=set(top))
    k2, n2 = score(a.base, a.unet, clf, top,
                   lambda i: [SEARCH_SEED0 + 50000 + 100 * i + k for k in range(a.seeds2)], "round2")
    best = np.argsort(-k2, kind="stable")[:a.keep]
    winners = [top[i] for i in best]
    log(LOG, f"round 2: {len(top)} prompts x {n2} new seeds, mean rate {k2.mean() / n2:.3f}; kept {a.keep}: " +
        "; ".join(f"{top[i]!r} {k2[i]}/{n2}" for i in best))
    rows = [(winners[r % len(winners)], EVAL_SEED0 + r) for r in range(a.rows)]
    prompts.write_csv(a.out, rows)
    json.dump({"round1": {"candidates": cands, "hits": k1.tolist(), "seeds": n1},
               "round2": {"prompts": top, "hits": k2.tolist(), "seeds": n2},
               "winners": winners, "search_seed0": SEARCH_SEED0, "eval_seed0": EVAL_SEED0,
               "cpu_min": round(tm.cpu_min(), 2), "wall_min": round(tm.wall_min(), 2)},
              open(os.path.join(WORK, "search", "search.json"), "w"), indent=1)
    log(LOG, f"wrote {a.out} ({a.rows} rows, evaluation seeds {EVAL_SEED0}..); {tm.wall_min():.1f} wall-min")


if __name__ == "__main__":
    main()
