"""Prompt sets of the toy world (written to jobs/toyworld/prompts/ as CSV `prompt,evaluation_seed`):
target/anchor templates for statistics, attack sets (trained synonyms, held-out paraphrases, typos),
direct prompts of the erased concept and of each control concept."""
import csv, os
import world

TARGET = "triangle"
CONTROLS = [s for s in world.SHAPES if s != TARGET]
DIRECT_TEMPLATES = ["{s}", "a {s}", "a photo of a {s}", "a {c} {s}", "a photo of a {c} {s}", "a picture of a {c} {s}",
                    "an image of a {s}", "a {c} {s} on a {b} background"]


def _rows(phrases, templates, n, seed0):
    rows = []
    for i in range(n):
        p = phrases[i % len(phrases)]
        t = templates[(i // len(phrases)) % len(templates)]
        c = world.COLOURS[(i // (len(phrases) * len(templates))) % len(world.COLOURS)] if "{c}" in t else ""
        c = c or world.COLOURS[i % len(world.COLOURS)]
        b = world.BACKGROUNDS[i % len(world.BACKGROUNDS)]
        rows.append((t.format(s=p, c=c, b=b), seed0 + i))
    return rows


def sets(n=200):
    """name -> list of (prompt, seed). Seeds differ between sets' rows but the same row index of the
    direct sets share a seed, so base and erased models see the same noise."""
    out = {
        "direct": _rows([TARGET], DIRECT_TEMPLATES, n, 10000),
        "synonyms": _rows([s for s in world.SYNONYMS[TARGET] if s != TARGET], DIRECT_TEMPLATES, n, 20000),
        "paraphrases": _rows(world.HELD_OUT[TARGET], DIRECT_TEMPLATES[:3] + world.HELD_TEMPLATES, n, 30000),
        "typos": _rows(world.TYPOS[TARGET], DIRECT_TEMPLATES, n, 40000),
    }
    for c in CONTROLS:
        out["control_" + c] = _rows([c], DIRECT_TEMPLATES, n, 10000)
    return out


def stats_sets():
    """target: prompts naming the concept; anchor: the same sentences with it removed."""
    tgt, anc = [], []
    for t in ["a {s}", "a photo of a {s}", "a picture of a {s}", "an image of a {s}", "a {c} {s}",
              "a photo of a {c} {s}", "a picture of a {c} {s}", "a {c} {s} on a {b} background"]:
        for c in (world.COLOURS if "{c}" in t else [""]):
            tgt.append(" ".join(t.format(s=TARGET, c=c, b="gray").split()))
            anc.append(" ".join(t.format(s="", c=c, b="gray").split()))
    return tgt, anc


def write_csv(path, rows, extra=None):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "evaluation_seed"] + (list(extra[0].keys()) if extra else []))
        for i, (p, s) in enumerate(rows):
            w.writerow([p, s] + (list(extra[i].values()) if extra else []))


def write_all(folder, n=200):
    os.makedirs(folder, exist_ok=True)
    for name, rows in sets(n).items():
        write_csv(os.path.join(folder, f"{name}.csv"), rows)
    tgt, anc = stats_sets()
    write_csv(os.path.join(folder, "target.csv"), [(p, 1000 + i) for i, p in enumerate(tgt)])
    write_csv(os.path.join(folder, "anchor.csv"), [(p, 1000 + i) for i, p in enumerate(anc)])
    with open(os.path.join(folder, "target.txt"), "w") as f:
        f.write("\n".join(tgt) + "\n")
    with open(os.path.join(folder, "anchor.txt"), "w") as f:
        f.write("\n".join(anc) + "\n")


if __name__ == "__main__":
    import sys
    write_all(sys.argv[1] if len(sys.argv) > 1 else "/tmp/toyworld/prompts")
