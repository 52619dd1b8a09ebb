"""Fixtures for test_png_read: PNGs of every colour type and bit depth (and one Adam7-interlaced), encoded
here by hand so that none depends on an encoder's choices, each with NAME.rgb beside it: the RGB8 bytes a
reader should give (alpha dropped, 16-bit samples' high byte, low-depth gray scaled to 0..255, palette
looked up). Where PIL agrees (all but 16-bit gray, which PIL clamps instead of shifting), the expectation is
checked against PIL's convert("RGB") too. Usage: png_read_fixtures.py OUTDIR; prints the fixture names."""
import struct
import sys
import warnings
import zlib

import numpy as np

OUT = sys.argv[1]
warnings.simplefilter("ignore")  # PIL on palette transparency: not our concern here
rng = np.random.default_rng(7)
W, H = 13, 7  # odd sizes: partial bytes at low depths, every Adam7 pass non-trivial


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xFFFFFFFF)


def pack_row(samples, depth):
    """One scanline of samples (ints) at depth bits, big-endian as PNG packs them."""
    if depth == 16:
        return b"".join(struct.pack(">H", int(s)) for s in samples)
    if depth == 8:
        return bytes(int(s) for s in samples)
    per = 8 // depth
    out = bytearray()
    for i in range(0, len(samples), per):
        byte = 0
        group = list(samples[i:i + per]) + [0] * (per - len(samples[i:i + per]))
        for s in group:
            byte = (byte << depth) | int(s)
        out.append(byte)
    return bytes(out)


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def encode(samples, color_type, depth, palette=None, trns=None, interlace=False):
    """samples: [H, W, channels] ints. Filter 0 on every line."""
    h, w, _ = samples.shape
    raw = bytearray()
    if interlace:
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] == 0 or sub.shape[1] == 0:
                continue
            for row in sub:
                raw += b"\0" + pack_row(row.reshape(-1), depth)
    else:
        for row in samples:
            raw += b"\0" + pack_row(row.reshape(-1), depth)
    png = b"\x89PNG\r\n\x1a\n"
    png += chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 1 if interlace else 0))
    if palette is not None:
        png += chunk(b"PLTE", bytes(palette.reshape(-1).astype(np.uint8)))
    if trns is not None:
        png += chunk(b"tRNS", trns)
    png += chunk(b"IDAT", zlib.compress(bytes(raw), 9))
    png += chunk(b"IEND", b"")
    return png


def to8(samples, depth):
    if depth == 16:
        return samples >> 8
    if depth < 8:
        return samples * (255 // ((1 << depth) - 1))
    return samples


fixtures = []


def add(name, samples, color_type, depth, expected, pil_agrees=True, **kw):
    with open(f"{OUT}/{name}.png", "wb") as f:
        f.write(encode(samples, color_type, depth, **kw))
    expected = np.ascontiguousarray(expected.astype(np.uint8))
    with open(f"{OUT}/{name}.rgb", "wb") as f:
        f.write(expected.tobytes())
    if pil_agrees:
        try:
            from PIL import Image
        except ImportError:
            pass
        else:
            got = np.asarray(Image.open(f"{OUT}/{name}.png").convert("RGB"))
            if not np.array_equal(got, expected):
                raise SystemExit(f"{name}: the expectation disagrees with PIL")
    fixtures.append(name)


for depth in (1, 2, 4, 8, 16):
    g = rng.integers(0, 1 << depth, size=(H, W, 1))
    add(f"gray{depth}", g, 0, depth, np.repeat(to8(g, depth), 3, axis=2), pil_agrees=depth != 16)
for depth in (8, 16):
    ga = rng.integers(0, 1 << depth, size=(H, W, 2))
    add(f"gray_alpha{depth}", ga, 4, depth, np.repeat(to8(ga[:, :, :1], depth), 3, axis=2), pil_agrees=depth != 16)
    rgb = rng.integers(0, 1 << depth, size=(H, W, 3))
    add(f"rgb{depth}", rgb, 2, depth, to8(rgb, depth))
    rgba = rng.integers(0, 1 << depth, size=(H, W, 4))
    add(f"rgba{depth}", rgba, 6, depth, to8(rgba[:, :, :3], depth))
for depth in (4, 8):
    n = 1 << depth if depth < 8 else 200
    palette = rng.integers(0, 256, size=(n, 3))
    idx = rng.integers(0, n, size=(H, W, 1))
    trns = bytes(rng.integers(0, 256, size=n // 2).astype(np.uint8))
    add(f"palette{depth}_trns", idx, 3, depth, palette[idx[:, :, 0]], palette=palette, trns=trns)
rgb = rng.integers(0, 256, size=(H, W, 3))
add("rgb8_interlaced", rgb, 2, 8, rgb, interlace=True)
rgba = rng.integers(0, 1 << 16, size=(H, W, 4))
add("rgba16_interlaced", rgba, 6, 16, rgba[:, :, :3] >> 8, interlace=True)
print(" ".join(fixtures))
