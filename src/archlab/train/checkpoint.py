"""Run directories and checkpoints: safetensors for tensors, JSON for everything else, no pickle.

A run directory (``RUN_DIR``) holds::

    config.json            what was trained: model name + config, data/tokenizer description,
                           TrainConfig, step, elapsed seconds ("format": "archlab-run")
    model.safetensors      weights (a tied tensor, one Parameter under several names, is stored
                           once under its first name and re-tied on load)
    optimizer.safetensors  per-parameter optimizer tensors (AdamW exp_avg, exp_avg_sq, step)
    optimizer.json         param groups and scalar optimizer state
    state.safetensors      state a Task carries between batches (an RNN's hidden state; may be empty)
    tokenizer.json         the run's tokenizer (language-model runs; written by the run layer)
    resolved_config.json   every setting the run resolved, with versions and world size
    metrics.jsonl          one JSON object per log/eval event

Randomness needs no saved generator state: the Trainer reseeds torch at every step from
(seed, step, rank) and draws data from (seed, step), so (seed, step) in config.json *is* the RNG
state, and it stays valid when a run resumes with a different number of ranks.

Atomicity: a checkpoint is first written completely into ``RUN_DIR/.checkpoint.tmp/``; a ``COMMIT``
file written last marks it complete; then each file is moved into place with ``os.replace``. If the
process dies before ``COMMIT`` the temp dir is discarded on the next load; if it dies after, the next
load finishes the moves (roll forward). Every tensor file records its step in its safetensors
metadata and loading checks it against config.json, so a mixed set is detected, never used.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from archlab.errors import ArchlabError

__all__ = [
    "RUN_FORMAT",
    "has_checkpoint",
    "is_run_dir",
    "load_model",
    "load_training_state",
    "prepare_run_dir",
    "read_run_config",
    "save_checkpoint",
    "write_json_atomic",
]

RUN_FORMAT = "archlab-run"
_TMP = ".checkpoint.tmp"
_COMMIT = "COMMIT"
# Files that may sit in a run directory; a non-empty dir with anything else is not ours.
_RUN_FILES = {
    "config.json",
    "model.safetensors",
    "optimizer.safetensors",
    "optimizer.json",
    "state.safetensors",
    "tokenizer.json",
    "resolved_config.json",
    "metrics.jsonl",
    _TMP,
}


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to ``path`` via a temp file and ``os.replace`` (readers never see half a file)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise ArchlabError(f"{path} is missing: not a complete archlab run directory") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArchlabError(f"{path} is corrupt ({e.__class__.__name__}: {e})") from None


def _recover(run_dir: Path) -> None:
    """Finish (after COMMIT) or discard (before COMMIT) an interrupted checkpoint write."""
    tmp = run_dir / _TMP
    if not tmp.is_dir():
        return
    try:
        names = json.loads((tmp / _COMMIT).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        names = []  # no (complete) COMMIT: the new checkpoint never happened
    for name in names:
        try:
            os.replace(tmp / name, run_dir / name)
        except FileNotFoundError:
            pass  # already moved (by an earlier recovery, or another rank racing us)
    shutil.rmtree(tmp, ignore_errors=True)


def is_run_dir(path: str | os.PathLike) -> bool:
    """True if ``path`` holds an archlab run (config.json, a pending checkpoint, or a started run)."""
    p = Path(path)
    # resolved_config.json is written when a run starts: a run that died before its first
    # checkpoint is still ours (and --resume starts it afresh).
    for cfg in (p / "config.json", p / _TMP / "config.json", p / "resolved_config.json"):
        try:
            if json.loads(cfg.read_text(encoding="utf-8")).get("format") == RUN_FORMAT:
                return True
        except (OSError, ValueError, AttributeError):
            continue
    return False


def has_checkpoint(path: str | os.PathLike) -> bool:
    p = Path(path)
    if p.is_dir():
        _recover(p)
    return (p / "config.json").exists() and (p / "model.safetensors").exists()


def prepare_run_dir(path: str | os.PathLike, resume: bool) -> bool:
    """Make ``path`` ready for a run; True if it holds a checkpoint to resume from.

    Never overwrites a user's files: a non-empty directory that is not an archlab run is refused,
    and so is an existing run unless ``resume`` is set.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ArchlabError(f"--out {p} exists and is not a directory")
    if p.is_dir() and any(p.iterdir()):
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
        return has_checkpoint(p)
    p.mkdir(parents=True, exist_ok=True)
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
    """Write a complete checkpoint atomically (see module docstring). ``config['step']`` is required."""
    run_dir = Path(run_dir)
    step = int(config["step"])
    meta = {"archlab_step": str(step)}
    tmp = run_dir / _TMP
    shutil.rmtree(tmp, ignore_errors=True)
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
        with open(tmp / name, "rb") as f:
            os.fsync(f.fileno())
    write_json_atomic(tmp / _COMMIT, {"files": files})
    _recover(run_dir)


