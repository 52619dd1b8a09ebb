"""Checks the judge CLIP against the plain classifier: zero-shot shape accuracy on test renders, and
agreement with the classifier's shape labels on the PNGs that eval_c.py generated with the C tool.
usage: check_judge.py JUDGE.safetensors TAG [TAG...]  -> $TOYWORLD_WORK/judge_check.json"""
import glob, json, os, sys
import numpy as np
from PIL import Image
from common import WORK
import world
from train_classifier import load_classifier, classify
from train_judge import load_judge, zero_shot

if __name__ == "__main__":
    judge = load_judge(sys.argv[1])
    clf = load_classifier()
    te = np.load(f"{WORK}/test.npz")
    pj, _ = zero_shot(judge, te["imgs"])
    out = {"test_renders": {"n": len(pj), "judge_acc": float((pj == te["labels"][:, 0]).mean())}, "generated": {}}
    print(f"judge zero-shot on {len(pj)} test renders: {out['test_renders']['judge_acc']:.4f}")
    tot_a, tot_n = 0, 0
    for tag in sys.argv[2:]:
        for d in sorted(glob.glob(os.path.join(WORK, "eval", tag, "*"))):
            files = sorted(glob.glob(os.path.join(d, "*.png")))
            if not files:
                continue
            imgs = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])
            pc, _, _, _ = classify(clf, imgs)
            pj, _ = zero_shot(judge, imgs)
            name = os.path.basename(d)
            asked = world.SHAPES.index(name[8:]) if name.startswith("control_") else 0
            agree = int((pc == pj).sum())
            tot_a += agree
            tot_n += len(pc)
            out["generated"][f"{tag}/{name}"] = {"n": len(pc), "agreement": agree / len(pc),
                                                 "classifier_rate": float((pc == asked).mean()),
                                                 "judge_rate": float((pj == asked).mean())}
            print(f"{tag}/{name}: agreement {agree / len(pc):.3f}  rate of '{world.SHAPES[asked]}': classifier "
                  f"{(pc == asked).mean():.3f} judge {(pj == asked).mean():.3f} (n={len(pc)})")
    if tot_n:
        out["generated_agreement"] = tot_a / tot_n
        out["generated_n"] = tot_n
        print(f"overall agreement on {tot_n} generated images: {tot_a / tot_n:.4f}")
    json.dump(out, open(f"{WORK}/judge_check.json", "w"), indent=1)
