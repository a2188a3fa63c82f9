"""Oracle tests of the per-layer cost formulas (archlab.cost.layers).

Every formula is checked against PyTorch itself: parameter counts against sum(p.numel()) of the
real module; dense FLOPs forward and backward against torch.utils.flop_counter.FlopCounterMode on
an *unfused* reference (an explicit cell loop for RNN/LSTM/GRU, the math SDPA backend for
attention — on this torch 2.13 CPU build FlopCounterMode reports 0 for fused nn.LSTM and for
F.scaled_dot_product_attention's default kernel); activation bytes against the tensors autograd
saves (saved_tensors_hooks). Configurations are drawn by hypothesis at small sizes.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import sympy
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from archlab import cli
from archlab.cost import layers as L
from archlab.cost.formulas._base import evaluate
from archlab.cost.symbolic import parse_complexity, symbols_for
from archlab.errors import ArchlabError

GOLDEN = Path(__file__).parent / "golden"
pytestmark = pytest.mark.filterwarnings("ignore:LSTM with projections is not supported with oneDNN")
FAST = settings(max_examples=25, deadline=None)
small = st.integers(1, 6)


# --- measurement helpers ------------------------------------------------------------------------


def numel(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def measure(forward, module: nn.Module | None = None) -> tuple[int, int, int]:
    """(forward FLOPs, backward FLOPs, bytes saved for backward) of `forward()` -> tensor.

    Saved tensors are de-duplicated by (data_ptr, numel, dtype) (a view saved twice is one
    buffer) and exclude the module's parameters and buffers.
    """
    skip = {t.data_ptr() for t in [*module.parameters(), *module.buffers()]} if module else set()
    seen: dict[tuple, int] = {}

    def pack(t):
        if t.data_ptr() not in skip:
            seen[(t.data_ptr(), t.numel(), t.dtype)] = t.numel() * t.element_size()
        return t

    fwd, bwd = FlopCounterMode(display=False), FlopCounterMode(display=False)
    with fwd, torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = forward()
    out = out[0] if isinstance(out, tuple) else out
    with bwd:
        out.float().sum().backward()
    return fwd.get_total_flops(), bwd.get_total_flops(), sum(seen.values())


def check(cost, forward, module=None, *, params: int | None = None, saved: bool = True,
          groups: int = 1) -> None:  # fmt: skip
    f, b, s = measure(forward, module)
    assert cost.flops_forward_dense == f, (cost.flops_forward_dense, f)
    if groups > 1:
        # FlopCounterMode's conv_backward_flop counts grad_weight without dividing by groups
        # (its docstring: "details involving ... groups, I skip those"): grad_input = forward,
        # its grad_weight = g x forward. The true grad_weight is forward FLOPs, as for g = 1.
        assert b == (1 + groups) * f and cost.flops_backward_dense == 2 * f
    else:
        assert cost.flops_backward_dense == b, (cost.flops_backward_dense, b)
    if saved:
        assert cost.activation_bytes == s, (cost.activation_bytes, s)
    if params is not None:
        assert cost.params == params
    check_formulas(cost)


def check_formulas(cost) -> None:
    """Every printed formula, evaluated by sympy at the layer's sizes, gives the printed number."""
    syms = symbols_for(tuple(cost.symbols))
    vals = {syms[k]: v["value"] for k, v in cost.symbols.items() if v["value"] is not None}
    for t in cost.terms:
        assert sympy.sympify(t.formula, locals=syms).subs(vals) == t.params, t
    for t in cost.flops:
        assert sympy.sympify(t.formula, locals=syms).subs(vals) == t.flops, t
    assert sum(t.params for t in cost.terms) == cost.params
    parse_complexity(cost.complexity, tuple(cost.symbols))


# --- the seed's three answers -------------------------------------------------------------------


def test_seed_part3_rnn_100_to_200():
    keras, torch_ = L.rnn(100, 200, convention="keras"), L.rnn(100, 200)
    assert keras.params == 60_200 and torch_.params == 60_400 == numel(nn.RNN(100, 200))
    assert [(t.name, t.shape, t.params) for t in keras.terms] == [
        ("W_ih", (200, 100), 20_000), ("W_hh", (200, 200), 40_000), ("b", (200,), 200)]  # fmt: skip
    (diff,) = keras.convention_diffs
    assert (diff.pytorch_params, diff.keras_params) == (400, 200) and "b_hh" in diff.reason


def test_seed_part4_conv_3_to_64_k3():
    c = L.conv2d(3, 64, 3)
    assert c.params == 1_792 == numel(nn.Conv2d(3, 64, 3))
    assert [t.params for t in c.terms] == [64 * 27, 64]


