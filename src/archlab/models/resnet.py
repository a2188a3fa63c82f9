"""A small pre-activation ResNet for 28–32 px images (He et al. 2016, "Identity Mappings in Deep
Residual Networks", the full pre-activation unit of Fig. 4(e)).

Each basic block computes ``x + F(x)`` with ``F = conv3x3(ReLU(BN(conv3x3(ReLU(BN(x))))))``: BN and
ReLU come *before* each conv, so the identity path from input to output carries no nonlinearity
(§3 of the paper). When a block changes width or stride, the shortcut is a 1×1 conv (projection,
He et al. 2016a option B) applied to the pre-activated input, so both paths start from normalized
features. A 3×3 stem conv (no downsampling, the CIFAR setup of He et al. 2016a §4.2), stages of
blocks (stride 2 at the start of every stage after the first), then BN-ReLU, global average
pooling and a linear head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import ArchlabError
from archlab.models.registry import register_model, register_preset


@dataclass
class ResNetConfig:
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    widths: tuple[int, ...] = (32, 64, 128)  # channels of each stage
    blocks: tuple[int, ...] = (2, 2, 2)  # basic blocks per stage

    def __post_init__(self) -> None:
        self.widths, self.blocks = tuple(self.widths), tuple(self.blocks)
        for name in ("in_channels", "image_size", "num_classes"):
            if getattr(self, name) < 1:
                raise ArchlabError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.widths or min(self.widths) < 1:
            raise ArchlabError(f"widths must be a non-empty list of ints >= 1, got {self.widths}")
        if len(self.blocks) != len(self.widths) or min(self.blocks) < 1:
            raise ArchlabError(
                f"blocks must give a count >= 1 for each of the {len(self.widths)} stages in "
                f"widths, got {self.blocks}"
            )
        if self.image_size < 2 ** (len(self.widths) - 1):
            raise ArchlabError(
                f"widths: {len(self.widths)} stages halve a {self.image_size}px image too often"
            )


class PreActBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, padding=1, bias=False)
        self.shortcut = (
            nn.Conv2d(c_in, c_out, 1, stride, bias=False) if stride != 1 or c_in != c_out else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))  # (B, C_in, H, W) pre-activation
        skip = self.shortcut(out) if self.shortcut is not None else x  # (B, C_out, H', W')
        out = self.conv1(out)  # (B, C_out, H', W')
        out = self.conv2(F.relu(self.bn2(out)))  # (B, C_out, H', W')
        return out + skip


class PreActResNet(nn.Module):
    def __init__(self, cfg: ResNetConfig):
        super().__init__()
        self.config = cfg
        self.stem = nn.Conv2d(cfg.in_channels, cfg.widths[0], 3, 1, padding=1, bias=False)
        blocks: list[nn.Module] = []
        c_in = cfg.widths[0]
        for s, (width, n) in enumerate(zip(cfg.widths, cfg.blocks, strict=True)):
            for j in range(n):
                blocks.append(PreActBlock(c_in, width, stride=2 if (s > 0 and j == 0) else 1))
                c_in = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c_in)  # the last block's output is not yet normalized
        self.head = nn.Linear(c_in, cfg.num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):  # He et al. 2015 init
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))  # (B, C_last, H', W')
        x = F.relu(self.bn(x))  # (B, C_last, H', W')
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, C_last) global average pooling
        return self.head(x)  # (B, num_classes)


@register_model("resnet", ResNetConfig, task="image")
def _build(cfg: ResNetConfig) -> PreActResNet:
    return PreActResNet(cfg)


# PreAct ResNet-20 shape for CIFAR (He et al. 2016a §4.2: 3 stages 16-32-64, n=3 blocks each).
register_preset("preresnet20", "resnet", widths=(16, 32, 64), blocks=(3, 3, 3))
# PreAct ResNet-18 as commonly used on CIFAR-10 (4 stages 64-128-256-512, 2 blocks each, ~11M).
register_preset("preresnet18", "resnet", widths=(64, 128, 256, 512), blocks=(2, 2, 2, 2))

__all__ = ["PreActBlock", "PreActResNet", "ResNetConfig"]
