"""A task-agnostic Trainer (after minGPT's: it knows nothing about GPTs, RNNs or CNNs).

The Trainer owns the loop: AdamW, warmup + cosine lr, gradient accumulation and clipping, bf16
autocast, DDP, periodic full-pass evaluation, progress bar, JSONL metrics, atomic checkpoints and
bit-identical resume. A :class:`Task` owns everything about the problem: which rows form the batch
of step ``s`` (a pure function of seed and ``s``), the loss, the evaluation, and any state carried
between batches (an RNN's hidden state for truncated BPTT).

Reproducibility contract (CPU, same thread count): the data of step ``s`` come from
``(seed, s)`` and torch's global generator is reseeded from ``(seed, s, rank)`` before each step,
so a run of N steps and a run stopped at step k and resumed to N produce identical weights and
identical losses, without saving iterator or generator state.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from archlab.train.checkpoint import has_checkpoint, load_training_state, save_checkpoint
from archlab.train.distributed import DistInfo, init_distributed
from archlab.train.schedule import lr_at

__all__ = ["Callback", "Task", "TrainConfig", "TrainResult", "Trainer", "fold_seed", "param_groups"]

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything that decides a training trajectory; plain data, validated, JSON-serializable."""

    max_steps: int = 1000  # optimizer steps; also the length of the cosine schedule
    max_time: float | None = None  # wall-clock budget in seconds (stops early, decays lr by time)
    batch_size: int = 32  # global micro-batch in rows (sequences or images), split over ranks
    grad_accum: int = 1  # micro-batches per optimizer step: global batch = batch_size * grad_accum
    lr: float = 1e-3  # peak learning rate
    min_lr: float | None = None  # end of the cosine; default lr / 10 (Chinchilla, Hoffmann et al.)
    weight_decay: float = 0.1  # decoupled (AdamW); only on matrices, see param_groups()
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    warmup_steps: int = 0
    schedule: str = "cosine"  # "cosine" | "constant"
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
        if self.weight_decay < 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay}")
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"TrainConfig.betas must be two numbers in [0, 1), got {self.betas}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(
                f"TrainConfig.schedule must be 'cosine' or 'constant', got {self.schedule!r}"
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
    def final_lr(self) -> float:
        return self.lr / 10 if self.min_lr is None else self.min_lr

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["betas"] = list(self.betas)
        return d


class Task(Protocol):
    """What the Trainer needs from a problem. Batches are CPU tensors (or tuples/dicts of them)."""

    unit: str  # what throughput counts: "tokens" or "images"

    def train_batch(self, step: int, micro: int, grad_accum: int, dist: DistInfo) -> Any:
        """This rank's share of micro-batch ``micro`` of optimizer step ``step`` (pure in seed, step)."""

    def train_loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """(mean loss over this rank's rows, number of units in them)."""

    def evaluate(self, model: nn.Module, split: str = "val") -> dict[str, float]:
        """A full pass over ``split``; keys include ``loss``."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Carried state, each tensor batch-first over this rank's rows (gathered over ranks)."""

    def load_state_dict(self, state: dict[str, torch.Tensor], dist: DistInfo) -> None: ...


class Callback:
    """Hooks; set ``trainer.should_stop = True`` to end after the current step (with a checkpoint)."""

    def on_train_start(self, trainer: Trainer) -> None: ...
    def on_step_end(self, trainer: Trainer, logs: dict[str, float] | None) -> None: ...
    def on_eval(self, trainer: Trainer, metrics: dict[str, float]) -> None: ...
    def on_checkpoint(self, trainer: Trainer) -> None: ...
    def on_train_end(self, trainer: Trainer, result: TrainResult) -> None: ...


@dataclass
class TrainResult:
    step: int
    train_loss: float | None
    eval: dict[str, float] = field(default_factory=dict)
    elapsed_s: float = 0.0
    units_per_s: float = 0.0
    unit: str = "tokens"
    history: list[dict[str, Any]] = field(default_factory=list)


