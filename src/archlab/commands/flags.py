"""Command-line flags generated from config dataclasses (litgpt's rule: the CLI mirrors the config).

A field's flag, type and help come from the field itself: ``--<name with dashes>`` (or the
``flag`` in its metadata), the annotation (``int``, ``float``, ``str``, ``bool``, ``X | None``,
``tuple[float, float]``) and ``metadata["help"]``. Every flag defaults to "not given" (None), so a
command knows exactly what the user typed and can layer it over a recipe's values; optional fields
accept ``none`` to mean None. Booleans get ``--x/--no-x``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from collections.abc import Iterable
from typing import Any

__all__ = ["EXPLICIT_NONE", "add_dataclass_flags", "given_fields", "parse_value"]

NONE_WORDS = ("none", "None", "null")


class _Explicit:
    """The value an optional field gets from ``--flag none`` (None itself means "not given")."""

    def __repr__(self) -> str:
        return "none"


EXPLICIT_NONE = _Explicit()


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(inner type, optional?) of ``X | None``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return tp, False


def parse_value(text: str, tp: Any) -> Any:
    """Parse ``text`` as the field type ``tp``; raise argparse.ArgumentTypeError (argparse names
    the flag: ``argument --mlp-ratio: must be a finite number, got 'nan'``)."""
    inner, optional = _unwrap(tp)
    if optional and text in NONE_WORDS:
        return EXPLICIT_NONE
    try:
        if typing.get_origin(inner) is tuple:
            parts = [p for p in text.replace(" ", "").split(",") if p]
            kinds = typing.get_args(inner)
            if kinds and kinds[-1] is not Ellipsis and len(parts) != len(kinds):
                raise ValueError(f"expected {len(kinds)} comma-separated values")
            kind = kinds[0] if kinds else float
            return tuple(_scalar(p, kind) for p in parts)
        return _scalar(text, inner)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _scalar(text: str, kind: Any) -> Any:
    if kind is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"expected an integer, got {text!r}") from None
    if kind is float:
        try:
            v = float(text)
        except ValueError:
            raise ValueError(f"expected a number, got {text!r}") from None
        if not math.isfinite(v):
            raise ValueError(f"must be a finite number, got {text!r}")
        return v
    return kind(text)


def _flag(f: dataclasses.Field, prefix: str = "") -> str:
    return f.metadata.get("flag") or "--" + prefix + f.name.replace("_", "-")


def add_dataclass_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    cls: type,
    *,
    task: str | None = None,
    skip: Iterable[str] = (),
    dest_prefix: str = "",
) -> dict[str, str]:
    """Add one flag per field of dataclass ``cls``; returns {field name: flag}.

    Fields whose ``metadata["tasks"]`` does not include ``task`` are left out (a flag that would
    be accepted and ignored is worse than none). ``dest_prefix`` keeps two dataclasses' fields
    apart in one namespace.
    """
    hints = typing.get_type_hints(cls)
    out = {}
    skip = set(skip)
    for f in dataclasses.fields(cls):
        if f.name in skip or (task and task not in f.metadata.get("tasks", (task,))):
            continue
        flag = _flag(f)
        tp = hints[f.name]
        inner, optional = _unwrap(tp)
        default = f.default if f.default is not dataclasses.MISSING else None
        helptext = f.metadata.get("help", f.name)
        if isinstance(default, tuple):
            default = ",".join(map(str, default))
        shown = "none" if default is None else default
        kw: dict[str, Any] = {"dest": dest_prefix + f.name, "default": None}
        if inner is bool:
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                help=f"{helptext} (default: {'yes' if default else 'no'})",
                **kw,
            )
        else:
            choices = f.metadata.get("choices")
            metavar = f.metadata.get("metavar")
            if metavar is None and not choices:
                metavar = inner.__name__.upper() if isinstance(inner, type) else "VALUE"
            parser.add_argument(
                flag,
                type=lambda s, tp=tp: parse_value(s, tp),
                choices=list(choices) if choices else None,
                metavar=metavar,
                help=f"{helptext} (default: {shown})",
                **kw,
            )
        out[f.name] = flag
    return out


def given_fields(args: argparse.Namespace, names: Iterable[str], dest_prefix: str = "") -> dict:
    """The fields among ``names`` the user gave on the command line (``--x none`` gives None)."""
    out = {}
    for n in names:
        v = getattr(args, dest_prefix + n, None)
        if v is not None:
            out[n] = None if v is EXPLICIT_NONE else v
    return out
