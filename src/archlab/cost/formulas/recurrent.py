"""RNN (tanh/relu), LSTM (with proj_size) and GRU — multi-layer and bidirectional.

Equations and parameter shapes are the PyTorch docs' (torch.nn.RNN / LSTM / GRU):

* RNN:  h_t = tanh(x_t W_ihᵀ + b_ih + h_{t-1} W_hhᵀ + b_hh)                (G = 1 gate)
* LSTM: i,f,g,o = σ,σ,tanh,σ(x_t W_iᵀ + b_i + h_{t-1} W_hᵀ + b_h); c_t = f⊙c_{t-1} + i⊙g;
        h_t = o⊙tanh(c_t); with proj_size p: h_t = W_hr (o⊙tanh(c_t)), W_hr (p, h)   (G = 4)
* GRU:  r,z = σ(x W_ir,zᵀ + b_ir,z + h W_hr,zᵀ + b_hr,z);
        n = tanh(x W_inᵀ + b_in + r⊙(h W_hnᵀ + b_hn)); h_t = (1-z)⊙n + z⊙h_{t-1}     (G = 3)

Layer 0 reads input_size features; layer l > 0 reads D·P (D = 2 if bidirectional, P = proj_size
or hidden_size). PyTorch keeps two bias vectors per layer and direction, b_ih and b_hh, although
one would do (their sum is what matters). Keras (keras.io/api/layers/recurrent_layers) keeps one:
SimpleRNN and LSTM a ``bias`` of (units,) / (4·units,); GRU with ``reset_after=True`` (the default
since TF 2 / Keras 2.3; its docs: "separate biases for kernel and recurrent_kernel", the CuDNN
variant) a bias of shape (2, 3·units) — the same count as PyTorch's pair — and with
``reset_after=False`` (the TF 1 default) one (3·units,). Keras has no LSTM projection.

Backward (dense): every product costs 2 x forward (grad wrt its input and wrt its weight), except
that the recurrent product at step 0 acts on the zero initial state, which needs no gradient: one
(B, G·h)x(G·h, P) product less per layer and direction — exactly what FlopCounterMode measures.
Activation bytes are those saved by the textbook cell loop (one F.linear per input and per state,
then the gates), as in tests/test_cost_layers.py; fused kernels (cuDNN, CPU nn.LSTM) keep a
different workspace.
"""

from __future__ import annotations

import math

from archlab.cost.formulas._base import (
    Derivation,
    Sym,
    check_convention,
    dtype_bytes,
    optional_positive,
    positive,
)
from archlab.cost.types import ConventionDiff, LayerCost
from archlab.errors import ArchlabError

__all__ = ["gru", "lstm", "rnn"]

GATES = {"rnn": 1, "lstm": 4, "gru": 3}
# Pointwise FLOPs per hidden unit per step, besides the bias adds (see the equations above):
# the x-part + h-part add of every gate, then the gate maths.
POINTWISE = {
    "rnn": ("h", "nonlinearity", "h"),
    "lstm": ("4*h", "3 sigmoid + tanh(g), c = f*c + i*g, tanh(c), o*tanh(c)", "9*h"),
    "gru": ("2*h", "2 sigmoid, r*(h W_hn + b_hn) + x-part, tanh, (1-z)*n + z*h", "9*h"),
}
# Tensors the cell loop saves per step and direction (besides the layer input x_t); the h_t
# saved by one step is the h_{t-1} of the next, so an RNN keeps h_0..h_n once.
SAVED = {
    "lstm": "h_{t-1}, i, f, g, o, c_{t-1}, tanh(c_t)[, o*tanh(c_t) before W_hr]",
    "gru": "h_{t-1}, r, z, h W_hn + b_hn, n, 1-z",
}