def test_seed_part5_transformer_complexity():
    c = L.transformer(512, 8, 6, seq_len=1024)
    n, d, Ls = symbols_for(("n", "d", "L")).values()
    assert c.complexity == "O(L*(n**2*d + n*d**2))"
    assert (
        sympy.simplify(parse_complexity(c.complexity, ("n", "d", "L")) - Ls * (n**2 * d + n * d**2))
        == 0
    )
    assert L.attention(64, 8).complexity == "O(n**2*d + n*d**2)"
    a = parse_complexity(L.rnn(100, 200).complexity, ("n", "h", "i"))
    assert sympy.expand(a) == sympy.expand(parse_complexity("O(n*(h*i + h**2))", ("n", "h", "i")))
    assert L.conv2d(3, 64, 3).complexity == "O(H_out*W_out*k**2*C_in*C_out)"


@pytest.mark.parametrize("causal", [False, True])
def test_transformer_crossover_is_where_n2_terms_equal_nd2_terms(causal):
    d, H, dff = 64, 4, 192
    c = L.transformer(d, H, 3, dff, causal=causal)
    cross = c.derived["crossover"]
    assert cross["n_star_dense"] == 2 * d + dff and cross["causal"] is causal
    # Independent of how n* was solved: dense(n) = a n^2 + b n, fitted from two lengths.
    f1, f2 = (
        L.transformer(d, H, 3, dff, causal=causal, seq_len=n).flops_forward_dense for n in (1, 2)
    )
    a, b = (f2 - 2 * f1) / 2, (4 * f1 - f2) / 2
    assert b / a == cross["n_star_dense"]


# --- parameters and FLOPs vs PyTorch, over random configs ----------------------------------------


@FAST
@given(i=small, o=small, bias=st.booleans(), B=small, n=small)
def test_linear(i, o, bias, B, n):
    m = nn.Linear(i, o, bias=bias)
    x = torch.randn(B, n, i, requires_grad=True)
    check(L.linear(i, o, bias=bias, batch_size=B, seq_len=n), lambda: m(x), m, params=numel(m))


@FAST
@given(V=small, e=small, B=small, n=small)
def test_embedding(V, e, B, n):
    m = nn.Embedding(V, e)
    idx = torch.randint(0, V, (B, n))
    check(L.embedding(V, e, batch_size=B, seq_len=n), lambda: m(idx), m, params=numel(m))


def cell_loop(m: nn.RNNBase, x: torch.Tensor) -> torch.Tensor:
    """The textbook RNN/LSTM/GRU recurrences of the PyTorch docs, one F.linear per product.

    x: (n, B, input_size), uses m's own parameters; h0 = c0 = 0 (no grad), as nn.RNN* default.
    """
    kind = type(m).__name__
    n, B, _ = x.shape
    H, P, D = (
        m.hidden_size,
        getattr(m, "proj_size", 0) or m.hidden_size,
        2 if m.bidirectional else 1,
    )
    inp = x
    for layer in range(m.num_layers):
        outs = []
        for direction in range(D):
            sfx = f"_l{layer}" + ("_reverse" if direction else "")
            w_ih, w_hh = getattr(m, "weight_ih" + sfx), getattr(m, "weight_hh" + sfx)
            b_ih, b_hh = (
                (getattr(m, "bias_ih" + sfx), getattr(m, "bias_hh" + sfx))
                if m.bias
                else (None, None)
            )
            h, c = x.new_zeros(B, P), x.new_zeros(B, H)  # (B, P), (B, H)
            hs: list = [None] * n
            for t in range(n - 1, -1, -1) if direction else range(n):
                gi, gh = F.linear(inp[t], w_ih, b_ih), F.linear(h, w_hh, b_hh)  # (B, G*H)
                if kind == "RNN":
                    h = torch.tanh(gi + gh) if m.nonlinearity == "tanh" else torch.relu(gi + gh)
                elif kind == "LSTM":
                    i, f, g, o = (gi + gh).chunk(4, 1)
                    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
                    c = f * c + i * g
                    h = o * torch.tanh(c)
                    if m.proj_size:
                        h = F.linear(h, getattr(m, "weight_hr" + sfx))  # (B, P)
                else:
                    ir, iz, in_ = gi.chunk(3, 1)
                    hr, hz, hn = gh.chunk(3, 1)
                    r, z = torch.sigmoid(ir + hr), torch.sigmoid(iz + hz)
                    nt = torch.tanh(in_ + r * hn)
                    h = (1 - z) * nt + z * h
                hs[t] = h
            outs.append(torch.stack(hs))  # (n, B, P)
        inp = torch.cat(outs, -1) if D == 2 else outs[0]  # (n, B, D*P)
    return inp


recurrent_cfg = dict(
    i=small, h=st.integers(2, 6), layers=st.integers(1, 3), bias=st.booleans(),
    bi=st.booleans(), B=st.integers(1, 3), n=st.integers(1, 4))  # fmt: skip


