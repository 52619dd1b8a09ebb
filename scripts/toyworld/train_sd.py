"""UNet (ldm naming, GEGLU) + text encoder (CLIP naming, width 64, 2 layers, only the used token rows
trained) on the VAE latents. Batch 64 = 16 captions x 4 images of the same (shape, colour, background);
lr 1e-3 cosine to 1e-4 over the CPU-minute budget; EMA 0.999. Checkpoints every few minutes and
resumes from the last checkpoint (CPU minutes carry over).
usage: train_sd.py MINUTES"""
import copy, os, sys
import numpy as np
import torch, torch.nn.functional as F
from common import WORK, Timer, log, alphas_cumprod, ddim_sample
import nets, world

LOG = f"{WORK}/sd.log"
# CPU-minute from which half of each batch is drawn at t >= 400 (the first run switched at 22)
T_MIX_FROM = float(os.environ.get("T_MIX_FROM", 0.0))
# CPU-minute from which the loss is weighted towards high t (the first run switched at 27)
W_FROM = float(os.environ.get("W_FROM", 0.0))
# CPU-minute from which the auxiliary shape probe on the context is on (the first run switched at 31)
AUX_FROM = float(os.environ.get("AUX_FROM", 0.0))
AUX = []


def shape_named(caption):
    words = f" {caption} "
    for i, s in enumerate(world.SHAPES):
        if any(f" {w} " in words for w in world.SYNONYMS[s]):
            return i
    return len(world.SHAPES)
CKPT = f"{WORK}/sd_ckpt.pt"


def used_token_ids(tok):
    return sorted({i for c in world.all_training_captions() for i in tok(c)})


def build(tok):
    ids = used_token_ids(tok)
    return nets.UNet(), nets.CLIPTextTransformer(ids, d=64, layers=2, heads=2, inner=256)


