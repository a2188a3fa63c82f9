"""TrainConfig: every setting that decides a training trajectory (plain, validated data)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainConfig", "fold_seed"]


@dataclass
class TrainConfig:
    """Everything that decides a training trajectory; plain data, validated, JSON-serializable."""

    max_steps: int = 1000  # optimizer steps; also the length of the cosine schedule
    # Wall-clock budget in seconds: stops early, and the cosine follows max(step, time) progress,
    # so a run with max_time depends on the machine's speed (not bit-reproducible by design).
    max_time: float | None = None
    batch_size: int = 32  # global micro-batch in rows (sequences or images), split over ranks
    grad_accum: int = 1  # micro-batches per optimizer step: global batch = batch_size * grad_accum
    lr: float = 1e-3  # peak learning rate
    min_lr: float | None = None  # end of the cosine; default lr / 10 (Chinchilla, Hoffmann et al.)
    # "adamw" (Loshchilov & Hutter 2019) | "sgd" (plain or heavy-ball SGD, pytorch/examples'
    # word_language_model recipe: lr 20, clip 0.25; measured best for the WikiText-2 LSTM here).
    optimizer: str = "adamw"
    # Only on matrices, see param_groups(). None: 0.1 for AdamW (decoupled) and 0 for SGD, where
    # torch's weight_decay is an L2 term scaled by the lr (at lr 20, 0.1 would wipe the weights).
    weight_decay: float | None = None
    momentum: float = 0.0  # SGD only
    betas: tuple[float, float] = (0.9, 0.95)  # AdamW only
    eps: float = 1e-8  # AdamW only
    warmup_steps: int = 0
    schedule: str = "cosine"  # "cosine" | "linear" (decay to min_lr) | "constant"
    grad_clip: float | None = 1.0  # max global L2 norm of the gradient; None = no clipping
    precision: str = "fp32"  # "fp32" | "bf16" (autocast; weights and optimizer stay fp32)
    eval_interval: int = 0  # steps between full-pass evaluations; 0 = only at the end
    checkpoint_interval: int | None = None  # default: eval_interval; always at the end
    log_interval: int = 10  # steps between metric lines (the only host syncs in the loop)
    seed: int = 1337
    label_smoothing: float = 0.0  # classification tasks (Szegedy et al. 2016, sec. 7)
    compile: bool = False  # torch.compile the training forward
    device: str = "auto"  # "auto" | "cpu" | "cuda"
    progress: bool = True  # tqdm bar on rank 0

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        ints = {
            "max_steps": 1,
            "batch_size": 1,
            "grad_accum": 1,
            "warmup_steps": 0,
            "eval_interval": 0,
            "log_interval": 1,
        }
        for name, lo in ints.items():
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < lo:
                raise ValueError(f"TrainConfig.{name} must be an integer >= {lo}, got {v!r}")
        if self.checkpoint_interval is not None and self.checkpoint_interval < 1:
            raise ValueError("TrainConfig.checkpoint_interval must be >= 1 or None")
        if self.max_time is not None and not self.max_time > 0:
            raise ValueError(f"TrainConfig.max_time must be > 0 seconds, got {self.max_time}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"TrainConfig.lr must be a positive number, got {self.lr}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"TrainConfig.min_lr must be in [0, lr], got {self.min_lr}")
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(
                f"TrainConfig.optimizer must be 'adamw' or 'sgd', got {self.optimizer!r}"
            )
        if self.weight_decay is not None and not self.weight_decay >= 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.momentum < 1:
            raise ValueError(f"TrainConfig.momentum must be in [0, 1), got {self.momentum}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(
                f"TrainConfig.schedule must be 'cosine', 'linear' or 'constant', "
                f"got {self.schedule!r}"
            )
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"TrainConfig.grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(
                f"TrainConfig.precision must be 'fp32' or 'bf16', got {self.precision!r}"
            )
        if not 0 <= self.label_smoothing < 1:
            raise ValueError(
                f"TrainConfig.label_smoothing must be in [0, 1), got {self.label_smoothing}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"TrainConfig.device must be auto, cpu or cuda, got {self.device!r}")

    @property
    def decay(self) -> float:
        """The weight decay in effect (see ``weight_decay``)."""
        if self.weight_decay is not None:
            return self.weight_decay
        return 0.1 if self.optimizer == "adamw" else 0.0

    @property
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


def fold_seed(*xs: int) -> int:
    """Mix integers into one 63-bit seed (splitmix64 finalizer, Steele et al. 2014)."""
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF
