#!/usr/bin/env python3
"""Seed corpora of the fuzz harnesses (tests/fuzz/README.md).

  make_seeds.py small  CORPUS_DIR          the small seeds checked in under tests/fuzz/corpus/ (deterministic;
                                          rerun to regenerate them, then review the diff)
  make_seeds.py large  OUT_DIR [SHARED]   large seeds from the real files in SHARED (default ../shared beside the
                                          checkout): reference checkpoints, configs, the whole prompt CSVs and the
                                          CLIP vocabulary; never checked in, tests/fuzz/run.sh builds them itself

Needs only the Python standard library (the torch checkpoints are pickled with stand-in classes named like
torch's, exactly as torch.save lays them out: protocol 2, persistent ids for storages, a zip of archive/...).
"""
import io
import json
import os
import pickle
import shutil
import struct
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))


def write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(path, "wb") as f:
        f.write(data)


# ---- safetensors ----------------------------------------------------------------------------------------

def safetensors(tensors, metadata=None):
    """tensors: [(name, dtype, shape, raw bytes)] -> file bytes (header padded to 8 as the writers do)."""
    header, data = {}, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def copy(src, dst):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    shutil.copy(src, dst)


def f32(*v):
    return struct.pack("<%df" % len(v), *v)


def small_safetensors():
    yield "f32_f16_bf16", safetensors([
        ("a.weight", "F32", [2, 2], f32(1, 2, 3, 4)),
        ("b.weight", "F16", [3], struct.pack("<3H", 0x3C00, 0x7C00, 0x7E00)),  # 1, inf, nan
        ("c", "BF16", [1, 2], struct.pack("<2H", 0x3F80, 0xFF80)),
    ], {"format": "pt"})
    yield "ints_empty", safetensors([
        ("ids", "I64", [2], struct.pack("<2q", 1, -1)),
        ("mask", "BOOL", [3], b"\x01\x00\x01"),
        ("empty", "F32", [0, 4], b""),
        ("scalar", "F64", [], struct.pack("<d", 0.5)),
        ("i8", "I8", [2], b"\x80\x7f"),
        ("u8", "U8", [1], b"\xff"),
        ("i16", "I16", [1], b"\x00\x80"),
        ("i32", "I32", [1], b"\x00\x00\x00\x80"),
    ])
    config = {"unet": {"model_channels": 32, "channel_mult": [1, 2], "num_res_blocks": 1,
                       "attention_resolutions": [1], "num_heads": 2, "context_dim": 32}}
    yield "metadata_config", safetensors([("model.diffusion_model.out.2.bias", "F32", [4], f32(0, 0, 0, 0))],
                                         {"config": json.dumps(config)})
    yield "empty", safetensors([])


# ---- torch zip checkpoints and their pickles ----------------------------------------------------------

class _Storage:
    def __init__(self, kind, key, numel):
        self.kind, self.key, self.numel = kind, key, numel


def _global(module, name):
    """A class whose pickled reference is module.name (what torch's globals look like to the unpickler)."""
    cls = type(name, (), {})
    cls.__module__, cls.__qualname__ = module, name
    mod = sys.modules.setdefault(module, type(sys)(module))
    setattr(mod, name, cls)
    return cls


class _Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, _OrderedDict())

    def __reduce__(self):
        return (_REBUILD, self.args)


class _OrderedDict(dict):
    def __reduce__(self):
        return (_ORDERED, (), None, None, iter(self.items()))


_REBUILD = _global("torch._utils", "_rebuild_tensor_v2")
_ORDERED = _global("collections", "OrderedDict")
_STORAGE = {k: _global("torch", k) for k in ("FloatStorage", "HalfStorage", "BFloat16Storage", "LongStorage")}


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", _STORAGE[obj.kind], obj.key, "cpu", obj.numel)
        return None


def torch_pickle(obj):
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def torch_checkpoints():
    """(name, pickle bytes, {storage key: bytes}) of a few state dicts as torch.save writes them."""
    s0, s1 = _Storage("FloatStorage", "0", 6), _Storage("HalfStorage", "1", 2)
    sd = _OrderedDict()
    sd["model.diffusion_model.a.weight"] = _Tensor(s0, 0, [2, 3], [3, 1])
    sd["model.diffusion_model.a.t"] = _Tensor(s0, 0, [3, 2], [1, 3])  # a transposed view of the same storage
    sd["cond_stage_model.b"] = _Tensor(s1, 1, [1], [1])
    storages = {"0": f32(1, 2, 3, 4, 5, 6), "1": struct.pack("<2H", 0x3C00, 0x4000)}
    yield "views", torch_pickle({"state_dict": sd, "global_step": 7, "epoch": 1}), storages
    nested = _OrderedDict()
    inner = _OrderedDict()
    inner["w"] = _Tensor(_Storage("LongStorage", "0", 1), 0, [], [])
    nested["block"] = inner
    yield "nested", torch_pickle(nested), {"0": struct.pack("<q", 42)}


