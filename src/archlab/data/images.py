"""Image classification datasets as tensors, with fixed splits, normalization and augmentation.

Datasets (``load_image_dataset(name)``):

* ``fashion-mnist``, ``mnist``: IDX files ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` in
  ``<root>/<name>/`` (Fashion-MNIST also in ``/usr/share/datasets/fashion-mnist``); 60,000 train /
  10,000 test, 1×28×28.
* ``cifar10``: the binary release, ``<root>/cifar10/cifar-10-batches-bin/{data_batch_1..5,
  test_batch}.bin`` + ``batches.meta.txt``; 50,000 / 10,000, 3×32×32.
* ``fashion-mnist-subset``: the 12,000 train / 2,000 test Fashion-MNIST images that ship inside
  the package (:mod:`archlab.data.embedded`; no download, MIT licence): the first images of
  :func:`stratified_order` over the official splits, so they are class-balanced and the first
  ``n`` of them are the full dataset's first ``n`` in that order.

Splits (all deterministic, independent of any training seed):

* validation: ``val_size`` images (an int, or a fraction of train; default 0.1) carved from the
  official train set by ``torch.randperm`` with a ``torch.Generator`` seeded :data:`SPLIT_SEED` = 0;
* ``train_size=N``: a stratified, *nested* subset of the remaining train images: each class's
  images are ranked by a permutation seeded :data:`SPLIT_SEED`, image k of class c gets the key
  ``(k + 0.5) / count_c``, and the N smallest keys are kept — so every class keeps its share
  (±1 image) and the subset for N is contained in the subset for any larger N (data-efficiency
  curves then differ only by the added data).

Normalization: per-channel mean/std of the (final) train split in units of pixel/255, computed
exactly from a histogram; stored as :class:`Normalization` so a checkpoint can reapply it.
Augmentation (train only, on uint8 batches, vectorized): random crop with zero (black) padding,
and horizontal flips only for datasets where a mirror image keeps its label (fashion-mnist,
cifar10 — not mnist, where a flipped digit is a different or invalid symbol).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from archlab.data.download import ensure_dataset
from archlab.data.image_formats import (
    IDX_IMAGES_MAGIC,
    IDX_LABELS_MAGIC,
    read_cifar_batch,
    read_cifar_meta,
    read_idx,
)
from archlab.data.paths import find_file, get_spec
from archlab.errors import ArchlabError

__all__ = [
    "FASHION_MNIST_CLASSES",
    "IMAGE_DATASETS",
    "SPLIT_SEED",
    "ImageDataset",
    "Normalization",
    "augment_batch",
    "load_image_dataset",
    "stratified_order",
]

IMAGE_DATASETS = ("fashion-mnist", "fashion-mnist-subset", "mnist", "cifar10")
SPLIT_SEED = 0
FASHION_MNIST_CLASSES = tuple(
    "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot".split(",")
)
CIFAR10_CLASSES = tuple("airplane automobile bird cat deer dog frog horse ship truck".split())
_FLIP_OK = {"fashion-mnist": True, "fashion-mnist-subset": True, "cifar10": True, "mnist": False}


@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x / 255 - mean) / std``; plain data for checkpoints (``to_dict``)."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, x: torch.Tensor) -> Normalization:
        """Exact per-channel mean/std (population) of uint8 images (N, C, H, W), via histograms."""
        v = torch.arange(256, dtype=torch.float64) / 255
        mean, std = [], []
        for c in range(x.shape[1]):
            h = torch.bincount(x[:, c].reshape(-1), minlength=256).double()  # (256,)
            m = float((h * v).sum() / h.sum())
            var = float((h * (v - m) ** 2).sum() / h.sum())
            mean.append(m)
            std.append(max(var**0.5, 1e-8))
        return cls(tuple(mean), tuple(std))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        m = torch.tensor(self.mean, dtype=torch.float32).view(-1, 1, 1)  # (C, 1, 1)
        s = torch.tensor(self.std, dtype=torch.float32).view(-1, 1, 1)  # (C, 1, 1)
        return (x.float() / 255 - m) / s  # (B, C, H, W)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Normalization:
        return cls(tuple(float(v) for v in d["mean"]), tuple(float(v) for v in d["std"]))


def augment_batch(
    x: torch.Tensor, generator: torch.Generator, pad: int = 2, flip: bool = False
) -> torch.Tensor:
    """Random crop of each image from its zero-padded copy (+ optional random h-flip), vectorized.

    ``x``: uint8 (or float) (B, C, H, W). Each image is shifted by an independent offset in
    [-pad, pad] on each axis with zeros filling in; with ``flip`` each is mirrored with p = 0.5.
    """
    b, c, h, w = x.shape
    hp, wp = h + 2 * pad, w + 2 * pad
    xp = F.pad(x, (pad, pad, pad, pad)).reshape(b * c, hp * wp)  # (B*C, Hp*Wp), zero border
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)  # (B,) crop row offset
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)  # (B,) crop column offset
    col = torch.arange(w).expand(b, w)  # (B, W) source column of each output column
    if flip:
        m = torch.rand(b, generator=generator) < 0.5  # (B,)
        col = torch.where(m[:, None], col.flip(-1), col)  # mirrored crop = crop of the mirror
    # One gather over flattened planes: output (h, w) reads padded (oy + h, ox + col[w]).
    idx = (oy[:, None, None] + torch.arange(h)[None, :, None]) * wp  # (B, H, 1)
    idx = idx + (ox[:, None] + col)[:, None, :]  # (B, H, W)
    idx = idx.reshape(b, 1, h * w).expand(b, c, h * w).reshape(b * c, h * w)  # (B*C, H*W)
    return torch.gather(xp, 1, idx).view(b, c, h, w)  # (B, C, H, W)


def stratified_order(labels: torch.Tensor, seed: int = SPLIT_SEED) -> torch.Tensor:
    """Indices ordered so that every prefix is a (±1 per class) stratified sample (module doc)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(labels.numel(), generator=g)  # (N,)
    lab = labels[perm]
    key = torch.empty(labels.numel(), dtype=torch.float64)
    for c in torch.unique(lab).tolist():
        where = (lab == c).nonzero().squeeze(1)  # positions in perm order
        key[where] = (torch.arange(where.numel(), dtype=torch.float64) + 0.5) / where.numel()
    order = torch.sort(key, stable=True).indices  # ties: permutation order
    return perm[order]


