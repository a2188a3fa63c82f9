"""What the image tab shows: top-k, the shift test (C3), CNN feature maps (C1), ViT attention (V1).

Images travel as uint8 arrays (C, H, W) at the run's input size, converted exactly as
``archlab classify`` converts a file (:func:`archlab.data.load_image_file`: Pillow to grayscale or
RGB, bicubic resize). Fashion-MNIST has light objects on black; a drawing or photo of dark ink on
white paper is inverted when its border — the background — is brighter than half
(``invert="auto"``), however much of the canvas the drawing covers.

Shifts move the image by (dx, dy) whole pixels, right and down for positive values, filling with
black (the background) — not ``torch.roll``, which would wrap the object around the border.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from archlab.errors import ArchlabError
from archlab.lab.models import LabModel
from archlab.train.tasks import normalize_images

__all__ = [
    "MAX_UPLOAD_BYTES",
    "ImageTooLarge",
    "NotAnImage",
    "Prediction",
    "decode_image",
    "feature_maps",
    "maybe_invert",
    "predict",
    "shift",
    "shift_curve",
    "vit_attention",
]

MAX_UPLOAD_BYTES = 10 * 2**20  # a phone photo fits; the model sees 28 x 28 anyway


class NotAnImage(ArchlabError):
    """Bytes Pillow cannot read as an image (the API answers 422)."""


class ImageTooLarge(ArchlabError):
    """An upload over :data:`MAX_UPLOAD_BYTES` (the API answers 413)."""


@dataclass(frozen=True)
class Prediction:
    """One model's class probabilities for one image."""

    probs: torch.Tensor  # (K,)
    names: list[str]

    def top(self, k: int) -> list[dict[str, float | str]]:
        if k < 1:
            raise ArchlabError(f"top_k must be >= 1, got {k}")
        p, i = torch.topk(self.probs, min(k, self.probs.numel()))
        return [{"label": self.names[int(j)], "prob": float(q)} for q, j in zip(p, i, strict=True)]


def _input_shape(m: LabModel) -> tuple[int, int]:
    shape = m.run.config["data"]["shape"]  # (C, H, W)
    return int(shape[0]), int(shape[-1])


def decode_image(data: bytes, channels: int, size: int, invert: str = "auto") -> np.ndarray:
    """Image file bytes -> uint8 (channels, size, size), as ``archlab classify`` reads a file."""
    from archlab.data import load_image_file

    if not data:
        raise NotAnImage("the upload is empty; send an image file's bytes (PNG, JPEG, ...)")
    if len(data) > MAX_UPLOAD_BYTES:
        raise ImageTooLarge(f"the image is {len(data):,} bytes; the lab takes at most 10 MiB")
    try:
        a = load_image_file(io.BytesIO(data), channels, size)  # type: ignore[arg-type]
    except ArchlabError:
        raise NotAnImage(
            "the upload is not an image Pillow can read (PNG, JPEG, GIF, ...)"
        ) from None
    return np.array(maybe_invert(a, invert))  # a writable copy (torch warns on read-only arrays)


def maybe_invert(a: np.ndarray, invert: str = "auto") -> np.ndarray:
    """``yes``: 255 - a; ``no``: a; ``auto``: invert when the outermost pixels (the background)
    average above half. ``a`` is uint8 (C, H, W)."""
    if invert not in ("auto", "yes", "no"):
        raise ArchlabError(f"invert must be auto, yes or no, got {invert!r}")
    border = np.concatenate([a[:, 0], a[:, -1], a[:, :, 0], a[:, :, -1]], axis=None)
    if invert == "yes" or (invert == "auto" and border.mean() > 127.5):
        return (255 - a).astype(np.uint8)
    return a


def shift(x: torch.Tensor, dx: int, dy: int) -> torch.Tensor:
    """Images (..., H, W) moved right by dx and down by dy pixels, zero-filled."""
    H, W = x.shape[-2:]
    if not (isinstance(dx, int) and isinstance(dy, int)) or max(abs(dx), abs(dy)) >= min(H, W):
        raise ArchlabError(f"dx and dy must be whole pixels in -{min(H, W) - 1}..{min(H, W) - 1}")
    out = torch.zeros_like(x)
    src = x[..., max(0, -dy) : H - max(0, dy), max(0, -dx) : W - max(0, dx)]
    out[..., max(0, dy) : H - max(0, -dy), max(0, dx) : W - max(0, -dx)] = src
    return out


