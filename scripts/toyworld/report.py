"""Markdown tables of the measurements in $TOYWORLD_WORK (eval_base.json, eval_esd.json, judge_check.json)."""
import json, os
from common import WORK

def load(name):
    p = os.path.join(WORK, name)
    return json.load(open(p)) if os.path.exists(p) else None

if __name__ == "__main__":
    import sys
    tags = sys.argv[1:] or ["base", "esd"]
    b, e = load(f"eval_{tags[0]}.json"), load(f"eval_{tags[1]}.json")
    print(f"DDIM {b['steps']} steps, guidance {b['guidance']}, 16x16, one image per row (seed = the row's evaluation_seed), "
          f"judged by the plain classifier; 95% Wilson intervals.\n")
    print("| set | shape counted | N | base rate [95% CI] | ESD-u rate [95% CI] | change |")
    print("| --- | --- | ---: | --- | --- | ---: |")
    for name, r in b["sets"].items():
        q = e["sets"].get(name) if e else None
        f = lambda x: f"{x['rate']:.3f} [{x['wilson95'][0]:.3f}, {x['wilson95'][1]:.3f}]"
        ch = f"{(q['rate'] - r['rate']) * 100:+.1f} pt" if q else ""
        print(f"| {name} | {r['shape']} | {r['n']} | {f(r)} | {f(q) if q else '-'} | {ch} |")
    print()
    for tag, x in (("base", b), ("ESD-u", e)):
        if x:
            print(f"colour accuracy ({tag}, prompts naming a colour): " +
                  ", ".join(f"{k} {v['colour_acc']:.3f}" for k, v in x["sets"].items() if v["colour_acc"] is not None))
    j = load("judge_check.json")
    if j:
        print(f"\njudge CLIP: zero-shot shape accuracy {j['test_renders']['judge_acc']:.4f} on {j['test_renders']['n']} test "
              f"renders; agreement with the classifier on {j.get('generated_n', 0)} generated images "
              f"{j.get('generated_agreement', float('nan')):.4f}")
        print("\n| images | N | agreement | classifier rate | judge rate |\n| --- | ---: | ---: | ---: | ---: |")
        for k, v in j["generated"].items():
            print(f"| {k} | {v['n']} | {v['agreement']:.3f} | {v['classifier_rate']:.3f} | {v['judge_rate']:.3f} |")
