"""The study's view of the cost engine (``archlab.cost.layers``), isolated in one place.

Until the engine is installed the study uses the same textbook formulas, written out below with
their sources, and says so in the results (``"engine"``).
"""

from __future__ import annotations

from typing import Any


def _layers():
    try:
        from archlab.cost import layers
    except ImportError:
        return None
    return layers


def rnn_params(input_size: int, hidden_size: int) -> dict[str, Any]:
    """Parameters of one vanilla RNN layer under both conventions.

    PyTorch ``nn.RNN`` keeps two bias vectors (b_ih and b_hh; PyTorch docs, torch.nn.RNN);
    Keras ``SimpleRNN`` keeps one. W_ih (H, I) + W_hh (H, H) + biases.
    """
    layers = _layers()
    if layers is not None:
        keras = layers.rnn(input_size=input_size, hidden_size=hidden_size, convention="keras")
        torch_ = layers.rnn(input_size=input_size, hidden_size=hidden_size, convention="pytorch")
        return {"engine": "archlab.cost.layers", "keras": keras.params, "pytorch": torch_.params}
    weights = hidden_size * input_size + hidden_size * hidden_size
    return {"engine": "study formula (archlab.cost.layers not installed)",
            "keras": weights + hidden_size, "pytorch": weights + 2 * hidden_size}  # fmt: skip


def conv_params(c_in: int, c_out: int, k: int) -> dict[str, Any]:
    """k·k·C_in weights per filter, C_out filters, one bias each (Keras and PyTorch agree)."""
    layers = _layers()
    if layers is not None:
        cost = layers.conv(in_channels=c_in, out_channels=c_out, kernel_size=k)
        return {"engine": "archlab.cost.layers", "params": cost.params}
    return {"engine": "study formula (archlab.cost.layers not installed)",
            "params": k * k * c_in * c_out + c_out}


def transformer_layer_flops(n: int, d: int, ffn_mult: int = 4) -> dict[str, Any]:
    """Forward dense FLOPs (2 per multiply-add) of one pre-LN Transformer layer at length n, width d.

    QKV 2·n·d·3d + QKᵀ 2·n²·d + AV 2·n²·d + out-proj 2·n·d² + FFN 2·2·n·d·(ffn_mult·d)
    = (8 + 4·ffn_mult)·n·d² + 4·n²·d (Vaswani et al. 2017 Table 1; Kaplan et al. 2020 Table 1).
    The crossover n* where the n² term equals the n·d² term: n* = (8 + 4·ffn_mult)·d / 4 = 6d.
    """
    layers = _layers()
    if layers is not None and hasattr(layers, "transformer"):
        cost = layers.transformer(seq_len=n, d_model=d, d_ff=ffn_mult * d)
        out = {"engine": "archlab.cost.layers", "dense": cost.flops_forward_dense}
        out["crossover_n"] = getattr(cost, "crossover_n", None) or cost.config.get("crossover_n")
        return out
    linear = (8 + 4 * ffn_mult) * n * d * d
    quad = 4 * n * n * d
    return {"engine": "study formula (archlab.cost.layers not installed)", "dense": linear + quad,
            "linear_part": linear, "quadratic_part": quad,
            "crossover_n": (8 + 4 * ffn_mult) * d / 4}  # fmt: skip


__all__ = ["conv_params", "rnn_params", "transformer_layer_flops"]
