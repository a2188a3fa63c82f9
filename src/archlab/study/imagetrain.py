"""Image-classification runs shared by the Part 2 claims (C1, C2, C3, V1, V2), memoized per process.

C2 (accuracy vs parameters), C3 (shift consistency), C1 (probes and receptive fields), V1 (attention
distance) and V2 (data efficiency, at its largest size) read the *same* trained networks: one
``image_run(arch, seed, sizes)`` per (architecture, width scale, seed, training-set size, run sizes)
trains once per process, like :mod:`archlab.study.lmtrain` for the text runs.

Data: :func:`load_images` is the one adapter to ``archlab.data``. It uses Fashion-MNIST when the
files are found locally (``$ARCHLAB_DATA``, ``~/.cache/archlab``, ``/usr/share/datasets``; never
downloads, the quick profile must run offline) and scikit-learn's bundled 8×8 digits otherwise, and
resizes every image to the profile's resolution ``res`` (area averaging down, e.g. 28 → 14 px in the
quick profile; bilinear up). Training subsets are archlab.data's stratified *nested* subsets, so a
larger training set only adds images. No augmentation: whatever invariance a model shows (C3) comes
from its architecture, not from shifted training images.

Optimizer: AdamW at a constant learning rate through the Part 1 loop
(:func:`archlab.study.lmtrain.train_loop`): a fixed, equal budget of steps for every architecture.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import ArchlabError
from archlab.models import create_model
from archlab.study.lmtrain import train_loop
from archlab.study.measure import seed_all

log = logging.getLogger(__name__)

# One definition of the shared image runs per profile (claims merge it into their own sizes).
# res: image side (px); patch: ViT patch side (px); steps x batch: the training budget.
IMAGE_RUNS: dict[str, dict[str, Any]] = {
    "tiny": {"res": 8, "patch": 2, "train_size": 300, "test_size": 200, "steps": 8, "batch": 32,
             "lr": 3e-3, "width": 0.5},
    "quick": {"res": 14, "patch": 2, "train_size": 4000, "test_size": 2000, "steps": 300,
              "batch": 64, "lr": 3e-3, "width": 1.0},
    "full": {"res": 28, "patch": 4, "train_size": None, "test_size": 10000, "steps": 3000,
             "batch": 128, "lr": 1e-3, "width": 2.0},
}  # fmt: skip
RUN_KEYS = ("res", "patch", "train_size", "test_size", "steps", "batch", "lr", "width")
ARCHS = ("cnn", "cnn-circular", "vit", "mlp")
ARCH_LABELS = {"cnn": "CNN (max-pool)", "cnn-circular": "CNN (stride 1, circular, GAP)",
               "vit": "ViT", "mlp": "MLP"}  # fmt: skip


def _w(base: int, scale: float, multiple: int = 1) -> int:
    return max(multiple, round(base * scale / multiple) * multiple)


def model_config(arch: str, res: int, patch: int, scale: float = 1.0) -> tuple[str, dict[str, Any]]:
    """(registry name, overrides) of the study's small classifiers at width ``scale``.

    cnn: three stages of one 3×3 conv (16-32-32 channels × scale) with 2×2 max-pool between them
    (the cnn-fmnist stack, shallower); cnn-circular: the same convs, stride 1 everywhere, circular
    padding, global average pooling (the cnn-circular preset's design); vit: patch ``patch``, width
    32 × scale, 2 layers, 4 heads, mean-pooled tokens (the ViT paper's "GAP" head, App. D.3: it
    trained faster than a class token in our short budgets); mlp: one hidden layer of 64 × scale.
    """
    ch = (_w(16, scale), _w(32, scale), _w(32, scale))
    if arch == "cnn":
        return "cnn", {"image_size": res, "channels": ch, "convs_per_stage": 1, "pool": "max"}
    if arch == "cnn-circular":
        return "cnn", {"image_size": res, "channels": ch, "convs_per_stage": 1, "pool": "none",
                       "padding_mode": "circular"}  # fmt: skip
    if arch == "vit":
        return "vit", {"image_size": res, "patch_size": patch, "d_model": _w(32, scale, 4),
                       "layers": 2, "heads": 4, "pool": "mean"}  # fmt: skip
    if arch == "mlp":
        return "mlp", {"image_size": res, "hidden": (_w(64, scale),)}
    raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")


def build(arch: str, res: int, patch: int, scale: float = 1.0) -> nn.Module:
    name, cfg = model_config(arch, res, patch, scale)
    return create_model(name, **cfg)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@dataclass(frozen=True)
class ImageData:
    """Normalized float32 images (N, 1, res, res) with int64 labels, and where they came from."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    order: torch.Tensor  # stratified nested order of the training images
    desc: dict[str, Any]

    def subset(self, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` images of the stratified nested order (all when None or too many)."""
        keep = self.order if n is None else self.order[: min(n, len(self.order))]
        return self.train_x[keep], self.train_y[keep]


def _raw_images() -> tuple[Any, dict[str, Any]]:
    """The adapter to archlab.data: Fashion-MNIST if present locally, else the bundled digits."""
    from archlab.data import load_image_dataset

    try:
        ds = load_image_dataset("fashion-mnist", val_size=0, download=False)
        note = None
    except ArchlabError as e:
        log.info("study: Fashion-MNIST not found (%s); using the embedded subset", e)
        ds = load_image_dataset("fashion-mnist-subset", val_size=0, download=False)
        note = "full Fashion-MNIST not found; used the embedded 12,000/2,000-image subset"
    return ds, {"dataset": ds.name, "sources": list(ds.sources), "note": note,
                "native_res": ds.image_size}  # fmt: skip


def _resize(x: torch.Tensor, res: int) -> torch.Tensor:
    x = x.float() / 255.0  # (N, C, H, W) in [0, 1]
    if x.shape[-1] > res:  # area averaging = the mean of each source block (no aliasing)
        return F.interpolate(x, size=(res, res), mode="area")
    if x.shape[-1] < res:
        return F.interpolate(x, size=(res, res), mode="bilinear", align_corners=False)
    return x


@functools.lru_cache(maxsize=4)
def load_images(res: int, test_size: int) -> ImageData:
    """Train and test images at ``res`` px, normalized by the training set's mean and std."""
    from archlab.data.images import stratified_order

    ds, desc = _raw_images()
    trx, tex = _resize(ds.train_x, res), _resize(ds.test_x[:test_size], res)
    mean, std = float(trx.mean()), float(trx.std())
    desc = {**desc, "res": res, "train_available": int(trx.shape[0]), "test": int(tex.shape[0]),
            "resize": "area" if desc["native_res"] > res else "bilinear" if desc["native_res"] < res
            else "none", "mean": mean, "std": std}  # fmt: skip
    return ImageData((trx - mean) / std, ds.train_y, (tex - mean) / std, ds.test_y[:test_size],
                     stratified_order(ds.train_y), desc)  # fmt: skip


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """Top-1 class of every image (eval mode), in batches."""
    model.eval()
    return torch.cat([model(x[i : i + batch]).argmax(-1) for i in range(0, len(x), batch)])


def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return float((predict(model, x) == y).float().mean())


_MEMO: dict[tuple, dict[str, Any]] = {}


def clear_memo() -> None:
    """Forget the trained networks (the runner calls this at the start of every study run)."""
    _MEMO.clear()


def run_key(sizes: Mapping[str, Any]) -> tuple:
    return tuple((k, str(sizes[k])) for k in RUN_KEYS)


def image_run(arch: str, seed: int, sizes: Mapping[str, Any], *, scale: float = 1.0,
              train_size: int | None = -1, bar=None) -> dict[str, Any]:  # fmt: skip
    """Train ``arch`` at width ``sizes['width'] × scale`` on ``train_size`` images (default: the
    profile's) for ``sizes['steps']`` AdamW steps; return the model, its parameter count, test
    accuracy and training seconds. Memoized on (arch, scale, seed, train_size, run sizes)."""
    n = sizes["train_size"] if train_size == -1 else train_size
    key = (arch, float(scale), seed, n, run_key(sizes))
    if key in _MEMO:
        if bar is not None:
            bar.update(sizes["steps"])
        return _MEMO[key]
    data = load_images(sizes["res"], sizes["test_size"])
    x, y = data.subset(n)
    gen = seed_all(seed)
    model = build(arch, sizes["res"], sizes["patch"], sizes["width"] * scale)
    B = sizes["batch"]

    def batch_fn(_step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(x), (B,), generator=gen)  # sampling with replacement
        return x[idx], y[idx]  # (B, 1, res, res), (B,)

    curve = train_loop(model, batch_fn, sizes["steps"], sizes["lr"], F.cross_entropy, bar=bar)
    model.eval()
    out = {"model": model, "arch": arch, "scale": scale, "seed": seed, "params": n_params(model),
           "train_images": len(x), "test_acc": accuracy(model, data.test_x, data.test_y),
           "train_s": curve["train_s"], "final_loss": sum(curve["train_loss"][-10:]) /
           len(curve["train_loss"][-10:]), "data": data.desc}  # fmt: skip
    _MEMO[key] = out
    return out


def run_sizes(profile: str, **extra: Any) -> dict[str, Any]:
    """The shared image-run sizes of ``profile`` merged with a claim's own sizes."""
    return {**IMAGE_RUNS[profile], **extra}


__all__ = ["ARCHS", "ARCH_LABELS", "IMAGE_RUNS", "ImageData", "accuracy", "build", "clear_memo", "image_run",
           "load_images", "model_config", "n_params", "predict", "run_sizes"]  # fmt: skip
