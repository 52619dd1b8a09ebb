"""Shared helpers: thread settings, paths, safetensors read/write (no safetensors package needed),
DDIM schedule as sdprune implements it, Wilson intervals."""
import json, os, struct, time, math
import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import torch

torch.set_num_threads(1)

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
WORK = os.environ.get("TOYWORLD_WORK", "/tmp/toyworld")
JOBS = os.path.join(ROOT, "jobs", "toyworld")
SDPRUNE = os.environ.get("SDPRUNE", os.path.join(ROOT, "build", "sdprune"))
os.makedirs(WORK, exist_ok=True)

_DT = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64", torch.int32: "I32",
       torch.int8: "I8", torch.uint8: "U8"}
_TD = {v: k for k, v in _DT.items()}


def save_safetensors(path, tensors, metadata=None):
    header, off, blobs = {}, 0, []
    for name in tensors:
        t = tensors[name].contiguous()
        b = t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.view(torch.int16).numpy().tobytes()
        header[name] = {"dtype": _DT[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in metadata.items()}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    md = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        dt = _TD[info["dtype"]]
        if dt == torch.bfloat16:
            t = torch.frombuffer(bytearray(data[a:b]), dtype=torch.int16).view(torch.bfloat16)
        else:
            t = torch.frombuffer(bytearray(data[a:b]), dtype=dt) if b > a else torch.empty(0, dtype=dt)
        out[name] = t.reshape(info["shape"])
    return out, md


# ---------------------------------------------------------------- schedule (as sdprune / ldm)
def alphas_cumprod():
    betas = np.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=np.float64) ** 2
    return torch.tensor(np.cumprod(1 - betas).astype(np.float32))


def ddim_timesteps(steps):
    c = 1000 // steps
    return np.asarray(list(range(0, 1000, c))) + 1


@torch.no_grad()
def ddim_sample(eps_fn, xT, steps=20, eta=0.0, return_traj=False):
    """eps_fn(x, t_int) -> eps (guidance applied inside). DDIM as ldm's DDIMSampler (uniform)."""
    ac = alphas_cumprod().double()
    ts = ddim_timesteps(steps)
    x = xT
    traj = []
    for i in reversed(range(len(ts))):
        t = int(ts[i])
        a_t = ac[t]
        a_prev = ac[ts[i - 1]] if i > 0 else ac[0]
        e = eps_fn(x, t)
        x0 = (x - (1 - a_t).sqrt().float() * e) / a_t.sqrt().float()
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
        dir_xt = (1 - a_prev - sigma ** 2).sqrt().float() * e
        x = a_prev.sqrt().float() * x0 + dir_xt
        if eta > 0:
            x = x + sigma.float() * torch.randn_like(x)
        if return_traj:
            traj.append((t, x))
    return (x, traj) if return_traj else x


def wilson(k, n, z=1.96):
    if n == 0:
        return (float("nan"),) * 3
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return p, max(0.0, c - h), min(1.0, c + h)


class Timer:
    def __init__(self):
        self.t0 = time.process_time()
        self.w0 = time.time()

    def cpu_min(self):
        return (time.process_time() - self.t0) / 60

    def wall_min(self):
        return (time.time() - self.w0) / 60


def log(path, *a):
    s = " ".join(str(x) for x in a)
    print(s, flush=True)
    with open(path, "a") as f:
        f.write(s + "\n")
