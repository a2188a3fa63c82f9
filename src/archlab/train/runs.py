"""Training runs end to end: data + tokenizer + model + task + Trainer + run directory.

``train_lm`` and ``train_image`` are what ``archlab train lm|image`` call. A run is described by a
spec (:class:`LMRunSpec` / :class:`ImageRunSpec`) and a :class:`TrainConfig`; both are stored in the
run's config.json, so ``--resume`` rebuilds exactly the same run from the directory and continues
it (only ``max_steps``, ``max_time``, the intervals and ``progress`` may change on resume; other
differences are reported and ignored, because they would change the trajectory).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import platform
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from archlab.errors import ArchlabError
from archlab.train.checkpoint import (
    RUN_FORMAT,
    prepare_run_dir,
    read_run_config,
    write_json_atomic,
)
from archlab.train.distill import (
    Distillation,
    check_distill_args,
    check_teacher,
    teacher_logits,
)
from archlab.train.distributed import DistInfo, init_distributed
from archlab.train.tasks import ClassificationTask, LMTask, is_stateful
from archlab.train.trainer import Callback, TrainConfig, Trainer, TrainResult

__all__ = ["ImageRunSpec", "LMRunSpec", "train_image", "train_lm"]

log = logging.getLogger(__name__)

# TrainConfig fields a resumed run may change without changing what it computes.
_RESUMABLE = {
    "max_steps",
    "max_time",
    "eval_interval",
    "checkpoint_interval",
    "log_interval",
    "progress",
    "threads",
}


def _f(default: Any, help: str, **meta: Any) -> Any:
    if isinstance(default, dict):
        return field(default_factory=dict, metadata={"help": help, **meta})
    return field(default=default, metadata={"help": help, **meta})


def _not_empty(flag: str, value: str | None) -> None:
    """An empty path is not the current directory (``Path("")`` is ``.``): refuse it."""
    if value is not None and not str(value).strip():
        raise ArchlabError(f"{flag} is empty; give a name or a path")


@dataclass
class LMRunSpec:
    """What a language-model run trains on and with which model (help text: ``archlab train``)."""

    arch: str = _f("gpt", "rnn, lstm, gru, gpt, or a preset/recipe (gpt-nano, lstm-char, lstm-wt2)")
    data: str | None = _f(
        None,
        "corpus: tinyshakespeare (ships with archlab), wikitext2, pydoc, or a text file/folder "
        "(default: tinyshakespeare)",
    )
    tokenizer: str = _f("char", "tokenizer", choices=("char", "word", "bpe"))
    vocab_size: int | None = _f(None, "BPE vocabulary size / word vocabulary cap (bpe, word)")
    # GPT context = RNN BPTT length; None: the model preset's block_size, else 64.
    block_size: int | None = _f(None, "GPT context = RNN BPTT length in tokens (default: 64)")
    model: dict[str, Any] = _f({}, "model config overrides", cli=False)
    eval_stride: int | None = _f(
        None, "GPT evaluation window stride in tokens (default: block size); GPT only"
    )

    def __post_init__(self) -> None:
        _not_empty("--data", self.data)
        if self.block_size is not None and self.block_size < 1:
            raise ArchlabError(f"--block-size must be >= 1, got {self.block_size}")
        if self.tokenizer not in ("char", "word", "bpe"):
            raise ArchlabError(f"unknown tokenizer {self.tokenizer!r}; use char, word or bpe")
        if self.vocab_size is not None and self.vocab_size < 1:
            raise ArchlabError(f"--vocab-size must be >= 1, got {self.vocab_size}")
        if self.vocab_size is not None and self.tokenizer == "char":
            raise ArchlabError(
                "--vocab-size has no effect with --tokenizer char (the vocabulary is the text's "
                "characters); use --tokenizer bpe or word"
            )
        if self.eval_stride is not None and self.eval_stride < 1:
            raise ArchlabError(f"--eval-stride must be >= 1, got {self.eval_stride}")


@dataclass
class ImageRunSpec:
    """What an image-classification run trains on and with which model."""

    arch: str = _f("cnn", "cnn, resnet, vit, mlp, or a preset/recipe (cnn-fmnist, vit-fmnist, ...)")
    data: str = _f(
        "fashion-mnist",
        "fashion-mnist, fashion-mnist-subset (ships with archlab), mnist or cifar10",
    )
    train_size: int | None = _f(None, "train on a deterministic stratified subset of N images")
    # Images carved from the official train set for validation; None: min(5000, 10% of train).
    val_size: int | None = _f(
        None, "images held out of train for validation (default: min(5000, 10%% of train))"
    )
    augment: bool = _f(True, "random crop (+ flips where they keep the label), train only")
    model: dict[str, Any] = _f({}, "model config overrides", cli=False)
    # Knowledge distillation (archlab.train.distill): a trained image run as teacher.
    teacher: str | None = _f(
        None,
        "distil from this trained image run (same data and val split; DeiT / Hinton 2015)",
        metavar="RUN_DIR",
    )
    distill: str = _f("hard", "distillation loss (hard: DeiT)", choices=("hard", "soft"))
    distill_alpha: float = _f(0.5, "weight of the teacher's term, in [0, 1]")
    distill_tau: float = _f(1.0, "soft distillation temperature")

    def __post_init__(self) -> None:
        _not_empty("--data", self.data)
        _not_empty("--teacher", self.teacher)
        if self.val_size is not None and self.val_size < 1:
            raise ArchlabError(
                f"--val-size must be >= 1 (a run needs validation images), got {self.val_size}"
            )
        if self.teacher is not None:
            check_distill_args(self.distill, self.distill_alpha, self.distill_tau)
            self.teacher = str(Path(self.teacher).resolve())  # a resume may run from elsewhere


def _environment(dist: DistInfo) -> dict[str, Any]:
    from archlab import __version__

    return {
        "archlab": __version__,
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "device": dist.device,
        "world_size": dist.world,
        "torch_threads": torch.get_num_threads(),
        "argv": sys.argv,
    }


def _hardware(config: TrainConfig, dist: DistInfo) -> tuple[TrainConfig, dict[str, Any]]:
    """Resolve ``precision="auto"`` and the thread count for this device; what was asked for and
    why each value was chosen go to resolved_config.json."""
    from archlab.hardware import attention_path, capabilities, physical_cores, resolve_precision

    dev = torch.device(dist.device)
    precision, why = resolve_precision(config.precision, dev)
    threads = config.threads
    if threads is None:  # physical cores, shared by the ranks of one machine
        threads = max(1, physical_cores() // max(1, dist.local_world))
    caps = capabilities(dev)
    info = {
        "requested": {"precision": config.precision, "threads": config.threads},
        "precision": {"resolved": precision, "why": why},
        "threads": threads,
        "attention_path": {
            "fp32": attention_path(torch.float32, dev.type),
            "bf16": attention_path(torch.bfloat16, dev.type),
        },
        "bf16_rnn_kernel": caps.bf16_rnn,
        "capabilities": caps.to_dict(),
    }
    if precision == "bf16" and dev.type == "cpu" and not caps.bf16_rnn:
        info["note"] = "recurrent kernels (LSTM/GRU/RNN) stay in fp32: no bf16 kernel on this CPU"
    return dataclasses.replace(config, precision=precision, threads=threads), info


def _resolve_resume(
    out: Path, spec: Any, config: TrainConfig, task: str, provenance: dict[str, Any] | None
) -> tuple[Any, TrainConfig]:
    """The saved spec and config of the run in ``out`` (with the resumable fields of ``config``).

    A differing value is reported (and ignored) only if the caller set it: with ``provenance``
    (the CLI's origins) the values the user typed, else any value but None and "auto" (unset,
    or resolved per machine: the run keeps what it resolved when it started).
    """
    saved = read_run_config(out)
    if saved.get("task") != task:
        raise ArchlabError(f"{out} holds a {saved.get('task')} run, not a {task} run")
    spec_cls = type(spec)
    try:
        saved_spec = spec_cls(**saved["spec"])
        saved_cfg = TrainConfig(**saved["train"])
    except (KeyError, TypeError, ValueError) as e:
        raise ArchlabError(f"{out}/config.json does not describe a {task} run ({e})") from None
    origins = (provenance or {}).get("origins")
    typed = None if origins is None else {k for k, o in origins.items() if o == "flag"}

    def given(part: str, name: str, new: Any) -> bool:
        if typed is None:
            return new is not None and new != "auto"
        if part == "spec" and name == "model":
            return any(k.startswith("model.") for k in typed)
        return name == "arch" or f"{part}.{name}" in typed

    for part, name, new, old in (
        *(
            ("spec", f.name, getattr(spec, f.name), getattr(saved_spec, f.name))
            for f in dataclasses.fields(spec)
        ),
        *(
            ("train", f.name, getattr(config, f.name), getattr(saved_cfg, f.name))
            for f in dataclasses.fields(config)
            if f.name not in _RESUMABLE
        ),
    ):
        # compared as stored: a tuple and its list are the same
        if given(part, name, new) and json.dumps(new) != json.dumps(old):
            log.warning("resume: keeping the run's %s=%r (ignoring %r)", name, old, new)
    kept = {k: getattr(config, k) for k in _RESUMABLE}
    return saved_spec, dataclasses.replace(saved_cfg, **kept)


def _start(out: str | os.PathLike, resume: bool, dist: DistInfo) -> tuple[Path, bool]:
    """Check ``out`` on every rank (nothing written yet), then let rank 0 create it.

    A new run directory is marked as ours at once (a stub resolved_config.json, rewritten in
    full before training): killed before its first checkpoint, it is a run that ``--resume``
    starts afresh, not a foreign folder holding a tokenizer.json."""
    from archlab.train.checkpoint import check_run_dir, has_checkpoint, is_run_dir

    check_run_dir(out, resume)  # raises the right one-line error on every rank
    p = Path(out)
    dist.barrier()
    if dist.is_main:
        prepare_run_dir(p, resume)
        if not is_run_dir(p):
            write_json_atomic(p / "resolved_config.json", {"format": RUN_FORMAT, "started": True})
    dist.barrier()
    return p, resume and has_checkpoint(p)


class _NewRun(Callback):
    """A new run that fails before its first checkpoint (a model config the data contradicts, a
    batch that does not fit in memory) leaves ``--out`` as it found it, absent or empty, so the
    corrected command can use it: nothing of value was made, and a tokenizer.json left behind
    would make the directory a foreign one. From the first checkpoint on a failure keeps the run
    (it is resumable). A Trainer callback, so the first checkpoint disarms it."""

    def __init__(self, out: str | os.PathLike, dist: DistInfo) -> None:
        self.path = Path(out)
        try:  # before the run directory is made: was it new or empty?
            self.existed = self.path.exists()
            fresh = not self.existed or (self.path.is_dir() and not any(self.path.iterdir()))
        except (OSError, ValueError):
            fresh = False  # check_run_dir reports it
        self.armed = fresh and dist.is_main

    def on_checkpoint(self, trainer: Trainer) -> None:
        self.armed = False

    def __enter__(self) -> _NewRun:
        return self

    def __exit__(self, kind: Any, *exc: Any) -> None:
        if kind is None or not self.armed or not self.path.is_dir():
            return
        for child in self.path.iterdir():  # all ours: the directory was new or empty
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        if not self.existed:
            self.path.rmdir()


class _Threads:
    """``torch.set_num_threads(n)`` inside, the caller's count restored after."""

    def __init__(self, n: int) -> None:
        self.n, self.prev = n, torch.get_num_threads()

    def __enter__(self) -> None:
        torch.set_num_threads(self.n)

    def __exit__(self, *exc: Any) -> None:
        torch.set_num_threads(self.prev)


