"""TrainConfig: every setting that decides a training trajectory (plain, validated data).

Each field's help text lives here, in its ``metadata`` (``help``, and where useful ``flag``,
``choices``, ``tasks``); ``archlab train`` generates its flags from these fields, so a field
without a flag cannot exist (see :mod:`archlab.commands.flags`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrainConfig", "fold_seed"]


def _f(default: Any, help: str, **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    """Everything that decides a training trajectory; plain data, validated, JSON-serializable."""

    max_steps: int | None = _f(
        1000,
        "optimizer steps; also the length of the lr schedule. 'none' (or giving only "
        "--max-time) means no step cap: the wall-clock budget alone ends the run",
    )
    # Wall-clock budget: stops early, and the schedule follows max(step, time) progress, so a
    # run with max_time depends on the machine's speed (not bit-reproducible by design).
    max_time: float | None = _f(
        None, "wall-clock budget in SECONDS; the lr schedule decays by time too", metavar="S"
    )
    batch_size: int = _f(32, "global micro-batch in rows (sequences or images), split over ranks")
    grad_accum: int = _f(1, "micro-batches per optimizer step (global batch = batch x accum)")
    lr: float = _f(1e-3, "peak learning rate")
    # End of the decay; default lr / 10 (Chinchilla, Hoffmann et al. 2022).
    min_lr: float | None = _f(None, "final learning rate (default lr/10)")
    # AdamW (Loshchilov & Hutter 2019) or plain / heavy-ball SGD (pytorch/examples'
    # word_language_model recipe; measured best for one epoch of the WikiText-2 LSTM here).
    # Muon (Jordan et al. 2024): orthogonalized momentum on hidden matrices, AdamW on the rest
    # (train.muon); measured to train the Fashion-MNIST ViT in a quarter of AdamW's steps.
    optimizer: str = _f("adamw", "optimizer", choices=("adamw", "sgd", "muon"))
    # Only on matrices, see optim.param_groups. None: 0.1 for AdamW (decoupled) and 0 for SGD,
    # where torch's weight_decay is an L2 term scaled by the lr (at lr 20, 0.1 would wipe weights).
    weight_decay: float | None = _f(
        None, "weight decay on matrices (default 0.1 for AdamW, decoupled; 0 for SGD)"
    )
    momentum: float = _f(0.0, "SGD momentum (0: plain SGD)")
    muon_momentum: float = _f(0.95, "Muon momentum (Nesterov) of the hidden matrices")
    betas: tuple[float, float] = _f((0.9, 0.95), "AdamW betas, as B1,B2", metavar="B1,B2")
    eps: float = _f(1e-8, "AdamW epsilon")
    warmup_steps: int = _f(0, "linear warmup steps", flag="--warmup")
    schedule: str = _f("cosine", "lr decay after warmup", choices=("cosine", "linear", "constant"))
    grad_clip: float | None = _f(1.0, "max global L2 norm of the gradient ('none': no clipping)")
    # auto: bf16 only where it is measured faster on this device (archlab.hardware); resolved
    # before training, so a stored config always holds fp32 or bf16.
    precision: str = _f(
        "auto",
        "autocast precision: auto (bf16 only where measured faster here), fp32 or bf16",
        choices=("auto", "fp32", "bf16"),
    )
    eval_interval: int = _f(0, "steps between full-pass evaluations (0: at the end only)")
    checkpoint_interval: int | None = _f(
        None, "steps between checkpoints (default: eval interval; always at the end)"
    )
    log_interval: int = _f(10, "steps between metric lines (the only host syncs in the loop)")
    seed: int = _f(1337, "seed of initial weights, data order and dropout")
    label_smoothing: float = _f(
        0.0, "label smoothing in [0, 1) (Szegedy et al. 2016 sec. 7)", tasks=("image",)
    )
    compile: bool = _f(False, "torch.compile the training forward")
    device: str = _f("auto", "device", choices=("auto", "cpu", "cuda"))
    # None: the number of physical cores (archlab.hardware.physical_cores).
    threads: int | None = _f(None, "torch intra-op threads (default: physical cores)")
    progress: bool = _f(True, "progress bar on a terminal")

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        ints = {
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
        for name in ("max_steps", "checkpoint_interval", "threads"):
            v = getattr(self, name)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 1):
                raise ValueError(f"TrainConfig.{name} must be an integer >= 1 or None, got {v!r}")
        if not isinstance(self.seed, int) or not -(2**63) <= self.seed < 2**64:
            raise ValueError(
                f"TrainConfig.seed must be an integer in [-2**63, 2**64), got {self.seed}"
            )
        if self.max_time is not None and not (self.max_time > 0 and math.isfinite(self.max_time)):
            raise ValueError(f"TrainConfig.max_time must be > 0 seconds, got {self.max_time}")
        if self.max_steps is None and self.max_time is None:
            raise ValueError("TrainConfig: give max_steps or max_time (or both); neither is set")
        for name in ("lr", "eps"):
            v = getattr(self, name)
            if not (v > 0 and math.isfinite(v)):
                raise ValueError(f"TrainConfig.{name} must be a positive number, got {v}")
        if self.min_lr is not None and not 0 <= self.min_lr <= self.lr:
            raise ValueError(f"TrainConfig.min_lr must be in [0, lr], got {self.min_lr}")
        if self.optimizer not in ("adamw", "sgd", "muon"):
            raise ValueError(
                f"TrainConfig.optimizer must be 'adamw', 'sgd' or 'muon', got {self.optimizer!r}"
            )
        if self.weight_decay is not None and not (
            self.weight_decay >= 0 and math.isfinite(self.weight_decay)
        ):
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay}")
        for name in ("momentum", "muon_momentum"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"TrainConfig.{name} must be in [0, 1), got {getattr(self, name)}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas}")
        if self.schedule not in ("cosine", "linear", "constant"):
            raise ValueError(
                f"TrainConfig.schedule must be 'cosine', 'linear' or 'constant', "
                f"got {self.schedule!r}"
            )
        if self.grad_clip is not None and not (
            self.grad_clip > 0 and math.isfinite(self.grad_clip)
        ):
            raise ValueError(f"TrainConfig.grad_clip must be > 0 or None, got {self.grad_clip}")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ValueError(
                f"TrainConfig.precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}"
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
        return 0.0 if self.optimizer == "sgd" else 0.1

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
