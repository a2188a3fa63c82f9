"""Rebuild the data that ships inside the package (``src/archlab/data/embedded/``) from the originals.

What is built, and why (issue 12, "real data by default"):

* ``fashion-mnist-subset/``: 12,000 training and 2,000 test images of Fashion-MNIST (Xiao, Rasul
  & Vollgraf 2017; MIT licence, Copyright 2017 Zalando SE) as IDX files compressed with xz. The
  training images are the first 12,000 of ``archlab.data.images.stratified_order`` over the 60,000
  official training labels, stored in that order; the test images are the first 2,000 of the same
  order over the 10,000 test labels. Every prefix of a stratified order is class-balanced (±1 per
  class), so "the first n images" of the subset are exactly the images ``archlab study`` takes
  from the full dataset for any n ≤ 12,000: a study gives the same numbers on either source.
* ``tinyshakespeare/input.txt.xz``: Karpathy's char-rnn Tiny Shakespeare (public-domain text),
  byte for byte (1,115,394 bytes), so ``--data tinyshakespeare`` works with no network.

Inputs are checked against the sha256 sums archlab already knows (``archlab.data.paths``); the
manifest records the sha256 of every source file and of every embedded file's decompressed bytes,
which the loader re-checks on every load.

Run from the repository root::

    python tools/build_embedded_data.py --fashion-mnist ../shared/data/fashion-mnist \
        --tinyshakespeare ../shared/data/tinyshakespeare/input.txt
"""

from __future__ import annotations

import argparse
import hashlib
import json
import lzma
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from archlab.data.image_formats import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx  # noqa: E402
from archlab.data.images import stratified_order  # noqa: E402
from archlab.data.paths import get_spec  # noqa: E402

OUT = REPO / "src" / "archlab" / "data" / "embedded"
N_TRAIN, N_TEST = 12_000, 2_000
XZ = lzma.PRESET_DEFAULT | lzma.PRESET_EXTREME  # preset 6e: the same bytes on every xz build


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def idx_bytes(a: np.ndarray, magic: int) -> bytes:
    """IDX encoding of a uint8 array: magic (big-endian uint32), one uint32 per dimension, data."""
    head = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return head + np.ascontiguousarray(a, dtype=np.uint8).tobytes()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fashion-mnist", type=Path, required=True, help="folder with the 4 IDX files")
    ap.add_argument("--tinyshakespeare", type=Path, required=True, help="char-rnn input.txt")
    args = ap.parse_args()

    spec = get_spec("fashion-mnist")
    manifest: dict = {"fashion-mnist-subset": {}, "tinyshakespeare": {}}
    arrays = {}
    for f in spec.files:
        path = args.fashion_mnist / f
        if not path.exists():
            path = args.fashion_mnist / f[:-3]
        magic = IDX_IMAGES_MAGIC if "images" in f else IDX_LABELS_MAGIC
        arrays[f] = read_idx(path, magic, expect_sha256=spec.sha256_of(f))  # checks the source
        manifest["fashion-mnist-subset"].setdefault("sources", {})[f[:-3]] = {
            "sha256_decompressed": spec.sha256_of(f),
            "images" if magic == IDX_IMAGES_MAGIC else "labels": int(arrays[f].shape[0]),
        }
    out = OUT / "fashion-mnist-subset"
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split, n in (("train", N_TRAIN), ("t10k", N_TEST)):
        x = arrays[f"{split}-images-idx3-ubyte.gz"]
        y = arrays[f"{split}-labels-idx1-ubyte.gz"]
        keep = stratified_order(torch.from_numpy(y.astype(np.int64)))[:n].numpy()
        for kind, a, magic in (
            ("images-idx3", x[keep], IDX_IMAGES_MAGIC),
            ("labels-idx1", y[keep], IDX_LABELS_MAGIC),
        ):
            raw = idx_bytes(a, magic)
            name = f"{split}-{kind}-ubyte.xz"
            (out / name).write_bytes(lzma.compress(raw, preset=XZ))
            files[name] = {"sha256_decompressed": sha256(raw), "bytes": (out / name).stat().st_size}
        counts = np.bincount(y[keep], minlength=10).tolist()
        manifest["fashion-mnist-subset"][split] = {"images": n, "per_class": counts}
    manifest["fashion-mnist-subset"]["files"] = files
    manifest["fashion-mnist-subset"]["rule"] = (
        "first n of archlab.data.images.stratified_order(labels, seed=0) over the official "
        "split's labels, in that order (train n=12000, t10k n=2000)"
    )

    text = args.tinyshakespeare.read_bytes()
    want = get_spec("tinyshakespeare").sha256_of("input.txt")
    if sha256(text) != want:
        raise SystemExit(f"{args.tinyshakespeare}: sha256 {sha256(text)} is not {want}")
    (OUT / "tinyshakespeare").mkdir(parents=True, exist_ok=True)
    dest = OUT / "tinyshakespeare" / "input.txt.xz"
    dest.write_bytes(lzma.compress(text, preset=XZ))
    manifest["tinyshakespeare"] = {
        "files": {"input.txt.xz": {"sha256_decompressed": want, "bytes": dest.stat().st_size}},
        "rule": "karpathy/char-rnn data/tinyshakespeare/input.txt, byte for byte",
    }
    (OUT / "MANIFEST.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"wrote {OUT} ({total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