@FAST
@given(
    **recurrent_cfg,
    kind=st.sampled_from(["rnn", "gru", "lstm"]),
    relu=st.booleans(),
    proj=st.integers(0, 1),
)
def test_recurrent_vs_cell_loop(i, h, layers, bias, bi, B, n, kind, relu, proj):
    common = dict(num_layers=layers, bias=bias, bidirectional=bi)
    if kind == "rnn":
        m = nn.RNN(i, h, nonlinearity="relu" if relu else "tanh", **common)
        cost = L.rnn(i, h, nonlinearity=m.nonlinearity, batch_size=B, seq_len=n, **common)
    elif kind == "gru":
        m, cost = nn.GRU(i, h, **common), L.gru(i, h, batch_size=B, seq_len=n, **common)
    else:
        p = proj * (h - 1)
        m, cost = (
            nn.LSTM(i, h, proj_size=p, **common),
            L.lstm(i, h, proj_size=p, batch_size=B, seq_len=n, **common),
        )
    x = torch.randn(n, B, i, requires_grad=True)
    with torch.no_grad():
        torch.testing.assert_close(cell_loop(m, x), m(x)[0])  # the reference is nn.RNN*'s maths
    check(cost, lambda: cell_loop(m, x), m, params=numel(m))
    if kind != "lstm":  # fused nn.RNN/GRU are counted by FlopCounterMode too (nn.LSTM reads 0)
        check(cost, lambda: m(x), m, saved=False)


@pytest.mark.parametrize("kind, expected", [
    ("rnn", lambda i, h: h * (i + h) + h),  # Keras SimpleRNN: kernel, recurrent_kernel, bias
    ("lstm", lambda i, h: 4 * (h * (i + h) + h)),
    ("gru", lambda i, h: 3 * h * (i + h) + 2 * 3 * h),  # reset_after=True: bias (2, 3*units)
])  # fmt: skip
def test_keras_recurrent_counts(kind, expected):
    for i, h in ((100, 200), (7, 3)):
        keras, torch_ = getattr(L, kind)(i, h, convention="keras"), getattr(L, kind)(i, h)
        assert keras.params == expected(i, h)
        (diff,) = keras.convention_diffs
        assert torch_.params - keras.params == diff.pytorch_params - diff.keras_params
    assert L.gru(5, 4, convention="keras", reset_after=False).params == 3 * (4 * 9 + 4)
    with pytest.raises(ArchlabError, match="proj_size"):
        L.lstm(4, 4, proj_size=2, convention="keras")


@FAST
@given(
    dims=st.sampled_from([1, 2]),
    g=st.integers(1, 3),
    cin=st.integers(1, 2),
    cout=st.integers(1, 2),
    k=st.integers(1, 3),
    s=st.integers(1, 2),
    p=st.integers(0, 2),
    dil=st.integers(1, 2),
    bias=st.booleans(),
    size=st.integers(5, 8),
    B=st.integers(1, 2),
)
def test_conv(dims, g, cin, cout, k, s, p, dil, bias, size, B):
    conv = (nn.Conv1d, nn.Conv2d)[dims - 1]
    m = conv(cin * g, cout * g, k, stride=s, padding=p, dilation=dil, groups=g, bias=bias)
    x = torch.randn(B, cin * g, *([size] * dims), requires_grad=True)
    cost = L.conv(cin * g, cout * g, k, dims=dims, stride=s, padding=p, dilation=dil, groups=g,
                  bias=bias, image_size=size, batch_size=B)  # fmt: skip
    check(cost, lambda: m(x), m, params=numel(m), groups=g)


def test_conv_non_square_and_same_padding():
    m = nn.Conv2d(2, 4, (3, 5), padding="same")
    x = torch.randn(1, 2, 6, 7, requires_grad=True)
    check(
        L.conv2d(2, 4, (3, 5), padding="same", image_size=(6, 7)), lambda: m(x), m, params=numel(m)
    )


@FAST
@given(C=small, B=st.integers(2, 3), size=st.integers(1, 4), dims=st.sampled_from([1, 2]),
       affine=st.booleans(), track=st.booleans())  # fmt: skip
def test_batchnorm(C, B, size, dims, affine, track):
    m = (nn.BatchNorm1d, nn.BatchNorm2d)[dims - 1](C, affine=affine, track_running_stats=track)
    x = torch.randn(B, C, *([size] * dims), requires_grad=True)
    sz = dict(seq_len=size) if dims == 1 else dict(image_size=size)
    cost = L.batchnorm(C, dims=dims, affine=affine, track_running_stats=track, batch_size=B, **sz)
    check(cost, lambda: m(x), m, params=numel(m))
    keras = L.batchnorm(C, dims=dims, affine=affine, track_running_stats=track, convention="keras")
    assert keras.params == numel(m) + (2 * C if track else 0)  # + moving mean/variance


