#!/usr/bin/python3
"""Compares the statistics of stats.h5 files bit for bit: every /sets dataset (dtype and values), each
set's items_done, and the items table's (set, row, seed, status). Prints "ok" or the first differences
and exits 1. Usage: compare_stats.py A.h5 B.h5 [C.h5 ...] (each against A)."""
import sys

import h5py
import numpy as np


def items(f):
    it = f["items"][:]
    return sorted(zip(it["set"].tolist(), it["row"].tolist(), it["seed"].tolist(), it["status"].tolist()))


def datasets(f):
    out = {}
    f["sets"].visititems(lambda name, obj: out.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
    return out


def compare(pa, pb):
    bad = []
    with h5py.File(pa, "r") as a, h5py.File(pb, "r") as b:
        da, db = datasets(a), datasets(b)
        if sorted(da) != sorted(db):
            bad.append("dataset names differ: %s" % sorted(set(da) ^ set(db))[:5])
        for k in sorted(set(da) & set(db)):
            x, y = da[k], db[k]
            if x.dtype != y.dtype or x.shape != y.shape or not np.array_equal(x, y):
                bad.append("/sets/%s differs (%s %s vs %s %s)" % (k, x.dtype, x.shape, y.dtype, y.shape))
        for s in a["sets"]:
            if s in b["sets"] and a["sets"][s].attrs["items_done"] != b["sets"][s].attrs["items_done"]:
                bad.append("set %s items_done %s vs %s" % (s, a["sets"][s].attrs["items_done"],
                                                           b["sets"][s].attrs["items_done"]))
        if items(a) != items(b):
            bad.append("items tables differ")
        if not da:
            bad.append("no datasets under /sets")
    return bad


ok = True
for p in sys.argv[2:]:
    bad = compare(sys.argv[1], p)
    if bad:
        ok = False
        print("%s vs %s:\n  %s" % (sys.argv[1], p, "\n  ".join(bad[:10])))
print("ok" if ok else "differ")
sys.exit(0 if ok else 1)