def fold_seed(*xs: int) -> int:
    """Mix integers into one 63-bit seed (splitmix64 finalizer, Steele et al. 2014)."""
    h = 0x9E3779B97F4A7C15
    for x in xs:
        h = (h ^ (int(x) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 27)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


_NO_DECAY_MODULES = (
    nn.Embedding,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay weight matrices/kernels; not biases, norm gains, embeddings, positions.

    Why: decoupled weight decay (Loshchilov & Hutter 2019) is a prior that pulls weights toward 0.
    For a bias or a norm gain 0 is not a neutral value (a LayerNorm gain of 1 is), and these few
    parameters cannot overfit by themselves; for an embedding (and positional tables) each row only
    gets gradient when its token occurs, while decay shrinks every row at every step, so rare tokens
    would be pulled to zero (minGPT's reasoning). Tied output weights are the embedding, so they
    are not decayed either. Models may list extra names via ``no_weight_decay()`` (timm's hook).
    """
    extra = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay, seen = [], [], set()
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{mname}.{pname}" if mname else pname
            skip = (
                isinstance(module, _NO_DECAY_MODULES)
                or p.ndim < 2
                or pname.endswith("bias")
                or full in extra
                or pname in extra
            )
            (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


class Trainer:
    """Train ``model`` on ``task`` under ``config``; with ``run_dir`` it logs and checkpoints there.

    ``run_meta`` (JSON) is stored in every checkpoint's config.json so the run can be rebuilt from
    the directory alone (model name + config, data and tokenizer description).
    """

    def __init__(
        self,
        model: nn.Module,
        task: Task,
        config: TrainConfig,
        *,
        run_dir: str | Path | None = None,
        run_meta: dict[str, Any] | None = None,
        callbacks: Sequence[Callback] = (),
        dist: DistInfo | None = None,
    ) -> None:
        self.config = config
        self.task = task
        self.dist = dist or init_distributed(config.device)
        self.device = torch.device(self.dist.device)
        self.model = model.to(self.device)
        if self.device.type == "cpu" and any(isinstance(m, nn.Conv2d) for m in model.modules()):
            # oneDNN's CPU convolutions run ~1.4x faster on NHWC (channels_last) weights and
            # activations (cnn-fmnist bf16 step, measured); values are unchanged, and checkpoints
            # store plain tensors (see checkpoint._match_param_layouts for the resume side).
            self.model = self.model.to(memory_format=torch.channels_last)
        self.run_dir = Path(run_dir) if run_dir is not None else None
        if self.run_dir is not None and self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.run_meta = dict(run_meta or {})
        self.callbacks = list(callbacks)
        self.optimizer = self._make_optimizer()
        self.step = 0
        self.elapsed_s = 0.0  # wall seconds spent training, summed over resumed sessions
        self.should_stop = False
        self.history: list[dict[str, Any]] = []
        self.last_eval: dict[str, float] = {}
        self.train_model: nn.Module = self.model
        if config.compile:
            self.train_model = torch.compile(self.train_model)
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.train_model = DDP(self.train_model, device_ids=ids)

    # ------------------------------------------------------------------ setup
    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        groups = param_groups(self.model, c.weight_decay)
        kw = {"lr": c.lr, "betas": c.betas, "eps": c.eps}
        try:  # one fused kernel per step instead of several per parameter (CPU and CUDA)
            return torch.optim.AdamW(groups, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            return torch.optim.AdamW(groups, **kw)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def restore(self) -> bool:
        """Load the checkpoint in ``run_dir`` if there is one; True if the run resumed."""
        if self.run_dir is None or not has_checkpoint(self.run_dir):
            return False
        cfg, state = load_training_state(self.run_dir, self.model, self.optimizer)
        self.step = int(cfg["step"])
        self.elapsed_s = float(cfg.get("elapsed_s", 0.0))
        if state:
            self.task.load_state_dict(state, self.dist)
        if self.dist.is_main:
            self._truncate_metrics()
        log.info("resumed %s at step %d", self.run_dir, self.step)
        return True

    def _truncate_metrics(self) -> None:
        """Drop log lines written after the checkpoint, so the log of a resumed run is the log of
        an uninterrupted one."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        keep = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue  # a line cut by the kill
            if rec.get("step", 0) <= self.step:
                keep.append(line + "\n")
        tmp = path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(keep), encoding="utf-8")
        tmp.replace(path)
        self.history = [json.loads(x) for x in keep]

    # ------------------------------------------------------------------ loop
    def _lr(self, elapsed: float) -> float:
        c = self.config
        progress = None
        if c.max_time is not None and self.step >= c.warmup_steps:
            by_steps = (self.step - c.warmup_steps) / max(1, c.max_steps - c.warmup_steps)
            progress = max(by_steps, elapsed / c.max_time)
        return lr_at(
            self.step,
            lr=c.lr,
            min_lr=c.final_lr,
            warmup_steps=c.warmup_steps,
            max_steps=c.max_steps,
            schedule=c.schedule,
            progress=progress,
        )

    def _train_step(self, lr: float) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        c = self.config
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        torch.manual_seed(fold_seed(c.seed, self.step, self.dist.rank))  # dropout, augmentation
        total = torch.zeros((), device=self.device)
        units = 0
        for micro in range(c.grad_accum):
            batch = _to_device(
                self.task.train_batch(self.step, micro, c.grad_accum, self.dist), self.device
            )
            last = micro == c.grad_accum - 1
            sync = (
                self.train_model.no_sync()
                if self.dist.enabled and not last
                else contextlib.nullcontext()
            )
            with sync:
                with self._autocast():
                    loss, n = self.task.train_loss(self.train_model, batch)
                (loss / c.grad_accum).backward()
            total += loss.detach().float()
            units += n
        norm = None
        if c.grad_clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        return total / c.grad_accum, units * self.dist.world, norm

    def _log(self, rec: dict[str, Any]) -> None:
        self.history.append(rec)
        if self.run_dir is not None and self.dist.is_main:
            with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")

    def evaluate(self, split: str = "val") -> dict[str, float]:
        """Full pass over ``split`` (rank 0's model; no gradient, no dropout)."""
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast():
                return dict(self.task.evaluate(self.model, split))
        finally:
            self.model.train(was)

    def save(self) -> None:
        """Checkpoint now (collective under DDP: every rank must call it)."""
        state = {k: self.dist.all_gather_cat(v) for k, v in self.task.state_dict().items()}
        if self.run_dir is None or not self.dist.is_main:
            return
        config = {
            **self.run_meta,
            "train": self.config.to_dict(),
            "step": self.step,
            "elapsed_s": round(self.elapsed_s, 3),
            "world_size": self.dist.world,
        }
        save_checkpoint(
            self.run_dir,
            model=self.model,
            optimizer=self.optimizer,
            config=config,
            task_state=state,
        )
        for cb in self.callbacks:
            cb.on_checkpoint(self)

    def fit(self) -> TrainResult:
        c = self.config
        unit = getattr(self.task, "unit", "tokens")
        ckpt_every = c.checkpoint_interval or c.eval_interval or 0
        bar = None
        if c.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            bar = tqdm(total=c.max_steps, initial=self.step, unit="step", dynamic_ncols=True)
        for cb in self.callbacks:
            cb.on_train_start(self)
        self.model.train()
        t0 = time.perf_counter() - self.elapsed_s
        last_t, last_units = time.perf_counter(), 0
        loss_sum = torch.zeros((), device=self.device)
        n_loss, train_loss = 0, None
        flags = torch.zeros(2)  # (elapsed seconds, stop requested), agreed over ranks each step
        while self.step < c.max_steps:
            flags[0], flags[1] = time.perf_counter() - t0, float(self.should_stop)
            self.dist.all_reduce(flags, op="max")
            elapsed, stop = float(flags[0]), bool(flags[1])
            if stop or (c.max_time is not None and elapsed >= c.max_time):
                break
            lr = self._lr(elapsed)
            loss, units, norm = self._train_step(lr)
            loss_sum += loss
            n_loss += 1
            last_units += units
            self.elapsed_s = time.perf_counter() - t0
            logs = None
            if self.step % c.log_interval == 0 or self.step == c.max_steps:
                mean = self.dist.all_reduce(loss_sum / n_loss, op="mean")  # host sync, only here
                now = time.perf_counter()
                rate = last_units / max(now - last_t, 1e-9)
                train_loss = float(mean)
                logs = {
                    "kind": "train",
                    "step": self.step,
                    "loss": train_loss,
                    "lr": lr,
                    f"{unit}_per_s": round(rate, 1),
                    "elapsed_s": round(self.elapsed_s, 3),
                }
                if norm is not None:
                    logs["grad_norm"] = float(norm)
                self._log(logs)
                if bar is not None:
                    bar.set_postfix(
                        loss=f"{train_loss:.4f}", lr=f"{lr:.2e}", **{f"{unit}/s": f"{rate:,.0f}"}
                    )
                loss_sum.zero_()
                n_loss, last_t, last_units = 0, now, 0
            if bar is not None:
                bar.update(self.step - bar.n)
            for cb in self.callbacks:
                cb.on_step_end(self, logs)
            pause = time.perf_counter()
            if c.eval_interval and self.step % c.eval_interval == 0 and self.step < c.max_steps:
                self._eval_and_log()
            if ckpt_every and self.step % ckpt_every == 0 and self.step < c.max_steps:
                self.save()
            last_t += time.perf_counter() - pause  # throughput counts training time only
        if bar is not None:
            bar.close()
        final_rate = 0.0
        if self.history:
            rates = [h[f"{unit}_per_s"] for h in self.history if h.get("kind") == "train"]
            final_rate = rates[-1] if rates else 0.0
        if not self.last_eval or self.last_eval.get("step") != self.step:
            self._eval_and_log()
        self.save()
        result = TrainResult(
            step=self.step,
            train_loss=train_loss,
            eval={k: v for k, v in self.last_eval.items() if k not in ("kind", "step")},
            elapsed_s=self.elapsed_s,
            units_per_s=final_rate,
            unit=unit,
            history=list(self.history),
        )
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result

    def _eval_and_log(self) -> None:
        if not self.dist.is_main or not hasattr(self.task, "evaluate"):
            return
        t = time.perf_counter()
        metrics = self.evaluate("val")
        rec = {"kind": "eval", "step": self.step, "split": "val", **metrics}
        rec["eval_s"] = round(time.perf_counter() - t, 3)
        self.last_eval = rec
        self._log(rec)
        for cb in self.callbacks:
            cb.on_eval(self, metrics)
