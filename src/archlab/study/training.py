"""One training stack: every model of the study trains through :class:`archlab.train.Trainer`.

The study does not keep a loop of its own. :func:`fit` builds a registered model with the
study's sizes, wraps the experiment's data in a Trainer task, and trains it with a
:class:`TrainConfig` — the same optimizer (AdamW with decoupled weight decay on matrices), lr
schedule, clipping, precision rule (``auto``), channels_last conv layout and checkpoint format
that ``archlab train`` uses. Only claims that time single steps (T2, T3, V3, V4) keep their own
timed loops, on the same models.

Each fit is a real run directory under ``<out>/cache/runs/<key>/`` (safetensors + JSON), named by
a hash of everything that decides the trajectory (model, data, recipe, seed, code). A later study
process that needs the same model loads it instead of training again (``--only C3`` after a full
run reuses the shared CNNs), and a run killed half-way resumes from its last checkpoint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from archlab.errors import ArchlabError
from archlab.hardware import resolve_precision

log = logging.getLogger(__name__)

__all__ = ["Fitted", "StreamTask", "clear_memo", "fit", "image_task", "recipe"]

# The study's default optimizer recipe (every fit starts from it; claims override fields).
RECIPE: dict[str, Any] = {
    "lr": 3e-3,
    "warmup_steps": 20,
    "schedule": "cosine",
    "weight_decay": 0.05,
    "betas": (0.9, 0.99),
    "grad_clip": 1.0,
}


def recipe(**over: Any) -> dict[str, Any]:
    """The study recipe with ``over`` applied (steps, batch and lr are the usual ones)."""
    return {**RECIPE, **over}


@dataclass
class Fitted:
    model: nn.Module
    name: str
    params: int
    steps: int
    train_s: float  # wall seconds of training (evaluation excluded)
    final: dict[str, float]  # the task's evaluation after the last step
    history: list[dict[str, Any]]  # the run's metrics.jsonl records
    run_dir: Path | None
    reused: bool  # loaded from an earlier study process


class StreamTask:
    """A Trainer task over batches drawn by ``sample(generator) -> (x, y)``, pure in (seed, step).

    ``loss(model, x, y) -> (mean loss, units)``; ``evaluate(model) -> metrics`` (a fixed set).
    """

    unit = "examples"

    def __init__(
        self,
        sample: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]],
        loss: Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, int]],
        evaluate: Callable[[nn.Module], dict[str, float]],
        seed: int,
    ) -> None:
        self.sample, self._loss, self._evaluate, self.seed = sample, loss, evaluate, seed

    def train_batch(self, step: int, micro: int, grad_accum: int, dist: Any) -> Any:
        from archlab.train.config import fold_seed

        return self.sample(torch.Generator().manual_seed(fold_seed(self.seed, step, micro, 0x57)))

    def train_loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, int]:
        return self._loss(model, *batch)

    def evaluate(self, model: nn.Module, split: str = "val") -> dict[str, float]:
        return dict(self._evaluate(model))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor], dist: Any) -> None:
        pass


def image_task(
    images: Any,
    n_train: int | None,
    batch: int,
    seed: int,
    label_smoothing: float = 0.0,
    n_test: int | None = None,
) -> Any:
    """archlab's ClassificationTask on the study images: epochs over the first ``n_train``
    canvases, evaluated on the test images (fixed steps: nothing is selected on them)."""
    from archlab.train.tasks import ClassificationTask

    x, y = images.train(n_train)
    test = (images.test_x[:n_test], images.test_y[:n_test])
    return ClassificationTask(
        (x, y),
        test,
        test,
        batch_size=batch,
        seed=seed,
        mean=(images.mean,),
        std=(images.std,),
        label_smoothing=label_smoothing,
    )


def _key(blob: Mapping[str, Any]) -> str:
    from archlab.study.runner import code_hash

    blob = {**blob, "code": code_hash(), "torch": torch.__version__}
    text = json.dumps(blob, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_MEMO: dict[str, Fitted] = {}


def clear_memo() -> None:
    _MEMO.clear()


def fit(
    ctx: Any,
    name: str,
    model_name: str,
    model_cfg: Mapping[str, Any],
    task: Any,
    train: Mapping[str, Any],
    *,
    seed: int,
    data_key: Mapping[str, Any],
) -> Fitted:
    """Train ``create_model(model_name, **model_cfg)`` on ``task`` under ``train`` (TrainConfig
    fields: max_steps, batch_size, lr, ...), or load the identical run trained before.

    ``data_key`` describes the data (sizes, distances, source) so two different datasets never
    share a run directory. The initial weights are a function of ``seed`` alone (as
    ``archlab train``), the data order of (seed, step).
    """
    from archlab.models import create_model
    from archlab.train.config import TrainConfig
    from archlab.train.distributed import DistInfo
    from archlab.train.trainer import Trainer

    cfg = TrainConfig(
        **{
            **train,
            "seed": seed,
            "device": ctx.device.type,
            "progress": False,
            "eval_interval": 0,
            "log_interval": max(1, int(train.get("max_steps", 100)) // 20),
        }
    )
    torch.manual_seed(seed)
    model = create_model(model_name, **model_cfg)
    meta = {
        "task": "study",
        "model": {"name": model_name, "config": dataclasses.asdict(model.config)},
        "study": {"name": name, "data": dict(data_key)},
    }
    # ``auto`` resolves per machine (bf16 on AVX512-BF16, fp32 on AVX2): a model trained in one
    # precision is not the model the other trains, so the resolved value names the run too.
    prec = resolve_precision(cfg.precision, str(ctx.device))[0]
    key = _key({"model": meta["model"], "data": dict(data_key), "train": cfg.to_dict(), "p": prec})
    if key in _MEMO:
        return _MEMO[key]
    run_dir = ctx.runs_dir / f"{name}-{key}" if ctx.runs_dir is not None else None
    steps = int(cfg.max_steps)
    dist = DistInfo(device=str(ctx.device))
    trainer = Trainer(model, task, cfg, run_dir=run_dir, run_meta=meta, dist=dist)
    if run_dir is not None:
        try:
            done = _finished(run_dir, steps, ctx.device, name)
            if done is not None:  # finished before: load, do not retrain
                _MEMO[key] = done
                return done
            if not trainer.restore():  # a run killed half-way continues from its checkpoint
                (run_dir / "metrics.jsonl").unlink(missing_ok=True)  # lines of a killed start
        except ArchlabError as e:  # the study's own cache: a damaged model is trained again
            log.warning("study: trained model %s is damaged (%s); training it again", run_dir, e)
            shutil.rmtree(run_dir, ignore_errors=True)
            torch.manual_seed(seed)
            model = create_model(model_name, **model_cfg)
            trainer = Trainer(model, task, cfg, run_dir=run_dir, run_meta=meta, dist=dist)
    result = trainer.fit()
    model.eval()
    train_s = result.elapsed_s
    out = Fitted(
        model,
        name,
        _params(model),
        result.step,
        train_s,
        dict(result.eval),
        list(result.history),
        run_dir,
        False,
    )
    _MEMO[key] = out
    return out


def _finished(run_dir: Path, steps: int, device: torch.device, name: str) -> Fitted | None:
    """The run in ``run_dir`` if it trained all ``steps`` (None if it did not, or is not there);
    ArchlabError if it is damaged (unreadable files, no evaluation logged at its last step)."""
    from archlab.models import load
    from archlab.train.checkpoint import has_checkpoint, read_run_config

    if not has_checkpoint(run_dir):
        return None
    saved = read_run_config(run_dir)
    if saved["step"] != steps:
        return None
    history = _history(run_dir)
    evals = [h for h in history if h.get("kind") == "eval"]
    if not evals or evals[-1].get("step") != steps:
        raise ArchlabError(f"{run_dir / 'metrics.jsonl'} has no evaluation at step {steps}")
    trained = load(run_dir, device=device).eval()
    elapsed = float(saved.get("elapsed_s", 0.0))
    return Fitted(
        trained, name, _params(trained), steps, elapsed, _final(evals), history, run_dir, True
    )


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _final(evals: list[dict[str, Any]]) -> dict[str, float]:
    if not evals:
        return {}
    return {k: v for k, v in evals[-1].items() if k not in ("kind", "step", "split", "eval_s")}


def _history(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    out = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(line))
            except (ValueError, RecursionError):
                continue
    return out
