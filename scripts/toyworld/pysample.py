"""Python-side txt2img (DDIM as sdprune: uniform timesteps +1, eta 0, CFG with the "" context first)."""
import numpy as np
import torch
from common import ddim_sample
import world

_tok = None


def tok():
    global _tok
    if _tok is None:
        _tok = world.Tokenizer()
    return _tok


@torch.no_grad()
def contexts(text, prompts):
    return text(torch.tensor([tok()(p) for p in prompts]))


@torch.no_grad()
def sample(unet, text, vae, scale, prompts, seeds, steps=25, guidance=7.5, batch=100):
    out = []
    unc0 = contexts(text, [""])
    for i in range(0, len(prompts), batch):
        ps, ss = prompts[i:i + batch], seeds[i:i + batch]
        cond = contexts(text, ps)
        unc = unc0.expand_as(cond)
        xT = torch.cat([torch.randn((1, 4, 4, 4), generator=torch.Generator().manual_seed(int(s))) for s in ss])

        def eps(x, t):
            e = unet(torch.cat([x, x]), torch.full((2 * len(x),), t), torch.cat([unc, cond]))
            eu, ec = e.chunk(2)
            return eu + guidance * (ec - eu)
        z = ddim_sample(eps, xT, steps)
        out.append(((vae.decode(z / scale) + 1) / 2).clamp(0, 1).permute(0, 2, 3, 1).numpy())
    return np.concatenate(out)