def _normalized(m: LabModel, x: torch.Tensor) -> torch.Tensor:
    """uint8 (N, C, H, W) -> the float input the model was trained on."""
    norm = m.run.config["data"]["normalization"]
    return normalize_images(x, norm["mean"], norm["std"])  # (N, C, H, W)


def _batch(m: LabModel, image: np.ndarray | torch.Tensor) -> torch.Tensor:
    x = torch.as_tensor(image)
    if x.dim() == 3:
        x = x[None]  # (1, C, H, W)
    c, size = _input_shape(m)
    if tuple(x.shape[1:]) != (c, size, size):
        raise ArchlabError(f"{m.name} takes {c}x{size}x{size} images, got {tuple(x.shape[1:])}")
    return x


@torch.no_grad()
def predict(m: LabModel, image: np.ndarray | torch.Tensor, dx: int = 0, dy: int = 0) -> Prediction:
    """Class probabilities of ``image`` uint8 (C, H, W) shifted by (dx, dy)."""
    x = shift(_batch(m, image), dx, dy)  # (1, C, H, W)
    logits = m.run.model(_normalized(m, x))  # (1, K)
    return Prediction(
        F.softmax(logits[0].float(), dim=-1), list(m.run.config["data"]["class_names"])
    )


@torch.no_grad()
def shift_curve(
    m: LabModel, image: np.ndarray | torch.Tensor, dxs: Sequence[int], dy: int = 0
) -> tuple[str, list[float]]:
    """(class c, p(c) at each dx at the given dy), c the model's top-1 class of the unshifted image.

    Claim C3 in one curve: a translation-invariant classifier keeps p(c) flat as the image moves.
    """
    x = _batch(m, image)  # (1, C, H, W)
    xs = torch.cat([shift(x, int(dx), dy) for dx in [0, *dxs]])  # (1 + n, C, H, W)
    probs = F.softmax(m.run.model(_normalized(m, xs)).float(), dim=-1)  # (1 + n, K)
    c = int(probs[0].argmax())
    return m.run.config["data"]["class_names"][c], probs[1:, c].tolist()


@torch.no_grad()
def feature_maps(m: LabModel, image: np.ndarray | torch.Tensor) -> list[torch.Tensor]:
    """A CNN's activations at the end of each stage: one (channels, h, w) tensor per stage.

    A stage is a run of layers at one spatial size (the plain CNN's conv-BN-ReLU blocks between
    poolings, a ResNet's blocks between strides); its last output is what the next stage sees.
    """
    container = getattr(m.run.model, "features", None) or getattr(m.run.model, "blocks", None)
    if m.family == "vit" or not isinstance(container, torch.nn.Sequential):
        raise ArchlabError(f"{m.name} is not a CNN; feature maps are shown for CNN runs")
    outs: list[torch.Tensor] = []
    hooks = [c.register_forward_hook(lambda _m, _i, o: outs.append(o)) for c in container]
    try:
        m.run.model(_normalized(m, _batch(m, image)))
    finally:
        for h in hooks:
            h.remove()
    stages: list[torch.Tensor] = []
    for i, o in enumerate(outs):  # each (1, C, h, w)
        nxt = outs[i + 1] if i + 1 < len(outs) else None
        if nxt is None or nxt.shape[-2:] != o.shape[-2:]:
            stages.append(o[0].float())  # the last output at this size
    return stages


@torch.no_grad()
def vit_attention(m: LabModel, image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A ViT's attention over the patch grid: (layers, heads, g, g).

    With a class token (ViT §3.1) it is the class token's row — what the classifier reads; with
    mean pooling, the mean over the patch queries. Weights over patches are renormalized to sum
    to 1 (the class token's share on itself is dropped).
    """
    if m.family != "vit":
        raise ArchlabError(f"{m.name} is not a ViT; attention maps are shown for ViT runs")
    cfg = m.run.model.config
    _, attns = m.run.model(_normalized(m, _batch(m, image)), return_attn=True)
    a = torch.stack([t[0].float() for t in attns])  # (L, nh, N_tok, N_tok)
    if cfg.pool == "cls":
        rows = a[:, :, 0, 1:]  # (L, nh, N) the class token's query
    else:
        rows = a.mean(dim=2)  # (L, nh, N)
    rows = rows / rows.sum(dim=-1, keepdim=True)
    g = cfg.grid_size
    return rows.reshape(*rows.shape[:2], g, g)  # (L, nh, g, g)
