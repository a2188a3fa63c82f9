"""Symbolic Big-O of a layer from its own FLOP formulas (sympy).

The FLOP terms of a layer are exact polynomials in its sizes (:mod:`archlab.cost.formulas`).
Their Big-O keeps the monomials that are not dominated by another one — all sizes are >= 1, so
``m1`` is dominated by ``m2`` when every exponent of ``m1`` is <= the one in ``m2`` — and drops
constant factors. ``divisors`` (conv's groups g, always in C_in/g >= 1) are ignored in that
test. Known inequalities (``bounds``, e.g. heads <= d_model) are applied first, as
upper bounds, so ``H*n**2`` from the softmax folds into ``n**2*d``. The result prints as
``"O(<expr>)"`` with a sympy-parsable ``<expr>``, e.g. ``"O(L*(n**2*d + n*d**2))"``.
"""

from __future__ import annotations

from functools import lru_cache

import sympy

__all__ = ["big_o", "expr", "parse_complexity", "symbols_for"]


@lru_cache(maxsize=8192)
def expr(formula: str, names: tuple[str, ...]) -> sympy.Expr:
    """A formula string as a sympy expression in the layer's symbols (parsing is the slow part)."""
    return sympy.sympify(formula, locals=symbols_for(names))


@lru_cache(maxsize=256)
def symbols_for(names: tuple[str, ...]) -> dict[str, sympy.Symbol]:
    """Positive integer symbols; passed as ``locals`` so names like ``N``/``I``/``E`` stay
    symbols."""
    return {n: sympy.Symbol(n, positive=True, integer=True) for n in names}


def parse_complexity(text: str, names: tuple[str, ...] = ()) -> sympy.Expr:
    """The expression inside ``"O(...)"`` as a sympy expression (for comparisons in tests)."""
    inner = text.strip()
    if not (inner.startswith("O(") and inner.endswith(")")):
        raise ValueError(f"not of the form O(...): {text!r}")
    return sympy.sympify(inner[2:-1], locals=symbols_for(names))


@lru_cache(maxsize=2048)
def big_o(
    formulas: tuple[str, ...],
    *,
    symbols: tuple[str, ...],
    fixed: tuple[tuple[str, int], ...] = (),
    order: tuple[str, ...] = (),
    outer: tuple[str, ...] = (),
    bounds: tuple[tuple[str, str], ...] = (),
    divisors: tuple[str, ...] = (),
) -> str | None:
    """Big-O of ``sum(formulas)`` in ``symbols``; ``fixed`` symbols are replaced by numbers."""
    if not formulas:
        return None
    syms = symbols_for(symbols)
    total = sum((expr(f, symbols) for f in formulas), sympy.Integer(0))
    total = total.subs({syms[k]: v for k, v in fixed})
    total = total.subs({syms[k]: sympy.sympify(b, locals=syms) for k, b in bounds})
    # Monomials as exponent vectors (negative for a divisor such as conv's groups g).
    gens = [s for s in syms.values() if total.has(s)]
    monos = set()
    for term in sympy.Add.make_args(sympy.expand(total)):
        coeff, rest = term.as_coeff_Mul()
        powers = rest.as_powers_dict()
        m = tuple(int(powers.get(g, 0)) for g in gens)
        if coeff > 0 and any(m):
            monos.add(m)
    if not monos:
        return "O(1)"
    # All sizes are >= 1, so a monomial whose exponents are all <= another's is dominated.
    # A `divisor` (conv's groups g) only appears as C_in/g >= 1, so it is left out of the test.
    skip = [str(g) in divisors for g in gens]

    def dominated(m: tuple[int, ...], o: tuple[int, ...]) -> bool:
        return o != m and all(a <= b or s for a, b, s in zip(m, o, skip, strict=True))

    keep = [m for m in monos if not any(dominated(m, o) for o in monos)]
    names = [str(g) for g in gens]
    rank = {n: i for i, n in enumerate(order)}
    idx = sorted(range(len(names)), key=lambda i: (rank.get(names[i], len(rank)), names[i]))
    # Pull the `outer` symbols' common power out in front: L*(...).
    common = [min(m[i] for m in keep) if names[i] in outer else 0 for i in range(len(names))]
    inner = [tuple(a - c for a, c in zip(m, common, strict=True)) for m in keep]
    inner.sort(key=lambda m: tuple(-m[i] for i in idx))
    body = " + ".join(_mono(m, names, idx) for m in inner)
    front = _mono(tuple(common), names, idx)
    if front == "1":
        return f"O({body})"
    return (
        f"O({front}*({body}))"
        if len(inner) > 1
        else f"O({front}*{body})"
        if body != "1"
        else f"O({front})"
    )


def _mono(exps: tuple[int, ...], names: list[str], idx: list[int]) -> str:
    def power(i: int, e: int) -> str:
        return names[i] if e == 1 else f"{names[i]}**{e}"

    num = [power(i, exps[i]) for i in idx if exps[i] > 0]
    den = [power(i, -exps[i]) for i in idx if exps[i] < 0]
    text = "*".join(num) or "1"
    if den:
        text += "/" + (den[0] if len(den) == 1 else "(" + "*".join(den) + ")")
    return text