@torch.no_grad()
def quick_eval(unet, text, tok, clf, n=10, steps=20, g=7.5):
    from train_classifier import classify
    prompts = [f"a photo of a {s}" for s in world.SHAPES]
    ids = torch.tensor([tok(p) for p in prompts for _ in range(n)])
    cond = text(ids)
    unc = text(torch.tensor([tok("")])).expand_as(cond)
    gen = torch.Generator().manual_seed(123)
    xT = torch.randn((len(ids), 4, 4, 4), generator=gen)

    def eps(x, t):
        e = unet(torch.cat([x, x]), torch.full((2 * len(x),), t), torch.cat([unc, cond]))
        eu, ec = e.chunk(2)
        return eu + g * (ec - eu)
    z = ddim_sample(eps, xT, steps)
    lat = torch.load(f"{WORK}/latents.pt")
    vae = nets.AutoencoderKL(**__import__("train_vae").VAE_CFG)
    vae.load_state_dict(torch.load(f"{WORK}/vae.pt"))
    img = ((vae.decode(z / lat["scale"]) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy()
    ps, _, _, _ = classify(clf, img)
    want = np.repeat(np.arange(len(world.SHAPES)), n)
    return {s: float((ps[want == i] == i).mean()) for i, s in enumerate(world.SHAPES)}


def main():
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 33.0
    eval_every = float(os.environ.get("EVAL_EVERY", 6.0))
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    rng = np.random.default_rng(0)
    tok = world.Tokenizer()
    unet, text = build(tok)
    ema_u, ema_t = copy.deepcopy(unet), copy.deepcopy(text)
    params = list(unet.parameters()) + list(text.parameters())
    aux = torch.nn.Linear(64, len(world.SHAPES) + 1)
    AUX.append(aux)
    opt = torch.optim.Adam(params + list(aux.parameters()), 1e-3)
    step, cpu_done, next_eval = 0, 0.0, eval_every
    if os.path.exists(CKPT):
        ck = torch.load(CKPT)
        unet.load_state_dict(ck["unet"]); text.load_state_dict(ck["text"])
        ema_u.load_state_dict(ck["ema_unet"]); ema_t.load_state_dict(ck["ema_text"])
        if "aux" in ck:
            aux.load_state_dict(ck["aux"])
            opt.load_state_dict(ck["opt"])
        else:  # checkpoint from before the probe: keep the moments of the old parameters
            o = ck["opt"]
            o["param_groups"][0]["params"] = list(range(len(params) + 2))
            opt.load_state_dict(o)
        step, cpu_done, next_eval = ck["step"], ck["cpu_min"], ck.get("next_eval", eval_every)
        g.set_state(ck["gen"]); rng.bit_generator.state = ck["rng"]
        log(LOG, f"resumed at step {step}, {cpu_done:.2f} CPU-min")
    lat = torch.load(f"{WORK}/latents.pt")
    M, LV, scale = lat["mean"], lat["logvar"], lat["scale"]
    labels = np.load(f"{WORK}/train.npz")["labels"]
    groups = {}
    for i, (s, c, b) in enumerate(labels):
        groups.setdefault((int(s), int(c), int(b)), []).append(i)
    keys = sorted(groups)
    groups = {k: np.array(v) for k, v in groups.items()}
    ac = alphas_cumprod()
    id_cache = {}
    from train_classifier import load_classifier
    clf = load_classifier()
    tm = Timer()
    last_ck = 0.0
    while True:
        cpu = cpu_done + tm.cpu_min()
        if cpu >= minutes:
            break
        frac = min(cpu / minutes, 1.0)
        for gr in opt.param_groups:
            gr["lr"] = 1e-4 + (1e-3 - 1e-4) * 0.5 * (1 + np.cos(np.pi * frac))
        caps, idx = [], []
        for _ in range(16):
            k = keys[rng.integers(len(keys))]
            cap = "" if rng.random() < 0.1 else world.caption(rng, world.SHAPES[k[0]], world.COLOURS[k[1]], world.BACKGROUNDS[k[2]])
            caps.append(cap)
            idx.extend(rng.choice(groups[k], 4, replace=False))
        ids = torch.tensor([id_cache.setdefault(c, tok(c)) for c in caps])
        ctx16 = text(ids)
        ctx = ctx16.repeat_interleave(4, 0)
        idx = torch.tensor(idx)
        z0 = (M[idx] + torch.exp(0.5 * LV[idx]) * torch.randn(M[idx].shape, generator=g)) * scale
        t = torch.randint(0, 1000, (64,), generator=g)
        if cpu >= T_MIX_FROM:  # half of the batch at t >= 400, where the shape is decided
            hi = torch.randint(400, 1000, (64,), generator=g)
            t = torch.where(torch.rand(64, generator=g) < 0.5, hi, t)
        noise = torch.randn(z0.shape, generator=g)
        a = ac[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        if cpu >= W_FROM:
            # weight 1 + min((1 - a) / a, 10): the eps loss barely sees the x0 error at high t, where the
            # sampler decides the shape; this adds an x0-like term there (capped)
            w = 1 + ((1 - a) / a).clamp(max=10.0)
            loss = (w * (unet(xt, t, ctx) - noise) ** 2).mean() / w.mean()
        else:
            loss = F.mse_loss(unet(xt, t, ctx), noise)
        if cpu >= AUX_FROM:
            # auxiliary probe (training only, not exported): the shape named by the caption (or none)
            # must be readable from the mean context, so the shape tokens leave a mark the UNet can use
            want = torch.tensor([shape_named(c) for c in caps])
            loss = loss + 0.1 * F.cross_entropy(aux(ctx16.mean(1)), want)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for e, p in zip(list(ema_u.parameters()) + list(ema_t.parameters()), params):
                e.mul_(0.999).add_(p, alpha=0.001)
        step += 1
        if step % 100 == 0:
            log(LOG, f"step {step} loss {loss.item():.4f} lr {opt.param_groups[0]['lr']:.2e} cpu {cpu:.2f} min")
        if cpu - last_ck > 2.0 or cpu >= minutes:
            last_ck = cpu
            save(unet, text, ema_u, ema_t, opt, step, cpu, next_eval, g, rng)
        if cpu >= next_eval:
            t0 = tm.cpu_min()
            r = quick_eval(ema_u.eval(), ema_t.eval(), tok, clf)
            ema_u.train(); ema_t.train()
            log(LOG, f"eval at {cpu:.1f} training CPU-min (EMA, 10/shape, 'a photo of a X', g 7.5, 20 DDIM steps): {r}")
            cpu_done -= tm.cpu_min() - t0  # evaluation time does not count as training
            next_eval += eval_every
    cpu = cpu_done + tm.cpu_min()
    save(unet, text, ema_u, ema_t, opt, step, cpu, next_eval, g, rng)
    r = quick_eval(ema_u.eval(), ema_t.eval(), tok, clf)
    log(LOG, f"done: {step} steps, {cpu:.2f} training CPU-min; final eval {r}")


def save(unet, text, ema_u, ema_t, opt, step, cpu, next_eval, g, rng):
    torch.save({"aux": AUX[0].state_dict() if AUX else None, "unet": unet.state_dict(), "text": text.state_dict(), "ema_unet": ema_u.state_dict(),
                "ema_text": ema_t.state_dict(), "opt": opt.state_dict(), "step": step, "cpu_min": cpu,
                "next_eval": next_eval, "gen": g.get_state(), "rng": rng.bit_generator.state}, CKPT + ".tmp")
    os.replace(CKPT + ".tmp", CKPT)


if __name__ == "__main__":
    main()
