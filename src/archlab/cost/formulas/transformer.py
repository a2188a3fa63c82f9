"""Multi-head self-attention, position-wise FFN, Transformer block and stack.

Vaswani et al. 2017, "Attention Is All You Need": Attention(Q,K,V) = softmax(QKᵀ/√d_k) V with
h heads of d_k = d_model/h (eq. 1 and §3.2.2); FFN(x) = act(x W_1 + b_1) W_2 + b_2 (eq. 2);
Table 1 gives self-attention O(n²·d) per layer. Parameter names and shapes follow
``nn.MultiheadAttention`` (in_proj_weight (3d, d), out_proj (d, d)) and
``nn.TransformerEncoderLayer`` (linear1/linear2, norm1/norm2; ``norm_first`` = pre-norm).

FLOPs per layer (dense, 2 per multiply-add), for a sequence of n tokens and d = d_model:
Q/K/V/out projections 8·n·d², QKᵀ 2·n²·d, AV 2·n²·d, FFN 4·n·d·d_ff. Kaplan et al. 2020
(Table 1) write the forward pass as ≈ 2N + 2·n_layer·n_ctx·d_attn FLOPs per token; their context
term equals QKᵀ and AV over the causal half on average. We count what the math SDPA kernel (and
FlopCounterMode) executes: the full n×n scores, masked or not, i.e. 4·n·d per token per layer.
"""

from __future__ import annotations

from fractions import Fraction

import sympy

from archlab.cost.formulas._base import (
    ACTIVATION_SAVES,
    SOFTMAX_FLOPS,
    Derivation,
    Sym,
    check_activation,
    check_convention,
    dtype_bytes,
    evaluate,
    optional_positive,
    positive,
)
from archlab.cost.formulas.basic import add_layernorm
from archlab.cost.symbolic import expr, symbols_for
from archlab.cost.types import LayerCost
from archlab.errors import ArchlabError

__all__ = ["attention", "ffn", "transformer", "transformer_block"]


def _symbols(D: int, H: int | None, F: int | None, batch_size, seq_len) -> tuple[bool, dict]:
    b, n = optional_positive("batch_size", batch_size), optional_positive("seq_len", seq_len)
    sized = n is not None
    syms = {"d": Sym("d_model", D)}
    if H is not None:
        syms["H"] = Sym("heads", H)
    if F is not None:
        syms["d_ff"] = Sym("d_ff", F)
    syms |= {"B": Sym("batch_size", (b or 1) if sized else None), "n": Sym("seq_len", n)}
    return sized, syms


def _check_heads(d_model: int, heads: int) -> tuple[int, int]:
    D, H = positive("d_model", d_model), positive("heads", heads)
    if D % H:
        raise ArchlabError(f"heads ({H}) must divide d_model ({D})")
    return D, H


def _d_ff(d_model: int, d_ff: int | None) -> int:
    return 4 * d_model if d_ff is None else positive("d_ff", d_ff)


def _attention(d: Derivation, bias: bool, causal: bool, prefix: str = "") -> None:
    """Self-attention terms into `d` (symbols d, H, B, n)."""
    d.param(f"{prefix}in_proj_weight", _shape(d, "3*d", "d"), "3*d**2", "W_Q, W_K, W_V stacked")
    if bias:
        d.param(f"{prefix}in_proj_bias", _shape(d, "3*d"), "3*d")
    d.param(f"{prefix}out_proj.weight", _shape(d, "d", "d"), "d**2", "W_O")
    if bias:
        d.param(f"{prefix}out_proj.bias", _shape(d, "d"), "d")
    d.flop("Q, K, V projections", "dense", "6*B*n*d**2")
    if bias:
        d.flop("+ Q/K/V bias", "pointwise", "3*B*n*d")
    d.flop("scores Q K^T (H heads of n x n x d/H)", "dense", "2*B*n**2*d")
    d.flop("scale 1/sqrt(d/H)", "pointwise", "B*H*n**2")
    if causal:
        d.flop("causal mask (full n x n, additive -inf)", "pointwise", "B*H*n**2")
    d.flop(f"softmax ({SOFTMAX_FLOPS} per score)", "pointwise", f"{SOFTMAX_FLOPS}*B*H*n**2")
    d.flop("weights @ V", "dense", "2*B*n**2*d")
    d.flop("output projection", "dense", "2*B*n*d**2")
    if bias:
        d.flop("+ output bias", "pointwise", "B*n*d")
    d.save("attention input x (B, n, d)", "B*n*d")
    d.save("scaled q, scaled k, v (B, H, n, d/H)", "3*B*n*d")
    d.save("softmax weights (B, H, n, n)", "B*H*n**2")
    d.save("context, input to out_proj (B, n, d)", "B*n*d")


