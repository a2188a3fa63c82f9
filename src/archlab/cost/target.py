"""Resolve ``PKG.MODULE:CALLABLE`` to an ``nn.Module``; shape-only example inputs from shape
strings."""

from __future__ import annotations

import importlib
import math
import os
import re
import sys

import torch
from torch import nn

from archlab.errors import ArchlabError

__all__ = ["build_inputs", "load_target", "parse_shape"]

_DTYPES = {
    "float32": torch.float32,
    "float": torch.float32,
    "float64": torch.float64,
    "double": torch.float64,
    "float16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "long": torch.long,
    "int64": torch.long,
    "int": torch.int32,
    "int32": torch.int32,
}


def load_target(spec: str) -> nn.Module:
    """``pkg.mod:name`` (``name`` may be dotted) -> an nn.Module.

    ``name`` is an nn.Module instance, or a class / factory called with no arguments. The current
    directory is put on ``sys.path`` first, as ``python -m`` does.
    """
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise ArchlabError(f"expected PKG.MODULE:CALLABLE, got {spec!r}")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        obj = importlib.import_module(mod_name)
    except ImportError as e:
        raise ArchlabError(f"cannot import module {mod_name!r}: {e}") from e
    except (Exception, SystemExit) as e:  # the module itself raised (or exited) while importing
        raise ArchlabError(f"importing {mod_name!r} failed: {_what(e)}") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ArchlabError(f"{mod_name!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise ArchlabError(f"{spec} is neither an nn.Module nor callable")
    try:
        model = obj()
    except (Exception, SystemExit) as e:  # SystemExit too: the user's code, not ours, exits
        raise ArchlabError(f"calling {spec}() failed: {_what(e)}") from None
    if not isinstance(model, nn.Module):
        raise ArchlabError(f"{spec}() returned {type(model).__name__}, not an nn.Module")
    return model


def _what(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"it raised SystemExit({e.code!r})"
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def parse_shape(text: str) -> tuple[int, ...]:
    """``"1x128"`` -> ``(1, 128)``; every size must be a positive integer."""
    if not re.fullmatch(r"\s*\d+(\s*[x,]\s*\d+)*\s*", text):
        raise ArchlabError(f"bad input shape {text!r}: expected sizes joined by 'x', e.g. 1x128")
    shape = tuple(int(s) for s in re.split(r"[x,]", text.replace(" ", "")))
    if any(s <= 0 for s in shape):
        raise ArchlabError(f"bad input shape {text!r}: sizes must be positive")
    if math.prod(shape) >= 2**63:  # torch counts elements in int64
        raise ArchlabError(f"bad input shape {text!r}: more than 2**63 - 1 elements")
    return shape


def build_inputs(model: nn.Module, shapes: list[str], dtype: str) -> tuple[tuple, str]:
    """Shape-only example inputs for ``analyze`` (meta tensors: no memory, any size) plus a
    sentence saying what they are. ``analyze`` turns them into fake tensors on the model's device,
    so ``100000000000x4`` costs nothing; values are never read (fake tensors have none)."""
    if dtype not in _DTYPES:
        raise ArchlabError(f"unknown input dtype {dtype!r}; choose one of {', '.join(_DTYPES)}")
    dt = _DTYPES[dtype]
    dims = [parse_shape(s) for s in shapes]
    inputs = []
    for text, d in zip(shapes, dims, strict=True):
        try:
            inputs.append(torch.empty(d, dtype=dt, device="meta"))
        except (RuntimeError, ValueError, TypeError, OverflowError) as e:
            msg = " ".join(str(e).split())[:120]
            raise ArchlabError(f"bad input shape {text!r}: too large for torch ({msg})") from None
    note = (
        f"{dtype} tensors of shape {' and '.join(shapes)}, shapes only (fake tensors: no memory "
        "is allocated and no value is read, so values cannot affect the counts)"
    )
    return tuple(inputs), note
