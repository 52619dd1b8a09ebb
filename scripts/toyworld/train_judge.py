"""The judge: a CLIP in Hugging Face CLIPModel layout (vision_model.* with pre_layrnorm, text_model.*,
visual_projection, text_projection, logit_scale) trained contrastively on the world: images (rendered,
augmented, and VAE reconstructions so generated images are in distribution) against captions such as
"a photo of a triangle" / "a photo of a red triangle". Exported fp16 (token table I8, see export.py)
with a config.json-style JSON in __metadata__["config"]. usage: train_judge.py MINUTES OUT.safetensors"""
import json, sys
import numpy as np
import torch, torch.nn.functional as F
from common import WORK, Timer, log, save_safetensors
import nets, world, export
from train_classifier import augment

LOG = f"{WORK}/judge.log"
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]
TEMPLATES = ["a photo of a {s}", "a {s}", "a picture of a {s}"]
VD, TD, PROJ = 32, 32, 32


def pixel_values(x):  # x [B,3,16,16] in [0,1]
    return (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)


def config(model):
    return {"projection_dim": PROJ, "logit_scale_init": 2.6592600345611572,
            "vision_config": {"image_size": 16, "patch_size": 4, "hidden_size": VD, "num_hidden_layers": 2,
                              "num_attention_heads": 2, "intermediate_size": 4 * VD, "hidden_act": "quick_gelu",
                              "layer_norm_eps": 1e-05},
            "text_config": {"vocab_size": 49408, "max_position_embeddings": 77, "hidden_size": TD, "num_hidden_layers": 2,
                            "num_attention_heads": 2, "intermediate_size": 4 * TD, "hidden_act": "quick_gelu",
                            "layer_norm_eps": 1e-05},
            "image_mean": MEAN, "image_std": STD}