def _ffn(d: Derivation, activation: str, bias: bool, prefix: str = "") -> None:
    """FFN terms into `d` (symbols d, d_ff, B, n)."""
    d.param(f"{prefix}linear1.weight", _shape(d, "d_ff", "d"), "d_ff*d")
    if bias:
        d.param(f"{prefix}linear1.bias", _shape(d, "d_ff"), "d_ff")
    d.param(f"{prefix}linear2.weight", _shape(d, "d", "d_ff"), "d*d_ff")
    if bias:
        d.param(f"{prefix}linear2.bias", _shape(d, "d"), "d")
    d.flop("x @ W_1 (d -> d_ff)", "dense", "2*B*n*d*d_ff")
    if bias:
        d.flop("+ b_1", "pointwise", "B*n*d_ff")
    d.flop(activation, "pointwise", "B*n*d_ff")
    d.flop("h @ W_2 (d_ff -> d)", "dense", "2*B*n*d_ff*d")
    if bias:
        d.flop("+ b_2", "pointwise", "B*n*d")
    d.save("FFN input x (B, n, d)", "B*n*d")
    if ACTIVATION_SAVES[activation] == "input":
        d.save(f"{activation} input (B, n, d_ff)", "B*n*d_ff")
    d.save(f"{activation} output, input to W_2 (B, n, d_ff)", "B*n*d_ff")


def _shape(d: Derivation, *dims: str) -> tuple[int, ...]:
    return tuple(evaluate(x, d.values) for x in dims)


def attention(
    d_model: int,
    heads: int,
    *,
    bias: bool = True,
    causal: bool = False,
    batch_size: int | None = None,
    seq_len: int | None = None,
    dtype: int | str = 4,
    convention: str = "pytorch",
) -> LayerCost:
    """Multi-head self-attention (``nn.MultiheadAttention(d_model, heads)`` with q = k = v).

    With ``causal`` the mask is added to the full n x n scores (math SDPA), so the masked half is
    counted. Keras MultiHeadAttention has the same parameter count (per-head kernels (d, H, d/H)).
    """
    D, H = _check_heads(d_model, heads)
    sized, syms = _symbols(D, H, None, batch_size, seq_len)
    cfg = dict(d_model=D, heads=H, bias=bias, causal=causal, batch_size=batch_size, seq_len=seq_len)
    d = Derivation(
        "attention",
        cfg,
        check_convention(convention),
        syms,
        dtype=dtype_bytes(dtype),
        order=("n", "d", "H"),
        bounds={"H": "d"},
    )
    _attention(d, bias, causal)
    if causal:
        d.notes.append(CAUSAL_NOTE)
    return d.finish(sized)


def ffn(
    d_model: int,
    d_ff: int | None = None,
    *,
    activation: str = "relu",
    bias: bool = True,
    batch_size: int | None = None,
    seq_len: int | None = None,
    dtype: int | str = 4,
    convention: str = "pytorch",
) -> LayerCost:
    """Position-wise feed-forward network (Vaswani et al. eq. 2); d_ff defaults to 4*d_model."""
    D, F = positive("d_model", d_model), _d_ff(d_model, d_ff)
    check_activation(activation)
    sized, syms = _symbols(D, None, F, batch_size, seq_len)
    cfg = dict(
        d_model=D, d_ff=F, activation=activation, bias=bias, batch_size=batch_size, seq_len=seq_len
    )
    d = Derivation(
        "ffn",
        cfg,
        check_convention(convention),
        syms,
        dtype=dtype_bytes(dtype),
        order=("n", "d", "d_ff"),
    )
    _ffn(d, activation, bias)
    return d.finish(sized)


CAUSAL_NOTE = (
    "causal: the mask is applied to the full n x n scores, as the math SDPA kernel and "
    "FlopCounterMode do, so the masked half is counted; a kernel that skips masked "
    "blocks does about half of the QK^T and AV work"
)


def _block(
    d: Derivation, norm_first: bool, activation: str, bias: bool, causal: bool, prefix: str = ""
) -> None:
    """One nn.TransformerEncoderLayer: post-norm x = LN(x + SA(x)); x = LN(x + FF(x)),
    pre-norm (norm_first) x = x + SA(LN(x)); x = x + FF(LN(x))."""
    if norm_first:
        add_layernorm(d, True, bias, prefix=f"{prefix}norm1.")
    _attention(d, bias, causal, prefix=f"{prefix}self_attn.")
    add_layernorm(d, True, bias, prefix=f"{prefix}norm{1 if not norm_first else 2}.")
    _ffn(d, activation, bias, prefix=prefix)
    if not norm_first:
        add_layernorm(d, True, bias, prefix=f"{prefix}norm2.")
    d.flop("residual adds (2)", "pointwise", "2*B*n*d")


def transformer_block(
    d_model: int,
    heads: int,
    d_ff: int | None = None,
    *,
    norm_first: bool = False,
    activation: str = "relu",
    bias: bool = True,
    causal: bool = False,
    batch_size: int | None = None,
    seq_len: int | None = None,
    dtype: int | str = 4,
    convention: str = "pytorch",
) -> LayerCost:
    """``nn.TransformerEncoderLayer(d_model, heads, d_ff, norm_first=...)``, dropout off."""
    return _stack(
        d_model,
        heads,
        None,
        d_ff,
        norm_first=norm_first,
        final_norm=False,
        activation=activation,
        bias=bias,
        causal=causal,
        batch_size=batch_size,
        seq_len=seq_len,
        dtype=dtype,
        convention=convention,
    )


