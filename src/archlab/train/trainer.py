"""A task-agnostic Trainer (after minGPT's: it knows nothing about GPTs, RNNs or CNNs).

The Trainer owns the loop: AdamW or SGD, warmup + cosine/linear lr, gradient accumulation and
clipping, bf16 autocast, DDP, periodic full-pass evaluation, progress bar, JSONL metrics, atomic
checkpoints, bit-identical resume, and a stop with :class:`TrainingDiverged` (the step named,
the last good checkpoint kept) when the loss turns NaN or infinite. A :class:`Task` owns
everything about the problem: which rows form the batch of step ``s`` (a pure function of seed
and ``s``), the loss, the evaluation, and any state carried between batches (an RNN's hidden
state for truncated BPTT).

Reproducibility contract (CPU, same thread count): the data of step ``s`` come from
``(seed, s)`` and torch's global generator is reseeded from ``(seed, s, rank)`` for each step,
so a run of N steps and a run stopped at step k and resumed to N produce identical weights and
identical losses, without saving iterator or generator state.

No global side effects: dropout draws from torch's global generator (``nn.Dropout`` takes no
generator), so each step runs inside ``torch.random.fork_rng`` — the caller's generator state is
restored after every step. The caller's model is left as given: a CPU conv net trains in
channels_last inside :meth:`Trainer.fit` and gets its own layout back when ``fit`` returns (or
raises). A Trainer never joins a process group by itself: data parallelism is the caller's
``dist`` (:func:`archlab.train.distributed.init_distributed` under torchrun); without one it is a
lone process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from archlab.errors import ArchlabError
from archlab.train.checkpoint import (
    has_checkpoint,
    load_training_state,
    match_param_layouts,
    save_checkpoint,
)
from archlab.train.config import TrainConfig, fold_seed
from archlab.train.distributed import DistInfo, lone_process
from archlab.train.muon import Muon, muon_param_groups
from archlab.train.optim import param_groups
from archlab.train.schedule import lr_at

__all__ = [
    "Callback",
    "Task",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "TrainingDiverged",
    "fold_seed",
    "param_groups",
]

log = logging.getLogger(__name__)


class Task(Protocol):
    """What the Trainer needs from a problem. Batches are CPU tensors (or tuples/dicts of them)."""

    unit: str  # what throughput counts: "tokens" or "images"

    def train_batch(self, step: int, micro: int, grad_accum: int, dist: DistInfo) -> Any:
        """This rank's share of micro-batch ``micro`` of optimizer step ``step`` (a pure function
        of seed and step)."""

    def train_loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        """(mean loss over this rank's rows, number of units in them)."""

    def evaluate(self, model: nn.Module, split: str = "val") -> dict[str, float]:
        """A full pass over ``split``; keys include ``loss``."""

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Carried state, each tensor batch-first over this rank's rows (gathered over ranks)."""

    def load_state_dict(self, state: dict[str, torch.Tensor], dist: DistInfo) -> None: ...


class TrainingDiverged(ArchlabError):
    """The loss (or the weights) became NaN or infinite: training stopped at ``step``, nothing of
    that step was logged or saved, and the run directory keeps its last good checkpoint."""

    def __init__(self, step: int, what: str, checkpoint: int | None, run_dir: Path | None) -> None:
        self.step, self.checkpoint = step, checkpoint
        kept = (
            f"the last good checkpoint (step {checkpoint}) is kept in {run_dir}"
            if checkpoint is not None
            else "no checkpoint had been saved"
        )
        super().__init__(
            f"training diverged: {what} at step {step}; {kept}. Lower --lr, or clip gradients "
            "(--grad-clip)"
        )


class Callback:
    """Hooks; ``trainer.should_stop = True`` ends the run after the current step (checkpointed)."""

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
    elapsed_s: float = 0.0  # wall seconds of training over all sessions (eval included)
    units_per_s: float = 0.0  # this session's mean throughput, eval and checkpoints excluded
    unit: str = "tokens"
    history: list[dict[str, Any]] = field(default_factory=list)


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
    the directory alone (model name + config, data and tokenizer description). ``dist``: this
    process's place in a process group the caller joined (default: a lone process on
    ``config.device``).
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
        from archlab.hardware import resolve_precision

        self.config = config
        self.task = task
        self.dist = dist or lone_process(config.device)
        self.device = torch.device(self.dist.device)
        # "auto": bf16 only where it is measured faster on this device (archlab.hardware).
        self.precision, _ = resolve_precision(config.precision, self.device)
        self.model = model.to(self.device)
        # oneDNN's CPU convolutions run ~1.4x faster on NHWC (channels_last) weights and
        # activations (cnn-fmnist bf16 step, measured); values are unchanged, checkpoints store
        # plain tensors, and fit() gives the caller's layout back (see _training_layout).
        self.channels_last = self.device.type == "cpu" and any(
            isinstance(m, nn.Conv2d) for m in model.modules()
        )
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
        # Train losses since the last log line (the line reports their mean); checkpointed so a
        # run resumed between two log lines writes the same next line as an uninterrupted one.
        self._loss_sum = torch.zeros((), device=self.device)
        self._n_loss = 0
        self.last_eval: dict[str, float] = {}
        # Divergence is watched on the device (no host sync per step): the first step whose loss
        # was not finite (-1: none), read where the loop syncs anyway (log lines, checkpoints).
        self._bad_step = torch.full((), -1, dtype=torch.int64, device=self.device)
        self._saved_step: int | None = None  # the last checkpoint written or resumed from
        self._ddp: nn.Module | None = None  # built at the first fit(), in the training layout
        self._train_model: nn.Module | None = None

    # ------------------------------------------------------------------ setup
    @property
    def train_model(self) -> nn.Module:
        """The module the training forward runs: ``torch.compile(DDP(model))`` as configured.

        DDP first, then compile (the order the PyTorch DDP + compile notes recommend: dynamo
        splits the graph at DDP's bucket boundaries so communication overlaps the backward).
        Built lazily, after the model is in its training layout, so DDP's gradient buckets take
        the parameters' channels_last strides.
        """
        if self._train_model is None:
            m = self.model
            if self.dist.enabled:
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [self.device.index] if self.device.type == "cuda" else None
                m = self._ddp = DDP(m, device_ids=ids)
            self._train_model = torch.compile(m) if self.config.compile else m
        return self._train_model

    @contextlib.contextmanager
    def _training_layout(self) -> Any:
        """channels_last parameters (and optimizer moments) for a CPU conv net while training;
        each tensor's own strides restored afterwards, in place (same Parameter objects)."""
        if not self.channels_last:
            yield
            return
        tensors = [*self.model.parameters(), *self.model.buffers()]
        strides = [t.stride() for t in tensors]
        self.model.to(memory_format=torch.channels_last)
        match_param_layouts(self.optimizer)  # fused AdamW needs moments in the param's layout
        try:
            yield
        finally:
            with torch.no_grad():
                for t, stride in zip(tensors, strides, strict=True):
                    if t.stride() != stride:
                        t.data = torch.empty_strided(
                            t.shape, stride, dtype=t.dtype, device=t.device
                        ).copy_(t)
            match_param_layouts(self.optimizer)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "muon":  # the iteration in bf16 only where bf16 was measured faster
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float32
            return Muon(
                muon_param_groups(self.model, c.decay),
                lr=c.lr,
                betas=c.betas,
                eps=c.eps,
                momentum=c.muon_momentum,
                ns_dtype=dtype,
            )
        groups = param_groups(self.model, c.decay)
        if c.optimizer == "sgd":
            cls, kw = torch.optim.SGD, {"lr": c.lr, "momentum": c.momentum}
        else:
            cls, kw = torch.optim.AdamW, {"lr": c.lr, "betas": c.betas, "eps": c.eps}
        try:  # one fused kernel per step instead of several per parameter (CPU and CUDA)
            return cls(groups, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            return cls(groups, **kw)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def restore(self) -> bool:
        """Load the checkpoint in ``run_dir`` if there is one; True if the run resumed."""
        if self.run_dir is None or not has_checkpoint(self.run_dir):
            return False
        cfg, state = load_training_state(self.run_dir, self.model, self.optimizer)
        self.step = int(cfg["step"])
        self._saved_step = self.step
        self.elapsed_s = float(cfg.get("elapsed_s", 0.0))
        window = cfg.get("log_window") or {"loss_sum": 0.0, "steps": 0}
        self._loss_sum.fill_(float(window["loss_sum"]))
        self._n_loss = int(window["steps"])
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
            except (ValueError, RecursionError):  # a line cut by the kill, or nested too deep
                continue
            if rec.get("step", 0) <= self.step:
                keep.append(line + "\n")
        tmp = path.with_name(".metrics.jsonl.tmp")
        tmp.write_text("".join(keep), encoding="utf-8")
        tmp.replace(path)
        self.history = [json.loads(x) for x in keep]
        # The evaluation logged at the checkpoint's step (a finished run resumed): not repeated.
        evals = [r for r in self.history if r.get("kind") == "eval" and r.get("step") == self.step]
        self.last_eval = evals[-1] if evals else {}

    # ------------------------------------------------------------------ loop
    def _lr(self, elapsed: float) -> float:
        c = self.config
        progress = None
        if c.max_time is not None and self.step >= c.warmup_steps:
            by_steps = 0.0
            if c.max_steps is not None:
                by_steps = (self.step - c.warmup_steps) / max(1, c.max_steps - c.warmup_steps)
            progress = max(by_steps, elapsed / c.max_time)
        return lr_at(
            self.step,
            lr=c.lr,
            min_lr=c.final_lr,
            warmup_steps=c.warmup_steps,
            max_steps=c.max_steps or 0,
            schedule=c.schedule,
            progress=progress,
        )

    def _train_step(self, lr: float) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        c = self.config
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        cuda = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=cuda):  # the caller's generator state comes back
            # Dropout (and anything else drawing from torch's generator) is a function of the
            # step. Seed the device's generator directly: torch.manual_seed also walks every
            # backend (cuda, xpu, mtia) through lazy-init bookkeeping, ~3 ms a step.
            seed = fold_seed(c.seed, self.step, self.dist.rank)
            torch.default_generator.manual_seed(seed)
            if cuda:
                torch.cuda.manual_seed(seed)
            return self._step_body()

    def _step_body(self) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        c = self.config
        total = torch.zeros((), device=self.device)
        units = 0
        for micro in range(c.grad_accum):
            batch = _to_device(
                self.task.train_batch(self.step, micro, c.grad_accum, self.dist), self.device
            )
            last = micro == c.grad_accum - 1
            sync = (
                self._ddp.no_sync()
                if self._ddp is not None and not last
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
        """Full pass over ``split`` (rank 0's model; no gradient, no dropout), in fp32 whatever
        the training precision, so a reported loss does not depend on how the run trained."""
        was = self.model.training
        self.model.eval()
        try:
            with torch.no_grad():
                return dict(self.task.evaluate(self.model, split))
        finally:
            self.model.train(was)

    def check_finite(self) -> None:
        """Raise :class:`TrainingDiverged` if a loss since the start was NaN/inf (a host sync)."""
        bad = int(self.dist.all_reduce(self._bad_step.clone(), op="max"))
        if bad >= 0:
            raise TrainingDiverged(bad, "the loss is not finite", self._saved_step, self.run_dir)

    def save(self) -> None:
        """Checkpoint now (collective under DDP: every rank must call it). Never saves a diverged
        model: a NaN/inf loss since the start, or a non-finite weight, raises TrainingDiverged
        and the previous checkpoint stays."""
        self.check_finite()
        if not all(bool(torch.isfinite(p).all()) for p in self.model.parameters()):
            raise TrainingDiverged(
                self.step, "a weight is not finite", self._saved_step, self.run_dir
            )
        state = {k: self.dist.all_gather_cat(v) for k, v in self.task.state_dict().items()}
        window = self.dist.all_reduce(self._loss_sum.clone(), op="mean")
        if self.run_dir is None or not self.dist.is_main:
            return
        config = {
            **self.run_meta,
            "train": self.config.to_dict(),
            "step": self.step,
            "elapsed_s": round(self.elapsed_s, 3),
            "world_size": self.dist.world,
            "log_window": {"loss_sum": float(window), "steps": self._n_loss},
        }
        save_checkpoint(
            self.run_dir,
            model=self.model,
            optimizer=self.optimizer,
            config=config,
            task_state=state,
        )
        self._saved_step = self.step
        for cb in self.callbacks:
            cb.on_checkpoint(self)

    def fit(self) -> TrainResult:
        """Train to ``max_steps`` / ``max_time`` (from the restored step, if any), evaluate,
        checkpoint; the model comes back in the layout it was given, even on an exception."""
        with self._training_layout():
            return self._fit()

    def _fit(self) -> TrainResult:
        c = self.config
        unit = getattr(self.task, "unit", "tokens")
        ckpt_every = c.checkpoint_interval or c.eval_interval or 0
        max_steps = c.max_steps if c.max_steps is not None else float("inf")
        bar = None
        if c.progress and self.dist.is_main:
            from tqdm.auto import tqdm

            # disable=None: a bar on a terminal only, not \r-lines in a redirected log
            bar = tqdm(
                total=c.max_steps, initial=self.step, unit="step", dynamic_ncols=True, disable=None
            )
        for cb in self.callbacks:
            cb.on_train_start(self)
        self.model.train()
        t0 = time.perf_counter() - self.elapsed_s
        last_t, last_units = time.perf_counter(), 0
        session_t, session_units, paused = last_t, 0, 0.0
        # A finished run resumed trains no step: it reports the loss it logged at its last step.
        train_loss = next(
            (
                r["loss"]
                for r in self.history
                if r.get("kind") == "train" and r["step"] == self.step
            ),
            None,
        )
        while self.step < max_steps:
            elapsed, stop = self._agree(time.perf_counter() - t0, self.should_stop)
            if stop or (c.max_time is not None and elapsed >= c.max_time):
                # The budget is spent at this check, which can come a hair after the last step's
                # end: report the time that stopped the run (elapsed_s >= max_time).
                self.elapsed_s = max(self.elapsed_s, elapsed)
                break
            lr = self._lr(elapsed)
            loss, units, norm = self._train_step(lr)
            bad = ~torch.isfinite(loss) & (self._bad_step < 0)
            self._bad_step = torch.where(bad, self.step, self._bad_step)  # self.step: 1-based
            self._loss_sum += loss
            self._n_loss += 1
            last_units += units
            session_units += units
            self.elapsed_s = time.perf_counter() - t0
            logs = None
            if self.step % c.log_interval == 0 or self.step == max_steps:
                self.check_finite()  # before the line is written: no NaN in the log
                mean = self.dist.all_reduce(self._loss_sum / self._n_loss, op="mean")  # host sync
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
                self._loss_sum.zero_()
                self._n_loss, last_t, last_units = 0, now, 0
            if bar is not None:
                bar.update(self.step - bar.n)
            for cb in self.callbacks:
                cb.on_step_end(self, logs)
            pause = time.perf_counter()
            if c.eval_interval and self.step % c.eval_interval == 0 and self.step < max_steps:
                self.check_finite()  # no evaluation of a diverged model in the log
                self._eval_and_log()
            if ckpt_every and self.step % ckpt_every == 0 and self.step < max_steps:
                self.save()
            pause = time.perf_counter() - pause
            last_t += pause  # throughput counts training time only
            paused += pause
        self.check_finite()
        if self._n_loss:  # stopped between log lines: report (not log) the open window's mean
            train_loss = float(self.dist.all_reduce(self._loss_sum / self._n_loss, op="mean"))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        train_s = time.perf_counter() - session_t - paused
        if bar is not None:
            bar.close()
        if not self.last_eval or self.last_eval.get("step") != self.step:
            self._eval_and_log()
        self.save()
        result = TrainResult(
            step=self.step,
            train_loss=train_loss,
            eval={k: v for k, v in self.last_eval.items() if k not in ("kind", "step")},
            elapsed_s=self.elapsed_s,
            units_per_s=session_units / train_s if session_units else 0.0,
            unit=unit,
            history=list(self.history),
        )
        for cb in self.callbacks:
            cb.on_train_end(self, result)
        return result

    def _agree(self, elapsed: float, stop: bool) -> tuple[float, bool]:
        """Ranks adopt the largest elapsed time and any stop request, so all stop at one step
        and compute the same time-based lr (one tiny collective per step, only under DDP)."""
        if not self.dist.enabled:
            return elapsed, stop
        flags = torch.tensor([elapsed, float(stop)], dtype=torch.float64, device=self.device)
        self.dist.all_reduce(flags, op="max")  # on the device: NCCL reduces only CUDA tensors
        return float(flags[0]), bool(flags[1])

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
