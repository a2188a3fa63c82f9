"""Op-level FLOP counting for ``analyze``: one rule per ATen op, from shapes only.

Units: one multiply-add is 1 MAC = **2 FLOPs** (the convention of FlopCounterMode, Kaplan et al.
2020 and the PaLM appendix; fvcore counts 1 "flop" per MAC, i.e. half of ours).

* **Dense** ops (matmul, conv, attention products, fused RNN kernels) get exact 2-FLOPs-per-MAC
  formulas from their operand shapes.
* **Pointwise** ops are counted per element with a documented factor (``POINTWISE_OUT`` per output
  element, ``REDUCE_IN`` per input element), the convention of ``archlab.cost.formulas._base``:
  arithmetic 1, any activation 1, softmax 5, normalisation 5 (+2 affine); backward-only ops count
  the elementary operations of their defining formula. These factors are a convention — state it
  whenever pointwise totals are compared with another tool.
* **Known-zero** ops (views, copies, allocation, indexing, RNG, data movement) cost 0 FLOPs.
* Anything else is **uncounted**: the caller lists it with its number of calls, never a silent 0.

Every rule reads shapes only, so the counter works unchanged under ``FakeTensorMode``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from math import prod
from typing import Any

import torch
from torch.utils._pytree import tree_flatten

__all__ = [
    "KNOWN_ZERO",
    "POINTWISE_OUT",
    "REDUCE_IN",
    "OpFlops",
    "count_op",
    "op_name",
]


@dataclass(frozen=True)
class OpFlops:
    """FLOPs of one op call. ``status`` is "dense", "pointwise", "zero" or "uncounted"."""

    dense: int
    pointwise: int
    status: str


def op_name(func: Any) -> str:
    """``aten.add_.Tensor`` -> ``add`` (namespace, overload and in-place suffix dropped)."""
    name = func._schema.name.split("::")[-1]
    if name.endswith("_") and not name.endswith("__"):
        name = name[:-1]
    return name


def _numel(x: Any) -> int:
    return int(x.numel()) if isinstance(x, torch.Tensor) else 0


def _first_tensor(tree: Any) -> torch.Tensor | None:
    for leaf in tree_flatten(tree)[0]:
        if isinstance(leaf, torch.Tensor):
            return leaf
    return None


def _out_numel(out: Any) -> int:
    t = _first_tensor(out)
    return _numel(t)


# --- dense rules: (args, kwargs, out) -> (dense FLOPs, pointwise FLOPs) ---------------------------


def _mm(a, kw, out):  # (M, K) @ (K, N)
    m, k = a[0].shape
    return 2 * m * k * a[1].shape[1], 0


def _addmm(a, kw, out):  # bias + (M, K) @ (K, N): the bias add is pointwise, M*N
    m, k = a[1].shape
    n = a[2].shape[1]
    return 2 * m * k * n, m * n


def _bmm(a, kw, out):  # (B, M, K) @ (B, K, N)
    b, m, k = a[0].shape
    return 2 * b * m * k * a[1].shape[2], 0


def _baddbmm(a, kw, out):
    b, m, k = a[1].shape
    n = a[2].shape[2]
    return 2 * b * m * k * n, b * m * n


def _mv(a, kw, out):  # (M, N) @ (N,)
    m, n = a[0].shape
    return 2 * m * n, 0


def _addmv(a, kw, out):
    m, n = a[1].shape
    return 2 * m * n, m


def _dot(a, kw, out):
    return 2 * a[0].numel(), 0


def _conv_macs(x_shape, w_shape, out_shape, transposed: bool) -> int:
    # Regular conv: every output element is a dot product over (C_in/groups) * prod(kernel) inputs;
    # w is (C_out, C_in/groups, *k). Transposed conv: w is (C_in, C_out/groups, *k) and every
    # *input*
    # element is scattered into (C_out/groups) * prod(kernel) outputs.
    if transposed:
        return prod(x_shape) * prod(w_shape[1:])
    return prod(out_shape) * prod(w_shape[1:])


def _convolution(a, kw, out):
    # convolution(input, weight, bias, stride, padding, dilation, transposed, output_padding,
    #             groups)
    x, w, bias = a[0], a[1], a[2]
    transposed = bool(a[6]) if len(a) > 6 else False
    macs = _conv_macs(x.shape, w.shape, out.shape, transposed)
    return 2 * macs, (out.numel() if bias is not None else 0)


def _conv_forward_simple(a, kw, out):  # _slow_conv2d_forward / mkldnn_convolution(input, w, ...)
    bias = a[3] if len(a) > 3 and isinstance(a[3], torch.Tensor) else None
    macs = _conv_macs(a[0].shape, a[1].shape, out.shape, False)
    return 2 * macs, (out.numel() if bias is not None else 0)


def _convolution_backward(a, kw, out):
    # convolution_backward(grad_out, input, weight, bias_sizes, stride, padding, dilation,
    #                      transposed, output_padding, groups, output_mask): grad_input and
    # grad_weight each cost one forward's MACs; grad_bias is a sum over grad_out (pointwise).
    g, x, w = a[0], a[1], a[2]
    transposed, mask = bool(a[7]), a[10]
    macs = _conv_macs(x.shape, w.shape, g.shape, transposed)
    dense = 2 * macs * (int(bool(mask[0])) + int(bool(mask[1])))
    return dense, (g.numel() if mask[2] else 0)


def _attn_shapes(q, k, v, layout_bhle: bool):
    if layout_bhle:  # (B, H, L, E)
        *bh_q, lq, e = q.shape
        lk, ev = k.shape[-2], v.shape[-1]
    else:  # (B, L, H, E): the low-level _flash/_efficient_attention_* kernels
        b, lq, h, e = q.shape
        bh_q = [b, h]
        lk, ev = k.shape[1], v.shape[-1]
    return prod(bh_q), lq, lk, e, ev


def _sdpa_forward(layout_bhle: bool, mask_args: tuple[int | str, ...]):
    # softmax(Q K^T * scale + mask) V: QK^T is 2*BH*L*S*E FLOPs, AV is 2*BH*L*S*Ev. The full L x S
    # score matrix is counted even when causal, as the math backend computes it (a fused kernel
    # may skip masked blocks). Pointwise per score: scale (1) + softmax (5), + mask add (1) when
    # causal or masked — the convention of archlab.cost.formulas (attention).
    def rule(a, kw, out):
        bh, lq, lk, e, ev = _attn_shapes(a[0], a[1], a[2], layout_bhle)
        scores = bh * lq * lk
        masked = False
        for m in mask_args:  # positional index or keyword name of is_causal / attn_mask / bias
            v = kw.get(m) if isinstance(m, str) else (a[m] if len(a) > m else None)
            masked = masked or (v is not None and v is not False)
        return 2 * scores * e + 2 * scores * ev, scores * (6 + int(masked))

    return rule


def _sdpa_backward(first_q: int, layout_bhle: bool):
    # Gradient of the two products: dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q, i.e. twice
    # the forward's dense FLOPs (what autograd of the math backend computes). Fused kernels also
    # recompute QK^T; FlopCounterMode counts that recompute, we do not (see reconciliation).
    def rule(a, kw, out):
        bh, lq, lk, e, ev = _attn_shapes(a[first_q], a[first_q + 1], a[first_q + 2], layout_bhle)
        scores = bh * lq * lk
        return 2 * (2 * scores * e + 2 * scores * ev), 4 * scores

    return rule


def _rnn_rows_and_gates(x, w_ih, w_hh):
    rows = x.numel() // x.shape[-1]  # T*B input vectors
    return rows, 2 * rows * (w_ih.numel() + w_hh.numel())


def _mkldnn_rnn_layer(a, kw, out):
    # One direction of one nn.LSTM layer: per step x W_ih^T + h W_hh^T (4H gates). Pointwise per
    # hidden unit: 3 gate-sum adds over 4H (12), 3 sigmoids + 2 tanh (5), c = f*c + i*g (3),
    # h = o*tanh(c) (1) = 21 per (row, unit).
    rows, dense = _rnn_rows_and_gates(a[0], a[1], a[2])
    return dense, 21 * rows * int(a[10])


def _mkldnn_rnn_layer_backward(a, kw, out):
    # grad w.r.t. inputs/hidden and w.r.t. weights: twice the forward's dense FLOPs.
    rows, dense = _rnn_rows_and_gates(a[0], a[1], a[2])
    return 2 * dense, 2 * 21 * rows * int(a[16])


def _fused_cell(factor: int):
    def rule(a, kw, out):  # input_gates: (B, G*H); pointwise per gate element
        return 0, factor * a[0].numel()

    return rule


DENSE_RULES: dict[str, Callable[[tuple, dict, Any], tuple[int, int]]] = {
    "mm": _mm,
    "addmm": _addmm,
    "bmm": _bmm,
    "baddbmm": _baddbmm,
    "mv": _mv,
    "addmv": _addmv,
    "dot": _dot,
    "vdot": _dot,
    "convolution": _convolution,
    "_convolution": _convolution,
    "convolution_overrideable": _convolution,
    "_slow_conv2d_forward": _conv_forward_simple,
    "mkldnn_convolution": _conv_forward_simple,
    "convolution_backward": _convolution_backward,
    # (q, k, v, dropout_p, is_causal, *, attn_mask, scale)
    "_scaled_dot_product_flash_attention_for_cpu": _sdpa_forward(
        True, (4, "is_causal", "attn_mask")
    ),
    "_scaled_dot_product_flash_attention": _sdpa_forward(True, (4, "is_causal")),
    # (q, k, v, attn_bias, compute_log_sumexp, dropout_p, is_causal, ...)
    "_scaled_dot_product_efficient_attention": _sdpa_forward(True, (3, 6, "is_causal")),
    "_scaled_dot_product_cudnn_attention": _sdpa_forward(True, (3, 6, "is_causal")),
    "_scaled_dot_product_fused_attention_overrideable": _sdpa_forward(True, (3, 5, "is_causal")),
    "_flash_attention_forward": _sdpa_forward(False, (6, "is_causal")),
    "_efficient_attention_forward": _sdpa_forward(False, (3, "is_causal")),
    "_scaled_dot_product_flash_attention_for_cpu_backward": _sdpa_backward(1, True),
    "_scaled_dot_product_flash_attention_backward": _sdpa_backward(1, True),
    "_scaled_dot_product_efficient_attention_backward": _sdpa_backward(1, True),
    "_scaled_dot_product_cudnn_attention_backward": _sdpa_backward(1, True),
    "_scaled_dot_product_fused_attention_overrideable_backward": _sdpa_backward(1, True),
    "_flash_attention_backward": _sdpa_backward(1, False),
    "_efficient_attention_backward": _sdpa_backward(1, False),
    "mkldnn_rnn_layer": _mkldnn_rnn_layer,
    "mkldnn_rnn_layer_backward": _mkldnn_rnn_layer_backward,
    # Gate nonlinearities only (the gate matmuls are separate mm/addmm ops).
    "_thnn_fused_lstm_cell": _fused_cell(6),
    "_thnn_fused_lstm_cell_backward_impl": _fused_cell(10),
    "_thnn_fused_gru_cell": _fused_cell(5),
    "_thnn_fused_gru_cell_backward": _fused_cell(8),
}

# FLOPs per *output* element.
POINTWISE_OUT: dict[str, int] = {
    **dict.fromkeys(
        "add sub rsub mul div neg abs reciprocal square sign relu leaky_relu clamp clamp_min "
        "clamp_max hardtanh threshold threshold_backward maximum minimum eq ne lt le gt ge "
        "logical_and logical_or logical_not logical_xor bitwise_not bitwise_and bitwise_or "
        "bitwise_xor exp exp2 log log2 log10 log1p expm1 sqrt "
        "rsqrt sin cos tan tanh sigmoid erf erfc pow fmod remainder floor ceil round trunc "
        "native_dropout_backward hardtanh_backward leaky_relu_backward".split(),
        1,
    ),
    # 1 mask multiply (the Bernoulli draw is RNG, not arithmetic).
    "native_dropout": 1,
    # Any activation is 1 per element, as in archlab.cost.formulas (so formula and measured rows
    # agree); the tanh approximation of GELU too.
    **dict.fromkeys("gelu silu mish hardsigmoid hardswish elu selu celu softplus".split(), 1),
    **dict.fromkeys("addcmul addcdiv lerp".split(), 2),
    # g * (1 - y^2) / g * y * (1 - y)
    **dict.fromkeys("tanh_backward sigmoid_backward elu_backward".split(), 3),
    "gelu_backward": 8,
    "silu_backward": 5,
    # max-subtract, exp, sum, divide (+ the max compare): 5 per element
    "_softmax": 5,
    "_log_softmax": 5,
    # y * (g - sum(g * y)): mul, sum, sub, mul
    "_softmax_backward_data": 4,
    "_log_softmax_backward_data": 3,
    # mean (1), center (1), square + sum (2), scale by rstd (1); affine adds 2 (set in count_op)
    "native_layer_norm": 5,
    "native_group_norm": 5,
    "native_batch_norm": 5,
    "_native_batch_norm_legit": 5,
    "_native_batch_norm_legit_functional": 5,
    # eval BatchNorm: (x - mean) * rstd with precomputed statistics
    "_native_batch_norm_legit_no_training": 2,
    # dx needs two reductions and a fused update; dgamma/dbeta one reduction each
    "native_layer_norm_backward": 9,
    "native_group_norm_backward": 9,
    "native_batch_norm_backward": 9,
    "mse_loss": 3,
    "mse_loss_backward": 3,
}

# FLOPs per *input* element (reductions and scatters).
REDUCE_IN: dict[str, int] = {
    **dict.fromkeys(
        "sum mean amax amin max min argmax argmin prod nansum any all cumsum".split(),
        1,
    ),
    **dict.fromkeys("var std var_mean std_mean logsumexp".split(), 3),
    **dict.fromkeys("norm linalg_vector_norm".split(), 2),
    # scatter-add of each grad_output row into the weight gradient
    "embedding_dense_backward": 1,
    # -log p[target]: one negate-and-sum per target
    "nll_loss_forward": 0,
    "nll_loss_backward": 0,
    "nll_loss2d_forward": 0,
    "nll_loss2d_backward": 0,
}
_AFFINE_NORMS = frozenset(
    "native_layer_norm native_group_norm native_batch_norm _native_batch_norm_legit "
    "_native_batch_norm_legit_functional _native_batch_norm_legit_no_training".split()
)
_PER_TARGET = {"nll_loss_forward", "nll_loss_backward", "nll_loss2d_forward", "nll_loss2d_backward"}

# 0 FLOPs: metadata, views, copies, allocation, indexing/gather/select, RNG, padding.
KNOWN_ZERO: frozenset[str] = frozenset(
    """
    view _unsafe_view reshape _reshape_alias t transpose permute expand expand_as squeeze unsqueeze
    split split_with_sizes unsafe_split unsafe_split_with_sizes chunk unbind select slice narrow
    as_strided detach alias lift_fresh lift_fresh_copy clone contiguous copy _to_copy to _copy_from
    _copy_from_and_resize cat stack empty empty_like empty_strided new_empty new_empty_strided
    zeros zeros_like new_zeros ones ones_like new_ones full full_like new_full fill zero arange
    linspace embedding index_select gather index _unsafe_index index_put _index_put_impl
    masked_fill where tril triu scalar_tensor _local_scalar_dense sym_size sym_stride sym_numel
    sym_storage_offset is_same_size bernoulli rand rand_like randn randn_like randint randint_like
    uniform normal randperm flip roll repeat constant_pad_nd slice_backward select_backward
    unfold im2col col2im view_as_real view_as_complex resize set _has_compatible_shallow_copy_type
    masked_select nonzero _unsafe_split unsqueeze_copy view_copy t_copy transpose_copy permute_copy
    expand_copy split_copy slice_copy select_copy detach_copy alias_copy _pin_memory
    _reshape_copy squeeze_copy unbind_copy _assert_tensor_metadata _assert_async
    _functional_assert_async scatter scatter_reduce diagonal diag_embed block_diag
    max_pool2d_with_indices_backward one_hot _conj _neg_view resolve_conj resolve_neg
    """.split()
)


def count_op(func: Any, args: tuple, kwargs: dict, out: Any) -> OpFlops:
    """FLOPs of one ATen op call from its operands' and result's shapes."""
    if func._schema.name.startswith("prim::"):
        return OpFlops(0, 0, "zero")
    name = op_name(func)
    rule = DENSE_RULES.get(name)
    if rule is not None:
        first = _first_tensor(out)
        dense, pw = rule(args, kwargs, first if first is not None else out)
        return OpFlops(int(dense), int(pw), "dense")
    if name in POINTWISE_OUT:
        n = _out_numel(out)
        factor = POINTWISE_OUT[name]
        if name in _AFFINE_NORMS:
            factor += _affine_terms(name, args)
        return OpFlops(0, factor * n, "pointwise")
    if name in REDUCE_IN:
        if name in _PER_TARGET:
            return OpFlops(0, _numel(args[1]), "pointwise")
        return OpFlops(0, REDUCE_IN[name] * _numel(_first_tensor(args)), "pointwise")
    if name in KNOWN_ZERO:
        return OpFlops(0, 0, "zero")
    # Ops that produce nothing (or only empty tensors) cost nothing by construction.
    outs = [x for x in tree_flatten(out)[0] if isinstance(x, torch.Tensor)]
    if all(x.numel() == 0 for x in outs):
        return OpFlops(0, 0, "zero")
    return OpFlops(0, 0, "uncounted")


def _affine_terms(name: str, args: tuple) -> int:
    # layer_norm(input, normalized_shape, weight, bias, eps); group_norm(input, weight, bias, ...);
    # batch_norm variants(input, weight, bias, ...). Each present affine tensor adds 1 per element.
    idx = (2, 3) if name == "native_layer_norm" else (1, 2)
    return sum(1 for i in idx if len(args) > i and isinstance(args[i], torch.Tensor))
