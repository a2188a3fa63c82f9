"""Plain-data results of the cost engine, shared by the per-layer formulas and ``analyze``.

Units (fvcore names its unit; so do we): parameters are counted elements; one multiply-add is
**1 MAC = 2 FLOPs**; bytes are bytes. *Dense* FLOPs are matmul/conv/attention products; *pointwise*
FLOPs are everything element-wise (biases, norms, activations, softmax, residual adds).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class Term:
    """One parameter tensor (or buffer) in a derivation, e.g. ``W_ih (200, 100) = 20,000``."""

    name: str
    shape: tuple[int, ...]
    params: int
    formula: str  # in the layer's own symbols, e.g. "hidden_size*input_size"
    note: str = ""  # why it is there / why a convention differs


@dataclass(frozen=True)
class FlopTerm:
    """One component of a forward pass, e.g. ``QK^T`` (dense) or ``softmax`` (pointwise)."""

    name: str
    kind: Literal["dense", "pointwise"]
    flops: int  # FLOPs (2 per multiply-add)
    formula: str


@dataclass(frozen=True)
class ConventionDiff:
    """A named difference between parameter-count conventions (PyTorch vs Keras)."""

    name: str
    pytorch_params: int
    keras_params: int
    reason: str


@dataclass
class LayerCost:
    """Everything the engine knows about one layer (or block/stack) at given sizes."""

    layer: str
    config: dict[str, Any]
    convention: str
    terms: list[Term]
    params: int
    flops: list[FlopTerm] = field(default_factory=list)  # forward components; empty w/o sizes
    flops_forward_dense: int | None = None
    flops_forward_pointwise: int | None = None
    flops_backward_dense: int | None = None
    activation_bytes: int | None = None
    complexity: str | None = None  # "O(...)", sympy-parsable inside the parentheses
    convention_diffs: list[ConventionDiff] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The layer's own symbols: {"h": {"meaning": "hidden_size", "value": 200}} (value None when
    # a size was not given); every formula string above is written in them.
    symbols: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Tensors saved for backward behind activation_bytes: {name, formula, elements, bytes}.
    saved: list[dict[str, Any]] = field(default_factory=list)
    # Layer-specific results, e.g. a Transformer's crossover length n* (see the formulas).
    derived: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["terms"] = [{**asdict(t), "shape": list(t.shape)} for t in self.terms]
        return d


__all__ = ["ConventionDiff", "FlopTerm", "LayerCost", "Term"]