def transformer(
    d_model: int,
    heads: int,
    layers: int,
    d_ff: int | None = None,
    *,
    norm_first: bool = False,
    final_norm: bool = False,
    activation: str = "relu",
    bias: bool = True,
    causal: bool = False,
    batch_size: int | None = None,
    seq_len: int | None = None,
    dtype: int | str = 4,
    convention: str = "pytorch",
) -> LayerCost:
    """A stack of L blocks (``nn.TransformerEncoder(layer, L, norm=LayerNorm if final_norm)``).

    ``derived["crossover"]`` is the length n* at which the n² terms (QKᵀ, AV) overtake the n·d²
    terms (projections, FFN) in forward dense FLOPs, solved exactly from the formulas: per layer
    4·n²·d = 8·n·d² + 4·n·d·d_ff, so n* = 2·d + d_ff (6·d at d_ff = 4·d). Also given over all
    forward FLOPs (pointwise included). The Big-O assumes d_ff ∝ d_model (the configured ratio).
    """
    return _stack(
        d_model,
        heads,
        positive("layers", layers),
        d_ff,
        norm_first=norm_first,
        final_norm=final_norm,
        activation=activation,
        bias=bias,
        causal=causal,
        batch_size=batch_size,
        seq_len=seq_len,
        dtype=dtype,
        convention=convention,
    )


def _stack(
    d_model: int,
    heads: int,
    layers: int | None,
    d_ff: int | None,
    *,
    norm_first: bool,
    final_norm: bool,
    activation: str,
    bias: bool,
    causal: bool,
    batch_size: int | None,
    seq_len: int | None,
    dtype: int | str,
    convention: str,
) -> LayerCost:
    """One block (layers=None) or a stack of `layers` blocks with an optional final norm."""
    D, H = _check_heads(d_model, heads)
    F = _d_ff(d_model, d_ff)
    check_activation(activation)
    sized, syms = _symbols(D, H, F, batch_size, seq_len)
    cfg = dict(
        d_model=D,
        heads=H,
        d_ff=F,
        norm_first=norm_first,
        activation=activation,
        bias=bias,
        causal=causal,
        batch_size=batch_size,
        seq_len=seq_len,
    )
    if layers is not None:
        syms = {"L": Sym("layers", layers), **syms}
        cfg = {"layers": layers, **cfg, "final_norm": final_norm}
    ratio = Fraction(F, D)
    d = Derivation(
        "transformer" if layers else "transformer_block",
        cfg,
        check_convention(convention),
        syms,
        dtype=dtype_bytes(dtype),
        order=("L", "n", "d", "H", "d_ff"),
        outer=("L",),
        bounds={"H": "d", "d_ff": f"{ratio.numerator}*d/{ratio.denominator}"},
    )
    if layers is None:
        _block(d, norm_first, activation, bias, causal)
    else:
        block = Derivation("block", {}, d.convention, d.symbols, dtype=d.dtype)
        _block(block, norm_first, activation, bias, causal)
        for t in block.terms:  # one term per parameter of the block, stacked over L layers
            d.param(f"layers.*.{t.name}", (layers, *t.shape), f"L*{_paren(t.formula)}", t.note)
        d.extend(block, times="L")
        if final_norm:
            add_layernorm(d, True, bias, prefix="norm.")
    d.notes.append(
        f"Big-O assumes d_ff proportional to d_model (here d_ff = {ratio}*d_model); "
        "heads H <= d_model"
    )
    d.notes.append(
        ("pre-norm (norm_first=True)" if norm_first else "post-norm (norm_first=False)")
        + "; dropout off (p = 0, nothing saved for it)"
    )
    d.notes.append(CAUSAL_NOTE if causal else "not causal: full bidirectional n x n attention")
    cost = d.finish(sized)
    cost.derived["crossover"] = crossover(d, causal)
    return cost


def _paren(f: str) -> str:
    return f"({f})" if "+" in f or "-" in f else f


def crossover(d: Derivation, causal: bool) -> dict:
    """n* where the n² FLOP terms equal the n FLOP terms, from the layer's own formula strings."""
    syms = symbols_for(tuple(d.symbols))
    n = syms["n"]
    vals = {syms[k]: v for k, v in d.values.items() if k != "n"}
    vals.setdefault(syms["B"], 1)

    def solve(formulas: list[str]) -> sympy.Rational:
        poly = sympy.Poly(sum(expr(f, tuple(d.symbols)) for f in formulas).subs(vals), n)
        a, b = poly.coeff_monomial(n**2), poly.coeff_monomial(n)
        return sympy.Rational(b, a)

    dense = solve([f for _, k, f in d.flops if k == "dense"])
    total = solve([f for _, _, f in d.flops])
    out = {
        "n_star_dense": _num(dense),
        "n_star_all_flops": _num(total),
        "formula_dense": "n* = 2*d + d_ff",
        "causal": causal,
        "masked_half_counted": causal,
    }
    if causal:
        out["n_star_dense_if_masked_half_skipped"] = _num(2 * dense)
    return out


def _num(x: sympy.Rational) -> int | float:
    return int(x) if x.q == 1 else float(x)
