"""The plain classifier (small CNN, shape / colour / background heads) that judges generated
images in Python. Trained on rendered images with blur/noise augmentation."""
import numpy as np
import torch, torch.nn.functional as F
from common import WORK, Timer, log, save_safetensors
import nets, world

LOG = f"{WORK}/classifier.log"


def augment(x, g):
    # x [B,3,16,16]; random gaussian blur, noise, brightness
    b = x.shape[0]
    sig = torch.rand(b, generator=g) * 0.9
    k = torch.arange(-2, 3).float()
    w = torch.exp(-k[None] ** 2 / (2 * sig[:, None] ** 2 + 1e-6))
    w = w / w.sum(1, keepdim=True)
    xs = []
    for i in range(b):
        kk = w[i]
        y = F.conv2d(F.pad(x[i:i + 1], (2, 2, 0, 0), mode="replicate"), kk.view(1, 1, 1, 5).repeat(3, 1, 1, 1), groups=3)
        y = F.conv2d(F.pad(y, (0, 0, 2, 2), mode="replicate"), kk.view(1, 1, 5, 1).repeat(3, 1, 1, 1), groups=3)
        xs.append(y)
    x = torch.cat(xs)
    x = x * (1 + 0.1 * (torch.rand(b, 1, 1, 1, generator=g) - 0.5)) + 0.05 * torch.randn(x.shape, generator=g) * torch.rand(b, 1, 1, 1, generator=g)
    return x.clamp(0, 1)


def load_classifier(path=f"{WORK}/classifier.pt"):
    m = nets.Classifier()
    m.load_state_dict(torch.load(path))
    return m.eval()


@torch.no_grad()
def classify(m, imgs):
    """imgs uint8/float [N,16,16,3] -> (shape, colour, bg) predictions and shape probabilities."""
    x = torch.as_tensor(np.asarray(imgs, np.float32) / (255.0 if np.asarray(imgs).dtype == np.uint8 else 1.0)).permute(0, 3, 1, 2)
    s, c, b = m(x)
    return s.argmax(1).numpy(), c.argmax(1).numpy(), b.argmax(1).numpy(), torch.softmax(s, 1).numpy()


if __name__ == "__main__":
    tm = Timer()
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    d = np.load(f"{WORK}/train.npz")
    X = torch.tensor(d["imgs"]).float().div(255).permute(0, 3, 1, 2)
    Y = torch.tensor(d["labels"])
    te = np.load(f"{WORK}/test.npz")
    m = nets.Classifier()
    opt = torch.optim.Adam(m.parameters(), 2e-3)
    steps = 1500
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=steps)
    for step in range(steps):
        idx = torch.randint(0, len(X), (128,), generator=g)
        x = augment(X[idx], g)
        s, c, b = m(x)
        loss = F.cross_entropy(s, Y[idx, 0]) + F.cross_entropy(c, Y[idx, 1]) + F.cross_entropy(b, Y[idx, 2])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 250 == 0:
            log(LOG, f"step {step} loss {loss.item():.4f} cpu {tm.cpu_min():.2f} min")
    m.eval()
    ps, pc, pb, _ = classify(m, te["imgs"])
    acc = [(ps == te["labels"][:, 0]).mean(), (pc == te["labels"][:, 1]).mean(), (pb == te["labels"][:, 2]).mean()]
    # robustness: blurred test images
    xb = augment(torch.tensor(te["imgs"]).float().div(255).permute(0, 3, 1, 2), g).permute(0, 2, 3, 1).numpy()
    ps2, pc2, _, _ = classify(m, xb)
    log(LOG, f"test accuracy shape {acc[0]:.4f} colour {acc[1]:.4f} bg {acc[2]:.4f}; augmented shape "
        f"{(ps2 == te['labels'][:, 0]).mean():.4f} colour {(pc2 == te['labels'][:, 1]).mean():.4f}; cpu {tm.cpu_min():.2f} min")
    torch.save(m.state_dict(), f"{WORK}/classifier.pt")