def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """config.json of a run, checked to be an archlab run; ArchlabError otherwise."""
    p = Path(run_dir)
    if not p.is_dir():
        raise ArchlabError(f"run directory {p} does not exist")
    _recover(p)
    cfg = _read_json(p / "config.json")
    if not isinstance(cfg, dict) or cfg.get("format") != RUN_FORMAT:
        raise ArchlabError(f"{p / 'config.json'} is not an archlab run config")
    for key in ("model", "step", "task"):
        if key not in cfg:
            raise ArchlabError(f"{p / 'config.json'} is corrupt: no {key!r} entry")
    return cfg


def _check_step(path: Path, step: int) -> None:
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


def _load_tensors(path: Path, step: int) -> dict[str, torch.Tensor]:
    _check_step(path, step)
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ArchlabError(f"{path} is corrupt ({' '.join(str(e).split())})") from None


def _tied_groups(model: nn.Module) -> list[list[str]]:
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


def _model_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as separate contiguous CPU tensors, each tied group once (first name)."""
    drop = {name for group in _tied_groups(model) for name in group[1:]}
    return {
        k: v.detach().cpu().contiguous() for k, v in model.state_dict().items() if k not in drop
    }


def _load_weights(model: nn.Module, run_dir: Path, step: int) -> None:
    path = run_dir / "model.safetensors"
    _check_step(path, step)
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
    for group in _tied_groups(model):
        if any(name in tensors for name in group):
            missing = [m for m in missing if m not in group]
    if missing or unexpected:
        raise ArchlabError(
            f"{path} does not match the model in config.json "
            f"(missing {len(missing)}, unexpected {len(unexpected)} tensors)"
        )


def load_training_state(
    run_dir: str | os.PathLike, model: nn.Module, optimizer: torch.optim.Optimizer | None
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Load weights (and optimizer state) into existing objects; returns (config, task_state)."""
    p = Path(run_dir)
    cfg = read_run_config(p)
    step = int(cfg["step"])
    _load_weights(model, p, step)
    if optimizer is not None:
        tensors = _load_tensors(p / "optimizer.safetensors", step)
        opt_meta = _read_json(p / "optimizer.json")
        try:
            optimizer.load_state_dict(_optimizer_from_files(tensors, opt_meta))
        except (KeyError, ValueError, TypeError) as e:
            raise ArchlabError(
                f"{p / 'optimizer.json'} does not fit this optimizer ({e})"
            ) from None
        _match_param_layouts(optimizer)
    state = (
        _load_tensors(p / "state.safetensors", step) if (p / "state.safetensors").exists() else {}
    )
    return cfg, state


def _match_param_layouts(optimizer: torch.optim.Optimizer) -> None:
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


def load_model(run_dir: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a trained model from ``RUN_DIR`` alone (config.json + model.safetensors), in eval mode."""
    import archlab.models  # noqa: F401  (registers the architectures)
    from archlab.models.registry import create_model

    p = Path(run_dir)
    cfg = read_run_config(p)
    m = cfg["model"]
    if not isinstance(m, dict) or "name" not in m or not isinstance(m.get("config"), dict):
        raise ArchlabError(f"{p / 'config.json'} is corrupt: bad 'model' entry")
    try:
        model = create_model(m["name"], **m["config"])
    except (TypeError, ValueError) as e:
        raise ArchlabError(
            f"{p / 'config.json'}: cannot rebuild model {m['name']!r} ({e})"
        ) from None
    _load_weights(model, p, int(cfg["step"]))
    return model.to(device).eval()