@FAST
@given(d=small, affine=st.booleans(), bias=st.booleans(), B=small, n=small)
def test_layernorm(d, affine, bias, B, n):
    m = nn.LayerNorm(d, elementwise_affine=affine, bias=bias)
    x = torch.randn(B, n, d, requires_grad=True)
    cost = L.layernorm(d, elementwise_affine=affine, bias=bias, batch_size=B, seq_len=n)
    check(cost, lambda: m(x), m, params=numel(m))


attn_cfg = dict(dh=st.integers(1, 4), H=st.integers(1, 3), B=st.integers(1, 2), n=st.integers(1, 6),
                bias=st.booleans(), causal=st.booleans())  # fmt: skip


def _mha_forward(m, x, causal, need_weights=False):
    n = x.shape[1]
    mask = nn.Transformer.generate_square_subsequent_mask(n) if causal else None
    return lambda: m(x, x, x, attn_mask=mask, is_causal=causal, need_weights=need_weights)[0]


@FAST
@given(**attn_cfg)
def test_attention_math_sdpa(dh, H, B, n, bias, causal):
    d = dh * H
    m = nn.MultiheadAttention(d, H, bias=bias, batch_first=True)
    x = torch.randn(B, n, d, requires_grad=True)
    cost = L.attention(d, H, bias=bias, causal=causal, batch_size=B, seq_len=n)
    with sdpa_kernel(SDPBackend.MATH):
        check(cost, _mha_forward(m, x, causal), m, params=numel(m))
    check(cost, _mha_forward(m, x, False, need_weights=True), m, saved=False)  # explicit bmm path


def reference_ffn(d, dff, activation, bias):
    act = {
        "relu": nn.ReLU(),
        "gelu": nn.GELU(),
        "tanh": nn.Tanh(),
        "sigmoid": nn.Sigmoid(),
        "silu": nn.SiLU(),
    }[activation]
    return nn.Sequential(nn.Linear(d, dff, bias=bias), act, nn.Linear(dff, d, bias=bias))


@FAST
@given(d=small, dff=small, act=st.sampled_from(["relu", "gelu", "tanh", "sigmoid", "silu"]),
       bias=st.booleans(), B=small, n=small)  # fmt: skip
def test_ffn(d, dff, act, bias, B, n):
    m = reference_ffn(d, dff, act, bias)
    x = torch.randn(B, n, d, requires_grad=True)
    cost = L.ffn(d, dff, activation=act, bias=bias, batch_size=B, seq_len=n)
    check(cost, lambda: m(x), m, params=numel(m))


@settings(max_examples=10, deadline=None)
@given(**attn_cfg, dff=st.integers(1, 8), layers=st.integers(1, 3), norm_first=st.booleans(),
       final=st.booleans(), gelu=st.booleans())  # fmt: skip
def test_transformer_vs_nn_transformer_encoder(
    dh, H, B, n, bias, causal, dff, layers, norm_first, final, gelu
):
    d, act = dh * H, "gelu" if gelu else "relu"
    block = nn.TransformerEncoderLayer(d, H, dff, dropout=0.0, activation=act, batch_first=True,
                                       norm_first=norm_first, bias=bias)  # fmt: skip
    stack = nn.TransformerEncoder(block, layers, norm=nn.LayerNorm(d, bias=bias) if final else None,
                                  enable_nested_tensor=False)  # fmt: skip
    x = torch.randn(B, n, d, requires_grad=True)
    mask = nn.Transformer.generate_square_subsequent_mask(n) if causal else None
    kw = dict(
        norm_first=norm_first, activation=act, bias=bias, causal=causal, batch_size=B, seq_len=n
    )
    with sdpa_kernel(SDPBackend.MATH):
        check(
            L.transformer_block(d, H, dff, **kw),
            lambda: block(x, src_mask=mask, is_causal=causal),
            block,
            params=numel(block),
        )
        check(
            L.transformer(d, H, layers, dff, final_norm=final, **kw),
            lambda: stack(x, mask=mask, is_causal=causal),
            stack,
            params=numel(stack),
        )


@FAST
@given(C=st.integers(1, 3), d=small, p=st.integers(1, 3), k=st.integers(1, 3), B=st.integers(1, 2))
def test_patch_embed_is_a_strided_conv(C, d, p, k, B):
    m = nn.Conv2d(C, d, p, stride=p)
    x = torch.randn(B, C, p * k, p * k, requires_grad=True)
    check(L.patch_embed(C, d, p, image_size=p * k, batch_size=B), lambda: m(x), m, params=numel(m))


# --- pointwise FLOPs: the documented per-op counts, applied op by op ---------------------------

aten = torch.ops.aten


