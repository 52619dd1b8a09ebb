"""Networks in the naming of the upstream code, so that state_dict() keys are the checkpoint keys:
AutoencoderKL as ldm's (encoder/decoder/quant_conv/post_quant_conv), the UNet as ldm's openaimodel
(time_embed, input_blocks, middle_block, output_blocks, out; SpatialTransformer with GEGLU FFN),
the text encoder as Hugging Face CLIPTextModel (text_model.*), the judge as Hugging Face CLIPModel."""
import math
import torch
import torch.nn as nn
import torch.nn.functional as F


# ============================================================== VAE (ldm AutoencoderKL)
def vnorm(c):
    return nn.GroupNorm(32, c, eps=1e-6, affine=True)


class VResBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm1, self.conv1 = vnorm(cin), nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2, self.conv2 = vnorm(cout), nn.Conv2d(cout, cout, 3, 1, 1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class VAttn(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.norm = vnorm(c)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x):
        h = self.norm(x)
        b, c, hh, ww = h.shape
        q = self.q(h).reshape(b, c, -1).permute(0, 2, 1)
        k = self.k(h).reshape(b, c, -1)
        v = self.v(h).reshape(b, c, -1)
        w = torch.softmax(torch.bmm(q, k) * c ** -0.5, dim=2)
        o = torch.bmm(v, w.permute(0, 2, 1)).reshape(b, c, hh, ww)
        return x + self.proj_out(o)


class Down(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Up(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Mid(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.block_1, self.attn_1, self.block_2 = VResBlock(c, c), VAttn(c), VResBlock(c, c)

    def forward(self, x):
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    def __init__(self, ch, ch_mult, nres, z):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, 1, 1)
        self.down = nn.ModuleList()
        cin_mult = (1,) + tuple(ch_mult)
        for i, m in enumerate(ch_mult):
            lvl = nn.Module()
            blocks, bi = [], ch * cin_mult[i]
            for _ in range(nres):
                blocks.append(VResBlock(bi, ch * m))
                bi = ch * m
            lvl.block = nn.ModuleList(blocks)
            lvl.attn = nn.ModuleList()
            if i != len(ch_mult) - 1:
                lvl.downsample = Down(bi)
            self.down.append(lvl)
        self.mid = Mid(bi)
        self.norm_out = vnorm(bi)
        self.conv_out = nn.Conv2d(bi, 2 * z, 3, 1, 1)

    def forward(self, x):
        h = self.conv_in(x)
        for lvl in self.down:
            for b in lvl.block:
                h = b(h)
            if hasattr(lvl, "downsample"):
                h = lvl.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, ch, ch_mult, nres, z):
        super().__init__()
        bi = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z, bi, 3, 1, 1)
        self.mid = Mid(bi)
        ups = [None] * len(ch_mult)
        for i in reversed(range(len(ch_mult))):
            lvl = nn.Module()
            blocks = []
            for _ in range(nres + 1):
                blocks.append(VResBlock(bi, ch * ch_mult[i]))
                bi = ch * ch_mult[i]
            lvl.block = nn.ModuleList(blocks)
            lvl.attn = nn.ModuleList()
            if i != 0:
                lvl.upsample = Up(bi)
            ups[i] = lvl
        self.up = nn.ModuleList(ups)
        self.norm_out = vnorm(bi)
        self.conv_out = nn.Conv2d(bi, 3, 3, 1, 1)

    def forward(self, z):
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            for b in self.up[i].block:
                h = b(h)
            if hasattr(self.up[i], "upsample"):
                h = self.up[i].upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class AutoencoderKL(nn.Module):
    def __init__(self, ch=32, ch_mult=(1, 1, 1), nres=1, z=4):
        super().__init__()
        self.encoder = Encoder(ch, ch_mult, nres, z)
        self.decoder = Decoder(ch, ch_mult, nres, z)
        self.quant_conv = nn.Conv2d(2 * z, 2 * z, 1)
        self.post_quant_conv = nn.Conv2d(z, z, 1)

    def encode(self, x):  # x in [-1,1]
        m = self.quant_conv(self.encoder(x))
        mean, logvar = m.chunk(2, dim=1)
        return mean, torch.clamp(logvar, -30, 20)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


# ============================================================== UNet (ldm openaimodel)
def gn(c):
    return nn.GroupNorm(32, c, eps=1e-5)


def timestep_embedding(t, dim):
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


class ResBlock(nn.Module):
    def __init__(self, cin, emb, cout):
        super().__init__()
        self.in_layers = nn.Sequential(gn(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, 1, 1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb, cout))
        self.out_layers = nn.Sequential(gn(cout), nn.SiLU(), nn.Dropout(0.0), nn.Conv2d(cout, cout, 3, 1, 1))
        nn.init.zeros_(self.out_layers[3].weight)
        nn.init.zeros_(self.out_layers[3].bias)
        self.skip_connection = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.in_layers(x)
        h = h + self.emb_layers(emb)[:, :, None, None]
        return self.skip_connection(x) + self.out_layers(h)


class CrossAttention(nn.Module):
    def __init__(self, q_dim, ctx_dim, heads):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(q_dim, q_dim, bias=False)
        self.to_k = nn.Linear(ctx_dim, q_dim, bias=False)
        self.to_v = nn.Linear(ctx_dim, q_dim, bias=False)
        self.to_out = nn.Sequential(nn.Linear(q_dim, q_dim), nn.Dropout(0.0))

    def forward(self, x, ctx=None, rep=1):
        # rep: each context row serves `rep` consecutive images (k, v computed once per context)
        ctx = x if ctx is None else ctx
        b, n, d = x.shape
        h = self.heads
        q = self.to_q(x).reshape(b, n, h, d // h).transpose(1, 2)
        k = self.to_k(ctx).reshape(ctx.shape[0], ctx.shape[1], h, d // h).transpose(1, 2)
        v = self.to_v(ctx).reshape(ctx.shape[0], ctx.shape[1], h, d // h).transpose(1, 2)
        if rep > 1:
            k, v = k.repeat_interleave(rep, 0), v.repeat_interleave(rep, 0)
        w = torch.softmax(q @ k.transpose(-1, -2) * (d // h) ** -0.5, dim=-1)
        return self.to_out((w @ v).transpose(1, 2).reshape(b, n, d))


class GEGLU(nn.Module):
    def __init__(self, d, inner):
        super().__init__()
        self.proj = nn.Linear(d, 2 * inner)

    def forward(self, x):
        a, g = self.proj(x).chunk(2, dim=-1)
        return a * F.gelu(g)


class FeedForward(nn.Module):
    def __init__(self, d, mult=4):
        super().__init__()
        self.net = nn.Sequential(GEGLU(d, d * mult), nn.Dropout(0.0), nn.Linear(d * mult, d))

    def forward(self, x):
        return self.net(x)


class BasicTransformerBlock(nn.Module):
    def __init__(self, d, heads, ctx):
        super().__init__()
        self.attn1 = CrossAttention(d, d, heads)
        self.ff = FeedForward(d)
        self.attn2 = CrossAttention(d, ctx, heads)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(d), nn.LayerNorm(d), nn.LayerNorm(d)

    def forward(self, x, ctx, rep=1):
        x = self.attn1(self.norm1(x)) + x
        x = self.attn2(self.norm2(x), ctx, rep) + x
        return self.ff(self.norm3(x)) + x


class SpatialTransformer(nn.Module):
    def __init__(self, c, heads, ctx):
        super().__init__()
        self.norm = nn.GroupNorm(32, c, eps=1e-6)
        self.proj_in = nn.Conv2d(c, c, 1)
        self.transformer_blocks = nn.ModuleList([BasicTransformerBlock(c, heads, ctx)])
        self.proj_out = nn.Conv2d(c, c, 1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, x, ctx, rep=1):
        b, c, h, w = x.shape
        y = self.proj_in(self.norm(x)).reshape(b, c, h * w).transpose(1, 2)
        for blk in self.transformer_blocks:
            y = blk(y, ctx, rep)
        y = y.transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(y)


class TimestepSeq(nn.ModuleList):
    def forward(self, x, emb, ctx, rep=1):
        for m in self:
            if isinstance(m, ResBlock):
                x = m(x, emb)
            elif isinstance(m, SpatialTransformer):
                x = m(x, ctx, rep)
            else:
                x = m(x)
        return x


class DownOp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.op = nn.Conv2d(c, c, 3, 2, 1)

    def forward(self, x):
        return self.op(x)


class UpOp(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


UNET_CONFIG = dict(image_size=4, in_channels=4, out_channels=4, model_channels=32, attention_resolutions=[1, 2],
                   num_res_blocks=1, channel_mult=[1, 2], num_heads=2, use_spatial_transformer=True,
                   transformer_depth=1, context_dim=64, legacy=False)


class UNet(nn.Module):
    """ldm UNetModel restricted to what the toy uses: attention at every level, 1 transformer block."""

    def __init__(self, cfg=UNET_CONFIG):
        super().__init__()
        mc, mult, nres, heads, ctx = cfg["model_channels"], cfg["channel_mult"], cfg["num_res_blocks"], cfg["num_heads"], cfg["context_dim"]
        self.mc = mc
        emb = 4 * mc
        self.time_embed = nn.Sequential(nn.Linear(mc, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.input_blocks = nn.ModuleList([TimestepSeq([nn.Conv2d(cfg["in_channels"], mc, 3, 1, 1)])])
        chans, ch = [mc], mc
        for lvl, m in enumerate(mult):
            for _ in range(nres):
                self.input_blocks.append(TimestepSeq([ResBlock(ch, emb, m * mc), SpatialTransformer(m * mc, heads, ctx)]))
                ch = m * mc
                chans.append(ch)
            if lvl != len(mult) - 1:
                self.input_blocks.append(TimestepSeq([DownOp(ch)]))
                chans.append(ch)
        self.middle_block = TimestepSeq([ResBlock(ch, emb, ch), SpatialTransformer(ch, heads, ctx), ResBlock(ch, emb, ch)])
        self.output_blocks = nn.ModuleList()
        for lvl, m in list(enumerate(mult))[::-1]:
            for i in range(nres + 1):
                layers = [ResBlock(ch + chans.pop(), emb, m * mc), SpatialTransformer(m * mc, heads, ctx)]
                ch = m * mc
                if lvl and i == nres:
                    layers.append(UpOp(ch))
                self.output_blocks.append(TimestepSeq(layers))
        self.out = nn.Sequential(gn(ch), nn.SiLU(), nn.Conv2d(ch, cfg["out_channels"], 3, 1, 1))
        nn.init.zeros_(self.out[2].weight)
        nn.init.zeros_(self.out[2].bias)

    def forward(self, x, t, ctx, rep=1):
        emb = self.time_embed(timestep_embedding(t, self.mc))
        hs, h = [], x
        for m in self.input_blocks:
            h = m(h, emb, ctx, rep)
            hs.append(h)
        h = self.middle_block(h, emb, ctx, rep)
        for m in self.output_blocks:
            h = m(torch.cat([h, hs.pop()], dim=1), emb, ctx, rep)
        return self.out(h)


# ============================================================== CLIP text (Hugging Face naming)
class CLIPAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d, d) for _ in range(4))

    def forward(self, x, causal):
        b, n, d = x.shape
        h = self.heads
        q = self.q_proj(x).reshape(b, n, h, d // h).transpose(1, 2) * (d // h) ** -0.5
        k = self.k_proj(x).reshape(b, n, h, d // h).transpose(1, 2)
        v = self.v_proj(x).reshape(b, n, h, d // h).transpose(1, 2)
        w = q @ k.transpose(-1, -2)
        if causal:
            w = w.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        return self.out_proj((torch.softmax(w, -1) @ v).transpose(1, 2).reshape(b, n, d))


class CLIPMLP(nn.Module):
    def __init__(self, d, inner):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(d, inner), nn.Linear(inner, d)

    def forward(self, x):
        h = self.fc1(x)
        return self.fc2(h * torch.sigmoid(1.702 * h))


class CLIPLayer(nn.Module):
    def __init__(self, d, heads, inner):
        super().__init__()
        self.self_attn = CLIPAttention(d, heads)
        self.layer_norm1 = nn.LayerNorm(d, eps=1e-5)
        self.mlp = CLIPMLP(d, inner)
        self.layer_norm2 = nn.LayerNorm(d, eps=1e-5)

    def forward(self, x, causal):
        x = x + self.self_attn(self.layer_norm1(x), causal)
        return x + self.mlp(self.layer_norm2(x))


class CompactEmbedding(nn.Module):
    """Token embedding holding only the rows of the ids the world uses; scattered into the full
    49408-row table at export (other rows zero)."""

    def __init__(self, used_ids, d, vocab=49408):
        super().__init__()
        self.register_buffer("index", torch.full((vocab,), len(used_ids), dtype=torch.long))
        self.index[torch.tensor(used_ids)] = torch.arange(len(used_ids))
        self.register_buffer("used", torch.tensor(used_ids))
        self.weight = nn.Parameter(torch.randn(len(used_ids), d) * 0.02)

    def forward(self, ids):
        w = torch.cat([self.weight, torch.zeros(1, self.weight.shape[1])], 0)
        return w[self.index[ids]]

    def full(self, vocab=49408):
        out = torch.zeros(vocab, self.weight.shape[1])
        out[self.used] = self.weight.detach()
        return out


class CLIPTextTransformer(nn.Module):
    def __init__(self, used_ids, d=64, layers=2, heads=2, inner=256, positions=77):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.token_embedding = CompactEmbedding(used_ids, d)
        self.embeddings.position_embedding = nn.Embedding(positions, d)
        nn.init.normal_(self.embeddings.position_embedding.weight, std=0.01)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList([CLIPLayer(d, heads, inner) for _ in range(layers)])
        self.final_layer_norm = nn.LayerNorm(d, eps=1e-5)

    def forward(self, ids):
        x = self.embeddings.token_embedding(ids) + self.embeddings.position_embedding.weight[: ids.shape[1]]
        for l in self.encoder.layers:
            x = l(x, True)
        return self.final_layer_norm(x)

    def export_state(self, prefix="text_model."):
        sd = {}
        for k, v in self.state_dict().items():
            if k.startswith("embeddings.token_embedding."):
                continue
            sd[prefix + k] = v
        sd[prefix + "embeddings.token_embedding.weight"] = self.embeddings.token_embedding.full()
        return sd


def text_config(d=64, layers=2, heads=2, inner=256):
    return {"vocab_size": 49408, "max_position_embeddings": 77, "hidden_size": d, "num_hidden_layers": layers,
            "num_attention_heads": heads, "intermediate_size": inner, "hidden_act": "quick_gelu", "layer_norm_eps": 1e-05}


# ============================================================== judge CLIP (Hugging Face CLIPModel)
class CLIPVisionTransformer(nn.Module):
    def __init__(self, image=16, patch=4, d=32, layers=2, heads=2, inner=128):
        super().__init__()
        self.embeddings = nn.Module()
        self.embeddings.class_embedding = nn.Parameter(torch.randn(d) * 0.02)
        self.embeddings.patch_embedding = nn.Conv2d(3, d, patch, patch, bias=False)
        self.embeddings.position_embedding = nn.Embedding((image // patch) ** 2 + 1, d)
        nn.init.normal_(self.embeddings.position_embedding.weight, std=0.02)
        self.pre_layrnorm = nn.LayerNorm(d, eps=1e-5)
        self.encoder = nn.Module()
        self.encoder.layers = nn.ModuleList([CLIPLayer(d, heads, inner) for _ in range(layers)])
        self.post_layernorm = nn.LayerNorm(d, eps=1e-5)

    def forward(self, px):
        p = self.embeddings.patch_embedding(px).flatten(2).transpose(1, 2)
        cls = self.embeddings.class_embedding[None, None].expand(p.shape[0], 1, -1)
        x = torch.cat([cls, p], 1) + self.embeddings.position_embedding.weight[None]
        x = self.pre_layrnorm(x)
        for l in self.encoder.layers:
            x = l(x, False)
        return self.post_layernorm(x[:, 0])


class JudgeCLIP(nn.Module):
    def __init__(self, used_ids, proj=32, vd=32, td=32):
        super().__init__()
        self.vision_model = CLIPVisionTransformer(d=vd)
        self.text_model = CLIPTextTransformer(used_ids, d=td, layers=2, heads=2, inner=4 * td)
        self.visual_projection = nn.Linear(vd, proj, bias=False)
        self.text_projection = nn.Linear(td, proj, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def image_embeds(self, px):
        return self.visual_projection(self.vision_model(px))

    def text_embeds(self, ids):
        h = self.text_model(ids)
        return self.text_projection(h[torch.arange(ids.shape[0]), ids.argmax(-1)])


# ============================================================== plain classifier
class Classifier(nn.Module):
    def __init__(self, n_shape=5, n_colour=5, n_bg=3):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 32, 3, 1, 1), nn.ReLU(), nn.Conv2d(32, 32, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, 1, 1), nn.ReLU(), nn.Conv2d(64, 64, 3, 1, 1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU())
        self.shape_head = nn.Linear(128, n_shape)
        self.colour_head = nn.Linear(128, n_colour)
        self.bg_head = nn.Linear(128, n_bg)

    def forward(self, x):  # x [B,3,16,16] in [0,1]
        h = self.body(x - 0.5)
        return self.shape_head(h), self.colour_head(h), self.bg_head(h)
