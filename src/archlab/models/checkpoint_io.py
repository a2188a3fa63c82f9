"""Reading a run directory: its config.json and its weights, enough to rebuild a trained model.

The reader lives with the models (``archlab.models.load`` needs it, and models import nothing
from ``archlab.train``); the writer — checkpoints, optimizer state, run-directory preparation —
is :mod:`archlab.train.checkpoint`, whose module docstring describes the files and the atomic
commit protocol.

Readers never change a run directory. A checkpoint whose write was interrupted after its ``COMMIT``
file (some files moved into place, the rest still in ``.checkpoint.tmp/``) is *read* as the new
checkpoint: each file it lists is taken from the temp dir while it is still there. Only the writer
finishes the moves (when training resumes); before ``COMMIT`` the temp dir is ignored.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from torch import nn

from archlab.errors import ArchlabError

__all__ = [
    "RUN_FORMAT",
    "has_checkpoint",
    "is_run_dir",
    "load_model",
    "read_run_config",
    "run_file",
]

RUN_FORMAT = "archlab-run"
TMP_DIR = ".checkpoint.tmp"
COMMIT = "COMMIT"


def committed_files(run_dir: Path) -> list[str]:
    """Files of a committed but not fully moved checkpoint in ``run_dir`` (usually none)."""
    try:
        names = json.loads((run_dir / TMP_DIR / COMMIT).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return []  # no (complete) COMMIT: that checkpoint never happened
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        return []
    return [n for n in names if n and "/" not in n and n not in (".", "..")]


def run_file(run_dir: str | os.PathLike, name: str) -> Path:
    """Where the current version of ``name`` lives: the pending committed copy if there is one."""
    p = Path(run_dir)
    pending = p / TMP_DIR / name
    if name in committed_files(p) and pending.exists():
        return pending
    return p / name


def read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ArchlabError(f"{path} is missing: not a complete archlab run directory") from None
    except IsADirectoryError:
        raise ArchlabError(f"{path} is a directory, not a file") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArchlabError(f"{path} is corrupt ({e.__class__.__name__}: {e})") from None
    except RecursionError:
        raise ArchlabError(f"{path} is corrupt (JSON nested too deep)") from None
    except OSError as e:
        raise ArchlabError(f"cannot read {path}: {e.strerror or e}") from None


def is_run_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` holds an archlab run (config.json, a pending checkpoint, a started run)."""
    p = Path(path)
    # resolved_config.json is written when a run starts: a run that died before its first
    # checkpoint is still ours (and --resume starts it afresh).
    for cfg in (p / "config.json", p / TMP_DIR / "config.json", p / "resolved_config.json"):
        try:
            if json.loads(cfg.read_text(encoding="utf-8")).get("format") == RUN_FORMAT:
                return True
        except (OSError, ValueError, AttributeError, RecursionError):
            continue
    return False


def has_checkpoint(path: str | os.PathLike) -> bool:
    """True if ``path`` holds a checkpoint to load (config.json and weights; not validated)."""
    p = Path(path)
    return p.is_dir() and all(
        run_file(p, n).is_file() for n in ("config.json", "model.safetensors")
    )


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """config.json of a run, checked to be an archlab run; ArchlabError otherwise."""
    p = Path(run_dir)
    if not p.exists():
        raise ArchlabError(f"run directory {p} does not exist")
    if not p.is_dir():
        raise ArchlabError(f"{p} is a file, not a run directory")
    path = run_file(p, "config.json")
    if not path.exists():
        what = (
            "a run that has not saved a checkpoint yet" if is_run_dir(p) else "not an archlab run"
        )
        raise ArchlabError(f"{p} has no config.json: {what}")
    cfg = read_json(path)
    if not isinstance(cfg, dict) or cfg.get("format") != RUN_FORMAT:
        raise ArchlabError(f"{p / 'config.json'} is not an archlab run config")
    for key in ("model", "step", "task"):
        if key not in cfg:
            raise ArchlabError(f"{p / 'config.json'} is corrupt: no {key!r} entry")
    if not isinstance(cfg["step"], int) or isinstance(cfg["step"], bool) or cfg["step"] < 0:
        raise ArchlabError(f"{p / 'config.json'} is corrupt: bad 'step' {cfg['step']!r}")
    if not isinstance(cfg["task"], str):
        raise ArchlabError(f"{p / 'config.json'} is corrupt: bad 'task' {cfg['task']!r}")
    return cfg


