"""Export to sdprune's single-file SD-1 layout (fp16 safetensors, config in __metadata__["config"] in
the form src/model/model.c reads: {"kind", "unet" (ldm unet_config params), "text" (CLIPTextConfig),
"vae" (ldm ddconfig + embed_dim + scale_factor), "schedule"}), UNet-only overrides, and loading back.

Size: the 49408-row token table dominates (49408 x 64 x 2 bytes = 6.3 MB in fp16), and only ~45 rows
are ever trained. The table is stored as I8 (a safetensors dtype sdprune reads as its integer value):
rows = round(table / s), and the residual stream is scaled by 1/s to match (position embedding,
every out_proj and fc2 weight and bias times 1/s). A pre-LN transformer with a final LayerNorm gives
the same output for a residual stream scaled by a constant, so the model is the same function up to
the int8 rounding of the trained rows (measured and reported by check_text_i8)."""
import json
import torch
from common import save_safetensors, load_safetensors
import nets

SCHEDULE = {"beta_schedule": "scaled_linear", "linear_start": 0.00085, "linear_end": 0.012, "timesteps": 1000}


def vae_config(scale):
    from train_vae import VAE_CFG
    return {"ch": VAE_CFG["ch"], "out_ch": 3, "ch_mult": list(VAE_CFG["ch_mult"]), "num_res_blocks": VAE_CFG["nres"],
            "attn_resolutions": [], "in_channels": 3, "resolution": 16, "z_channels": VAE_CFG["z"], "double_z": True,
            "embed_dim": VAE_CFG["z"], "scale_factor": scale}


def text_to_i8(sd, prefix, n_layers):
    """sd: float tensors of a CLIP text model (HF names under prefix). Returns a new dict with the token
    table in I8 and the residual stream rescaled; and the scale."""
    sd = dict(sd)
    tk = prefix + "embeddings.token_embedding.weight"
    tab = sd[tk].float()
    s = float(tab.abs().max()) / 127.0
    sd[tk] = torch.round(tab / s).clamp(-127, 127).to(torch.int8)
    k = 1.0 / s
    names = [prefix + "embeddings.position_embedding.weight"]
    for i in range(n_layers):
        for m in ("self_attn.out_proj", "mlp.fc2"):
            names += [f"{prefix}encoder.layers.{i}.{m}.weight", f"{prefix}encoder.layers.{i}.{m}.bias"]
    for n in names:
        sd[n] = sd[n].float() * k
    return sd, s


def fp16(sd, keep_i8=True):
    out = {}
    for k, v in sd.items():
        if v.dtype in (torch.int8, torch.int64):
            out[k] = v
        else:
            out[k] = v.detach().float().half()
    return out


def export_base(path, unet, text, vae, scale, extra_meta=None, drop_encoder=False):
    tcfg = nets.text_config(d=64, layers=len(text.encoder.layers), heads=text.encoder.layers[0].self_attn.heads,
                            inner=text.encoder.layers[0].mlp.fc1.out_features)
    cfg = {"kind": "toyworld-sd1", "unet": nets.UNET_CONFIG, "text": tcfg, "vae": vae_config(scale), "schedule": SCHEDULE,
           "generator": "sdprune scripts/toyworld (PyTorch, ldm/HF naming)"}
    tensors = {}
    for k, v in unet.state_dict().items():
        tensors["model.diffusion_model." + k] = v
    tsd, s = text_to_i8(text.export_state("text_model."), "text_model.", len(text.encoder.layers))
    for k, v in tsd.items():
        tensors["cond_stage_model.transformer." + k] = v
    tensors["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch.arange(77, dtype=torch.int64)[None]
    for k, v in vae.state_dict().items():
        if drop_encoder and (k.startswith("encoder.") or k.startswith("quant_conv.")):
            continue
        tensors["first_stage_model." + k] = v
    meta = {"config": json.dumps(cfg), "format": "pt"}
    if extra_meta:
        meta.update({k: (v if isinstance(v, str) else json.dumps(v)) for k, v in extra_meta.items()})
    save_safetensors(path, fp16(tensors), meta)
    return s


def export_unet(path, unet_sd, meta=None):
    save_safetensors(path, fp16({"model.diffusion_model." + k: v for k, v in unet_sd.items()}),
                     {"format": "pt", **(meta or {})})


class FullEmbedding(torch.nn.Module):
    def __init__(self, w):
        super().__init__()
        self.weight = torch.nn.Parameter(w)

    def forward(self, ids):
        return self.weight[ids]


def text_from_state(sd, prefix, cfg):
    t = nets.CLIPTextTransformer([0], d=cfg["hidden_size"], layers=cfg["num_hidden_layers"],
                                 heads=cfg["num_attention_heads"], inner=cfg["intermediate_size"])
    t.embeddings.token_embedding = FullEmbedding(sd[prefix + "embeddings.token_embedding.weight"].float())
    own = {k[len(prefix):]: v.float() for k, v in sd.items() if k.startswith(prefix) and "token_embedding" not in k
           and "position_ids" not in k}
    missing, unexpected = t.load_state_dict(own, strict=False)
    assert missing == ["embeddings.token_embedding.weight"] or not missing, missing
    assert not unexpected, unexpected
    return t.eval()


def load_base(path):
    """-> unet, text, vae (float32 nn.Modules), scale_factor, config."""
    sd, md = load_safetensors(path)
    cfg = json.loads(md["config"])
    unet = nets.UNet(cfg["unet"])
    unet.load_state_dict({k[len("model.diffusion_model."):]: v.float() for k, v in sd.items() if k.startswith("model.diffusion_model.")})
    text = text_from_state(sd, "cond_stage_model.transformer.text_model.", cfg["text"])
    from train_vae import VAE_CFG
    vae = nets.AutoencoderKL(**VAE_CFG)
    vsd = {k[len("first_stage_model."):]: v.float() for k, v in sd.items() if k.startswith("first_stage_model.")}
    vae.load_state_dict(vsd, strict=False)
    return unet.eval(), text, vae.eval(), cfg["vae"]["scale_factor"], cfg


def load_unet(path):
    sd, _ = load_safetensors(path)
    u = nets.UNet()
    u.load_state_dict({k[len("model.diffusion_model."):]: v.float() for k, v in sd.items()})
    return u.eval()
