"""A GPT-style causal Transformer language model (decoder only, pre-norm), after nanoGPT.

Reads top to bottom: config → CausalSelfAttention → Block → GPT. ``model(idx)`` maps token ids
(B, T) to next-token logits (B, T, vocab). Training attends with
``F.scaled_dot_product_attention(is_causal=True)`` (via ``layers.attention``); decoding reuses per-layer keys/values (a KV
cache), and cached decoding equals full recomputation (tested).

Positions are either ``"learned"`` (a table of ``block_size`` rows, as GPT-2; longer inputs are an
error, and ``generate`` crops its context to the last ``block_size`` tokens) or ``"sinusoidal"``
(Vaswani et al. 2017 §3.5, computed on the fly, no parameters; inputs up to ``max_seq_len`` tokens
are accepted, so a model trained at ``block_size`` can be evaluated on longer text).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from archlab.errors import ArchlabError
from archlab.models.layers import FeedForward, attention, sample_next_token
from archlab.models.registry import register_model, register_preset

KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values, each (B, nh, T, hs)

POSITIONS = ("learned", "sinusoidal")


@dataclass
class GPTConfig:
    vocab_size: int = 65  # Tiny Shakespeare's character vocabulary
    block_size: int = 64  # training context length (tokens)
    layers: int = 4
    heads: int = 4
    d_model: int = 128
    d_ff: int | None = None  # feed-forward width; None -> 4 * d_model (Vaswani et al. 2017 §3.3)
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm, as GPT-2
    tie_weights: bool = True  # output projection shares the token embedding (Press & Wolf 2017)
    positions: str = "learned"
    # Longest input forward accepts. Learned positions: exactly block_size (the table's size).
    # Sinusoidal: None -> 4 * block_size; any length is computable, this bounds memory and says
    # how far beyond training length the model is meant to be evaluated.
    max_seq_len: int | None = None

    def __post_init__(self) -> None:
        for name in ("vocab_size", "block_size", "layers", "heads", "d_model"):
            if getattr(self, name) < 1:
                raise ArchlabError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.heads:
            raise ArchlabError(
                f"d_model ({self.d_model}) must be divisible by heads ({self.heads})"
            )
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        if self.d_ff < 1:
            raise ArchlabError(f"d_ff must be >= 1, got {self.d_ff}")
        if not 0.0 <= self.dropout < 1.0:
            raise ArchlabError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.positions not in POSITIONS:
            raise ArchlabError(f"positions must be one of {POSITIONS}, got {self.positions!r}")
        if self.positions == "learned":
            if self.max_seq_len not in (None, self.block_size):
                raise ArchlabError(
                    f"max_seq_len must equal block_size ({self.block_size}) with learned "
                    f"positions, got {self.max_seq_len}"
                )
            self.max_seq_len = self.block_size
        else:
            if self.d_model % 2:
                raise ArchlabError(
                    f"d_model must be even for sinusoidal positions, got {self.d_model}"
                )
            if self.max_seq_len is None:
                self.max_seq_len = 4 * self.block_size
            if self.max_seq_len < self.block_size:
                raise ArchlabError(
                    f"max_seq_len ({self.max_seq_len}) must be >= block_size ({self.block_size})"
                )


def sinusoidal_positions(pos: torch.Tensor, d_model: int) -> torch.Tensor:
    """PE(p, 2i) = sin(p / 10000^(2i/d)), PE(p, 2i+1) = cos(same) — Vaswani et al. 2017 §3.5."""
    inv_freq = torch.exp(
        torch.arange(0, d_model, 2, device=pos.device, dtype=torch.float32)
        * (-math.log(10000.0) / d_model)
    )  # (d/2,)
    angle = pos.to(torch.float32)[:, None] * inv_freq[None, :]  # (T, d/2)
    return torch.stack((angle.sin(), angle.cos()), dim=-1).flatten(1)  # (T, d) sin/cos interleaved


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)  # residual projection
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # each (B, T, C)
        q = q.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.heads, C // self.heads).transpose(1, 2)  # (B, nh, T, hs)
        if past is not None:
            k = torch.cat((past[0], k), dim=2)  # (B, nh, P+T, hs)
            v = torch.cat((past[1], v), dim=2)  # (B, nh, P+T, hs)
        P = k.size(2) - T  # tokens already in the cache
        p = self.dropout if self.training else 0.0
        if P == 0:
            y = attention(q, k, v, dropout_p=p, is_causal=True)
        elif T == 1:  # one new token may attend to every cached one: no mask needed
            y = attention(q, k, v, dropout_p=p)
        else:
            # SDPA's is_causal aligns its mask top-left; a query block after P cached tokens needs
            # it bottom-right: query i (absolute position P+i) sees keys 0..P+i.
            mask = torch.ones(T, P + T, dtype=torch.bool, device=x.device).tril(diagonal=P)
            y = attention(q, k, v, attn_mask=mask, dropout_p=p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C) heads re-assembled
        return self.resid_dropout(self.proj(y)), (k, v)


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(LN(x)), then x + mlp(LN(x)) (as GPT-2)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.mlp = FeedForward(cfg.d_model, cfg.d_ff, cfg.dropout, cfg.bias)

    def forward(
        self, x: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, kv = self.attn(self.ln_1(x), past)
        x = x + a  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x, kv


class GPT(nn.Module):
    """Causal decoder LM. ``forward(idx)`` -> logits; ``forward(idx, past_kv, use_cache=True)`` ->
    (logits, cache); ``generate(idx, max_new_tokens, ...)`` -> idx extended by the sampled tokens."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.max_seq_len: int = cfg.max_seq_len  # type: ignore[assignment]  # set by __post_init__
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_emb = (
            nn.Embedding(cfg.block_size, cfg.d_model) if cfg.positions == "learned" else None
        )
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.ln_f = nn.LayerNorm(cfg.d_model, bias=cfg.bias)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_weights:
            self.lm_head.weight = self.tok_emb.weight  # one tensor, counted once in parameters()
        self.apply(self._init_weights)
        # GPT-2 (Radford et al. 2019 §2.3): scale the weights of residual layers at init by
        # 1/sqrt(N), N = number of residual layers = 2 per block (attention and MLP).
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.layers))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):  # GPT-2 init: N(0, 0.02), zero biases
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def forward(
        self, idx: torch.Tensor, past_kv: KVCache | None = None, use_cache: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, KVCache]:
        B, T = idx.shape
        P = 0 if past_kv is None else past_kv[0][0].size(2)
        if P + T > self.max_seq_len:
            what = "block_size" if self.pos_emb is not None else "max_seq_len"
            raise ArchlabError(
                f"sequence of {P + T} tokens exceeds {what}={self.max_seq_len}; crop the input"
            )
        pos = torch.arange(P, P + T, device=idx.device)  # (T,) absolute positions
        x = self.tok_emb(idx)  # (B, T, C)
        if self.pos_emb is not None:
            x = x + self.pos_emb(pos)  # (B, T, C)
        else:
            # Vaswani et al. 2017 §3.4 scale embeddings by sqrt(d_model) before adding the
            # fixed [-1, 1] sinusoids, so neither swamps the other.
            d = self.config.d_model
            x = x * math.sqrt(d) + sinusoidal_positions(pos, d).to(x.dtype)  # (B, T, C)
        x = self.drop(x)
        cache: KVCache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if past_kv is None else past_kv[i])
            cache.append(kv)
        logits = self.lm_head(self.ln_f(x))  # (B, T, vocab)
        return (logits, cache) if use_cache else logits

    @torch.no_grad()
    def generate(
        self,
        idx: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Extend ``idx`` (B, T>=1) by ``max_new_tokens`` sampled tokens; returns (B, T + new).

        Runs in eval mode (restoring the caller's mode). With ``use_cache`` the prompt is fed once
        and then one token per step against cached keys/values. Once the text outgrows
        ``max_seq_len`` the context is cropped to the last ``max_seq_len`` tokens; every position
        then shifts, so the cache is rebuilt from the window each step (exact, but no saving).
        """
        if idx.dim() != 2 or idx.size(1) < 1:
            raise ArchlabError("generate needs a prompt of at least one token, shape (B, T)")
        was_training = self.training
        self.eval()
        limit = self.max_seq_len
        past: KVCache | None = None
        for _ in range(max_new_tokens):
            if not use_cache:
                logits = self(idx[:, -limit:])  # (B, T', vocab)
            elif past is None or idx.size(1) > limit:
                logits, past = self(idx[:, -limit:], use_cache=True)
            else:
                logits, past = self(idx[:, -1:], past_kv=past, use_cache=True)  # (B, 1, vocab)
            nxt = sample_next_token(logits[:, -1], temperature, top_k, generator)  # (B, 1)
            idx = torch.cat((idx, nxt), dim=1)  # (B, T+1)
        self.train(was_training)
        return idx


@register_model("gpt", GPTConfig, task="lm")
def _build(cfg: GPTConfig) -> GPT:
    return GPT(cfg)


# nanoGPT's CPU shape for Tiny Shakespeare char (its README: 4 layers, 4 heads, 128 wide, block 64).
register_preset("gpt-nano", "gpt", layers=4, heads=4, d_model=128, block_size=64)
# nanoGPT's shakespeare_char config (6 layers, 6 heads, 384 wide, block 256, dropout 0.2).
register_preset(
    "gpt-small-char", "gpt", layers=6, heads=6, d_model=384, block_size=256, dropout=0.2
)

__all__ = ["GPT", "GPTConfig", "KVCache", "sinusoidal_positions"]
