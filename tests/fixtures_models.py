"""Tiny models for the ``analyze`` tests and ``archlab cost model tests.fixtures_models:...``.

``TinyGPT`` is GPT-shaped (Embedding + learned positions, pre-norm blocks with
``F.scaled_dot_product_attention``, GELU MLP, LM head tied to the token embedding); the benchmark
builds it at GPT-2-small size. ``math_attention=True`` swaps SDPA for explicit matmuls + softmax
(the reference that FlopCounterMode counts correctly).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CumprodNet",
    "LSTMCellLoop",
    "LSTMTagger",
    "TinyGPT",
    "conv_net",
    "lstm_tagger",
    "mlp",
    "tiny_gpt",
]


class Attention(nn.Module):
    def __init__(self, d: int, heads: int, math_attention: bool = False) -> None:
        super().__init__()
        self.heads, self.math_attention = heads, math_attention
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # 3 x (B, T, C)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        if self.math_attention:
            att = (q @ k.transpose(-2, -1)) / math.sqrt(k.size(-1))  # (B, nh, T, T)
            mask = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~mask, float("-inf")).softmax(dim=-1)
            y = att @ v  # (B, nh, T, hs)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, nh, T, hs)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, d: int, heads: int, math_attention: bool = False) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = Attention(d, heads, math_attention)
        self.ln_2 = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # (B, T, C)
        return x + self.mlp(self.ln_2(x))  # (B, T, C)


class TinyGPT(nn.Module):
    def __init__(
        self,
        vocab: int = 64,
        d: int = 32,
        heads: int = 4,
        layers: int = 2,
        block_size: int = 16,
        math_attention: bool = False,
    ) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(block_size, d)
        self.blocks = nn.ModuleList(Block(d, heads, math_attention) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying (Press & Wolf 2017)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        pos = torch.arange(T, device=idx.device)  # (T,)
        x = self.wte(idx) + self.wpe(pos)  # (B, T, C)
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))  # (B, T, vocab)


class LSTMTagger(nn.Module):
    def __init__(self, vocab: int = 50, d: int = 16, hidden: int = 24) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.lstm = nn.LSTM(d, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        h, _ = self.lstm(self.emb(idx))  # (B, T, H)
        return self.out(h)  # (B, T, vocab)


class LSTMCellLoop(nn.Module):
    """The unfused reference of a 1-layer batch-first ``nn.LSTM``: an ``LSTMCell`` step loop."""

    def __init__(self, lstm: nn.LSTM) -> None:
        super().__init__()
        self.cell = nn.LSTMCell(lstm.input_size, lstm.hidden_size)
        with torch.no_grad():
            for a, b in (("weight_ih", "weight_ih_l0"), ("weight_hh", "weight_hh_l0"),
                         ("bias_ih", "bias_ih_l0"), ("bias_hh", "bias_hh_l0")):  # fmt: skip
                getattr(self.cell, a).copy_(getattr(lstm, b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _ = x.shape
        h = x.new_zeros(B, self.cell.hidden_size)  # (B, H)
        c = x.new_zeros(B, self.cell.hidden_size)  # (B, H)
        outs = []
        for t in range(T):
            h, c = self.cell(x[:, t], (h, c))
            outs.append(h)
        return torch.stack(outs, dim=1)  # (B, T, H)


class CumprodNet(nn.Module):
    """Uses an op archlab has no rule for (``torch.cumprod``): it must show up as uncounted."""

    def __init__(self, d: int = 8) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cumprod(self.fc(x), dim=-1)  # (B, d)


def tiny_gpt() -> TinyGPT:
    return TinyGPT()


def lstm_tagger() -> LSTMTagger:
    return LSTMTagger()


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 5)
    )


def conv_net(groups: int = 2) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, groups=groups, bias=False),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