def check_step(path: Path, step: int) -> None:
    """Open the safetensors header (validating it) and check the step recorded in its metadata."""
    try:
        with safe_open(str(path), framework="pt") as f:
            got = (f.metadata() or {}).get("archlab_step")
    except FileNotFoundError:
        raise ArchlabError(f"{path} is missing: incomplete checkpoint") from None
    except (SafetensorError, OSError, ValueError) as e:
        raise ArchlabError(f"{path} is corrupt ({' '.join(str(e).split())})") from None
    if got != str(step):
        raise ArchlabError(
            f"{path} is from step {got}, config.json says step {step}: mixed checkpoint"
        )


def load_tensors(path: Path, step: int) -> dict[str, torch.Tensor]:
    check_step(path, step)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ArchlabError(f"{path} is corrupt ({' '.join(str(e).split())})") from None


def tied_groups(model: nn.Module) -> list[list[str]]:
    """State-dict names of each tensor registered under more than one name (tied weights).

    Tying is identity (one Parameter object, e.g. a GPT's ``lm_head.weight is wte.weight``), not
    shared storage: on a GPU, cuDNN packs all of an LSTM's weights into one flat buffer and each
    parameter is a view into it, which is why safetensors' own ``save_model`` (it groups by
    storage) refuses such a model.
    """
    groups: dict[int, list[str]] = {}
    named = [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]
    for name, t in named:
        groups.setdefault(id(t), []).append(name)
    return [g for g in groups.values() if len(g) > 1]


def check_shapes(shell: nn.Module, path: Path, step: int) -> None:
    """The model described by config.json (``shell``, on the meta device) against the tensor
    shapes in the header of ``path``, before the model is allocated: a config.json that grew the
    model (``d_model`` 10^9, 1,000 layers) is refused at the size of the file, not of the config.
    """
    check_step(path, step)
    try:
        with safe_open(str(path), framework="pt") as f:
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise ArchlabError(f"{path} is corrupt ({' '.join(str(e).split())})") from None
    want = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    other = sorted(k for k in want if k in shapes and shapes[k] != want[k])
    dups = {name for group in tied_groups(shell) for name in group[1:]}
    need = sum(math.prod(v) for k, v in want.items() if k not in dups)
    have = sum(math.prod(v) for v in shapes.values())
    if other or need > have:
        k = other[0] if other else None
        detail = f"{k} is {shapes[k]} in the file, {want[k]} by config.json" if k else "too few"
        raise ArchlabError(
            f"{path} does not match the model in config.json ({need:,} values needed, the "
            f"file has {have:,}; {detail})"
        )


def load_weights(model: nn.Module, run_dir: Path, step: int) -> None:
    """model.safetensors of ``run_dir`` (checked to be from ``step``) into ``model``."""
    path = run_file(run_dir, "model.safetensors")
    check_step(path, step)
    try:
        tensors = load_file(str(path))
        missing, unexpected = model.load_state_dict(tensors, strict=False)
    except (SafetensorError, RuntimeError, OSError, ValueError) as e:
        msg = " ".join(str(e).split())[:200]
        raise ArchlabError(
            f"{path} is corrupt or does not fit the model in config.json ({msg})"
        ) from None
    # A tied group needs one of its names in the file (any: files written by safetensors'
    # save_model kept the alphabetically first); loading it fills the one shared tensor.
    for group in tied_groups(model):
        if any(name in tensors for name in group):
            missing = [m for m in missing if m not in group]
    if missing or unexpected:
        raise ArchlabError(
            f"{path} does not match the model in config.json "
            f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)"
        )


def load_model(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a trained model from ``RUN_DIR`` alone (config.json + model.safetensors), in eval
    mode."""
    import archlab.models  # noqa: F401  (registers the architectures)
    from archlab.models.registry import create_model

    p = Path(run_dir)
    cfg = read_run_config(p)
    m = cfg["model"]
    if not isinstance(m, dict) or "name" not in m or not isinstance(m.get("config"), dict):
        raise ArchlabError(f"{p / 'config.json'} is corrupt: bad 'model' entry")
    try:
        with torch.device("meta"):  # shapes first: a damaged config never allocates
            shell = create_model(m["name"], **m["config"])
    except (TypeError, ValueError) as e:
        raise ArchlabError(
            f"{p / 'config.json'}: cannot rebuild model {m['name']!r} ({e})"
        ) from None
    check_shapes(shell, run_file(p, "model.safetensors"), int(cfg["step"]))
    model = create_model(m["name"], **m["config"])
    load_weights(model, p, int(cfg["step"]))
    return model.to(device).eval()
