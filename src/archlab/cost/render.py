"""The text derivation of a LayerCost, laid out like the seed's Parts 3-5.

Parameters first (each tensor: name, shape, formula in the layer's symbols, the product of its
shape, the count), then the total and the convention differences; with sizes, forward FLOPs per
component (dense / pointwise), backward, the tensors saved for backward, and the Big-O.
"""

from __future__ import annotations

import sympy

from archlab.cost.symbolic import symbols_for
from archlab.cost.types import LayerCost

__all__ = ["human", "render_text"]

_UNITS = (("T", 10**12), ("G", 10**9), ("M", 10**6), ("k", 10**3))


def human(x: float, unit: str) -> str:
    """``12,345,678 FLOPs (12.3 MFLOPs)`` — exact with separators, then a short form if large."""
    exact = f"{x:,} {unit}" if isinstance(x, int) else f"{x:,.1f} {unit}"
    if unit == "bytes":
        for p, name in ((30, "GiB"), (20, "MiB"), (10, "KiB")):
            if x >= 2**p:
                return f"{exact} ({x / 2**p:.1f} {name})"
        return exact
    for prefix, scale in _UNITS:
        if x >= scale:
            return f"{exact} ({x / scale:.1f} {prefix}{unit})"
    return exact


def _shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ")"


def _product(shape: tuple[int, ...]) -> str:
    return " x ".join(f"{s:,}" for s in shape) if len(shape) > 1 else f"{shape[0]:,}"


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    if not rows:  # e.g. LayerNorm without elementwise affine: no parameter tensors
        return [f"{indent}(none)"]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [
        indent + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    ]


def render_text(cost: LayerCost) -> str:
    out = [f"{cost.layer} (convention: {cost.convention})"]
    given = [
        f"{k} = {v['meaning']} = {v['value']:,}"
        for k, v in cost.symbols.items()
        if v["value"] is not None
    ]
    unset = [f"{k} = {v['meaning']}" for k, v in cost.symbols.items() if v["value"] is None]
    out.append("symbols: " + ", ".join(given))
    if unset:
        out.append("         not given: " + ", ".join(unset))
    out += ["", "Parameters"]
    rows = [
        [t.name, _shape(t.shape), t.formula, "=", _product(t.shape), "=", f"{t.params:,}"]
        for t in cost.terms
    ]
    out += _table(rows)
    shown: set[str] = set()
    for t in cost.terms:  # each distinct note once, under the first term that carries it
        if t.note and t.note not in shown:
            shown.add(t.note)
            out.append(f"    {t.name}: {t.note}")
    parts = [f"{t.params:,}" for t in cost.terms]
    total = " + ".join(parts) + " = " if 1 < len(parts) <= 8 else ""
    out.append(f"  total: {total}{cost.params:,} params")
    if len(cost.terms) > 1:
        out.append(f"  as one formula: {_one_formula(cost)} = {cost.params:,} params")
    if cost.convention_diffs:
        other = "keras" if cost.convention == "pytorch" else "pytorch"
        delta = sum(
            (d.keras_params - d.pytorch_params)
            if other == "keras"
            else (d.pytorch_params - d.keras_params)
            for d in cost.convention_diffs
        )
        name = {"pytorch": "PyTorch", "keras": "Keras"}
        out += [
            "",
            f"Conventions: {name[cost.convention]} counts {cost.params:,} params; "
            f"{name[other]} counts {cost.params + delta:,} params",
        ]
        for d in cost.convention_diffs:
            out.append(
                f"  {d.name}: PyTorch {d.pytorch_params:,}, Keras {d.keras_params:,} params "
                f"— {d.reason}"
            )
    if cost.flops:
        out += ["", "Forward FLOPs per component (1 multiply-add = 2 FLOPs)"]
        rows = [[f.kind, f.name, f.formula, "=", f"{f.flops:,}"] for f in cost.flops]
        out += _table(rows)
        for kind in ("dense", "pointwise"):
            total = getattr(cost, f"flops_forward_{kind}")
            formulas = [f.formula for f in cost.flops if f.kind == kind]
            formula = f"{_factored(cost, formulas)} = " if formulas else ""
            out.append(f"  forward {kind}:{' ' * (10 - len(kind))}{formula}{human(total, 'FLOPs')}")
        out.append(
            f"  backward dense:    {human(cost.flops_backward_dense, 'FLOPs')}"
            "  (grad wrt inputs + grad wrt weights; the input requires grad)"
        )
        out += [
            "",
            f"Activations saved for backward ({cost.config.get('dtype_bytes', 4)} bytes per "
            "element)",
        ]
        rows = [
            [
                s["name"],
                s["formula"],
                "=",
                f"{s['elements']:,} elements",
                "=",
                f"{s['bytes']:,} bytes",
            ]
            for s in cost.saved
        ]
        out += _table(rows)
        out.append(f"  total: {human(cost.activation_bytes, 'bytes')}")
    elif cost.flops_forward_dense is not None:  # e.g. embedding: no arithmetic
        out += [
            "",
            f"Forward FLOPs: {cost.flops_forward_dense:,} dense, "
            f"{cost.flops_forward_pointwise:,} pointwise; backward dense "
            f"{cost.flops_backward_dense:,}; activations saved: "
            f"{human(cost.activation_bytes, 'bytes')}",
        ]
    else:
        meanings = {v["meaning"] for v in cost.symbols.values()}
        opts = ["--seq-len"] if "seq_len" in meanings else []
        opts += (
            ["--image-size"]
            if any(m.startswith(("input size", "height", "patches")) for m in meanings)
            else []
        )
        out += [
            "",
            f"(give {' / '.join(opts)} [--batch-size] for FLOPs and activation memory)",
        ]
    if cost.complexity:
        out += ["", f"Complexity: {cost.complexity}"]
    cross = cost.derived.get("crossover")
    if cross:
        mode = (
            "causal, masked half counted (the full n x n scores are computed)"
            if cross["causal"]
            else "not causal"
        )
        out.append(
            f"Crossover ({mode}): the n**2 terms (QK^T, AV) overtake the n*d**2 terms "
            f"(projections, FFN) at {cross['formula_dense']} = {cross['n_star_dense']:,} tokens "
            "(forward dense FLOPs); over all forward FLOPs at "
            f"n* = {_num(cross['n_star_all_flops'])}"
        )
        if cross["causal"]:
            out.append(
                f"  (a kernel that skipped the masked half would move it to n* = "
                f"{cross['n_star_dense_if_masked_half_skipped']:,})"
            )
    if cost.notes:
        out += ["", "Notes"] + [f"  - {n}" for n in cost.notes]
    return "\n".join(out) + "\n"


def _one_formula(cost: LayerCost) -> str:
    """The parameter count as one factored expression in the layer's symbols (seed Part 3)."""
    return _factored(cost, [t.formula for t in cost.terms])


def _factored(cost: LayerCost, formulas: list[str]) -> str:
    syms = symbols_for(tuple(cost.symbols))
    return str(sympy.factor(sum(sympy.sympify(f, locals=syms) for f in formulas)))


def _num(x: int | float) -> str:
    return f"{x:,}" if isinstance(x, int) else f"{x:,.1f}"