def _recurrent(
    kind: str,
    input_size: int,
    hidden_size: int,
    *,
    num_layers: int,
    bias: bool,
    bidirectional: bool,
    proj_size: int,
    nonlinearity: str,
    reset_after: bool,
    batch_size: int | None,
    seq_len: int | None,
    dtype: int | str,
    convention: str,
) -> LayerCost:
    i, h = positive("input_size", input_size), positive("hidden_size", hidden_size)
    nl = positive("num_layers", num_layers)
    check_convention(convention)
    if isinstance(proj_size, bool) or not isinstance(proj_size, int) or proj_size < 0:
        raise ArchlabError(f"proj_size must be a non-negative integer, got {proj_size!r}")
    if proj_size and proj_size >= h:
        raise ArchlabError(f"proj_size ({proj_size}) must be smaller than hidden_size ({h})")
    if proj_size and convention == "keras":
        raise ArchlabError("proj_size has no Keras equivalent (Keras LSTM has no projection)")
    if nonlinearity not in ("tanh", "relu"):
        raise ArchlabError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
    if kind == "gru" and not reset_after and convention == "pytorch":
        raise ArchlabError(
            "reset_after=False exists only in Keras (PyTorch's GRU applies r after W_hn)"
        )
    b, n = optional_positive("batch_size", batch_size), optional_positive("seq_len", seq_len)
    sized = n is not None
    G, D = GATES[kind], 2 if bidirectional else 1
    P = "p" if proj_size else "h"
    syms = dict(i=Sym("input_size", i), h=Sym("hidden_size", h))
    if proj_size:
        syms["p"] = Sym("proj_size", proj_size)
    syms |= dict(
        L=Sym("num_layers", nl),
        B=Sym("batch_size", (b or 1) if sized else None),
        n=Sym("seq_len", n),
    )
    cfg = dict(
        input_size=i,
        hidden_size=h,
        num_layers=nl,
        bias=bias,
        bidirectional=bidirectional,
        proj_size=proj_size,
        batch_size=batch_size,
        seq_len=seq_len,
    )
    if kind == "rnn":
        cfg["nonlinearity"] = nonlinearity
    if kind == "gru" and convention == "keras":
        cfg["reset_after"] = reset_after
    d = Derivation(
        kind,
        cfg,
        convention,
        syms,
        dtype=dtype_bytes(dtype),
        order=("n", "L", "h", "p", "i"),
        outer=("n",),
        fixed_symbols=("B",) + (("L",) if nl == 1 else ()),
    )

    # --- parameters, in PyTorch's named_parameters() order -------------------------------------
    keras_bias = {
        "rnn": ("b", (h,), "h"),
        "lstm": ("b", (4 * h,), "4*h"),
        "gru": ("b", (2, 3 * h), "2*3*h") if reset_after else ("b", (3 * h,), "3*h"),
    }[kind]
    pv = proj_size or h
    Gh = f"{G}*h" if G > 1 else "h"
    for layer in range(nl):
        in_f, in_n = (i, "i") if layer == 0 else (D * pv, f"{D}*{P}" if D > 1 else P)
        for direction in range(D):
            sfx = (f"_l{layer}" if nl > 1 else "") + ("_reverse" if direction else "")
            d.param(f"W_ih{sfx}", (G * h, in_f), f"{Gh}*{in_n}")
            d.param(f"W_hh{sfx}", (G * h, pv), f"{Gh}*{P}")
            if bias and convention == "pytorch":
                d.param(f"b_ih{sfx}", (G * h,), Gh)
                d.param(f"b_hh{sfx}", (G * h,), Gh)
            elif bias:
                name, shape, f = keras_bias
                d.param(f"{name}{sfx}", shape, f)
            if proj_size:
                d.param(f"W_hr{sfx}", (proj_size, h), "p*h", "LSTM projection h_t = W_hr h_t")
    if bias and not proj_size:  # with a projection there is no Keras layer to compare with
        torch_b, keras_b = 2 * G * h * nl * D, math.prod(keras_bias[1]) * nl * D
        why = {
            "rnn": "Keras SimpleRNN has one bias vector (units,)",
            "lstm": "Keras LSTM has one bias vector (4*units,)",
            "gru": (
                "Keras GRU(reset_after=True) has one bias of shape (2, 3*units): the same "
                "count, input and recurrent halves"
            )
            if reset_after
            else "Keras GRU(reset_after=False) has one bias (3*units,)",
        }[kind]
        d.diffs.append(
            ConventionDiff(
                "bias",
                torch_b,
                keras_b,
                f"PyTorch nn.{kind.upper() if kind != 'lstm' else 'LSTM'} carries two bias vectors "
                f"per layer and direction, b_ih and b_hh (PyTorch docs); {why}",
            )
        )

    # --- forward FLOPs (all layers and directions) ---------------------------------------------
    DG = "".join(f"{x}*" for x in (D, G) if x > 1)
    Dm = f"{D}*" if D > 1 else ""
    d.flop("x_t @ W_ih.T (layer 0)", "dense", f"2*B*n*{DG}h*i")
    if nl > 1:
        d.flop("x_t @ W_ih.T (layers 1..L-1)", "dense", f"2*B*n*(L-1)*{DG}h*{Dm}{P}")
    hh = f"2*B*n*L*{DG}h*{P}"
    # Step 0 multiplies the zero initial state: no grad wrt it, so one input-grad product less.
    d.flop("h_{t-1} @ W_hh.T", "dense", hh, backward=f"2*({hh}) - 2*B*L*{DG}h*{P}")
    if proj_size:
        d.flop("(o*tanh(c_t)) @ W_hr.T", "dense", f"2*B*n*L*{Dm}p*h")
    nb = (2 if convention == "pytorch" or (kind == "gru" and reset_after) else 1) if bias else 0
    if nb:
        d.flop(f"bias adds ({nb} per gate unit)", "pointwise", f"B*n*L*{Dm}{nb * G}*h")
    adds, what, rest = POINTWISE[kind]
    d.flop("x-part + h-part adds", "pointwise", f"B*n*L*{Dm}{adds}")
    d.flop(what if kind != "rnn" else nonlinearity, "pointwise", f"B*n*L*{Dm}{rest}")

    d.notes.append(
        "backward dense = 2 x forward dense, less the input-grad of the step-0 "
        "recurrent product (the zero initial state needs no gradient)"
    )
    # --- saved for backward by the cell loop ---------------------------------------------------
    d.save("layer-0 input x (n, B, i)", "B*n*i")
    if nl > 1:
        d.save("layer inputs 1..L-1 (n, B, D*P)", f"B*n*(L-1)*{Dm}{P}")
    if kind == "rnn":
        d.save("h_0..h_n per direction", f"B*(n+1)*L*{Dm}h")
    else:
        per_step = f"{P} + 6*h" + (" + h" if proj_size else "") if kind == "lstm" else "6*h"
        d.save(f"per step and direction: {SAVED[kind]}", f"B*n*L*{Dm}({per_step})")
    return d.finish(sized)