@dataclass
class ImageDataset:
    """Train/val/test uint8 images (N, C, H, W) with int64 labels, class names and normalization."""

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    class_names: tuple[str, ...]
    norm: Normalization
    flip_ok: bool
    sources: tuple[str, ...] = field(default=())
    split_info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> int:
        """Side length in pixels (all datasets here are square)."""
        return int(self.train_x.shape[-1])

    @property
    def mean(self) -> tuple[float, ...]:
        return self.norm.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.norm.std

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name not in ("train", "val", "test"):
            raise ArchlabError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, f"{name}_x"), getattr(self, f"{name}_y")

    def default_pad(self) -> int:
        """Crop padding used by ``augment=True``: 4 px at 32 px (the CIFAR standard), 3 at 28,
        1 at 8."""
        return max(1, self.image_size // 8)

    def batches(
        self,
        split: str,
        batch_size: int,
        *,
        shuffle: bool = False,
        augment: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield normalized float32 (B, C, H, W) and int64 (B,) batches of one split.

        ``shuffle``/``augment`` draw from ``generator`` (required for either, so an epoch's order
        is reproducible from its state); augmentation uses :meth:`default_pad` and flips only when
        :attr:`flip_ok`.
        """
        if batch_size < 1:
            raise ArchlabError(f"batch size must be >= 1, got {batch_size}")
        if (shuffle or augment) and generator is None:
            raise ValueError("generator: required when shuffle or augment is set")
        x, y = self.split(split)
        n = x.shape[0]
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        for i in range(0, stop, batch_size):
            idx = order[i : i + batch_size]
            xb = x[idx]  # (B, C, H, W) uint8
            if augment:
                assert generator is not None
                xb = augment_batch(xb, generator, self.default_pad(), self.flip_ok)
            yield self.norm(xb), y[idx]

    def describe(self) -> dict[str, Any]:
        """Plain-data summary (sizes, shape, classes, normalization, files) for reports and runs."""
        return {
            "name": self.name,
            "train": int(self.train_x.shape[0]),
            "val": int(self.val_x.shape[0]),
            "test": int(self.test_x.shape[0]),
            "shape": [self.channels, self.image_size, self.image_size],
            "class_names": list(self.class_names),
            "normalization": self.norm.to_dict(),
            "flip_ok": self.flip_ok,
            "sources": list(self.sources),
            **self.split_info,
        }


def _load_idx(name: str, download: bool) -> tuple:
    spec = get_spec(name)
    folder = ensure_dataset(name, download=download)
    arrays, srcs = [], []
    for f in spec.files:
        path = find_file(folder, f, gz_optional=True)
        assert path is not None  # ensure_dataset checked
        images = "images" in f
        a = read_idx(path, IDX_IMAGES_MAGIC if images else IDX_LABELS_MAGIC, spec.sha256_of(f))
        if images and a.shape[1:] != (28, 28):
            raise ArchlabError(f"{path}: images of {a.shape[1:]} pixels, expected 28×28")
        arrays.append(torch.from_numpy(a.copy()))
        srcs.append(str(path))
    trx, try_, tex, tey = arrays
    # Real files are 60,000 / 10,000 (checked by sha256 where known); smaller consistent files
    # (a user's subset, the tests' generated files) are accepted.
    for x, y, i in ((trx, try_, 0), (tex, tey, 2)):
        if x.shape[0] != y.shape[0] or x.shape[0] == 0:
            raise ArchlabError(
                f"{srcs[i]} has {x.shape[0]} images but {srcs[i + 1]} has {y.shape[0]} labels"
            )
    if int(try_.max()) > 9 or int(tey.max()) > 9:
        raise ArchlabError(f"{name}: labels outside 0..9 in {srcs[1]} or {srcs[3]}")
    names = FASHION_MNIST_CLASSES if name == "fashion-mnist" else tuple(str(i) for i in range(10))
    return trx[:, None], try_.long(), tex[:, None], tey.long(), names, srcs


def _load_cifar10(download: bool) -> tuple:
    folder = ensure_dataset("cifar10", download=download) / "cifar-10-batches-bin"
    parts = [read_cifar_batch(folder / f"data_batch_{i}.bin") for i in range(1, 6)]
    tex, tey = read_cifar_batch(folder / "test_batch.bin")
    names = tuple(read_cifar_meta(folder / "batches.meta.txt"))
    if len(names) != 10:
        raise ArchlabError(f"{folder / 'batches.meta.txt'}: {len(names)} class names, expected 10")
    trx = torch.from_numpy(np.concatenate([p[0] for p in parts]))
    try_ = torch.from_numpy(np.concatenate([p[1] for p in parts]))
    srcs = [str(folder / f"data_batch_{i}.bin") for i in range(1, 6)] + [
        str(folder / "test_batch.bin")
    ]
    return trx, try_, torch.from_numpy(tex.copy()), torch.from_numpy(tey), names, srcs


def _load_subset() -> tuple:
    """The embedded Fashion-MNIST subset (see :mod:`archlab.data.embedded`), sha256-checked."""
    from archlab.data.embedded import EMBEDDED_DIR, manifest

    folder = EMBEDDED_DIR / "fashion-mnist-subset"
    files = manifest()["fashion-mnist-subset"]["files"]
    arrays, srcs = [], []
    for split in ("train", "t10k"):
        for kind, magic in (("images-idx3", IDX_IMAGES_MAGIC), ("labels-idx1", IDX_LABELS_MAGIC)):
            name = f"{split}-{kind}-ubyte.xz"
            a = read_idx(folder / name, magic, files[name]["sha256_decompressed"])
            arrays.append(torch.from_numpy(a.copy()))
            srcs.append(str(folder / name))
    trx, try_, tex, tey = arrays
    return trx[:, None], try_.long(), tex[:, None], tey.long(), FASHION_MNIST_CLASSES, srcs


def load_image_dataset(
    name: str,
    *,
    val_size: int | float | None = 0.1,
    train_size: int | None = None,
    download: bool = True,
) -> ImageDataset:
    """Load ``fashion-mnist`` | ``fashion-mnist-subset`` | ``mnist`` | ``cifar10`` (splits above).

    ``val_size``: images carved from train for validation (int), or that fraction of train;
    ``None``: ``min(5000, 10%)`` (5,000 for Fashion-MNIST, MNIST and CIFAR-10, 1,200 for the subset)
    (float in [0, 1)). ``train_size``: keep a stratified nested subset of that many train images.
    """
    if name == "fashion-mnist-subset":
        raw = _load_subset()
    elif name in ("fashion-mnist", "mnist"):
        raw = _load_idx(name, download)
    elif name == "cifar10":
        raw = _load_cifar10(download)
    else:
        raise ArchlabError(f"unknown image dataset {name!r}; known: {', '.join(IMAGE_DATASETS)}")
    trx, try_, tex, tey, names, srcs = raw
    n = trx.shape[0]
    if val_size is None:
        val_size = min(5000, round(0.1 * n))
    n_val = round(val_size * n) if isinstance(val_size, float) else int(val_size)
    if isinstance(val_size, float) and not 0 <= val_size < 1:
        raise ArchlabError(f"val size fraction must be in [0, 1), got {val_size}")
    if not 0 <= n_val < n:
        raise ArchlabError(f"val size must be in 0..{n - 1} for {name}, got {n_val}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
    vi, ti = perm[:n_val].sort().values, perm[n_val:].sort().values
    vx, vy, trx, try_ = trx[vi], try_[vi], trx[ti], try_[ti]
    if train_size is not None:
        if not 1 <= train_size <= trx.shape[0]:
            raise ArchlabError(
                f"train size must be in 1..{trx.shape[0]} for {name}, got {train_size}"
            )
        keep = stratified_order(try_)[:train_size].sort().values
        trx, try_ = trx[keep], try_[keep]
    info = {"split_seed": SPLIT_SEED, "val_size": n_val, "train_size": train_size}
    return ImageDataset(
        name,
        trx,
        try_,
        vx,
        vy,
        tex,
        tey,
        tuple(names),
        Normalization.fit(trx),
        _FLIP_OK[name],
        tuple(srcs),
        info,
    )
