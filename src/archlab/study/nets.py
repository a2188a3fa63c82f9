"""The study's language models are archlab's own (``archlab.models.create_model``) at small sizes.

What a user trains with ``archlab train lm`` is what the verdicts are about; this module only picks
sizes: :func:`study_lm` builds a registered LM with the study's conventions (dropout off, untied
output so the recurrent and Transformer models are counted alike, 4 heads where the width allows)
and :func:`width_for_params` finds the width that matches a parameter budget.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from archlab.models import create_model
from archlab.models.gpt import Block, GPTConfig

RNN_ARCHS = ("rnn", "lstm", "gru")


def study_lm(
    arch: str,
    vocab: int,
    width: int,
    layers: int = 1,
    *,
    max_len: int = 256,
    positions: str = "learned",
    attention: str = "sdpa",
    **overrides: Any,
) -> nn.Module:
    """``arch`` in rnn/lstm/gru/gpt; ``width`` = embedding and hidden size (RNNs) or d_model (GPT).

    GPT: ``block_size = max_len`` (sinusoidal or no positions accept up to 4 × max_len tokens).
    ``overrides`` go to the config (e.g. ``forget_bias`` for the LSTM).
    """
    if arch in RNN_ARCHS:
        return create_model(
            arch, vocab_size=vocab, d_model=width, layers=layers, dropout=0.0, **overrides
        )
    if arch != "gpt":
        raise ValueError(f"arch must be one of {(*RNN_ARCHS, 'gpt')}, got {arch!r}")
    return create_model(
        "gpt",
        **{
            "vocab_size": vocab,
            "d_model": width,
            "layers": layers,
            "heads": next(h for h in (4, 2, 1) if width % h == 0),
            "block_size": max_len,
            "positions": positions,
            "attention": attention,
            "dropout": 0.0,
            "tie_weights": False,
            **overrides,
        },
    )


def gpt_block(d_model: int, heads: int, attention: str = "sdpa") -> Block:
    """One block of archlab's GPT (pre-norm attention + MLP, d_ff = 4d), dropout off;
    ``block(x)`` -> (y, (k, v)), x and y (B, n, d_model)."""
    return Block(GPTConfig(d_model=d_model, heads=heads, attention=attention))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # a tied tensor is yielded once


def width_for_params(
    arch: str,
    target: int,
    vocab: int,
    layers: int = 1,
    builder: Callable[..., nn.Module] | None = None,
    **kw: Any,
) -> int:
    """The width whose parameter count is closest to ``target`` (GPT widths are multiples of 4)."""
    builder = builder or study_lm
    step = 4 if arch == "gpt" else 1
    best, best_err = step, None
    for w in range(step, 1025, step):
        err = abs(n_params(builder(arch, vocab, w, layers, **kw)) - target)
        if best_err is None or err < best_err:
            best, best_err = w, err
        elif err > best_err:
            break  # params grow monotonically with width
    return best


__all__ = ["RNN_ARCHS", "gpt_block", "n_params", "study_lm", "width_for_params"]