class PointwiseCounter(TorchDispatchMode):
    """Counts pointwise FLOPs of every aten op by the convention in archlab.cost.formulas._base:
    1 per output element for add/sub/mul/rsub and each activation, the bias add fused into addmm,
    5 (+2 affine) per element for native layer/batch norm. Fails on any op it does not know."""

    ONE = {
        aten.add,
        aten.sub,
        aten.mul,
        aten.rsub,
        aten.tanh,
        aten.sigmoid,
        aten.relu,
        aten.gelu,
        aten.silu,
    }
    FREE = {aten.t, aten.view, aten.mm, aten.unsafe_split, aten.split, aten.split_with_sizes,
            aten.stack, aten.cat, aten.new_zeros, aten.select, aten.empty, aten.zeros,
            aten.unbind, aten.slice, aten.detach, aten._unsafe_view, aten.add_, aten.bmm,
            aten.transpose, aten.clone, aten.expand, aten.unsqueeze, aten.permute}  # fmt: skip

    def __init__(self):
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        op = func.overloadpacket
        if op is aten.addmm:
            self.flops += out.numel()  # the bias add fused into the matmul
        elif op is aten.native_layer_norm:
            weight, bias = args[2], args[3]
            self.flops += out[0].numel() * (
                5 + (2 if bias is not None else 1 if weight is not None else 0)
            )
        elif op is aten.native_batch_norm:
            self.flops += out[0].numel() * (5 + (2 if args[1] is not None else 0))
        elif op is aten._softmax:
            self.flops += 5 * out.numel()  # max, subtract, exp, sum, divide
        elif op in self.ONE:
            self.flops += out.numel()
        else:
            assert op in self.FREE, f"unclassified op {func}"
        return out


def pointwise(forward) -> int:
    with torch.no_grad(), PointwiseCounter() as counter:
        forward()
    return counter.flops


@FAST
@given(**recurrent_cfg, kind=st.sampled_from(["rnn", "gru", "lstm"]), proj=st.integers(0, 1))
def test_pointwise_flops_recurrent(i, h, layers, bias, bi, B, n, kind, proj):
    common = dict(num_layers=layers, bias=bias, bidirectional=bi)
    p = proj * (h - 1) if kind == "lstm" else 0
    m = {"rnn": nn.RNN, "gru": nn.GRU, "lstm": nn.LSTM}[kind](
        i, h, **common, **({"proj_size": p} if p else {})
    )
    cost = getattr(L, kind)(
        i, h, batch_size=B, seq_len=n, **common, **({"proj_size": p} if p else {})
    )
    x = torch.randn(n, B, i)
    assert cost.flops_forward_pointwise == pointwise(lambda: cell_loop(m, x))


@FAST
@given(d=small, dff=small, act=st.sampled_from(["relu", "gelu", "tanh", "sigmoid", "silu"]),
       bias=st.booleans(), B=st.integers(2, 4), n=small)  # fmt: skip
def test_pointwise_flops_ffn_linear_norms(d, dff, act, bias, B, n):
    x = torch.randn(B, n, d)
    mods = (reference_ffn(d, dff, act, bias), nn.Linear(d, dff, bias=bias),
            nn.LayerNorm(d, elementwise_affine=bias), nn.BatchNorm1d(d, affine=bias))  # fmt: skip
    costs = (L.ffn(d, dff, activation=act, bias=bias, batch_size=B, seq_len=n),
             L.linear(d, dff, bias=bias, batch_size=B, seq_len=n),
             L.layernorm(d, elementwise_affine=bias, batch_size=B, seq_len=n),
             L.batchnorm(d, dims=1, affine=bias, batch_size=B, seq_len=n))  # fmt: skip
    inputs = (x, x, x, x.transpose(1, 2))
    for m, cost, inp in zip(mods, costs, inputs, strict=True):
        assert cost.flops_forward_pointwise == pointwise(lambda m=m, inp=inp: m(inp)), cost.layer


