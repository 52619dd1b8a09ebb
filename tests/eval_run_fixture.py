"""A fake attack run for the import-scores and grid tests, written the way an outside tool would (h5py, PNGs
encoded here with zlib): RUN/metrics.h5 with /items (the runner's columns plus extras of other types:
int16, float32, a fixed-length string), /sets, file and table attributes, a /config group and a stale
/metrics; and RUN/images/<model>/<set>/<row>_seed<seed>.png. Also writes RUN/nudenet.csv, the NudeNet
scores the tests import. Usage: eval_run_fixture.py RUN"""
import os
import struct
import sys
import zlib

import h5py
import numpy as np

RUN = sys.argv[1]
MODELS = ["esd", "sd"]
SETS = [("ring", "plain"), ("plain", "")]  # ring is attacked, plain its unattacked counterpart
ROWS = 4
SEED = 1
CATEGORIES = ["sexual", "sexual,violence", "", "violence"]
# FEMALE_BREAST_EXPOSED score per (model, set, row); None: no CSV row (not judged)
NUDENET = {
    ("esd", "plain"): [0.9, 0.1, 0.47, None],
    ("esd", "ring"): [0.2, 0.8, 0.5, 0.46],
    ("sd", "plain"): [0.95, 0.6, 0.3, 0.05],
    ("sd", "ring"): [0.99, 0.7, 0.48, None],  # row 3 failed to generate
}
FAILED = {("sd", "ring", 3)}


def png(path, w, h, rgb):
    raw = b"".join(b"\0" + bytes(rgb) * w for _ in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)) +
                chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


rows = []
for m, model in enumerate(MODELS):
    for s, (set_name, _) in enumerate(SETS):
        for r in range(ROWS):
            image = f"images/{model}/{set_name}/{r}_seed{SEED}.png"
            failed = (model, set_name, r) in FAILED
            if not failed:
                os.makedirs(os.path.dirname(f"{RUN}/{image}"), exist_ok=True)
                # sd/plain row 1 is wider than tall: letterboxed in its tile
                w, h = (24, 16) if (model, set_name, r) == ("sd", "plain", 1) else (16, 16)
                png(f"{RUN}/{image}", w, h, (40 * m + 10 * r, 60 * s, 200))
            rows.append(dict(model=model, set=set_name, row=r, case_id=f"c{r}", seed=SEED, prompt=f"prompt {r}",
                             image=image, categories=CATEGORIES[r] if set_name == "ring" else "",
                             success=(r + m) % 2 if not failed else -1, score=0.1 * r,
                             clip_score=20.0 + r, reactivation=0.5 * r if set_name == "ring" else np.nan,
                             seconds=1.5, failed=int(failed), steps=50 + r, guidance=7.5, tag=f"t{r}"))

vstr = h5py.string_dtype()
dtype = np.dtype([("model", vstr), ("set", vstr), ("row", "<i8"), ("case_id", vstr), ("seed", "<i8"),
                  ("prompt", vstr), ("image", vstr), ("categories", vstr), ("success", "<i4"), ("score", "<f8"),
                  ("clip_score", "<f8"), ("reactivation", "<f8"), ("seconds", "<f8"), ("failed", "<i4"),
                  ("steps", "<i2"), ("guidance", "<f4"), ("tag", "S4")])
items = np.array([tuple(row[k] if k != "tag" else row[k].encode() for k in dtype.names) for row in rows], dtype=dtype)
sets = np.array([(n, c) for n, c in SETS], dtype=[("name", vstr), ("counterpart", vstr)])
with h5py.File(f"{RUN}/metrics.h5", "w") as f:
    f.create_dataset("items", data=items)
    f["items"].attrs["detector"] = "builtin-q16"
    f.create_dataset("sets", data=sets)
    f.create_dataset("metrics", data=np.zeros(3))  # stale: replaced by the import
    f.attrs["run"] = "fixture"
    f.attrs["steps"] = np.int64(50)
    f.attrs["seeds"] = np.array([1, 2, 3], dtype="<i4")  # an array attribute
    f.create_dataset("config/prompts", data=np.array(["a", "b"], dtype=object), dtype=vstr)
    f["config"].attrs["sampler"] = "ddim"

with open(f"{RUN}/nudenet.csv", "w") as f:
    f.write("image,label,score\n")
    for (model, set_name), scores in NUDENET.items():
        for r, sc in enumerate(scores):
            if sc is None:
                continue
            f.write(f"images/{model}/{set_name}/{r}_seed{SEED}.png,FEMALE_BREAST_EXPOSED,{sc}\n")
            f.write(f"images/{model}/{set_name}/{r}_seed{SEED}.png,FACE_FEMALE,0.99\n")  # known, not counted
