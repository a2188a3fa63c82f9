"""The per-layer cost formulas (seed Parts 3-5), one pure function of sizes per layer type.

Each returns a :class:`~archlab.cost.types.LayerCost`: parameter terms with shapes and formulas
(always), and — when sizes (seq_len / batch_size / image_size) are given — forward FLOPs split
into dense and pointwise, backward dense FLOPs, activation bytes, plus a sympy Big-O.
Conventions (FLOPs = 2 x MACs, per-op pointwise counts, what backward and activation bytes
include) are documented in :mod:`archlab.cost.formulas._base`. ``module_cost`` applies the same
formulas to a real ``nn.Module`` call.
"""

from archlab.cost.formulas import (
    attention,
    batchnorm,
    conv,
    conv1d,
    conv2d,
    embedding,
    ffn,
    gru,
    layernorm,
    linear,
    lstm,
    module_cost,
    patch_embed,
    rnn,
    transformer,
    transformer_block,
)

__all__ = [
    "attention",
    "batchnorm",
    "conv",
    "conv1d",
    "conv2d",
    "embedding",
    "ffn",
    "gru",
    "layernorm",
    "linear",
    "lstm",
    "module_cost",
    "patch_embed",
    "rnn",
    "transformer",
    "transformer_block",
]