def textbook_attention(
    m: nn.MultiheadAttention, x: torch.Tensor, mask: torch.Tensor | None
) -> torch.Tensor:
    """softmax(Q Kᵀ / sqrt(d_k) + mask) V with m's weights (Vaswani et al. eq. 1), x: (B, n, d)."""
    B, n, d = x.shape
    H = m.num_heads
    q, k, v = F.linear(x, m.in_proj_weight, m.in_proj_bias).chunk(3, -1)  # (B, n, d) each
    q, k, v = (t.reshape(B, n, H, d // H).transpose(1, 2) for t in (q, k, v))  # (B, H, n, d/H)
    scores = (q @ k.transpose(-2, -1)) * (d // H) ** -0.5  # (B, H, n, n)
    if mask is not None:
        scores = scores + mask  # (n, n) additive -inf above the diagonal
    ctx = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, n, d)  # (B, n, d)
    return F.linear(ctx, m.out_proj.weight, m.out_proj.bias)


@FAST
@given(**attn_cfg)
def test_pointwise_flops_attention(dh, H, B, n, bias, causal):
    """Our scale is 1 FLOP per score (QKᵀ/√d_k); the math SDPA kernel instead scales q and k by
    d_k^-1/4 each (2·B·n·d multiplies) — same maths, so the oracle is the textbook form."""
    d = dh * H
    m = nn.MultiheadAttention(d, H, bias=bias, batch_first=True)
    x = torch.randn(B, n, d)
    mask = nn.Transformer.generate_square_subsequent_mask(n) if causal else None
    with torch.no_grad():
        torch.testing.assert_close(textbook_attention(m, x, mask), _mha_forward(m, x, causal)())
    cost = L.attention(d, H, bias=bias, causal=causal, batch_size=B, seq_len=n)
    assert cost.flops_forward_pointwise == pointwise(lambda: textbook_attention(m, x, mask))


# --- module_cost on real modules -----------------------------------------------------------------


def _modules():
    lin = nn.Linear(5, 3)
    yield lin, (torch.randn(2, 4, 5, requires_grad=True),), L.linear(5, 3, batch_size=2, seq_len=4)
    emb = nn.Embedding(11, 4)
    yield emb, (torch.randint(0, 11, (2, 3)),), L.embedding(11, 4, batch_size=2, seq_len=3)
    yield (
        nn.LayerNorm(6),
        (torch.randn(3, 6, requires_grad=True),),
        L.layernorm(6, batch_size=1, seq_len=3),
    )
    yield (
        nn.BatchNorm2d(3),
        (torch.randn(2, 3, 4, 5, requires_grad=True),),
        L.batchnorm(3, image_size=(4, 5), batch_size=2),
    )
    yield (
        nn.BatchNorm1d(3),
        (torch.randn(2, 3, requires_grad=True),),
        L.batchnorm(3, dims=1, batch_size=2),
    )
    yield (
        nn.Conv1d(4, 6, 3, padding=1, groups=2),
        (torch.randn(2, 4, 7, requires_grad=True),),
        L.conv1d(4, 6, 3, padding=1, groups=2, image_size=7, batch_size=2),
    )
    yield (
        nn.Conv2d(3, 4, 3, stride=2, bias=False),
        (torch.randn(3, 9, 9, requires_grad=True),),
        L.conv2d(3, 4, 3, stride=2, bias=False, image_size=9, batch_size=1),
    )
    yield (
        nn.RNN(3, 4, 2, batch_first=True),
        (torch.randn(2, 5, 3, requires_grad=True),),
        L.rnn(3, 4, num_layers=2, batch_size=2, seq_len=5),
    )
    yield (
        nn.GRU(3, 4, bidirectional=True),
        (torch.randn(5, 2, 3, requires_grad=True),),
        L.gru(3, 4, bidirectional=True, batch_size=2, seq_len=5),
    )
    x = torch.randn(2, 5, 8, requires_grad=True)
    yield (
        nn.MultiheadAttention(8, 2, batch_first=True),
        (x, x, x),
        L.attention(8, 2, batch_size=2, seq_len=5),
    )
    yield (
        nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, norm_first=True),
        (torch.randn(5, 2, 8, requires_grad=True),),
        L.transformer_block(8, 2, 16, norm_first=True, batch_size=2, seq_len=5),
    )


@pytest.mark.parametrize(
    "module, inputs, expected",
    list(_modules()),
    ids=lambda v: type(v).__name__ if isinstance(v, nn.Module) else "",
)
def test_module_cost_matches_formula_numel_and_flop_counter(module, inputs, expected):
    with sdpa_kernel(SDPBackend.MATH):
        out = module(*inputs)
        cost = L.module_cost(module, inputs, out)
        assert cost is not None and cost.to_json() == expected.to_json()
        g = getattr(module, "groups", 1)
        check(cost, lambda: module(*inputs), module, params=numel(module), groups=g)


def test_module_cost_lstm_batch_first_proj_uses_cell_loop_flops():
    m = nn.LSTM(3, 5, num_layers=2, batch_first=True, bidirectional=True, proj_size=2)
    x = torch.randn(2, 4, 3, requires_grad=True)
    cost = L.module_cost(m, (x,), m(x))
    assert cost.params == numel(m)
    check(cost, lambda: cell_loop(m, x.transpose(0, 1)), m)


def test_module_cost_uncovered_returns_none():
    q, kv = torch.randn(2, 3, 8), torch.randn(2, 5, 8)
    assert L.module_cost(nn.MultiheadAttention(8, 2, batch_first=True), (q, kv, kv), None) is None
    assert L.module_cost(nn.MultiheadAttention(8, 2, kdim=4, vdim=4), (q, q, q), None) is None
    assert L.module_cost(nn.ReLU(), (q,), None) is None
    assert L.module_cost(nn.LayerNorm((3, 8)), (q,), None) is None


# --- the CLI -------------------------------------------------------------------------------------

SEED_COMMANDS = {
    "cost_rnn_keras": "cost rnn --input-size 100 --hidden-size 200 --convention keras",
    "cost_conv2d": "cost conv2d --in-channels 3 --out-channels 64 --kernel-size 3",
    "cost_transformer": "cost transformer --d-model 512 --heads 8 --layers 6 --seq-len 1024",
}


@pytest.mark.parametrize("name", SEED_COMMANDS)
def test_cli_golden(name, capsys):
    assert cli.main(SEED_COMMANDS[name].split()) == 0
    text = capsys.readouterr().out
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("ARCHLAB_UPDATE_GOLDEN") == "1":
        path.write_text(text)
    assert text == path.read_text(), f"regenerate with ARCHLAB_UPDATE_GOLDEN=1 if intended: {path}"


def test_cli_seed_lines(capsys):
    cli.main(SEED_COMMANDS["cost_rnn_keras"].split())
    text = capsys.readouterr().out
    assert "W_ih  (200, 100)" in text and "20,000 + 40,000 + 200 = 60,200 params" in text
    assert "PyTorch counts 60,400 params" in text and "b_ih and b_hh" in text
    cli.main(SEED_COMMANDS["cost_conv2d"].split())
    assert "1,728 + 64 = 1,792 params" in capsys.readouterr().out
    cli.main(SEED_COMMANDS["cost_transformer"].split())
    text = capsys.readouterr().out
    assert "O(L*(n**2*d + n*d**2))" in text and "Crossover (not causal)" in text
    assert "n* = 2*d + d_ff = 3,072" in text


def test_cli_json(capsys):
    assert (
        cli.main("cost attention --d-model 16 --heads 4 --seq-len 8 --causal --json".split()) == 0
    )
    data = json.loads(capsys.readouterr().out)
    expected = L.attention(16, 4, causal=True, seq_len=8)
    for key in (
        "params",
        "flops_forward_dense",
        "flops_forward_pointwise",
        "flops_backward_dense",
        "activation_bytes",
    ):
        assert isinstance(data[key], int) and data[key] == getattr(expected, key)
    assert data["complexity"] == "O(n**2*d + n*d**2)"
    assert all(set(t) >= {"name", "shape", "params", "formula"} for t in data["terms"])
    cli.main("cost conv2d --in-channels 3 --out-channels 64 --kernel-size 3 --json".split())
    data = json.loads(capsys.readouterr().out)
    assert data["params"] == 1792 and data["flops_forward_dense"] is None


EVERY_LAYER = {
    "linear": ("--in-features 5 --out-features 3 --seq-len 4", lambda: L.linear(5, 3, seq_len=4)),
    "embedding": (
        "--num-embeddings 9 --embedding-dim 4 --seq-len 3",
        lambda: L.embedding(9, 4, seq_len=3),
    ),  # fmt: skip
    "rnn": (
        "--input-size 3 --hidden-size 4 --num-layers 2 --seq-len 5",
        lambda: L.rnn(3, 4, num_layers=2, seq_len=5),
    ),  # fmt: skip
    "lstm": (
        "--input-size 3 --hidden-size 4 --proj-size 2 --bidirectional --seq-len 5",
        lambda: L.lstm(3, 4, proj_size=2, bidirectional=True, seq_len=5),
    ),  # fmt: skip
    "gru": (
        "--input-size 3 --hidden-size 4 --convention keras --no-reset-after",
        lambda: L.gru(3, 4, convention="keras", reset_after=False),
    ),  # fmt: skip
    "conv1d": (
        "--in-channels 4 --out-channels 6 --kernel-size 3 --groups 2 --image-size 9",
        lambda: L.conv1d(4, 6, 3, groups=2, image_size=9),
    ),  # fmt: skip
    "conv2d": (
        "--in-channels 3 --out-channels 4 --kernel-size 3x5 --padding same --image-size 8x9",
        lambda: L.conv2d(3, 4, (3, 5), padding="same", image_size=(8, 9)),
    ),  # fmt: skip
    "layernorm": (
        "--normalized-shape 8 --seq-len 3 --dtype bfloat16",
        lambda: L.layernorm(8, seq_len=3, dtype=2),
    ),  # fmt: skip
    "batchnorm": (
        "--num-features 8 --image-size 4 --batch-size 2 --convention keras",
        lambda: L.batchnorm(8, image_size=4, batch_size=2, convention="keras"),
    ),  # fmt: skip
    "attention": (
        "--d-model 8 --heads 2 --seq-len 3 --no-bias",
        lambda: L.attention(8, 2, seq_len=3, bias=False),
    ),  # fmt: skip
    "ffn": (
        "--d-model 8 --d-ff 12 --activation gelu --seq-len 3",
        lambda: L.ffn(8, 12, activation="gelu", seq_len=3),
    ),  # fmt: skip
    "transformer-block": (
        "--d-model 8 --heads 2 --norm-first --seq-len 3",
        lambda: L.transformer_block(8, 2, norm_first=True, seq_len=3),
    ),  # fmt: skip
    "transformer": (
        "--d-model 8 --heads 2 --layers 3 --final-norm --causal --seq-len 3",
        lambda: L.transformer(8, 2, 3, final_norm=True, causal=True, seq_len=3),
    ),  # fmt: skip
    "patch-embed": (
        "--in-channels 3 --d-model 8 --patch-size 4 --image-size 16",
        lambda: L.patch_embed(3, 8, 4, image_size=16),
    ),  # fmt: skip
}


@pytest.mark.parametrize("layer", EVERY_LAYER)
def test_cli_every_layer_maps_options_onto_the_formula(layer, capsys):
    argv, expected = EVERY_LAYER[layer]
    assert cli.main(["cost", layer, *argv.split(), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(expected().to_json()))
    assert cli.main(["cost", layer, *argv.split()]) == 0
    assert f"{expected().params:,} params" in capsys.readouterr().out


BAD = [
    ("cost conv2d --in-channels 3 --out-channels 8 --kernel-size 5 --image-size 4", "kernel_size"),
    (
        "cost conv2d --in-channels 3 --out-channels 8 --kernel-size 5 --image-size 2 --padding 1",
        "kernel_size",
    ),  # fmt: skip
    ("cost attention --d-model 10 --heads 3", "heads"),
    ("cost transformer --d-model 8 --heads 2 --layers 0", "layers"),
    ("cost rnn --input-size 0 --hidden-size 3", "input_size"),
    ("cost linear --in-features 2 --out-features 2 --seq-len -1", "seq_len"),
    ("cost rnn --input-size 2 --hidden-size 3 --convention tf", "convention"),
    ("cost lstm --input-size 2 --hidden-size 3 --proj-size 3", "proj_size"),
    ("cost no-such-layer", "no-such-layer"),
    ("cost linear --in-features 2", "out-features"),
]


@pytest.mark.parametrize("argv, field", BAD)
def test_cli_bad_input_one_line_exit_2(argv, field, capsys):
    try:
        rc = cli.main(argv.split())
    except SystemExit as e:  # argparse errors
        rc = e.code
    err = capsys.readouterr()
    assert rc == 2 and err.out == ""
    assert len(err.err.strip().splitlines()) == 1 and field in err.err, err.err


def test_cli_bad_input_subprocess_has_no_traceback(cli):
    r = cli("cost", "attention", "--d-model", "10", "--heads", "3")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "archlab cost: error: heads (3) must divide d_model (10)"


@pytest.mark.parametrize("call, field", [
    (lambda: L.linear(0, 3), "in_features"),
    (lambda: L.conv1d(2, 2, 4, image_size=3), "kernel_size"),
    (lambda: L.conv2d(4, 4, 3, groups=3), "groups"),
    (lambda: L.attention(12, 5), "heads"),
    (lambda: L.transformer(8, 2, 2, seq_len=0), "seq_len"),
    (lambda: L.gru(2, 2, convention="flax"), "convention"),
    (lambda: L.ffn(4, activation="swish"), "activation"),
    (lambda: L.linear(2, 2, dtype=3), "dtype"),
    (lambda: L.patch_embed(3, 8, 4, image_size=10), "image_size"),
])  # fmt: skip
def test_bad_input_raises_archlab_error_naming_the_field(call, field):
    with pytest.raises(ArchlabError, match=field):
        call()


def test_unsized_costs_keep_params_and_drop_flops():
    for c in (L.linear(3, 4), L.lstm(3, 4), L.transformer(8, 2, 2), L.conv1d(2, 3, 3)):
        assert c.params > 0 and c.terms and c.complexity
        assert c.flops_forward_dense is None and c.activation_bytes is None and c.flops == []


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float64])
def test_activation_bytes_follow_the_dtype(dtype):
    x = torch.randn(2, 3, 8, dtype=dtype, requires_grad=True)
    for m, cost, inp in (
        (nn.LayerNorm(8), L.layernorm(8, batch_size=2, seq_len=3, dtype=str(dtype)), x),
        (
            nn.BatchNorm1d(8),
            L.batchnorm(8, dims=1, batch_size=2, seq_len=3, dtype=str(dtype)),
            x.transpose(1, 2),
        ),
        (nn.Linear(8, 4), L.linear(8, 4, batch_size=2, seq_len=3, dtype=str(dtype)), x),
    ):
        m = m.to(dtype)
        assert cost.activation_bytes == measure(lambda m=m, inp=inp: m(inp), m)[2]


def test_dtype_scales_activation_bytes():
    f32, bf16 = (L.attention(16, 2, seq_len=8, dtype=dt) for dt in ("float32", "bfloat16"))
    assert f32.activation_bytes == 2 * bf16.activation_bytes
    assert evaluate("2*a**2 - b/2", {"a": 3, "b": 4}) == 16
