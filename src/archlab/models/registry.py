"""A small model registry, after timm's ``@register_model`` + ``create_model``.

Each architecture file registers a builder under a name together with its config dataclass::

    @register_model("gpt", GPTConfig, task="lm")
    def _build(cfg: GPTConfig) -> GPT: return GPT(cfg)

``create_model("gpt", vocab_size=65, layers=4)`` builds the config (which validates itself and
raises ``ValueError`` naming a bad field) and the model. Presets are named overrides of a registered
architecture (``register_preset("gpt-nano", "gpt", layers=4, heads=4, d_model=128)``).

Every config also meets two bounds (:data:`MAX_DEPTH`, :data:`MAX_WIDTH`) that no sensible model
comes near: they keep a typo such as ``--layers 1000000000000`` from building modules for hours or
a size from overflowing int64 shapes. Memory is then a question of parameters, counted exactly on
the meta device before anything is allocated (:func:`count_params`).

Reload-safe: a name registered again by the module that registered it (``importlib.reload`` of an
architecture file, e.g. in a notebook) replaces its entry; the same name from a different module
is a clash and an error.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from archlab.errors import ArchlabError

MAX_DEPTH = 1024  # repeats of a module (layers, blocks per stage, convs per stage); GPT-3 has 96
MAX_WIDTH = 1 << 24  # any other integer size (widths, vocabulary, context, image side): 16 Mi
_DEPTH_FIELDS = ("layers", "blocks", "convs_per_stage")


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config_cls: type
    build: Callable[[Any], nn.Module]
    task: str  # "lm" or "image"
    defaults: dict[str, Any] = field(default_factory=dict)  # preset overrides
    base: str = ""  # the architecture a preset builds on ("gpt" for "gpt-nano"); "" otherwise
    module: str = ""  # the module that registered the name (a reload of it may re-register)


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(name: str, config_cls: type, task: str) -> Callable:
    """Decorator: register ``build(config) -> nn.Module`` under ``name``."""

    def deco(build: Callable[[Any], nn.Module]) -> Callable[[Any], nn.Module]:
        module = getattr(build, "__module__", None) or ""
        _check_clash(name, module)
        _REGISTRY[name] = ModelSpec(name, config_cls, build, task, module=module)
        return build

    return deco


def _check_clash(name: str, module: str) -> None:
    old = _REGISTRY.get(name)
    if old is not None and old.module != module:
        raise RuntimeError(
            f"model {name!r} registered twice: by {old.module or '?'} and by {module or '?'}"
        )


def register_preset(name: str, base: str, **overrides: Any) -> None:
    """Register ``name`` as ``base`` with default overrides (users can still override them)."""
    module = sys._getframe(1).f_globals.get("__name__", "")  # the caller: who owns the name
    _check_clash(name, module)
    spec = _REGISTRY[base]
    _REGISTRY[name] = dataclasses.replace(
        spec,
        name=name,
        defaults={**spec.defaults, **overrides},
        base=spec.base or base,
        module=module,
    )


def list_models(task: str | None = None) -> list[str]:
    return sorted(n for n, s in _REGISTRY.items() if task is None or s.task == task)


def get_spec(name: str) -> ModelSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ArchlabError(
            f"unknown model {name!r}; valid names: {', '.join(list_models())}"
        ) from None


def make_config(name: str, **overrides: Any) -> Any:
    """The validated config dataclass of ``name``: preset defaults, then ``overrides``."""
    spec = get_spec(name)
    kwargs = {**spec.defaults, **overrides}
    valid = {f.name for f in dataclasses.fields(spec.config_cls)}
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise ArchlabError(
            f"{name}: unknown config field(s) {', '.join(unknown)}; "
            f"valid: {', '.join(sorted(valid))}"
        )
    cfg = spec.config_cls(**kwargs)
    _check_bounds(cfg)
    return cfg


def _check_bounds(cfg: Any) -> None:
    for f in dataclasses.fields(cfg):
        v = getattr(cfg, f.name)
        values = v if isinstance(v, tuple) else (v,)
        for x in values:
            if not isinstance(x, int) or isinstance(x, bool):
                continue
            hi = MAX_DEPTH if f.name in _DEPTH_FIELDS else MAX_WIDTH
            if x > hi:
                what = "a module repeated" if hi == MAX_DEPTH else "a size"
                raise ArchlabError(f"{f.name} must be <= {hi:,} ({what}), got {v}")


def count_params(name: str, cfg: Any) -> int:
    """Parameters of ``name`` built from ``cfg``, counted on the meta device: nothing is
    allocated, so the memory a model needs is known before it is built (tied tensors once)."""
    with torch.device("meta"):
        model = get_spec(name).build(cfg)
    return sum(p.numel() for p in model.parameters())


def create_model(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model: ``create_model("lstm", vocab_size=65, layers=2)``."""
    cfg = make_config(name, **overrides)
    return get_spec(name).build(cfg)


__all__ = [
    "MAX_DEPTH",
    "MAX_WIDTH",
    "ModelSpec",
    "count_params",
    "create_model",
    "get_spec",
    "list_models",
    "make_config",
    "register_model",
    "register_preset",
]
