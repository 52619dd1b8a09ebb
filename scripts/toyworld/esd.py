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
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0 or step == a.steps - 1:
            log(LOG, f"step {step} loss {loss.item():.5f} cpu {tm.cpu_min():.2f} min")
    sd = {k: v for k, v in unet.state_dict().items()}
    export.export_unet(a.out, sd, {"esd": json.dumps({"method": "ESD-u", "prompts": CONCEPT_PROMPTS, "steps": a.steps,
                                                       "lr": a.lr, "eta": a.eta, "batch": a.batch, "pool": a.pool,
                                                       "refresh": a.refresh, "cpu_min": round(tm.cpu_min(), 2)})})
    log(LOG, f"wrote {a.out}; {a.steps} steps in {tm.cpu_min():.2f} CPU-min")


if __name__ == "__main__":
    main()
