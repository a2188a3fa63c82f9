"""A plain convolutional classifier: stages of conv-BN-ReLU, downsampling between stages, global
average pooling, one linear layer.

``model(x)`` maps images (B, C, H, W) to logits (B, num_classes). Every conv is "same"-padded
(``kernel_size // 2``) and bias-free (the BatchNorm that follows has its own shift; Ioffe &
Szegedy 2015 §3.2). Between stages the feature map is halved by ``pool``: ``"max"``/``"avg"``
(2×2, stride 2), ``"stride"`` (the next stage's first conv has stride 2), ``"blur"`` (Zhang 2019's
anti-aliased MaxBlurPool: a 2×2 max with stride 1, then a 3×3 binomial blur applied with stride
2, so the subsampling no longer aliases high frequencies) or ``"none"``.

Translation: with ``pool="none"`` and ``padding_mode="circular"`` every layer commutes with a
circular shift of its input (convolution with wrap-around padding and stride 1, per-channel BN in
eval mode, pointwise ReLU) and global average pooling forgets where things were, so the logits are
exactly invariant to ``torch.roll`` of the image. Striding or pooling breaks that for shifts that
are not multiples of the total stride (tested both ways).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from archlab.errors import ArchlabError
from archlab.models.registry import register_model, register_preset

POOLS = ("max", "avg", "stride", "blur", "none")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")  # nn.Conv2d's padding_mode values


@dataclass
class CNNConfig:
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    channels: tuple[int, ...] = (32, 64, 128)  # output channels of each stage
    convs_per_stage: int = 2
    kernel_size: int = 3
    pool: str = "max"  # downsampling between stages
    padding_mode: str = "zeros"
    dropout: float = 0.0  # before the linear head

    def __post_init__(self) -> None:
        self.channels = tuple(self.channels)  # JSON gives a list back; keep configs comparable
        for name in ("in_channels", "image_size", "num_classes", "convs_per_stage", "kernel_size"):
            if getattr(self, name) < 1:
                raise ArchlabError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.channels or min(self.channels) < 1:
            raise ArchlabError(
                f"channels must be a non-empty list of ints >= 1, got {self.channels}"
            )
        if self.kernel_size % 2 == 0:
            raise ArchlabError(f"kernel_size must be odd ('same' padding), got {self.kernel_size}")
        if self.pool not in POOLS:
            raise ArchlabError(f"pool must be one of {POOLS}, got {self.pool!r}")
        if self.padding_mode not in PADDING_MODES:
            raise ArchlabError(
                f"padding_mode must be one of {PADDING_MODES}, got {self.padding_mode!r}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ArchlabError(f"dropout must be in [0, 1), got {self.dropout}")
        halvings = 0 if self.pool == "none" else len(self.channels) - 1
        if self.image_size < 2**halvings:
            raise ArchlabError(
                f"channels: {len(self.channels)} stages halve a {self.image_size}px image "
                f"{halvings} times; use fewer stages or pool='none'"
            )


def conv_bn_relu(cfg: CNNConfig, c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    k = cfg.kernel_size
    return nn.Sequential(
        nn.Conv2d(
            c_in, c_out, k, stride, padding=k // 2, padding_mode=cfg.padding_mode, bias=False
        ),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class BlurPool2d(nn.Module):
    """Depthwise 3×3 binomial low-pass filter ([1, 2, 1] ⊗ [1, 2, 1] / 16), stride 2, reflect
    padding: Zhang 2019, "Making Convolutional Networks Shift-Invariant Again", §3 (filter size 3).
    The filter is fixed (a buffer, not a parameter).

    The filter runs in fp32 even under autocast, and returns the input's dtype: a depthwise conv
    in bf16 is slow on CPUs (a whole BlurPool-CNN training step, 1 thread, Zen 4 with
    AVX512-BF16: 40.1 ms with the blur in bf16, 20.0 ms in fp32, 14.0 ms for the max-pool CNN),
    and the filter's 1/16 steps are exact in fp32. In fp32 nothing changes.
    """

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :]) / 16  # (3, 3), sums to 1
        self.register_buffer("kernel", k.expand(channels, 1, 3, 3).clone(), persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            xf = nn.functional.pad(x.float(), (1, 1, 1, 1), mode="reflect")  # (N, C, H+2, W+2)
            y = nn.functional.conv2d(xf, self.kernel.float(), stride=2, groups=self.channels)
        return y.to(x.dtype)  # (N, C, H', W')


def downsample(pool: str, channels: int) -> nn.Module:
    """The 2× downsampling between stages for ``pool`` in max/avg/blur."""
    if pool == "max":
        return nn.MaxPool2d(2)
    if pool == "avg":
        return nn.AvgPool2d(2)
    return nn.Sequential(nn.MaxPool2d(2, stride=1), BlurPool2d(channels))  # MaxBlurPool


class CNN(nn.Module):
    def __init__(self, cfg: CNNConfig):
        super().__init__()
        self.config = cfg
        layers: list[nn.Module] = []
        c_in = cfg.in_channels
        for s, c_out in enumerate(cfg.channels):
            for j in range(cfg.convs_per_stage):
                stride = 2 if (s > 0 and j == 0 and cfg.pool == "stride") else 1
                layers.append(conv_bn_relu(cfg, c_in, c_out, stride))
                c_in = c_out
            if s < len(cfg.channels) - 1 and cfg.pool in ("max", "avg", "blur"):
                layers.append(downsample(cfg.pool, c_out))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)  # global average pooling (Lin et al. 2014, NiN)
        self.drop = nn.Dropout(cfg.dropout)
        self.head = nn.Linear(c_in, cfg.num_classes)
        for m in self.modules():  # He et al. 2015 init for ReLU nets, as torchvision's ResNet
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)  # (B, C_last, H', W')
        x = self.pool(x).flatten(1)  # (B, C_last)
        return self.head(self.drop(x))  # (B, num_classes)


@register_model("cnn", CNNConfig, task="image")
def _build(cfg: CNNConfig) -> CNN:
    return CNN(cfg)


# Fashion-MNIST: four stages of two 3x3 convs (16-32-64-128 at 28, 14, 7, 3 px), max-pool between:
# 295k params, as many as the earlier 32-64-128 stack (288k) at a third of its FLOPs (18.7 vs
# 58.3 MFLOP per forward): a 120 s budget buys 3x the epochs, which is what an fp32-only CPU
# needs (benchmarks/README.md, the preset trials of 2026-12-03/04).
register_preset("cnn-fmnist", "cnn", channels=(16, 32, 64, 128), convs_per_stage=2, pool="max")
# The translation-invariant variant of the same stack (see module docstring).
register_preset(
    "cnn-circular",
    "cnn",
    channels=(32, 64, 128),
    convs_per_stage=2,
    pool="none",
    padding_mode="circular",
)

__all__ = ["CNN", "BlurPool2d", "CNNConfig", "conv_bn_relu", "downsample"]
