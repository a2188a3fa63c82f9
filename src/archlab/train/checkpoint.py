"""Run directories and checkpoints: safetensors for tensors, JSON for everything else, no pickle.

A run directory (``RUN_DIR``) holds::

    config.json            what was trained: model name + config, data/tokenizer description,
                           TrainConfig, step, elapsed seconds ("format": "archlab-run")
    model.safetensors      weights (a tied tensor, one Parameter under several names, is stored
                           once under its first name and re-tied on load)
    optimizer.safetensors  per-parameter optimizer tensors (AdamW exp_avg, exp_avg_sq, step)
    optimizer.json         param groups and scalar optimizer state
    state.safetensors      state a Task carries between batches (an RNN's hidden state; may be
                           empty)
    tokenizer.json         the run's tokenizer (language-model runs; written by the run layer)
    resolved_config.json   every setting the run resolved, with versions and world size
    metrics.jsonl          one JSON object per log/eval event

Randomness needs no saved generator state: the Trainer reseeds torch at every step from
(seed, step, rank) and draws data from (seed, step), so (seed, step) in config.json *is* the RNG
state, and it stays valid when a run resumes with a different number of ranks.

Atomicity: a checkpoint is first written completely into ``RUN_DIR/.checkpoint.tmp/``, each file
and then the directory fsynced; a ``COMMIT`` file written last (and fsynced) marks it complete;
then each file is moved into place with ``os.replace`` and the run directory is fsynced before the
temp dir is removed, so once :func:`save_checkpoint` returns, a crash (power loss included) cannot
take the checkpoint back. If the process dies before ``COMMIT`` the temp dir is discarded by the
next writer; if it dies after, readers already see the new checkpoint (they read the files still
in the temp dir, see :mod:`archlab.models.checkpoint_io`) and the next writer — a resumed run —
finishes the moves (roll forward). Readers never change the directory. Every tensor file records
its step in its safetensors metadata and loading checks it against config.json, so a mixed set is
detected, never used.

The reader side (``load_model``, ``read_run_config``, ``has_checkpoint``, ``is_run_dir``) lives in
:mod:`archlab.models.checkpoint_io` so that models import nothing from ``archlab.train``; it is
re-exported here.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from torch import nn

from archlab.errors import ArchlabError
from archlab.models.checkpoint_io import (
    COMMIT,
    RUN_FORMAT,
    TMP_DIR,
    committed_files,
    has_checkpoint,
    is_run_dir,
    load_model,
    load_tensors,
    load_weights,
    read_json,
    read_run_config,
    run_file,
    tied_groups,
)

__all__ = [
    "RUN_FORMAT",
    "has_checkpoint",
    "is_run_dir",
    "load_model",
    "load_training_state",
    "check_run_dir",
    "prepare_run_dir",
    "read_run_config",
    "recover_run_dir",
    "save_checkpoint",
    "write_json_atomic",
]

# The files of a checkpoint: a directory holding some of them but no loadable checkpoint is a
# damaged run (a resume would overwrite what is left), never a fresh start.
_CHECKPOINT_FILES = (
    "config.json",
    "model.safetensors",
    "optimizer.safetensors",
    "optimizer.json",
    "state.safetensors",
)


def _fsync_dir(path: Path) -> None:
    """Make the entries of directory ``path`` (new names, renames) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to ``path`` via a temp file, fsync, ``os.replace`` and a directory fsync
    (readers never see half a file; after return a crash cannot lose it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def recover_run_dir(run_dir: str | os.PathLike) -> None:
    """Finish (after COMMIT) or discard (before COMMIT) an interrupted checkpoint write.

    Writer side only: a resuming run and :func:`save_checkpoint` call it; readers never do.
    """
    run_dir = Path(run_dir)
    tmp = run_dir / TMP_DIR
    if not tmp.is_dir():
        return
    for name in committed_files(run_dir):
        try:
            os.replace(tmp / name, run_dir / name)
        except FileNotFoundError:
            pass  # already moved (by an earlier recovery, or another rank racing us)
    _fsync_dir(run_dir)
    shutil.rmtree(tmp, ignore_errors=True)


def _partial_checkpoint(p: Path) -> str | None:
    """What is left of a checkpoint that cannot be loaded (None: no checkpoint file at all)."""
    present = [n for n in _CHECKPOINT_FILES if run_file(p, n).exists()]
    if not present or has_checkpoint(p):
        return None
    missing = [n for n in ("config.json", "model.safetensors") if n not in present]
    return f"{', '.join(present)} without {' and '.join(missing)}"


def check_run_dir(path: str | os.PathLike, resume: bool) -> bool:
    """Raise the one-line error if ``path`` cannot take a run; writes nothing. True if it is a
    non-empty run directory to resume.

    Never overwrites a user's files: a non-empty directory that is not an archlab run is refused,
    so is an existing run unless ``resume`` is set, and so is a run whose checkpoint is damaged
    (weights without config.json, config.json without weights): resuming it would start from
    scratch over what is left.
    """
    if str(path) == "":
        raise ArchlabError("--out is empty; give a run directory")
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ArchlabError(f"--out {p} exists and is not a directory")
    try:
        nonempty = p.is_dir() and any(p.iterdir())
    except OSError as e:
        raise ArchlabError(f"--out {p}: cannot list it ({e.strerror or e})") from None
    if not nonempty:
        return False
    if not is_run_dir(p):
        raise ArchlabError(
            f"--out {p} is a non-empty directory that is not an archlab run; "
            "choose a new or empty directory"
        )
    if not resume:
        raise ArchlabError(
            f"--out {p} already holds an archlab run; pass --resume to continue it "
            "or choose another directory"
        )
    partial = _partial_checkpoint(p)
    if partial is not None:
        raise ArchlabError(
            f"--out {p} holds a damaged checkpoint ({partial}): it cannot be resumed, and a "
            "fresh start would overwrite it; nothing was changed. Restore the missing file or "
            "choose another directory"
        )
    return True


def prepare_run_dir(path: str | os.PathLike, resume: bool) -> bool:
    """Make ``path`` ready for a run (see :func:`check_run_dir` for what is refused); True if it
    holds a checkpoint to resume from. A resumed run's interrupted checkpoint write is finished
    (or discarded) here, by the writer, before anything else touches the directory."""
    p = Path(path)
    if check_run_dir(p, resume):
        recover_run_dir(p)
        return has_checkpoint(p)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ArchlabError(f"--out {p}: cannot create it ({e.strerror or e})") from None
    return False


def _optimizer_to_files(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                scalars.setdefault(str(idx), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "scalar_state": scalars}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict[str, Any]] = {}
    for key, t in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = t
    for idx, st in meta.get("scalar_state", {}).items():
        state.setdefault(int(idx), {}).update(st)
    groups = meta["param_groups"]
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    run_dir: str | os.PathLike,
    *,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    config: dict[str, Any],
    task_state: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write a complete checkpoint atomically and durably (see module docstring).
    ``config['step']`` is required. If the disk fills (or any write fails) before the commit,
    the partial temp dir is removed and an ArchlabError says so: the previous checkpoint is
    untouched."""
    run_dir = Path(run_dir)
    step = int(config["step"])
    meta = {"archlab_step": str(step)}
    recover_run_dir(run_dir)  # a committed checkpoint still in the temp dir lands first
    tmp = run_dir / TMP_DIR
    try:
        _write_uncommitted(tmp, model, optimizer, config, task_state, meta)
    except (OSError, SafetensorError) as e:  # a full disk, a quota: nothing was committed
        shutil.rmtree(tmp, ignore_errors=True)  # free the space it took
        why = getattr(e, "strerror", None) or " ".join(str(e).split())
        raise ArchlabError(
            f"cannot write the checkpoint of step {step} in {run_dir} ({why}); the previous "
            "checkpoint is intact"
        ) from None
    recover_run_dir(run_dir)  # the moves, a run-dir fsync, then the temp dir goes


def _write_uncommitted(
    tmp: Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None,
    config: dict[str, Any],
    task_state: dict[str, torch.Tensor] | None,
    meta: dict[str, str],
) -> None:
    """Every file of a checkpoint into ``tmp``, fsynced, then COMMIT (see the module doc)."""
    tmp.mkdir(parents=True)
    files = ["model.safetensors"]
    save_file(_model_tensors(model), str(tmp / "model.safetensors"), metadata=meta)
    if optimizer is not None:
        tensors, opt_meta = _optimizer_to_files(optimizer)
        save_file(tensors, str(tmp / "optimizer.safetensors"), metadata=meta)
        write_json_atomic(tmp / "optimizer.json", opt_meta)
        files += ["optimizer.safetensors", "optimizer.json"]
    # Always written (possibly empty) so every checkpoint replaces the whole set of files.
    st = {k: v.detach().cpu().contiguous() for k, v in (task_state or {}).items()}
    save_file(st, str(tmp / "state.safetensors"), metadata=meta)
    files.append("state.safetensors")
    write_json_atomic(tmp / "config.json", {**config, "format": RUN_FORMAT})
    files.append("config.json")  # moved last: config.json names the step of the files before it
    for name in files:
        _fsync_file(tmp / name)
    _fsync_dir(tmp)  # every file is on disk before COMMIT says so
    write_json_atomic(tmp / COMMIT, {"files": files})  # fsyncs COMMIT and the temp dir


def load_training_state(
    run_dir: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Load weights (and optimizer state) into existing objects; returns (config, task_state)."""
    p = Path(run_dir)
    cfg = read_run_config(p)
    step = int(cfg["step"])
    load_weights(model, p, step)
    if optimizer is not None:
        tensors = load_tensors(run_file(p, "optimizer.safetensors"), step)
        opt_meta = read_json(run_file(p, "optimizer.json"))
        try:
            optimizer.load_state_dict(_optimizer_from_files(tensors, opt_meta))
        except (KeyError, ValueError, TypeError, AttributeError) as e:
            raise ArchlabError(
                f"{p / 'optimizer.json'} does not fit this optimizer ({e})"
            ) from None
        match_param_layouts(optimizer)
    state_file = run_file(p, "state.safetensors")
    state = load_tensors(state_file, step) if state_file.exists() else {}
    return cfg, state


def match_param_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give each per-parameter state tensor (Adam's moments) its parameter's memory layout.

    Files hold contiguous tensors; a channels_last parameter (the Trainer trains conv nets in
    channels_last on the CPU) would get contiguous moments back, and the fused AdamW kernel walks
    parameter, gradient and moments as if they shared one layout (measured: a wrong update, no
    error). ``empty_like`` keeps the parameter's strides; ``copy_`` moves the values.
    """
    for p, st in optimizer.state.items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor) and v.shape == p.shape and v.stride() != p.stride():
                st[k] = torch.empty_like(p, dtype=v.dtype).copy_(v)


def _model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as separate contiguous CPU tensors, each tied group once (first name)."""
    drop = {name for group in tied_groups(model) for name in group[1:]}
    return {
        k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in drop
    }
