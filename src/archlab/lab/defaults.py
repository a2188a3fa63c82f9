"""The lab's default models, trained on first start from the data that ships with archlab.

Six small runs — a tanh RNN, an LSTM, a GRU and a GPT on Tiny Shakespeare (characters, context
64), a CNN and a ViT on the embedded Fashion-MNIST subset — trained one after the other through
:func:`archlab.train.runs.train_lm` / ``train_image`` (the one training stack) into ordinary run
directories under ``~/.cache/archlab/lab/``; later starts load them in a second.

Budget: :data:`TRAIN_SECONDS` of training split by :attr:`DefaultRun.share`, plus each run's data
loading, final full-pass evaluation and checkpoint (~1-2 s each on 2 cores), so the whole first
start stays within 90 s (``benchmarks/lab_speed.py`` measures it: 82.9 s at load average 2.2 on
2 cores; 102 s at load 4). Sizes and learning rates were picked for that budget on 2 CPU cores,
where a run gets 70-270 steps depending on the machine's load: at 100 steps (measured here) the
tanh RNN and the GRU reach 2.13 nats/char on the validation text, the LSTM 2.14 (at lr 3e-3 it was
still at 3.27: short budgets want the higher rate), the GPT ~2.46 (6e-3 is gpt-nano's recipe). In
the benchmark's first start they reached 2.39 / 2.26 / 2.25 / 2.45 (tanh RNN / LSTM / GRU / GPT)
and the CNN 76.0%, the patch-7 ViT 80.3% validation accuracy. Enough to compare the
architectures' behaviour, not their best: train longer with ``--train-seconds``, or pass your own
``archlab train`` runs.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from archlab.errors import ArchlabError
from archlab.train.trainer import Callback

__all__ = [
    "DEFAULT_RUNS",
    "TRAIN_SECONDS",
    "TRAIN_THREADS",
    "DefaultRun",
    "TrainingProgress",
    "default_models_dir",
    "missing_defaults",
    "train_defaults",
]

log = logging.getLogger(__name__)

TRAIN_SECONDS = 66.0  # of training, all six runs together; ~12-25 s more for the rest (load)
# One torch thread per run. These models are small (a step is many small matmuls), and the lab's
# machine is shared: with another process busy on one of 2 cores, 2 threads made the tanh RNN's
# final evaluation 2.0 s -> 12-20 s and the GPT's 5.4 s -> 21-23 s (OpenMP threads waiting on
# each other; measured here). One thread also leaves the other core to the web server, which
# starts while the first run trains.
TRAIN_THREADS = 1


@dataclass(frozen=True)
class DefaultRun:
    name: str  # the run directory's name, so also the model's name in the lab
    task: str  # "lm" | "image"
    arch: str
    model: Mapping[str, Any]  # model config overrides
    train: Mapping[str, Any]  # TrainConfig fields
    share: float  # of the training budget


_RNN_TRAIN = {"batch_size": 32, "lr": 1e-2, "warmup_steps": 20}
_GPT_TRAIN = {"batch_size": 32, "lr": 6e-3, "warmup_steps": 20}
_RNN = {"layers": 1, "d_model": 128, "hidden_size": 256, "dropout": 0.0}
_IMAGE = {"batch_size": 64, "lr": 3e-3, "warmup_steps": 30}

DEFAULT_RUNS: tuple[DefaultRun, ...] = (
    DefaultRun("rnn", "lm", "rnn", _RNN, _RNN_TRAIN, 0.13),
    # PyTorch's gate init, not forget_bias=1: with it the LSTM (trained on carried state, as the
    # RNN tasks are) predicted 6.9 nats/char for its first ~1000 characters from a zero state
    # (2.35 without it; 100 steps, measured) - and the lab reads every prompt from a zero state.
    DefaultRun("lstm", "lm", "lstm", _RNN, _RNN_TRAIN, 0.15),
    DefaultRun("gru", "lm", "gru", _RNN, _RNN_TRAIN, 0.15),
    DefaultRun("gpt", "lm", "gpt", {"layers": 2, "heads": 4, "d_model": 96}, _GPT_TRAIN, 0.17),
    DefaultRun(
        "cnn", "image", "cnn", {"channels": (16, 32, 64), "convs_per_stage": 1}, _IMAGE, 0.14
    ),
    # patch 7: a 4 x 4 grid (16 tokens + class token), twice the images/s of patch 4 here
    DefaultRun(
        "vit",
        "image",
        "vit",
        {"patch_size": 7, "d_model": 64, "layers": 4, "heads": 4, "mlp_ratio": 2.0},
        _IMAGE,
        0.26,
    ),
)


def default_models_dir() -> Path:
    return Path.home() / ".cache" / "archlab" / "lab"


def missing_defaults(root: Path) -> list[DefaultRun]:
    """The default runs without a finished checkpoint under ``root``."""
    from archlab.train.checkpoint import has_checkpoint

    return [r for r in DEFAULT_RUNS if not has_checkpoint(root / r.name)]


@dataclass
class TrainingProgress:
    """First-start training, as the terminal and the page show it (updated from the trainer)."""

    runs: list[str] = field(default_factory=list)
    current: str = ""
    index: int = 0  # 1-based index of the current run
    fraction: float = 0.0  # of the whole budget, 0..1
    loss: float | None = None
    done: bool = False
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def update(self, **kw: Any) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, v)

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "training": bool(self.runs) and not self.done,
                "runs": list(self.runs),
                "current": self.current,
                "index": self.index,
                "fraction": round(self.fraction, 4),
                "loss": self.loss,
                "done": self.done,
                "error": self.error,
                "elapsed_s": round(time.monotonic() - self.started, 1),
            }

    def line(self) -> str:
        s = self.snapshot()
        bar = "#" * round(20 * s["fraction"])
        loss = f"  loss {s['loss']:.3f}" if s["loss"] is not None else ""
        return (
            f"training default model {s['index']}/{len(s['runs'])} {s['current']:<5} "
            f"[{bar:<20}] {s['fraction']:4.0%}  {s['elapsed_s']:.0f} s{loss}"
        )


class _Report(Callback):
    """Moves the progress bar with the run's clock (the budget is wall time)."""

    def __init__(self, progress: TrainingProgress, before: float, share: float, total: float):
        self.progress, self.before, self.share, self.total = progress, before, share, total
        self.last_log = 0.0

    def on_step_end(self, trainer: Any, logs: dict[str, float] | None) -> None:
        within = min(1.0, trainer.elapsed_s / trainer.config.max_time)
        kw: dict[str, Any] = {"fraction": (self.before + self.share * within) / self.total}
        if logs is not None:
            kw["loss"] = logs["loss"]
        self.progress.update(**kw)
        now = time.monotonic()
        if now - self.last_log >= 3.0:
            self.last_log = now
            log.info("%s", self.progress.line())


