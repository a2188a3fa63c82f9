"""The study's language models are archlab's own (``archlab.models.create_model``) at small sizes.

What a user trains with ``archlab train lm`` is what the verdicts are about; this module only picks
sizes: :func:`lm_config` gives a registered LM's config with the study's conventions (dropout off,
untied output so the recurrent and Transformer models are counted alike, 4 heads where the width
allows) and :func:`width_for_params` finds the width that matches a parameter budget.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from archlab.models import create_model
from archlab.models.gpt import Block, GPTConfig

RNN_ARCHS = ("rnn", "lstm", "gru")
_GPT_ONLY = {"positions", "attention", "heads", "max_seq_len", "bias"}  # dropped for the RNNs


def lm_config(
    arch: str,
    vocab: int,
    width: int,
    layers: int | None = None,
    *,
    max_len: int = 256,
    **extra: Any,
) -> dict[str, Any]:
    """Config overrides of ``arch`` (rnn/lstm/gru: 1 layer; gpt: 2 layers) at ``width``.

    ``width`` is the embedding = hidden size (RNNs) or d_model (GPT, a multiple of 4). GPT:
    ``block_size = max_len`` (sinusoidal positions accept up to 4 × max_len tokens).
    """
    if arch in RNN_ARCHS:
        return {
            "vocab_size": vocab,
            "d_model": width,
            "layers": layers or 1,
            "dropout": 0.0,
            **{k: v for k, v in extra.items() if k not in _GPT_ONLY},
        }
    if arch != "gpt":
        raise ValueError(f"arch must be one of {(*RNN_ARCHS, 'gpt')}, got {arch!r}")
    return {
        "vocab_size": vocab,
        "d_model": width,
        "layers": layers or 2,
        "heads": next(h for h in (4, 2, 1) if width % h == 0),
        "block_size": max_len,
        "dropout": 0.0,
        "tie_weights": False,
        **extra,
    }


def study_lm(
    arch: str,
    vocab: int,
    width: int,
    layers: int | None = None,
    *,
    max_len: int = 256,
    **extra: Any,
) -> nn.Module:
    """The model of :func:`lm_config` (random init from torch's current seed)."""
    return create_model(arch, **lm_config(arch, vocab, width, layers, max_len=max_len, **extra))


def gpt_block(d_model: int, heads: int, attention: str = "sdpa") -> Block:
    """One block of archlab's GPT (pre-norm attention + MLP, d_ff = 4d), dropout off;
    ``block(x)`` -> (y, (k, v)), x and y (B, n, d_model)."""
    return Block(GPTConfig(d_model=d_model, heads=heads, attention=attention))


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # a tied tensor is yielded once


def width_for_params(
    arch: str, target: int, vocab: int, layers: int | None = None, **kw: Any
) -> int:
    """The width whose parameter count is closest to ``target`` (GPT widths are multiples of 4)."""
    step = 4 if arch == "gpt" else 1
    best, best_err = step, None
    for w in range(step, 1025, step):
        err = abs(n_params(study_lm(arch, vocab, w, layers, **kw)) - target)
        if best_err is None or err < best_err:
            best, best_err = w, err
        elif err > best_err:
            break  # params grow monotonically with width
    return best


__all__ = ["RNN_ARCHS", "gpt_block", "lm_config", "n_params", "study_lm", "width_for_params"]
