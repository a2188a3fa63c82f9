"""``module_cost``: the formula cost of one real module call, read off the module and its inputs.

Used by the any-module analysis (``archlab.cost.analyze``) for every module type with a formula;
anything else returns None and is measured there instead. The hyper-parameters come from the
module's attributes, the sizes and dtype from the actual input tensors, so the result is the
cost of exactly that call.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from archlab.cost.formulas.basic import batchnorm, conv, embedding, layernorm, linear
from archlab.cost.formulas.recurrent import gru, lstm, rnn
from archlab.cost.formulas.transformer import attention, transformer_block
from archlab.cost.types import LayerCost

__all__ = ["module_cost"]


def _tokens(shape: torch.Size) -> tuple[int, int]:
    """(batch, seq) for a (..., features) input: the last-but-one dim is the sequence."""
    if len(shape) <= 1:
        return 1, 1
    return math.prod(shape[:-2]) or 1, shape[-2]


def _first_tensor(inputs: tuple) -> torch.Tensor | None:
    return inputs[0] if inputs and isinstance(inputs[0], torch.Tensor) else None


def module_cost(
    module: nn.Module, inputs: tuple, output: Any = None, kwargs: dict | None = None
) -> LayerCost | None:
    """Formula cost of ``module(*inputs, **kwargs)``, or None when no formula covers the call.

    Covered: Linear, Embedding, LayerNorm (1-D normalized_shape), BatchNorm1d/2d, Conv1d/2d
    (any padding mode: the output size is the same), RNN/LSTM/GRU (batch_first, unbatched,
    bidirectional, proj_size; not PackedSequence), MultiheadAttention as self-attention (q, k, v
    the same tensor; not kdim/vdim, bias_kv or add_zero_attn) and TransformerEncoderLayer
    (relu/gelu) — a caller that recurses into children must not count that layer twice. Any
    ``attn_mask``/``src_mask`` is costed as an additive mask, like ``causal``. For recurrent
    layers the backward assumes the default zero initial state (an ``hx`` that requires grad
    adds one input-grad product per layer and direction).
    """
    x = _first_tensor(inputs)
    if x is None or x.numel() == 0:
        return None
    kwargs = kwargs or {}
    dt = x.element_size() if x.is_floating_point() else 4
    if isinstance(module, nn.Linear):
        B, n = _tokens(x.shape)
        return linear(
            module.in_features,
            module.out_features,
            bias=module.bias is not None,
            batch_size=B,
            seq_len=n,
            dtype=dt,
        )
    if isinstance(module, nn.Embedding):
        B, n = (1, x.shape[0]) if x.dim() == 1 else (math.prod(x.shape[:-1]), x.shape[-1])
        return embedding(
            module.num_embeddings,
            module.embedding_dim,
            padding_idx=module.padding_idx,
            batch_size=B,
            seq_len=n,
            dtype=module.weight.element_size(),
        )
    if isinstance(module, nn.LayerNorm):
        if len(module.normalized_shape) != 1:
            return None
        B, n = _tokens(x.shape)
        return layernorm(
            module.normalized_shape[0],
            elementwise_affine=module.elementwise_affine,
            bias=module.bias is not None,
            batch_size=B,
            seq_len=n,
            dtype=dt,
        )
    if isinstance(module, (nn.BatchNorm1d, nn.BatchNorm2d)):
        dims = 2 if isinstance(module, nn.BatchNorm2d) else 1
        spatial = (
            dict(image_size=tuple(x.shape[-2:]))
            if dims == 2
            else dict(seq_len=x.shape[2] if x.dim() == 3 else None)
        )
        return batchnorm(
            module.num_features,
            dims=dims,
            affine=module.affine,
            track_running_stats=module.track_running_stats,
            batch_size=x.shape[0] if x.dim() > dims else 1,
            dtype=dt,
            **spatial,
        )
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        dims = 1 if isinstance(module, nn.Conv1d) else 2
        batched = x.dim() == dims + 2
        return conv(
            module.in_channels,
            module.out_channels,
            module.kernel_size,
            dims=dims,
            stride=module.stride,
            padding=module.padding,
            dilation=module.dilation,
            groups=module.groups,
            bias=module.bias is not None,
            image_size=tuple(x.shape[-dims:]),
            batch_size=x.shape[0] if batched else 1,
            dtype=dt,
        )
    if isinstance(module, (nn.RNN, nn.LSTM, nn.GRU)):
        return _recurrent(module, x, dt)
    if isinstance(module, nn.MultiheadAttention):
        return _mha(module, inputs, kwargs, dt)
    if isinstance(module, nn.TransformerEncoderLayer):
        return _encoder_layer(module, x, inputs, kwargs, dt)
    return None


def _recurrent(m: nn.RNNBase, x: torch.Tensor, dt: int) -> LayerCost | None:
    if isinstance(x, nn.utils.rnn.PackedSequence) or x.dim() not in (2, 3):
        return None
    if x.dim() == 2:
        n, B = x.shape[0], 1
    else:
        n, B = (x.shape[1], x.shape[0]) if m.batch_first else (x.shape[0], x.shape[1])
    common = dict(
        num_layers=m.num_layers,
        bias=m.bias,
        bidirectional=m.bidirectional,
        batch_size=B,
        seq_len=n,
        dtype=dt,
    )
    if isinstance(m, nn.LSTM):
        return lstm(m.input_size, m.hidden_size, proj_size=m.proj_size, **common)
    if isinstance(m, nn.GRU):
        return gru(m.input_size, m.hidden_size, **common)
    return rnn(m.input_size, m.hidden_size, nonlinearity=m.nonlinearity, **common)


def _is_self(inputs: tuple, kwargs: dict) -> bool:
    q = inputs[0]
    k = inputs[1] if len(inputs) > 1 else kwargs.get("key")
    v = inputs[2] if len(inputs) > 2 else kwargs.get("value")
    return (
        k is not None
        and v is not None
        and all(t is q or (t.shape == q.shape and t.data_ptr() == q.data_ptr()) for t in (k, v))
    )


def _mha(m: nn.MultiheadAttention, inputs: tuple, kwargs: dict, dt: int) -> LayerCost | None:
    """Self-attention only (q = k = v); cross-attention, kdim/vdim, bias_kv are not covered."""
    if not m._qkv_same_embed_dim or m.bias_k is not None or m.add_zero_attn:
        return None
    if not _is_self(inputs, kwargs):
        return None
    q = inputs[0]
    if q.dim() == 2:
        n, B = q.shape[0], 1
    else:
        n, B = (q.shape[1], q.shape[0]) if m.batch_first else (q.shape[0], q.shape[1])
    mask = kwargs.get("attn_mask", inputs[5] if len(inputs) > 5 else None)
    causal = bool(kwargs.get("is_causal", False)) or mask is not None
    return attention(
        m.embed_dim,
        m.num_heads,
        bias=m.in_proj_bias is not None,
        causal=causal,
        batch_size=B,
        seq_len=n,
        dtype=dt,
    )


def _encoder_layer(m: nn.TransformerEncoderLayer, x, inputs, kwargs, dt) -> LayerCost | None:
    act = getattr(m, "activation_relu_or_gelu", 0)
    activation = {1: "relu", 2: "gelu"}.get(act)
    if activation is None or x.dim() not in (2, 3):
        return None
    sa = m.self_attn
    n, B = (
        (x.shape[0], 1)
        if x.dim() == 2
        else ((x.shape[1], x.shape[0]) if sa.batch_first else (x.shape[0], x.shape[1]))
    )
    mask = kwargs.get("src_mask", inputs[1] if len(inputs) > 1 else None)
    causal = bool(kwargs.get("is_causal", False)) or mask is not None
    return transformer_block(
        sa.embed_dim,
        sa.num_heads,
        m.linear1.out_features,
        norm_first=m.norm_first,
        activation=activation,
        bias=m.linear1.bias is not None,
        causal=causal,
        batch_size=B,
        seq_len=n,
        dtype=dt,
    )
