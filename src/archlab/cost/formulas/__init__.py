"""Per-layer cost formulas; import them from :mod:`archlab.cost.layers`."""

from archlab.cost.formulas.basic import (
    batchnorm,
    conv,
    conv1d,
    conv2d,
    embedding,
    layernorm,
    linear,
    patch_embed,
)
from archlab.cost.formulas.modules import module_cost
from archlab.cost.formulas.recurrent import gru, lstm, rnn
from archlab.cost.formulas.transformer import attention, ffn, transformer, transformer_block

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
