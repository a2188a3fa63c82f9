"""Shared machinery of the per-layer formulas: validation, units, and the derivation builder.

Every formula is written **once**, as an expression string in the layer's own symbols (e.g.
``"2*B*n*i*o"``). The number is evaluated from that string by a tiny integer evaluator, and the
Big-O is derived from the same strings with sympy (:mod:`archlab.cost.symbolic`), so the printed
formula, the number and the complexity can never drift apart.

Conventions (units are named everywhere; see also :mod:`archlab.cost.types`):

* 1 multiply-add = 1 MAC = **2 FLOPs**.
* *Dense* FLOPs: matmul / conv / attention products (QKᵀ, AV).
* *Pointwise* FLOPs, per element (a fixed count, chosen so scaling is right, not cycle-accurate):
  add, multiply, bias add, residual add, mask add, the 1/√d_k scale: **1**; any activation
  (relu, gelu, tanh, sigmoid, silu): **1**; softmax: **5** (max, subtract, exp, sum, divide);
  normalisation (LayerNorm/BatchNorm statistics and normalise): **5** (mean-sum, subtract,
  square, variance-sum, multiply by 1/σ); the affine γ·x̂ + β: **2**.
* *Backward dense* FLOPs assume the layer input requires grad (it is inside a network), so each
  dense product costs one matmul for the grad wrt its input and one for the grad wrt its weight:
  **2 × forward**. Exceptions are spelled out where they occur (the recurrent product at step 0
  acts on the constant zero initial state; an embedding's backward is a scatter-add, not dense).
* *Activation bytes*: tensors autograd saves for backward, excluding parameters and buffers,
  at ``dtype`` bytes per element (integer indices at 8 bytes). Counted for the unfused
  reference each formula names, on the CPU kernels, dropout off.
"""

from __future__ import annotations

import ast
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from archlab.cost.symbolic import big_o
from archlab.cost.types import ConventionDiff, FlopTerm, LayerCost, Term
from archlab.errors import ArchlabError

CONVENTIONS = ("pytorch", "keras")
DTYPE_BYTES = {
    "float64": 8,
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "fp32": 4,
    "fp16": 2,
    "bf16": 2,
    "double": 8,
    "float": 4,
    "half": 2,
}
ACTIVATIONS = ("relu", "gelu", "tanh", "sigmoid", "silu")
# Which tensor an activation saves for its backward (checked with saved_tensors_hooks in tests).
ACTIVATION_SAVES = {
    "relu": "output",
    "tanh": "output",
    "sigmoid": "output",
    "gelu": "input",
    "silu": "input",
}
SOFTMAX_FLOPS = 5  # per element: max, subtract, exp, sum, divide
NORM_FLOPS = 5  # per element: mean-sum, subtract, square, variance-sum, multiply by 1/sigma
AFFINE_FLOPS = 2  # per element: gamma * x_hat + beta


# --- validation ---------------------------------------------------------------------------------


def positive(name: str, value: Any) -> int:
    """A size that must be an int >= 1; raises ArchlabError naming the field otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArchlabError(f"{name} must be a positive integer, got {value!r}")
    return value


def non_negative(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ArchlabError(f"{name} must be a non-negative integer, got {value!r}")
    return value


def optional_positive(name: str, value: Any) -> int | None:
    return None if value is None else positive(name, value)


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ArchlabError(
            f"convention must be one of {', '.join(CONVENTIONS)}, got {convention!r}"
        )
    return convention


def check_activation(activation: str) -> str:
    if activation not in ACTIVATIONS:
        raise ArchlabError(
            f"activation must be one of {', '.join(ACTIVATIONS)}, got {activation!r}"
        )
    return activation


def dtype_bytes(dtype: int | str) -> int:
    """Bytes per element: an int (4) or a name ('float32', 'bf16', ...)."""
    if isinstance(dtype, str):
        key = dtype.removeprefix("torch.")
        if key not in DTYPE_BYTES:
            raise ArchlabError(
                f"dtype must be bytes per element or one of {', '.join(DTYPE_BYTES)}, got {dtype!r}"
            )
        return DTYPE_BYTES[key]
    if isinstance(dtype, bool) or not isinstance(dtype, int) or dtype not in (1, 2, 4, 8):
        raise ArchlabError(f"dtype must be 1, 2, 4 or 8 bytes per element, got {dtype!r}")
    return dtype


def tuple_of(
    name: str, value: int | Sequence[int], dims: int, *, minimum: int = 1
) -> tuple[int, ...]:
    """PyTorch's `_pair`: an int broadcast to `dims` values, or a tuple of exactly `dims`."""
    vals = (
        (value,) * dims if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    )
    if len(vals) != dims:
        raise ArchlabError(f"{name} must be an int or {dims} ints, got {value!r}")
    check = positive if minimum == 1 else non_negative
    return tuple(check(name, v) for v in vals)


# --- the integer evaluator ----------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _parse(formula: str) -> ast.expr:
    return ast.parse(formula, mode="eval").body


def evaluate(formula: str, values: Mapping[str, int]) -> int:
    """Evaluate an integer formula (+ - * ** and exact /) over named sizes."""
    return _eval(_parse(formula), values)