def train_defaults(
    root: Path,
    seconds: float = TRAIN_SECONDS,
    progress: TrainingProgress | None = None,
    runs: Sequence[DefaultRun] | None = None,
    threads: int | None = None,
) -> list[Path]:
    """Train the missing default runs (or ``runs``) into ``root``; returns their directories (all
    six defaults when ``runs`` is None).

    ``seconds`` is the training budget of all six together; runs that already exist are kept
    and their share is not re-spent. ``threads``: torch threads (default :data:`TRAIN_THREADS`).
    """
    from archlab.train.checkpoint import is_run_dir
    from archlab.train.config import TrainConfig
    from archlab.train.runs import ImageRunSpec, LMRunSpec, train_image, train_lm

    if not seconds > 0:
        raise ArchlabError(f"the training budget must be > 0 seconds, got {seconds}")
    todo = list(missing_defaults(root) if runs is None else runs)
    progress = progress or TrainingProgress()
    total = sum(r.share for r in todo) or 1.0
    progress.update(runs=[r.name for r in todo], started=time.monotonic())
    before = 0.0
    for i, r in enumerate(todo, 1):
        out = root / r.name
        if out.exists() and is_run_dir(out):  # a run cut short earlier: ours, start it again
            shutil.rmtree(out)
        progress.update(current=r.name, index=i, loss=None)
        log.info("%s", progress.line())
        config = TrainConfig(
            max_steps=None,
            max_time=seconds * r.share,
            progress=False,
            log_interval=10,
            threads=threads or TRAIN_THREADS,
            **r.train,
        )
        cb = [_Report(progress, before, r.share, total)]
        if r.task == "lm":
            spec = LMRunSpec(
                arch=r.arch,
                data="tinyshakespeare",
                tokenizer="char",
                block_size=64,
                model=dict(r.model),
            )
            train_lm(spec, config, out, callbacks=cb)
        else:
            image = ImageRunSpec(
                arch=r.arch,
                data="fashion-mnist-subset",
                augment=False,
                val_size=1000,
                model=dict(r.model),
            )
            train_image(image, config, out, callbacks=cb)
        before += r.share
    progress.update(fraction=1.0, done=True)
    if todo:
        log.info("%s", progress.line())
    return [root / r.name for r in (DEFAULT_RUNS if runs is None else todo)]
