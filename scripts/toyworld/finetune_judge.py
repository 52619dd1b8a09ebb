"""Fine-tunes the judge CLIP's image tower on images the models actually generate, so that #8's CLIP
zero-shot detector agrees with the plain classifier on generated images (the judge trained on renders
and VAE reconstructions called 29% of the base model's generated triangles something else).

1. `build/sdprune generate` draws images from each MODEL[:UNET] on every prompt set's prompts with
   fine-tuning seeds (FT_SEED0 + i; the evaluation seeds are 10000-49999, never used here).
2. The plain classifier labels them (kept when its shape probability is >= 0.9).
3. The vision tower + visual_projection are trained (text tower, text_projection, logit_scale frozen, so
   the label prompts "a photo of a {shape}" keep their embeddings) with cross-entropy of the zero-shot
   logits over the 5 shapes, on the generated images (augmented) and on renders (half of each batch).
4. The judge file is rewritten with only those tensors replaced (same names, dtypes, metadata).

usage: finetune_judge.py gen TAG BASE.safetensors[:UNET.safetensors] SET[,SET...] N   (step 1; several at once
                                                                        in parallel processes is fine)
       finetune_judge.py train JUDGE_IN JUDGE_OUT [--steps 600]  (steps 2-4 on every PNG under
                                                                        $TOYWORLD_WORK/judge_ft)"""
import argparse, glob, os, sys
import numpy as np
import torch, torch.nn.functional as F
from common import WORK, Timer, log, load_safetensors, save_safetensors
import prompts, world
from PIL import Image
from eval_c import generate
from train_classifier import load_classifier, classify, augment
from train_judge import load_judge, zero_shot, pixel_values

LOG = f"{WORK}/finetune_judge.log"
FT_SEED0 = 60000


def gen_images(tag, spec, names, n):
    """the first n rows of each named prompt set, with fine-tuning seeds FT_SEED0 + 1000 * set index + row"""
    model, _, unet = spec.partition(":")
    all_sets = prompts.sets(200)
    order = list(all_sets)
    for name in names:
        d = os.path.join(WORK, "judge_ft", tag, name)
        os.makedirs(d, exist_ok=True)
        rows = [(p, FT_SEED0 + 1000 * order.index(name) + i) for i, (p, _) in enumerate(all_sets[name][:n])]
        csv_path = os.path.join(d, "prompts.csv")
        prompts.write_csv(csv_path, rows)
        for f in glob.glob(os.path.join(d, "*.png")):
            os.remove(f)
        generate(model, unet or None, csv_path, d, 20, 7.5)


def load_generated():
    imgs = []
    for d in sorted(glob.glob(os.path.join(WORK, "judge_ft", "*", "*"))):
        files = sorted(glob.glob(os.path.join(d, "*.png")))
        imgs += [np.asarray(Image.open(f).convert("RGB")) for f in files]
    return np.stack(imgs)


def main():
    if sys.argv[1] == "gen":
        gen_images(sys.argv[2], sys.argv[3], sys.argv[4].split(","), int(sys.argv[5]))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("cmd", choices=["train"])
    ap.add_argument("judge_in")
    ap.add_argument("judge_out")
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--lr", type=float, default=3e-4)
    a = ap.parse_args()
    tm = Timer()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    G = load_generated()
    clf = load_classifier()
    ps, _, _, prob = classify(clf, G)
    keep = prob.max(1) >= 0.9
    G, YG = G[keep], ps[keep]
    log(LOG, f"{len(keep)} generated images, {keep.sum()} kept (classifier p >= 0.9); shapes {np.bincount(YG, minlength=5)}")
    m = load_judge(a.judge_in)
    p0, _ = zero_shot(m, G)
    log(LOG, f"before: judge agrees with the classifier on {(p0 == YG).mean():.4f} of them")
    d = np.load(f"{WORK}/train.npz")
    XR = torch.tensor(d["imgs"]).float().div(255).permute(0, 3, 1, 2)
    YR = torch.tensor(d["labels"][:, 0])
    XG = torch.tensor(G).float().div(255).permute(0, 3, 1, 2)
    YGt = torch.tensor(YG)
    tok = world.Tokenizer()
    for n_, p in m.named_parameters():
        p.requires_grad_(n_.startswith("vision_model.") or n_.startswith("visual_projection."))
    with torch.no_grad():
        te = F.normalize(m.text_embeds(torch.tensor([tok(f"a photo of a {s}") for s in world.SHAPES])), dim=-1)
        ls = m.logit_scale.exp().clamp(max=100)
    train = [p for p in m.parameters() if p.requires_grad]
    opt = torch.optim.Adam(train, a.lr)
    m.train()
    for step in range(a.steps):
        for gr in opt.param_groups:
            gr["lr"] = a.lr * 0.5 * (1 + np.cos(np.pi * step / a.steps))
        ig = torch.randint(0, len(XG), (64,), generator=g)
        ir = torch.randint(0, len(XR), (64,), generator=g)
        x = torch.cat([XG[ig], augment(XR[ir], g)])
        x = torch.cat([x[:32], augment(x[32:64], g), x[64:]])  # half the generated ones augmented
        y = torch.cat([YGt[ig], YR[ir]])
        lg = ls * F.normalize(m.image_embeds(pixel_values(x)), dim=-1) @ te.T
        loss = F.cross_entropy(lg, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == a.steps - 1:
            log(LOG, f"step {step} loss {loss.item():.4f} cpu {tm.cpu_min():.2f}")
    m.eval()
    sd, md = load_safetensors(a.judge_in)
    own = m.state_dict()
    n_rep = 0
    for k in sd:
        if (k.startswith("vision_model.") or k.startswith("visual_projection.")) and "position_ids" not in k:
            sd[k] = own[k].detach().to(sd[k].dtype).contiguous()
            n_rep += 1
    save_safetensors(a.judge_out, sd, md)
    j = load_judge(a.judge_out)
    p1, _ = zero_shot(j, G)
    te_ = np.load(f"{WORK}/test.npz")
    pt, _ = zero_shot(j, te_["imgs"])
    log(LOG, f"wrote {a.judge_out} ({n_rep} tensors replaced); agreement on the fine-tuning images {(p1 == YG).mean():.4f}; "
        f"zero-shot on 3000 test renders {(pt == te_['labels'][:, 0]).mean():.4f}; {tm.cpu_min():.2f} CPU-min")


if __name__ == "__main__":
    main()