def torch_zip(pkl, storages):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        for key, raw in storages.items():
            z.writestr("archive/data/" + key, raw)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def structured_torch(pkl, storages):
    """fuzz_torch_zip's structured form: u32 length + bytes, data.pkl then archive/data/0, 1, ..."""
    out = struct.pack("<I", len(pkl)) + pkl
    for k in range(len(storages)):
        raw = storages[str(k)]
        out += struct.pack("<I", len(raw)) + raw
    return out


# ---- tokenizer folders -----------------------------------------------------------------------------------

def bytes_to_unicode():
    """openai CLIP's byte -> printable character table."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def small_tokenizer():
    """A byte-level vocabulary with a few merges: the smallest folder sd_tokenizer_load accepts."""
    chars = list(bytes_to_unicode().values())
    vocab = {}
    for c in chars:
        vocab[c] = len(vocab)
    for c in chars:
        vocab[c + "</w>"] = len(vocab)
    merges = [("c", "a"), ("ca", "t</w>"), ("p", "h"), ("o", "t"), ("ph", "ot"), ("pho", "t"), ("phot", "o</w>")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    merges_txt = "#version: 0.2\n" + "".join("%s %s\n" % m for m in merges)
    return json.dumps(vocab, ensure_ascii=False), merges_txt


# ---- the corpora ---------------------------------------------------------------------------------------

def small(corpus):
    shared = os.path.join(os.path.dirname(SOURCE), "shared")
    ref = os.path.join(shared, "reference")
    for name, data in small_safetensors():
        write(os.path.join(corpus, "safetensors", name + ".safetensors"), data)
    for name, pkl, storages in torch_checkpoints():
        write(os.path.join(corpus, "pickle", name + ".pkl"), pkl)
        write(os.path.join(corpus, "torch_zip", name + ".ckpt"), torch_zip(pkl, storages))
        write(os.path.join(corpus, "torch_zip", name + ".records"), structured_torch(pkl, storages))
    # Configs: the reference folder's (each under 1 KiB) and tiny-sd1's metadata config.
    for rel in ("tiny-sd1-diffusers/unet/config.json", "tiny-sd1-diffusers/text_encoder/config.json",
                "tiny-sd1-diffusers/vae/config.json", "tiny-sd1-diffusers/scheduler/scheduler_config.json",
                "tiny-clip/config.json"):
        p = os.path.join(ref, rel)
        if os.path.exists(p):
            copy(p, os.path.join(corpus, "config", rel.replace("/", "_")))
    tiny = os.path.join(ref, "tiny-sd1", "model.safetensors")
    if os.path.exists(tiny):
        with open(tiny, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            meta = json.loads(f.read(n)).get("__metadata__", {})
        if "config" in meta:
            write(os.path.join(corpus, "config", "tiny-sd1_metadata_config.json"), meta["config"])
            write(os.path.join(corpus, "config", "tiny-sd1_metadata.json"), json.dumps(meta))
    for name in ("v1-inference.yaml", "v2-inference-v.yaml", "tiny-sd1-inference.yaml"):
        copy(os.path.join(SOURCE, "tests", "data", name), os.path.join(corpus, "ldm_yaml", name))
    for p in ("tests/data/jobs/minimal.yaml", "tests/data/jobs/full.yaml", "jobs/demo.yaml"):
        copy(os.path.join(SOURCE, p), os.path.join(corpus, "job", os.path.basename(p)))
    with open(os.path.join(SOURCE, "tests/data/jobs/minimal.yaml"), "rb") as f:
        write(os.path.join(corpus, "job", "minimal_overrides"),
              f.read() + b"\0sampler.steps=20\0seeds.list=[0,1]\0mask=null")
    vocab, merges = small_tokenizer()
    write(os.path.join(corpus, "tokenizer_load", "bytes_and_merges"),
          vocab.encode() + b"\0" + merges.encode() + b"\0" + b'{"pad_token": "!"}' + b"\0a photo of a cat")
    prompts = ["a photo of a cat", "A Photo Of A Cat!!", "caf\u00e9 na\u00efve \u2014 \u201cquoted\u201d",
               "\U0001FAA6 emoji, 2024's best, don't", "  spaced\ttabs\nnew line  ", "x" * 400,
               "<|startoftext|>inline special<|endoftext|>", "\u00e6\u00f8\u00e5 \u4e2d\u6587 \u0627\u0644\u0639"]
    for i, p in enumerate(prompts):
        write(os.path.join(corpus, "tokenizer_encode", "prompt%d" % i), p)
    # Prompt files: byte 0 is the harness's mode (0 .csv, 1 .txt, 2 no extension; +4 a template follows).
    pdir = os.path.join(shared, "prompts")
    for name in ("ringabell_nudity_concept_pairs.csv", "unlearndiffatk_church.csv", "unlearndiffatk_vangogh.csv"):
        with open(os.path.join(pdir, name), "rb") as f:
            write(os.path.join(corpus, "prompt_csv", name), b"\x00" + f.read())
    for name, lines in (("i2p_4703.csv", 12), ("coco_1k.csv", 12), ("unlearndiffatk_nudity.csv", 8)):
        with open(os.path.join(pdir, name), "rb") as f:
            head = b"".join(f.readline() for _ in range(lines))
        write(os.path.join(corpus, "prompt_csv", name.replace(".csv", "_head.csv")), b"\x00" + head)
    write(os.path.join(corpus, "prompt_csv", "template.csv"),
          b"\x04{artist} painting of {subject}, {{braces}}\0\xef\xbb\xbfartist,subject,seed\r\n"
          b"\"van \"\"gogh\"\"\",\"a\r\nchurch\",1234.0\r\n,x,\r\n")
    write(os.path.join(corpus, "prompt_csv", "plain.txt"), b"\x01first prompt\r\n\r\nsecond\rthird\n")
    write(os.path.join(corpus, "scores_csv", "nudenet.csv"),
          b"nudenet@0.45\0image,label,score\n"
          b"images/sd14/target/0_seed1.png,FEMALE_BREAST_EXPOSED,0.9\n"
          b"images/sd14/target/0_seed1.png,FACE_FEMALE,0.8\n"
          b"images/sd14/target/1_seed2.png,BUTTOCKS_EXPOSED,0.2\n")
    write(os.path.join(corpus, "scores_csv", "top1.csv"),
          b"top1:vincent-van-gogh\0item,label,score,seed\n"
          b"sd14/target/0_seed1,vincent-van-gogh,0.7,1\nsd14/target/0_seed1,claude-monet,0.2,1\n"
          b"sd14+mask/adv/0_seed1,claude-monet,0.9,1\n")
    write(os.path.join(corpus, "scores_csv", "threshold.csv"),
          b"threshold:church@0.5\0image,label,score\n"
          b"/abs/images/sd14+mask/adv/12_seed18446744073709551615.png,church,0.51\n")
    # fuzz_h5_edit: byte 0 picks the file (0 stats, 1 shard, 2 mask), then 6-byte edit records.
    for i, edits in enumerate([b"\x00", b"\x01", b"\x02", b"\x00\x08\x05\x00\x02\x00\x00", b"\x02\x08\x07\x00\x00\x01\x00",
                               b"\x00\x01\x00\x03\x05\x01\x02\x03\x00\x00\x00\x00\x00",
                               b"\x02\x09\x03\x00\x00\x01\x00\x05\x04\x02\x01\x00\x00"]):
        write(os.path.join(corpus, "h5_edit", "edits%d" % i), edits)


def large(out, shared):
    ref = os.path.join(shared, "reference")
    copies = {
        "safetensors": ["tiny-clip/vectors.safetensors", "tiny-sd1-erased/vectors.safetensors",
                        "tiny-sd1/vectors.safetensors"],
        "torch_zip": ["tiny-sd1-erased/unet-erased-diffusers.pt"],
    }
    for harness, rels in copies.items():
        for rel in rels:
            p = os.path.join(ref, rel)
            if os.path.exists(p):
                copy(p, os.path.join(out, harness, rel.replace("/", "_")))
    # The data.pkl of the real checkpoints (the pickles torch.save wrote), for the unpickler.
    for rel in ("tiny-sd1/model.ckpt", "tiny-sd1-erased/unet-erased-compvis.pt"):
        p = os.path.join(ref, rel)
        if os.path.exists(p):
            with zipfile.ZipFile(p) as z:
                pkl = [n for n in z.namelist() if n.endswith("data.pkl")][0]
                write(os.path.join(out, "pickle", rel.replace("/", "_") + ".pkl"), z.read(pkl))
    tok = os.path.join(ref, "clip-tokenizer")
    if os.path.isdir(tok):
        with open(os.path.join(tok, "vocab.json"), "rb") as v, open(os.path.join(tok, "merges.txt"), "rb") as m:
            write(os.path.join(out, "tokenizer_load", "clip"), v.read() + b"\0" + m.read() + b"\0\0a photo of a cat")
    cases = os.path.join(ref, "tokenizer_cases.jsonl")
    if os.path.exists(cases):
        with open(cases) as f:
            for i, line in enumerate(f):
                write(os.path.join(out, "tokenizer_encode", "case%03d" % i), json.loads(line)["prompt"])
    pdir = os.path.join(shared, "prompts")
    for name in sorted(os.listdir(pdir)) if os.path.isdir(pdir) else []:
        if name.endswith(".csv"):
            with open(os.path.join(pdir, name), "rb") as f:
                write(os.path.join(out, "prompt_csv", name), b"\x00" + f.read())


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "small":
        small(sys.argv[2])
    elif len(sys.argv) >= 3 and sys.argv[1] == "large":
        large(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else os.path.join(os.path.dirname(SOURCE), "shared"))
    else:
        sys.exit(__doc__)
