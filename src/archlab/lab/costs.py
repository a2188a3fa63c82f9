"""The cost tab and ``POST /api/cost``: ``archlab cost`` from a JSON object, and FLOPs against n.

A request names the layer and the CLI's options in snake_case — ``{"layer": "rnn", "input_size":
100, "hidden_size": 200, "convention": "keras"}`` is ``archlab cost rnn --input-size 100
--hidden-size 200 --convention keras``. The option table, defaults and the formula each layer maps
to are the CLI's own (:data:`archlab.commands.cost.LAYERS` / ``OPTIONS``), so the answer is the
JSON ``archlab cost --json`` prints (tested byte for byte); flags become booleans
(``"no_bias": true`` is ``--no-bias``). The text derivation is the CLI's
:func:`~archlab.cost.render.render_text`.

:func:`flops_vs_seq_len` evaluates the layer's own forward-FLOP formula strings at other
sequence lengths, so the plot, the derivation and n* come from one set of formulas.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from archlab.commands.cost import LAYERS, OPTIONS
from archlab.cost.types import LayerCost
from archlab.errors import ArchlabError

__all__ = ["MAX_SIZE", "Curve", "cost_json", "flops_vs_seq_len", "layer_cost", "layer_options"]

# No real layer has a width, length or batch of 10^8 or more; larger numbers are typos, and the
# derivation of a 10^30-wide layer is not worth a request.
MAX_SIZE = 10**8
_COMMON = ("dtype", "convention")


def _key(option: str) -> str:
    return option[2:].replace("-", "_")  # "--input-size" -> "input_size"


def layer_options(layer: str) -> list[str]:
    """The JSON keys ``layer`` takes (its CLI options in snake_case), plus dtype and convention."""
    if layer not in LAYERS:
        raise ArchlabError(f"unknown layer {layer!r}; valid layers: {', '.join(LAYERS)}")
    return [_key(o) for o in LAYERS[layer][2]] + list(_COMMON)


def _value(layer: str, option: str, value: Any) -> Any:
    """A JSON value for ``option`` as argparse would have produced it from the command line."""
    spec, key = OPTIONS[option], _key(option)
    if "choices" in spec and value not in spec["choices"]:
        raise ArchlabError(f"{key} must be one of {', '.join(map(str, spec['choices']))}")
    kind = spec.get("type")
    if kind is None:
        return value
    if isinstance(value, str):
        if kind is int:
            raise ArchlabError(f"{key} must be an integer for {layer}, got {value!r}")
        try:
            value = kind(value)  # "3x3", "32,24", "same": the CLI's own parser
        except Exception:
            raise ArchlabError(f"{key}: expected an int or HxW, got {value!r}") from None
    if isinstance(value, list):
        value = tuple(value)
    items = value if isinstance(value, tuple) else () if isinstance(value, str) else (value,)
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int):
            raise ArchlabError(f"{key} must be an integer for {layer}, got {v!r}")
        if v >= MAX_SIZE:
            raise ArchlabError(f"{key} = {v:,} is too large; sizes must be below {MAX_SIZE:,}")
    return value


def layer_cost(request: Mapping[str, Any]) -> LayerCost:
    """The LayerCost of a request ``{"layer": ..., <snake_case options>...}``."""
    if not isinstance(request, Mapping):
        raise ArchlabError('the request must be a JSON object such as {"layer": "rnn", ...}')
    layer = request.get("layer")
    if not isinstance(layer, str):
        raise ArchlabError(f"give the layer: one of {', '.join(LAYERS)}")
    allowed = layer_options(layer)
    unknown = sorted(set(request) - {"layer", *allowed})
    if unknown:
        raise ArchlabError(f"{layer} takes no {', '.join(unknown)}; it takes {', '.join(allowed)}")
    fn, _, options = LAYERS[layer]
    kw: dict[str, Any] = {}
    for option in options:
        spec, key = OPTIONS[option], _key(option)
        dest, given = spec.get("dest", key), request.get(key)
        action = spec.get("action")
        if action in ("store_true", "store_false"):
            if given is not None and not isinstance(given, bool):
                raise ArchlabError(f"{key} is a flag: true or false, got {given!r}")
            kw[dest] = bool(given) if action == "store_true" else not given
        elif given is None:
            if spec.get("required"):
                raise ArchlabError(f"{key} is required for {layer}")
            if spec.get("default") is not None:
                kw[dest] = spec["default"]
        else:
            kw[dest] = _value(layer, option, given)
    dtype = request.get("dtype", "float32")
    convention = request.get("convention", "pytorch")
    try:
        return fn(**kw, dtype=dtype, convention=convention)  # type: ignore[operator]
    except (TypeError, OverflowError, ArithmeticError) as e:
        raise ArchlabError(f"{layer}: {e}") from None


def cost_json(request: Mapping[str, Any]) -> dict[str, Any]:
    """What ``archlab cost LAYER ... --json`` prints, for the same options (as parsed JSON: tuples
    are lists, as ``json.dump`` writes them)."""
    return json.loads(json.dumps(layer_cost(request).to_json()))


@dataclass(frozen=True)
class Curve:
    """Forward dense FLOPs at each n, split by the power of n in each term."""

    n: list[int]
    quadratic: list[int]  # terms in n**2 (QK^T, AV): attention's scores
    linear: list[int]  # terms in n (projections, FFN, recurrences)
    n_star: float | None  # where the two meet (the engine's crossover), None without n**2 terms


def flops_vs_seq_len(cost: LayerCost, ns: Sequence[int]) -> Curve:
    """Evaluate ``cost``'s forward dense FLOP formulas at each sequence length in ``ns``.

    n* is the engine's crossover where it gives one (Transformer block and stack); for a lone
    attention layer it is solved the same way, a·n² = b·n from the formulas' coefficients.
    """
    import sympy

    from archlab.cost.formulas._base import evaluate
    from archlab.cost.symbolic import expr, symbols_for

    n_key = next((k for k, v in cost.symbols.items() if v["meaning"] == "seq_len"), None)
    if n_key is None or not cost.flops:
        raise ArchlabError(f"{cost.layer} has no sequence length; give seq_len for a FLOPs plot")
    names = tuple(cost.symbols)
    n = symbols_for(names)[n_key]
    values = {k: v["value"] for k, v in cost.symbols.items() if v["value"] is not None}
    dense = [t.formula for t in cost.flops if t.kind == "dense"]
    power = {f: sympy.degree(expr(f, names), n) for f in dense}
    quad, lin = [], []
    for size in ns:
        at = {**values, n_key: int(size)}
        quad.append(sum(evaluate(f, at) for f in dense if power[f] >= 2))
        lin.append(sum(evaluate(f, at) for f in dense if power[f] < 2))
    cross = cost.derived.get("crossover")
    n_star: float | None = float(cross["n_star_dense"]) if cross else None
    if n_star is None and any(p >= 2 for p in power.values()):
        fixed = {symbols_for(names)[k]: v for k, v in values.items() if k != n_key}
        poly = sympy.Poly(sum(expr(f, names) for f in dense).subs(fixed), n)
        n_star = float(poly.coeff_monomial(n) / poly.coeff_monomial(n**2))
    return Curve([int(s) for s in ns], quad, lin, n_star)
