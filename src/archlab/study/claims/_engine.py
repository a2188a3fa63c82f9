"""The study's view of the cost engine (``archlab.cost.layers``), isolated in one place."""

from __future__ import annotations

from typing import Any

from archlab.cost import layers

ENGINE = "archlab.cost.layers"


def rnn_params(input_size: int, hidden_size: int) -> dict[str, Any]:
    """Parameters of one vanilla RNN layer under both conventions (PyTorch keeps b_ih and b_hh,
    Keras SimpleRNN one bias)."""
    keras = layers.rnn(input_size, hidden_size, convention="keras")
    torch_ = layers.rnn(input_size, hidden_size, convention="pytorch")
    return {"engine": ENGINE, "keras": keras.params, "pytorch": torch_.params}


def conv_params(c_in: int, c_out: int, k: int) -> dict[str, Any]:
    return {"engine": ENGINE, "params": layers.conv(c_in, c_out, k).params}


def transformer_layer_flops(n: int, d: int, ffn_mult: int = 4) -> dict[str, Any]:
    """Forward dense FLOPs (2 per multiply-add) of one pre-LN Transformer layer at length n, width
    d, and the engine's crossover n* where the n² terms (QKᵀ, AV) overtake the n·d² terms
    (projections, FFN): n* = 2·d + d_ff = 6·d at d_ff = 4·d."""
    cost = layers.transformer(d, 1, 1, ffn_mult * d, seq_len=n, norm_first=True)
    return {
        "engine": ENGINE,
        "dense": cost.flops_forward_dense,
        "complexity": cost.complexity,
        "crossover_n": cost.derived["crossover"]["n_star_dense"],
    }


__all__ = ["ENGINE", "conv_params", "rnn_params", "transformer_layer_flops"]
