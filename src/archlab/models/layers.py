"""Pieces used by more than one architecture, and nothing else.

- :class:`FeedForward` — the position-wise MLP of a Transformer block (GPT and ViT use the same one:
  Linear → GELU → Linear → Dropout; Vaswani et al. 2017 §3.3 with GELU as in GPT-2 and ViT).
- :func:`attention` — ``F.scaled_dot_product_attention`` with one CPU precision rule (below); GPT
  and ViT call it.
- :func:`sample_next_token` — temperature / top-k sampling from next-token logits (GPT and the RNN
  language models share it, so both decode the same way).

The attention blocks themselves stay in ``gpt.py`` and ``vit.py``: the causal one carries a KV cache,
the image one can return its attention weights, and each reads more clearly on its own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import ArchlabError


class FeedForward(nn.Module):
    """``x -> W2 GELU(W1 x + b1) + b2`` applied at every position; hidden width ``d_ff``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff, bias=bias)
        self.proj = nn.Linear(d_ff, d_model, bias=bias)  # a residual projection (see GPT init)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))  # (..., d_model)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` (q, k, v: (B, nh, T, hs)), in fp32 on the CPU.

    Why: under bf16 autocast PyTorch's CPU flash-attention kernel is several times *slower* in bf16
    than in fp32 at the head sizes used here (measured on this project's AVX-512 CPU, torch 2.13,
    (64, 4, 64, 32) forward + backward: ~190 ms bf16 vs ~50 ms fp32, single thread), and it was half
    of a bf16 training step of ``gpt-nano``. So on the CPU, half-precision inputs are attended in
    fp32 and the result is cast back; the projections around it stay in bf16 (where AVX-512 bf16
    matmuls pay off). On CUDA the bf16 kernels are the fast ones and nothing changes.
    """
    half = q.dtype in (torch.bfloat16, torch.float16)
    if q.device.type != "cpu" or not half:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal
        )
    with torch.autocast("cpu", enabled=False):
        y = F.scaled_dot_product_attention(
            q.float(),
            k.float(),
            v.float(),
            attn_mask=attn_mask,
            dropout_p=dropout_p,
            is_causal=is_causal,
        )  # (B, nh, T, hs) fp32
    return y.to(q.dtype)


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token id per row from ``logits`` (B, V); returns (B, 1) long.

    ``temperature == 0`` means greedy (argmax). ``top_k`` keeps the k most likely tokens and
    renormalizes (as nanoGPT's ``generate``); ``generator`` makes the draw reproducible.
    """
    if temperature < 0:
        raise ArchlabError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ArchlabError(f"top_k must be >= 1, got {top_k}")
    logits = logits.float()  # sample in fp32 even under bf16 autocast
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)


__all__ = ["FeedForward", "attention", "sample_next_token"]
