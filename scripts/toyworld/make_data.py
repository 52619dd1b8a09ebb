"""Renders the training set (12,000 images, balanced shape x colour x background) and a held-out
test set; saves them as .npz under $TOYWORLD_WORK."""
import sys, time
import numpy as np
from common import WORK
import world

if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 12000
    t = time.time()
    imgs, labels = world.make_dataset(n, seed=1)
    np.savez_compressed(f"{WORK}/train.npz", imgs=(imgs * 255 + 0.5).astype(np.uint8), labels=labels)
    imgs, labels = world.make_dataset(3000, seed=2)
    np.savez_compressed(f"{WORK}/test.npz", imgs=(imgs * 255 + 0.5).astype(np.uint8), labels=labels)
    print(f"rendered {n}+3000 images in {time.time()-t:.1f}s")
