"""A multilayer-perceptron baseline: flatten the image, hidden Linear-ReLU(-Dropout) layers, a
linear classifier. No notion of space at all — the reference point for what convolution and
attention add (Fashion-MNIST's benchmark table lists an MLP at 88.3%)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from archlab.errors import ArchlabError
from archlab.models.registry import register_model, register_preset


@dataclass
class MLPConfig:
    in_channels: int = 1
    image_size: int = 28
    num_classes: int = 10
    hidden: tuple[int, ...] = (256, 256)  # widths of the hidden layers; () = logistic regression
    dropout: float = 0.0

    def __post_init__(self) -> None:
        self.hidden = tuple(self.hidden)  # JSON gives a list back; keep configs comparable
        for name in ("in_channels", "image_size", "num_classes"):
            if getattr(self, name) < 1:
                raise ArchlabError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden and min(self.hidden) < 1:
            raise ArchlabError(f"hidden widths must be >= 1, got {self.hidden}")
        if not 0.0 <= self.dropout < 1.0:
            raise ArchlabError(f"dropout must be in [0, 1), got {self.dropout}")


class MLP(nn.Module):
    def __init__(self, cfg: MLPConfig):
        super().__init__()
        self.config = cfg
        layers: list[nn.Module] = [nn.Flatten()]
        width = cfg.in_channels * cfg.image_size**2
        for h in cfg.hidden:
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True), nn.Dropout(cfg.dropout)]
            width = h
        layers.append(nn.Linear(width, cfg.num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (B, C, H, W) -> (B, C*H*W) -> (B, num_classes)


@register_model("mlp", MLPConfig, task="image")
def _build(cfg: MLPConfig) -> MLP:
    return MLP(cfg)


# scikit-learn's MLPClassifier default shape (one hidden layer of 100), the benchmark table's MLP.
register_preset("mlp-100", "mlp", hidden=(100,))

__all__ = ["MLP", "MLPConfig"]