def rnn(
    input_size: int,
    hidden_size: int,
    *,
    num_layers: int = 1,
    nonlinearity: str = "tanh",
    bias: bool = True,
    bidirectional: bool = False,
    batch_size: int | None = None,
    seq_len: int | None = None,
    dtype: int | str = 4,
    convention: str = "pytorch",
) -> LayerCost:
    """``nn.RNN`` (Keras ``SimpleRNN``); seq_len = n steps, batch_size = B (default 1)."""
    return _recurrent(
        "rnn",
        input_size,
        hidden_size,
        num_layers=num_layers,
        bias=bias,
        bidirectional=bidirectional,
        proj_size=0,
        nonlinearity=nonlinearity,
        reset_after=True,
        batch_size=batch_size,
        seq_len=seq_len,
        dtype=dtype,
        convention=convention,
    )


def lstm(
    input_size: int,
    hidden_size: int,
    *,
    num_layers: int = 1,
    bias: bool = True,
    bidirectional: bool = False,
    proj_size: int = 0,
    batch_size: int | None = None,
    seq_len: int | None = None,
    dtype: int | str = 4,
    convention: str = "pytorch",
) -> LayerCost:
    """``nn.LSTM`` (Keras ``LSTM``), with PyTorch's optional ``proj_size`` (Sak et al. 2014)."""
    return _recurrent(
        "lstm",
        input_size,
        hidden_size,
        num_layers=num_layers,
        bias=bias,
        bidirectional=bidirectional,
        proj_size=proj_size,
        nonlinearity="tanh",
        reset_after=True,
        batch_size=batch_size,
        seq_len=seq_len,
        dtype=dtype,
        convention=convention,
    )


def gru(
    input_size: int,
    hidden_size: int,
    *,
    num_layers: int = 1,
    bias: bool = True,
    bidirectional: bool = False,
    reset_after: bool = True,
    batch_size: int | None = None,
    seq_len: int | None = None,
    dtype: int | str = 4,
    convention: str = "pytorch",
) -> LayerCost:
    """``nn.GRU`` (Keras ``GRU``; ``reset_after=False`` is Keras-only)."""
    return _recurrent(
        "gru",
        input_size,
        hidden_size,
        num_layers=num_layers,
        bias=bias,
        bidirectional=bidirectional,
        proj_size=0,
        nonlinearity="tanh",
        reset_after=reset_after,
        batch_size=batch_size,
        seq_len=seq_len,
        dtype=dtype,
        convention=convention,
    )