def export_judge(m, path):
    sd = {}
    for k, v in m.state_dict().items():
        if k.startswith("text_model.") or k.endswith("position_ids"):
            continue
        sd[k] = v
    tsd, s = export.text_to_i8(m.text_model.export_state("text_model."), "text_model.", 2)
    sd.update(tsd)
    sd["vision_model.embeddings.position_ids"] = torch.arange(17, dtype=torch.int64)[None]
    sd["text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
    out = export.fp16(sd)
    out["logit_scale"] = m.logit_scale.detach().float().reshape(())
    save_safetensors(path, out, {"config": json.dumps(config(m)), "format": "pt"})
    return s


def load_judge(path):
    from common import load_safetensors
    sd, md = load_safetensors(path)
    cfg = json.loads(md["config"])
    m = nets.JudgeCLIP([0], proj=cfg["projection_dim"], vd=cfg["vision_config"]["hidden_size"], td=cfg["text_config"]["hidden_size"])
    m.text_model = export.text_from_state(sd, "text_model.", cfg["text_config"])
    own = {k: v.float() for k, v in sd.items() if not k.startswith("text_model.") and not k.endswith("position_ids")}
    m.load_state_dict(own, strict=False)
    return m.eval()


@torch.no_grad()
def zero_shot(m, imgs, template="a photo of a {s}"):
    """imgs float [N,16,16,3] in [0,1] (or uint8) -> predicted shape index, probabilities."""
    imgs = np.asarray(imgs)
    x = torch.tensor(imgs.astype(np.float32) / (255.0 if imgs.dtype == np.uint8 else 1.0)).permute(0, 3, 1, 2)
    tok = world.Tokenizer()
    te = F.normalize(m.text_embeds(torch.tensor([tok(template.format(s=s)) for s in world.SHAPES])), dim=-1)
    ie = F.normalize(m.image_embeds(pixel_values(x)), dim=-1)
    logits = m.logit_scale.exp() * ie @ te.T
    return logits.argmax(1).numpy(), torch.softmax(logits, 1).numpy()


def main():
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    out = sys.argv[2] if len(sys.argv) > 2 else f"{WORK}/judge.safetensors"
    tm = Timer()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    tok = world.Tokenizer()
    caps = [t.format(s=s) for t in TEMPLATES for s in world.SHAPES] + \
           [t.format(s=f"{c} {s}") for t in TEMPLATES for c in world.COLOURS for s in world.SHAPES]
    used = sorted({i for c in caps for i in tok(c)})
    m = nets.JudgeCLIP(used, proj=PROJ, vd=VD, td=TD)
    d = np.load(f"{WORK}/train.npz")
    X = torch.tensor(d["imgs"]).float().div(255).permute(0, 3, 1, 2)
    Y = torch.tensor(d["labels"])
    # VAE reconstructions of the training images (what generated images look like)
    from train_vae import VAE_CFG
    vae = nets.AutoencoderKL(**VAE_CFG)
    vae.load_state_dict(torch.load(f"{WORK}/vae.pt"))
    with torch.no_grad():
        R = torch.cat([((vae.decode(vae.encode(X[i:i + 500] * 2 - 1)[0]) + 1) / 2).clamp(0, 1) for i in range(0, len(X), 500)])
    opt = torch.optim.Adam(m.parameters(), 1e-3)
    step = 0
    while tm.cpu_min() < minutes:
        frac = tm.cpu_min() / minutes
        for gr in opt.param_groups:
            gr["lr"] = min(1.0, (step + 1) / 100) * (5e-5 + (1e-3 - 5e-5) * 0.5 * (1 + np.cos(np.pi * frac)))
        idx = torch.randint(0, len(X), (128,), generator=g)
        use_r = torch.rand(128, generator=g) < 0.5
        x = torch.where(use_r[:, None, None, None], R[idx], X[idx])
        x = augment(x, g)
        t = TEMPLATES[step % len(TEMPLATES)]
        shape_caps = [t.format(s=s) for s in world.SHAPES]
        combo_caps = [t.format(s=f"{c} {s}") for c in world.COLOURS for s in world.SHAPES]
        ie = F.normalize(m.image_embeds(pixel_values(x)), dim=-1)
        te = F.normalize(m.text_embeds(torch.tensor([tok(c) for c in shape_caps + combo_caps])), dim=-1)
        ls = m.logit_scale.exp().clamp(max=100)
        lg = ls * ie @ te.T
        ys, yc = Y[idx, 0], Y[idx, 1] * 5 + Y[idx, 0]
        loss_i = F.cross_entropy(lg[:, :5], ys) + F.cross_entropy(lg[:, 5:], yc)
        # text -> image: each caption against the batch, all images of its class positive
        pos_s = (ys[None] == torch.arange(5)[:, None]).float()
        pos_c = (yc[None] == torch.arange(25)[:, None]).float()
        lt = torch.log_softmax(lg.T, dim=1)
        loss_t = 0.0
        for rows, pos in ((lt[:5], pos_s), (lt[5:], pos_c)):
            has = pos.sum(1) > 0
            loss_t = loss_t - ((rows * pos).sum(1)[has] / pos.sum(1)[has]).mean()
        loss = loss_i + 0.5 * loss_t
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0:
            log(LOG, f"step {step} loss {loss.item():.4f} scale {ls.item():.1f} cpu {tm.cpu_min():.2f}")
        step += 1
    m.eval()
    s = export_judge(m, out)
    j = load_judge(out)
    te = np.load(f"{WORK}/test.npz")
    pred, _ = zero_shot(j, te["imgs"])
    acc = float((pred == te["labels"][:, 0]).mean())
    with torch.no_grad():
        Xt = torch.tensor(te["imgs"]).float().div(255).permute(0, 3, 1, 2)
        Rt = ((vae.decode(vae.encode(Xt * 2 - 1)[0]) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    pr, _ = zero_shot(j, Rt)
    acc_r = float((pr == te["labels"][:, 0]).mean())
    log(LOG, f"judge: {step} steps, {tm.cpu_min():.2f} CPU-min; exported (fp16, I8 token table, scale {s:.5f}) "
        f"zero-shot shape accuracy on 3000 test renders {acc:.4f}, on their VAE reconstructions {acc_r:.4f}")


if __name__ == "__main__":
    main()
