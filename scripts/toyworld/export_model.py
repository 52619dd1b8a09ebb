"""Writes the base model (EMA weights of the last train_sd.py checkpoint + the VAE) as one fp16
single-file SD-1 safetensors and checks that the file reloads to the same function (text encoder
through the I8 table; rel-L2 of the contexts reported). usage: export_model.py OUT.safetensors"""
import sys
import torch
from common import WORK, log
import nets, world, export
from train_sd import build
from train_vae import VAE_CFG

if __name__ == "__main__":
    out = sys.argv[1]
    ck = torch.load(f"{WORK}/sd_ckpt.pt")
    tok = world.Tokenizer()
    unet, text = build(tok)
    which = "" if "--raw" in sys.argv else "ema_"  # --raw: the trained weights instead of their EMA
    unet.load_state_dict(ck[which + "unet"])
    text.load_state_dict(ck[which + "text"])
    vae = nets.AutoencoderKL(**VAE_CFG)
    vae.load_state_dict(torch.load(f"{WORK}/vae.pt"))
    scale = torch.load(f"{WORK}/latents.pt")["scale"]
    drop = "--drop-encoder" in sys.argv
    s = export.export_base(out, unet.eval(), text.eval(), vae.eval(), scale,
                           {"training": {"steps": ck["step"], "unet_text_cpu_min": round(ck["cpu_min"], 2), "weights": which or "raw"}}, drop_encoder=drop)
    u2, t2, v2, sc2, cfg = export.load_base(out)
    prompts = world.all_training_captions()[:200]
    with torch.no_grad():
        ids = torch.tensor([tok(p) for p in prompts])
        a, b = text(ids), t2(ids)
        rel = ((a - b).norm() / a.norm()).item()
    log(f"{WORK}/export.log", f"exported {out} (step {ck['step']}, {ck['cpu_min']:.2f} CPU-min); token scale {s:.5f}; "
        f"context rel-L2 fp16+I8 vs float {rel:.2e}")
