"""VAE (ldm AutoencoderKL layout, ch 32, ch_mult (1,1,1): 16x16x3 -> 4x4x4). Saves the float32
weights, the latents of the training set (mean, logvar) and the scale factor (1 / latent std)."""
import sys
import numpy as np
import torch, torch.nn.functional as F
from common import WORK, Timer, log
import nets

LOG = f"{WORK}/vae.log"
VAE_CFG = dict(ch=32, ch_mult=(1, 1, 1), nres=1, z=4)

if __name__ == "__main__":
    minutes = float(sys.argv[1]) if len(sys.argv) > 1 else 5.0
    tm = Timer()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    d = np.load(f"{WORK}/train.npz")
    X = torch.tensor(d["imgs"]).float().div(255).permute(0, 3, 1, 2) * 2 - 1
    vae = nets.AutoencoderKL(**VAE_CFG)
    opt = torch.optim.Adam(vae.parameters(), 2e-3)
    step, kl_w = 0, 1e-4
    est_steps = None
    while True:
        cpu = tm.cpu_min()
        if cpu > minutes:
            break
        frac = cpu / minutes
        for gr in opt.param_groups:
            gr["lr"] = 1e-4 + (2e-3 - 1e-4) * 0.5 * (1 + np.cos(np.pi * frac))
        idx = torch.randint(0, len(X), (64,), generator=g)
        x = X[idx]
        mean, logvar = vae.encode(x)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=g)
        rec = vae.decode(z)
        kl = 0.5 * (mean ** 2 + logvar.exp() - 1 - logvar).mean()
        l_rec = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x)
        loss = l_rec + kl_w * kl
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 200 == 0:
            log(LOG, f"step {step} rec {l_rec.item():.5f} kl {kl.item():.3f} std {mean.std().item():.3f} cpu {cpu:.2f} min")
            torch.save(vae.state_dict(), f"{WORK}/vae.pt")
        step += 1
    vae.eval()
    torch.save(vae.state_dict(), f"{WORK}/vae.pt")
    with torch.no_grad():
        ms, lvs = [], []
        for i in range(0, len(X), 500):
            m, lv = vae.encode(X[i:i + 500])
            ms.append(m)
            lvs.append(lv)
        M, LV = torch.cat(ms), torch.cat(lvs)
    scale = float(1.0 / M.std())
    torch.save({"mean": M, "logvar": LV, "scale": scale}, f"{WORK}/latents.pt")
    log(LOG, f"done {step} steps, cpu {tm.cpu_min():.2f} min, latent std {M.std():.4f} -> scale_factor {scale:.5f}, "
        f"mean sigma {LV.mul(0.5).exp().mean():.4f}")
