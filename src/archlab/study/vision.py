"""Measurements of *where* an image model looks, shared by C1, C4 and V1.

- :func:`receptive_fields`: the theoretical receptive field of every conv layer of a CNN, by the
  recurrence r_l = r_{l-1} + (k_l - 1)·d_l·j_{l-1}, j_l = j_{l-1}·s_l (Araujo, Norris & Sim 2019,
  "Computing Receptive Fields of Convolutional Neural Networks", Distill, eq. 1–2), where k is the
  kernel size, d the dilation, s the stride and j the jump (input pixels between adjacent outputs).
- :func:`effective_rf`: Luo et al. 2016 ("Understanding the Effective Receptive Field in Deep
  CNNs"): the gradient of one centre unit with respect to the input pixels, summarized by the side
  of the smallest centred square holding a fraction of the gradient mass.
- :func:`window_mean_distance` / :func:`uniform_attention_distance`: reference values for the ViT
  paper's mean attention distance (Dosovitskiy et al. 2020, Fig. 7).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn


def _pair(v) -> int:
    return int(v[0] if isinstance(v, tuple) else v)


def _padding(mod: nn.Module, k: int, d: int) -> float:
    p = getattr(mod, "padding", 0)
    if p == "same":
        return (k - 1) * d / 2
    if p == "valid":
        return 0
    return _pair(p)


def receptive_fields(model: nn.Module) -> list[dict[str, Any]]:
    """One row per ``nn.Conv2d`` in module order (pooling layers fold into the following rows):
    ``{"layer", "kernel", "stride", "rf" (px, side), "jump" (px), "centre0" (px)}``, where
    ``centre0`` is the input coordinate of output unit 0's field centre, c_l = c_{l-1} +
    ((k_l - 1)·d_l / 2 - p_l)·j_{l-1} (Araujo et al. 2019, eq. 3 with padding p); unit u's centre
    is u·jump + centre0. Square kernels assumed."""
    r, j, c, rows = 1, 1, 0.0, []
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s = _pair(mod.kernel_size), _pair(mod.stride)
            d = _pair(mod.dilation) if hasattr(mod, "dilation") else 1
            c += ((k - 1) * d / 2 - _padding(mod, k, d)) * j
            r, j = r + (k - 1) * d * j, j * s
            if isinstance(mod, nn.Conv2d):
                rows.append(
                    {"layer": name, "kernel": k, "stride": s, "rf": r, "jump": j, "centre0": c}
                )
    return rows


def conv_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The output of every conv-BN-ReLU block of a :class:`archlab.models.cnn.CNN` (or any model
    with a ``features`` Sequential): one (B, C, H, W) map per conv, in order."""
    outs, h = [], x
    for mod in model.features:
        h = mod(h)
        if isinstance(mod, nn.Sequential) and any(isinstance(m, nn.Conv2d) for m in mod):
            outs.append(h)
    return outs


def effective_rf(model: nn.Module, x: torch.Tensor, mass: float = 0.9) -> list[dict[str, Any]]:
    """Per conv layer: |∂(sum over channels of the centre unit)/∂x| summed over images, and the
    side (px) of the smallest square around that unit's field centre holding ``mass`` of it.
    Gradients outside the theoretical receptive field are exactly zero, so side <= rf."""
    model.eval()
    H = x.shape[-1]
    out = []
    for i, row in enumerate(receptive_fields(model)):
        xi = x.clone().requires_grad_()
        fmap = conv_outputs(model, xi)[i]  # (B, C, h, w)
        h, w = fmap.shape[-2:]
        fmap[:, :, h // 2, w // 2].sum().backward()
        g = xi.grad.abs().sum(dim=(0, 1)).double()  # (H, W)
        j = row["jump"]
        cy, cx = (h // 2) * j + row["centre0"], (w // 2) * j + row["centre0"]  # field centre (px)
        total = float(g.sum())
        side = H
        for sd in range(1, H + 1):  # smallest sd×sd window around the centre holding ``mass``
            y0, x0 = math.ceil(cy - (sd - 1) / 2 - 1e-9), math.ceil(cx - (sd - 1) / 2 - 1e-9)
            win = g[max(0, y0) : max(0, y0 + sd), max(0, x0) : max(0, x0 + sd)]
            if total == 0 or float(win.sum()) >= mass * total * (1 - 1e-9):  # float sums differ
                side = sd
                break
        out.append({"erf": side, "grad": g.tolist(), "centre": [float(cy), float(cx)]})
    return out


def window_mean_distance(side: int) -> float:
    """Mean distance (px) from the centre pixel to all pixels of a side×side window: the mean
    attention distance a unit would have if it weighted its whole receptive field uniformly."""
    c = (side - 1) / 2
    return sum(math.hypot(i - c, j - c) for i in range(side) for j in range(side)) / side**2


def uniform_attention_distance(grid: int, patch: int) -> float:
    """Mean attention distance (px) of uniform attention over a grid×grid patch grid: the mean
    distance between patch centres over all (query, key) pairs, pairs with itself included."""
    pts = [(i * patch, j * patch) for i in range(grid) for j in range(grid)]
    return sum(math.dist(a, b) for a in pts for b in pts) / len(pts) ** 2


__all__ = [
    "conv_outputs",
    "effective_rf",
    "receptive_fields",
    "uniform_attention_distance",
    "window_mean_distance",
]