def _eval(node: ast.expr, v: Mapping[str, int]) -> int:
    if isinstance(node, ast.Constant) and isinstance(node.value, int):
        return node.value
    if isinstance(node, ast.Name):
        return v[node.id]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_eval(node.operand, v)
    if isinstance(node, ast.BinOp):
        a, b = _eval(node.left, v), _eval(node.right, v)
        if isinstance(node.op, ast.Add):
            return a + b
        if isinstance(node.op, ast.Sub):
            return a - b
        if isinstance(node.op, ast.Mult):
            return a * b
        if isinstance(node.op, ast.Pow):
            return a**b
        if isinstance(node.op, ast.Div):
            if a % b:
                raise ArithmeticError(f"inexact division {a}/{b}")
            return a // b
    raise ValueError(f"unsupported formula node {ast.dump(node)}")


# --- the builder --------------------------------------------------------------------------------


@dataclass
class Sym:
    """One symbol of a layer: its meaning (the PyTorch argument) and value (None = not given)."""

    meaning: str
    value: int | None


@dataclass
class Derivation:
    """Collects the terms of one layer and turns them into a LayerCost.

    ``symbols`` maps the layer's short symbols (``h``, ``i``, ``n`` ...) to their meaning and
    value; ``order`` is the order symbols are printed in the Big-O; ``outer`` are symbols pulled
    out in front (``L`` for a stack). Sizes (batch/sequence/image) are ``None`` when not given:
    then params/terms are still exact and the FLOP/memory fields stay None.
    """

    layer: str
    config: dict[str, Any]
    convention: str
    symbols: dict[str, Sym]
    dtype: int = 4
    order: tuple[str, ...] = ()
    outer: tuple[str, ...] = ()
    bounds: dict[str, str] = field(default_factory=dict)  # e.g. {"H": "d"}: heads <= d_model
    # Symbols replaced by their value (1 if not given) before the Big-O: the batch, and L for a
    # single recurrent layer (directions and gate counts are written as numbers already).
    fixed_symbols: tuple[str, ...] = ("B",)
    terms: list[Term] = field(default_factory=list)
    flops: list[tuple[str, str, str]] = field(default_factory=list)
    backward: list[tuple[str, str]] = field(default_factory=list)
    saved: list[tuple[str, str, int]] = field(default_factory=list)
    diffs: list[ConventionDiff] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def values(self) -> dict[str, int]:
        return {k: s.value for k, s in self.symbols.items() if s.value is not None}

    def param(self, name: str, shape: tuple[int, ...], formula: str, note: str = "") -> None:
        count = math.prod(shape)
        assert evaluate(formula, self.values) == count, (name, formula, shape)
        self.terms.append(Term(name, tuple(shape), count, formula, note))

    def flop(self, name: str, kind: str, formula: str, backward: str | None = None) -> None:
        """A forward component; dense ones default to a backward of 2 x forward."""
        self.flops.append((name, kind, formula))
        if kind == "dense":
            self.backward.append((name, backward if backward is not None else f"2*({formula})"))

    def save(self, name: str, elements: str, bytes_per: int | None = None) -> None:
        """A tensor saved for backward: `elements` formula, at `bytes_per` (default dtype)."""
        self.saved.append((name, elements, self.dtype if bytes_per is None else bytes_per))

    def extend(self, other: Derivation, prefix: str = "", times: str = "") -> None:
        """Append another derivation's FLOP/backward/saved terms (optionally x `times`)."""

        def scaled(f: str) -> str:
            return f if not times else f"{times}*({f})" if "+" in f or "-" in f else f"{times}*{f}"

        self.flops += [(prefix + n, k, scaled(f)) for n, k, f in other.flops]
        self.backward += [(prefix + n, scaled(f)) for n, f in other.backward]
        self.saved += [(prefix + n, scaled(f), b) for n, f, b in other.saved]

    def finish(self, sized: bool) -> LayerCost:
        v = self.values
        self.config["dtype_bytes"] = self.dtype
        cost = LayerCost(
            layer=self.layer,
            config=self.config,
            convention=self.convention,
            terms=self.terms,
            params=sum(t.params for t in self.terms),
            convention_diffs=self.diffs,
            notes=self.notes,
            symbols={k: {"meaning": s.meaning, "value": s.value} for k, s in self.symbols.items()},
        )
        cost.complexity = big_o(
            tuple(f for _, _, f in self.flops),
            symbols=tuple(self.symbols),
            fixed=tuple((k, v.get(k, 1)) for k in self.fixed_symbols if k in self.symbols),
            order=self.order,
            outer=self.outer,
            bounds=tuple(self.bounds.items()),
            divisors=("g",) if "g" in self.symbols else (),
        )
        if sized:
            cost.flops = [
                FlopTerm(n, k, evaluate(f, v), f)  # type: ignore[arg-type]
                for n, k, f in self.flops
            ]
            cost.flops_forward_dense = sum(t.flops for t in cost.flops if t.kind == "dense")
            cost.flops_forward_pointwise = sum(t.flops for t in cost.flops if t.kind == "pointwise")
            cost.flops_backward_dense = sum(evaluate(f, v) for _, f in self.backward)
            cost.activation_bytes = sum(evaluate(f, v) * b for _, f, b in self.saved)
            cost.saved = [
                {"name": n, "formula": f, "elements": evaluate(f, v), "bytes": evaluate(f, v) * b}
                for n, f, b in self.saved
            ]
        return cost


__all__ = [
    "ACTIVATIONS",
    "ACTIVATION_SAVES",
    "AFFINE_FLOPS",
    "CONVENTIONS",
    "NORM_FLOPS",
    "SOFTMAX_FLOPS",
    "Derivation",
    "Sym",
    "check_activation",
    "check_convention",
    "dtype_bytes",
    "evaluate",
    "non_negative",
    "optional_positive",
    "positive",
    "tuple_of",
]
