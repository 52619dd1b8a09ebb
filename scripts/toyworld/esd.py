"""ESD-u (Gandikota et al. 2023) on the exported base model: fine-tune every UNet weight except the
cross-attention (attn2) so that eps(x_t, c, t) -> eps*(x_t, "", t) - eta (eps*(x_t, c, t) - eps*(x_t, "", t)),
eps* the frozen base. x_t come from the current model: a pool of DDIM trajectories for the concept
prompts, refreshed every `refresh` steps. Writes a UNet-only override (model.diffusion_model.*, fp16).
usage: esd.py BASE.safetensors OUT.safetensors [--steps 400] [--lr 1e-4] [--eta 1.0]"""
import argparse, copy, json
import numpy as np
import torch, torch.nn.functional as F
from common import WORK, Timer, log, alphas_cumprod, ddim_sample
import export, pysample

LOG = f"{WORK}/esd.log"
CONCEPT_PROMPTS = ["triangle", "a triangle", "a photo of a triangle"]
# preservation (--preserve W > 0): the controls' noise predictions are held at the frozen model's on x_t
# from the frozen model's own trajectories for these prompts (the former star control lost 12.5 points without it)
PRESERVE_PROMPTS = [t.format(s=s) for s in ("bar", "plus", "square", "ring")
                    for t in ("{s}", "a {s}", "a photo of a {s}", "a red {s}", "a blue {s}")] + [""]
# "" too: the unconditional prediction moves with every non-attn2 weight, and classifier-free guidance at 7.5
# amplifies any drift of it (preserving the controls' conditional predictions alone turned 39% of the former star control's images
# into triangles)


@torch.no_grad()
def make_pool(unet, cond_all, unc, n, steps, guidance, g):
    """n DDIM trajectories from the current model, every (t, x_t) kept with its prompt index."""
    pi = torch.randint(0, len(cond_all), (n,), generator=g)
    cond = cond_all[pi]
    u = unc.expand_as(cond)

    def eps(x, t):
        e = unet(torch.cat([x, x]), torch.full((2 * len(x),), t), torch.cat([u, cond]))
        eu, ec = e.chunk(2)
        return eu + guidance * (ec - eu)
    xT = torch.randn((n, 4, 4, 4), generator=g)
    _, traj = ddim_sample(eps, xT, steps, return_traj=True)
    # the state *before* each step is what the UNet sees at that t: (t_i, x_{t_i})
    xs, ts = [xT], []
    for t, x in traj:
        ts.append(t)
        xs.append(x)
    X = torch.stack(xs[:-1], 1)  # [n, steps, ...] inputs at t_i
    T = torch.tensor(ts)[None].expand(n, -1)
    P = pi[:, None].expand(n, len(ts))
    return X.reshape(-1, 4, 4, 4), T.reshape(-1), P.reshape(-1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--eta", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--pool", type=int, default=64)
    ap.add_argument("--refresh", type=int, default=100)
    ap.add_argument("--preserve", type=float, default=0.0, help="weight of the controls' preservation loss")
    a = ap.parse_args()
    tm = Timer()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    unet, text, vae, scale, cfg = export.load_base(a.base)
    frozen = copy.deepcopy(unet).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    cond_all = pysample.contexts(text, CONCEPT_PROMPTS)
    unc = pysample.contexts(text, [""])
    train = [p for n, p in unet.named_parameters() if "attn2" not in n]
    for n, p in unet.named_parameters():
        p.requires_grad_("attn2" not in n)
    opt = torch.optim.Adam(train, a.lr)
    if a.preserve > 0:
        cond_p = pysample.contexts(text, PRESERVE_PROMPTS)
        XP, TP, PP = make_pool(frozen, cond_p, unc, a.pool, 20, 3.0, g)
    for step in range(a.steps):
        if step % a.refresh == 0:
            unet.eval()
            X, T, P = make_pool(unet, cond_all, unc, a.pool, 20, 3.0, g)
            unet.train()
        idx = torch.randint(0, len(X), (a.batch,), generator=g)
        x, t, c = X[idx], T[idx], cond_all[P[idx]]
        with torch.no_grad():
            e = frozen(torch.cat([x, x]), torch.cat([t, t]), torch.cat([unc.expand_as(c), c]))
            eu, ec = e.chunk(2)
            target = eu - a.eta * (ec - eu)
        loss = F.mse_loss(unet(x, t, c), target)
        if a.preserve > 0:
            j = torch.randint(0, len(XP), (a.batch,), generator=g)
            xp, tp, cp = XP[j], TP[j], cond_p[PP[j]]
            with torch.no_grad():
                tgt_p = frozen(xp, tp, cp)
            loss = loss + a.preserve * F.mse_loss(unet(xp, tp, cp), tgt_p)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == a.steps - 1:
            log(LOG, f"step {step} loss {loss.item():.5f} cpu {tm.cpu_min():.2f} min")
    sd = {k: v for k, v in unet.state_dict().items()}
    export.export_unet(a.out, sd, {"esd": json.dumps({"method": "ESD-u", "prompts": CONCEPT_PROMPTS, "steps": a.steps,
                                                       "lr": a.lr, "eta": a.eta, "batch": a.batch, "pool": a.pool,
                                                       "refresh": a.refresh, "preserve": a.preserve,
                                                       "preserve_prompts": PRESERVE_PROMPTS if a.preserve > 0 else [],
                                                       "cpu_min": round(tm.cpu_min(), 2)})})
    log(LOG, f"wrote {a.out}; {a.steps} steps in {tm.cpu_min():.2f} CPU-min")


if __name__ == "__main__":
    main()