def _check_fits(arch: str, mcfg: Any, config: TrainConfig) -> None:
    """Refuse, before anything is allocated, a model whose training state cannot fit in memory:
    fp32 weights and gradients (8 bytes a parameter) plus the optimizer's state (AdamW: two
    moments, 8 more; SGD with momentum: 4), parameters counted on the meta device."""
    from archlab.hardware import available_memory
    from archlab.models.registry import count_params

    params = count_params(arch, mcfg)
    state = 8 if config.optimizer == "adamw" else 4 if config.momentum else 0
    need, avail = params * (8 + state), available_memory()
    if need > avail:
        raise ArchlabError(
            f"--arch {arch} with these sizes has {params:,} parameters: training needs "
            f"{need / 2**30:,.1f} GiB (weights, gradients, {config.optimizer} state) but "
            f"{avail / 2**30:,.1f} GiB is available; choose smaller model sizes"
        )


def _build_seeded(build: Any, seed: int) -> torch.nn.Module:
    """``build()`` with initial weights a function of ``seed`` alone (models are built on the CPU);
    the caller's global generator state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)  # what torch.manual_seed does for the CPU
        return build()


def _steps_for_epochs(task: Any, epochs: float, grad_accum: int) -> int:
    """Optimizer steps in ``epochs`` passes over the training split (whole batches only)."""
    if getattr(task, "stateful", False):
        per_epoch = task.chunks_per_epoch
    elif hasattr(task, "batches_per_epoch"):
        per_epoch = task.batches_per_epoch
    else:
        per_epoch = task.splits["train"].numel() // (task.B * task.T)
    return max(1, int(epochs * per_epoch) // grad_accum)


def _run(
    model: torch.nn.Module,
    task: Any,
    config: TrainConfig,
    out: Path,
    meta: dict[str, Any],
    resuming: bool,
    dist: DistInfo,
    callbacks: list[Callback],
    provenance: dict[str, Any] | None,
    hardware: dict[str, Any],
) -> TrainResult:
    trainer = Trainer(
        model, task, config, run_dir=out, run_meta=meta, callbacks=callbacks, dist=dist
    )
    if resuming:  # first: a checkpoint that does not load is refused before anything is written
        trainer.restore()
    if dist.is_main:
        if not resuming:  # a run that died before its first checkpoint starts its log afresh
            (out / "metrics.jsonl").unlink(missing_ok=True)
        train = config.to_dict()
        write_json_atomic(
            out / "resolved_config.json",
            {
                "format": RUN_FORMAT,
                **meta,
                "train": train,
                "requested": hardware["requested"],
                **(provenance or {}),
                "hardware": hardware,
                "resumed": resuming,
                "environment": _environment(dist),
            },
        )
    return trainer.fit()


def train_lm(
    spec: LMRunSpec,
    config: TrainConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
    provenance: dict[str, Any] | None = None,
    epochs: float | None = None,
) -> TrainResult:
    """Train a language model into run directory ``out`` (see module doc for ``resume``).

    ``provenance`` (the recipe and each value's origin, from :func:`archlab.train.recipes.
    resolve_run`) is stored in resolved_config.json; ``epochs`` sets ``max_steps`` to that many
    passes over the training tokens once they are known (a recipe's budget).
    """
    from archlab.data import encode_corpus, fit_tokenizer, load_tokenizer, resolve_corpus
    from archlab.models import get_spec, make_config

    arch = get_spec(spec.arch)
    if arch.task != "lm":
        raise ArchlabError(f"{spec.arch!r} is not a language model")
    if spec.eval_stride is not None and arch.config_cls.__name__ != "GPTConfig":
        raise ArchlabError(
            "--eval-stride applies to GPT runs only (a recurrent model is evaluated statefully "
            "over the whole text)"
        )
    if spec.data is not None and Path(spec.data).exists():  # a path: absolute, for eval/resume
        spec = dataclasses.replace(spec, data=str(Path(spec.data).resolve()))
    block = spec.block_size or int(arch.defaults.get("block_size", 64))
    if spec.eval_stride is not None and spec.eval_stride > block:  # before anything is written
        raise ArchlabError(
            f"--eval-stride {spec.eval_stride} must not exceed the block size {block}"
        )
    dist = init_distributed(config.device)
    new = _NewRun(out, dist)
    out, resuming = _start(out, resume, dist)
    if resuming:  # the run's own spec: its architecture, not the one typed
        spec, config = _resolve_resume(out, spec, config, "lm", provenance)
        arch = get_spec(spec.arch)
    config, hardware = _hardware(config, dist)
    with _Threads(config.threads), new:
        corpus, notice = resolve_corpus(spec.data)
        if notice:
            log.warning("%s", notice)
        tok_path = out / "tokenizer.json"
        if not resuming and dist.is_main:
            kw = {}
            if spec.tokenizer == "bpe" and spec.vocab_size:
                kw = {"vocab_size": spec.vocab_size}
            elif spec.tokenizer == "word":
                kw = {"max_vocab": spec.vocab_size}
            fit_tokenizer(spec.tokenizer, corpus, **kw).save(tok_path)
        dist.barrier()
        tok = load_tokenizer(tok_path)  # every rank uses the saved file: one tokenizer, by bytes
        streams = encode_corpus(corpus, tok)
        fields = {f.name for f in dataclasses.fields(arch.config_cls)}
        if spec.block_size is None:  # the preset's context, else 64
            spec = dataclasses.replace(spec, block_size=int(arch.defaults.get("block_size", 64)))
        over = dict(spec.model, vocab_size=tok.vocab_size)
        if "block_size" in fields:
            over["block_size"] = spec.block_size
        mcfg = make_config(spec.arch, **over)
        _check_fits(spec.arch, mcfg, config)
        model = _build_seeded(lambda: arch.build(mcfg), config.seed)
        task = LMTask(
            streams.train,
            streams.val,
            streams.test,
            block_size=spec.block_size,
            batch_size=config.batch_size,
            seed=config.seed,
            stateful=is_stateful(model),
            eval_stride=spec.eval_stride,
        )
        if epochs is not None and not resuming:
            steps = _steps_for_epochs(task, epochs, config.grad_accum)
            config = dataclasses.replace(config, max_steps=steps)
        meta = {
            "task": "lm",
            "model": {"name": spec.arch, "config": dataclasses.asdict(mcfg)},
            "data": {
                "corpus": corpus.name if notice or spec.data is None else spec.data,
                "name": corpus.name,
                "split": corpus.split,
                "sources": list(corpus.sources),
                "tokens": {k: int(streams.split(k).numel()) for k in ("train", "val", "test")},
                "notice": notice,
            },
            "tokenizer": {
                "kind": spec.tokenizer,
                "vocab_size": tok.vocab_size,
                "file": "tokenizer.json",
            },
            "eval": task.eval_protocol(),
            "spec": dataclasses.asdict(spec),
        }
        return _run(
            model,
            task,
            config,
            out,
            meta,
            resuming,
            dist,
            [new, *(callbacks or [])],
            provenance,
            hardware,
        )


def train_image(
    spec: ImageRunSpec,
    config: TrainConfig,
    out: str | os.PathLike,
    *,
    resume: bool = False,
    callbacks: list[Callback] | None = None,
    provenance: dict[str, Any] | None = None,
    epochs: float | None = None,
) -> TrainResult:
    """Train an image classifier into run directory ``out`` (see module doc for ``resume``;
    ``provenance`` and ``epochs`` as :func:`train_lm`)."""
    from archlab.data import augment_batch, load_image_dataset
    from archlab.models import get_spec, make_config

    if get_spec(spec.arch).task != "image":
        raise ArchlabError(f"{spec.arch!r} is not an image model")
    if spec.teacher is not None:
        check_teacher(spec.teacher)  # before the run directory is made
    dist = init_distributed(config.device)
    new = _NewRun(out, dist)
    out, resuming = _start(out, resume, dist)
    if resuming:
        spec, config = _resolve_resume(out, spec, config, "image", provenance)
    config, hardware = _hardware(config, dist)
    with _Threads(config.threads), new:
        ds = load_image_dataset(spec.data, val_size=spec.val_size, train_size=spec.train_size)
        fields = {f.name for f in dataclasses.fields(get_spec(spec.arch).config_cls)}
        shape = {
            "num_classes": ds.num_classes,
            "in_channels": ds.channels,
            "image_size": ds.image_size,
        }
        over = {**spec.model, **{k: v for k, v in shape.items() if k in fields}}  # data decides
        mcfg = make_config(spec.arch, **over)
        _check_fits(spec.arch, mcfg, config)
        model = _build_seeded(lambda: get_spec(spec.arch).build(mcfg), config.seed)
        pad, flip = ds.default_pad(), ds.flip_ok

        def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            return augment_batch(x, g, pad, flip)

        distill, teacher = None, None
        if spec.teacher is not None:  # one labelling pass before training (see train.distill)
            logits, teacher = teacher_logits(spec.teacher, ds, config.precision)
            distill = Distillation(logits, spec.distill, spec.distill_alpha, spec.distill_tau)

        task = ClassificationTask(
            ds.split("train"),
            ds.split("val"),
            ds.split("test"),
            batch_size=config.batch_size,
            seed=config.seed,
            mean=ds.mean,
            std=ds.std,
            augment=augment if spec.augment else None,
            label_smoothing=config.label_smoothing,
            distill=distill,
        )
        if epochs is not None and not resuming:
            steps = _steps_for_epochs(task, epochs, config.grad_accum)
            config = dataclasses.replace(config, max_steps=steps)
        meta = {
            "task": "image",
            **({"teacher": teacher} if teacher else {}),
            "model": {"name": spec.arch, "config": dataclasses.asdict(mcfg)},
            "data": {
                **ds.describe(),
                "augment": {"pad": pad, "flip": flip} if spec.augment else None,
            },
            "spec": dataclasses.asdict(spec),
        }
        return _run(
            model,
            task,
            config,
            out,
            meta,
            resuming,
            dist,
            [new, *(callbacks or [])],
            provenance,
            hardware,
        )
