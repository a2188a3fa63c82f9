"""A GPT-style causal Transformer language model (decoder only, pre-norm), after nanoGPT.

Reads top to bottom: config → attend → CausalSelfAttention → Block → GPT. ``model(idx)`` maps
token ids (B, T) to next-token logits (B, T, vocab); decoding reuses per-layer keys/values (a KV
cache), and cached decoding equals full recomputation (tested).

``attention``: ``"sdpa"`` (default) calls ``F.scaled_dot_product_attention``, a fused kernel that,
where a FlashAttention-style path applies, never stores the (T, T) score matrix; ``"naive"`` writes
softmax(QKᵀ/√d_head)·V out (Vaswani et al. 2017 eq. 1) and keeps the n×n matrix for backward —
the textbook form, and the one whose quadratic memory the study measures. Same outputs (tested).

Positions are ``"learned"`` (a table of ``block_size`` rows, as GPT-2; longer inputs are an error,
and ``generate`` crops its context to the last ``block_size`` tokens), ``"sinusoidal"`` (Vaswani et
al. 2017 §3.5, computed on the fly, no parameters; inputs up to ``max_seq_len`` tokens are accepted,
so a model trained at ``block_size`` can be evaluated on longer text), or ``"none"`` (no position
signal: only the causal mask tells positions apart; Haviv et al. 2022).

``forward(idx, key_padding_mask=m)`` takes a (B, P+T) bool mask, True = real token: pad keys are
never attended to and each real token's position counts only the real tokens before it, so a
padded batch (left- or right-padded) gives each sequence the logits it gets alone (tested).
``forward(inputs_embeds=x)`` starts from token embeddings (B, T, C) instead of ids — the entry
point for gradients with respect to the input:
``forward(idx) == forward(inputs_embeds=embed(idx))``.

``forward(idx, last_only=True)`` returns the logits of the last position only, (B, 1, vocab), and
the final block computes its query, attention and MLP for that position alone (its keys and values
still cover every position, and the cache is the full one). Equal to ``forward(idx)[:, -1:]`` in
outputs and gradients (tested); it is what a task scored on the last token needs (the study's
delayed recall), and what ``generate`` needs from a prompt. In a 2-layer model at 525 tokens the
last block's T×T attention is half the attention work, so training gets that much cheaper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import ArchlabError
from archlab.models.layers import FeedForward, attention, sample_next_token
from archlab.models.registry import register_model, register_preset

KVCache = list[tuple[torch.Tensor, torch.Tensor]]  # per layer: keys, values, each (B, nh, T, hs)

POSITIONS = ("learned", "sinusoidal", "none")
ATTENTIONS = ("sdpa", "naive")


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
    attention: str = "sdpa"  # "sdpa" (fused kernel) or "naive" (materialises the T×T scores)

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
        if self.attention not in ATTENTIONS:
            raise ArchlabError(f"attention must be one of {ATTENTIONS}, got {self.attention!r}")
        if self.positions == "learned":
            if self.max_seq_len not in (None, self.block_size):
                raise ArchlabError(
                    f"max_seq_len must equal block_size ({self.block_size}) with learned "
                    f"positions, got {self.max_seq_len}"
                )
            self.max_seq_len = self.block_size
        else:
            if self.positions == "sinusoidal" and self.d_model % 2:
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


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    causal: bool = False,
    impl: str = "sdpa",
    dropout_p: float = 0.0,
) -> torch.Tensor:
    """softmax(q kᵀ / √hs) v. q (B, nh, Tq, hs), k/v (B, nh, Tk, hs) -> (B, nh, Tq, hs).

    ``mask``: bool, broadcastable to (B, nh, Tq, Tk), True = may attend; or ``causal`` (Tq == Tk,
    query i sees keys 0..i); neither: every key. ``impl`` as ``GPTConfig.attention``.
    """
    if impl == "sdpa":  # fp32 on the CPU under autocast: see layers.attention for why
        return attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, is_causal=causal and mask is None
        )
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, nh, Tq, Tk): the n² scores
    if causal and mask is None:
        mask = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        att = att.masked_fill(~mask, float("-inf"))
    att = F.dropout(F.softmax(att, dim=-1), dropout_p)  # (B, nh, Tq, Tk)
    return att @ v  # (B, nh, Tq, hs)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.heads = cfg.heads
        self.impl = cfg.attention
        self.dropout = cfg.dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=cfg.bias)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model, bias=cfg.bias)  # residual projection
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(
        self,
        x: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
        key_mask: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """``key_mask`` (B, 1, T, P+T) bool, True = may attend (causality included), or None.
        ``last_only``: the output for the last query alone, (B, 1, C); keys/values stay whole."""
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
        if last_only:  # the last query (absolute position P+T-1) may see every key
            q, T = q[:, :, -1:], 1  # (B, nh, 1, hs)
            y = attend(
                q,
                k,
                v,
                None if key_mask is None else key_mask[:, :, -1:],
                impl=self.impl,
                dropout_p=p,
            )
        elif key_mask is not None:
            y = attend(q, k, v, key_mask, impl=self.impl, dropout_p=p)
        elif P == 0:
            y = attend(q, k, v, causal=True, impl=self.impl, dropout_p=p)
        elif T == 1:  # one new token may attend to every cached one: no mask needed
            y = attend(q, k, v, impl=self.impl, dropout_p=p)
        else:
            # SDPA's is_causal aligns its mask top-left; a query block after P cached tokens needs
            # it bottom-right: query i (absolute position P+i) sees keys 0..P+i.
            mask = torch.ones(T, P + T, dtype=torch.bool, device=x.device).tril(diagonal=P)
            y = attend(q, k, v, mask, impl=self.impl, dropout_p=p)
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
        self,
        x: torch.Tensor,
        past: tuple[torch.Tensor, torch.Tensor] | None = None,
        key_mask: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        a, kv = self.attn(self.ln_1(x), past, key_mask, last_only)
        if last_only:
            x = x[:, -1:]  # (B, 1, C): only the last position goes on
        x = x + a  # (B, T, C)
        x = x + self.mlp(self.ln_2(x))  # (B, T, C)
        return x, kv


class GPT(nn.Module):
    """Causal decoder LM. ``forward(idx)`` -> logits; ``forward(idx, past_kv, use_cache=True)`` ->
    (logits, cache); ``generate(idx, max_new_tokens, ...)`` -> idx extended by the sampled
    tokens."""

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

    def embed(self, idx: torch.Tensor) -> torch.Tensor:
        """Token embeddings (B, T, C) of ids (B, T), before positions: ``inputs_embeds``."""
        return self.tok_emb(idx)

    def forward(
        self,
        idx: torch.Tensor | None = None,
        past_kv: KVCache | None = None,
        use_cache: bool = False,
        *,
        inputs_embeds: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, KVCache]:
        """ids (B, T) or ``inputs_embeds`` (B, T, C) -> logits (B, T, vocab) [, cache].

        ``key_padding_mask`` (B, P+T) bool, True = real token, covering the cached tokens too.
        ``last_only``: logits (B, 1, vocab) of the last position only (module doc).
        """
        if (idx is None) == (inputs_embeds is None):
            raise ArchlabError("pass exactly one of idx and inputs_embeds")
        x = self.embed(idx) if inputs_embeds is None else inputs_embeds  # (B, T, C)
        B, T, _ = x.shape
        P = 0 if past_kv is None else past_kv[0][0].size(2)
        if P + T > self.max_seq_len:
            what = "block_size" if self.pos_emb is not None else "max_seq_len"
            raise ArchlabError(
                f"sequence of {P + T} tokens exceeds {what}={self.max_seq_len}; crop the input"
            )
        pos = torch.arange(P, P + T, device=x.device)  # (T,) absolute positions
        key_mask = None
        if key_padding_mask is not None:
            if key_padding_mask.shape != (B, P + T):
                raise ArchlabError(
                    f"key_padding_mask must have shape {(B, P + T)} (batch, cached + new tokens), "
                    f"got {tuple(key_padding_mask.shape)}"
                )
            kpm = key_padding_mask.to(device=x.device, dtype=torch.bool)
            # Query i (absolute P+i) sees real keys 0..P+i, and always itself, so a pad query's
            # softmax row is never empty (its output is garbage the caller ignores).
            causal = torch.ones(T, P + T, dtype=torch.bool, device=x.device).tril(diagonal=P)
            itself = pos[:, None] == torch.arange(P + T, device=x.device)[None, :]  # (T, P+T)
            key_mask = ((causal & kpm[:, None, :]) | itself)[:, None]  # (B, 1, T, P+T)
            # A token's position counts the real tokens before it (left padding shifts nothing).
            pos = (kpm.long().cumsum(1) - 1).clamp(min=0)[:, P:]  # (B, T)
        if self.pos_emb is not None:
            x = x + self.pos_emb(pos)  # (B, T, C)
        elif self.config.positions == "sinusoidal":
            # Vaswani et al. 2017 §3.4 scale embeddings by sqrt(d_model) before adding the
            # fixed [-1, 1] sinusoids, so neither swamps the other.
            d = self.config.d_model
            pe = sinusoidal_positions(pos.flatten(), d).view(*pos.shape, d)  # (T|B,T, C)
            x = x * math.sqrt(d) + pe.to(x.dtype)  # (B, T, C)
        x = self.drop(x)
        cache: KVCache = []
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            past = None if past_kv is None else past_kv[i]
            x, kv = block(x, past, key_mask, last_only and i == last)
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
                logits = self(idx[:, -limit:], last_only=True)  # (B, 1, vocab)
            elif past is None or idx.size(1) > limit:
                logits, past = self(idx[:, -limit:], use_cache=True, last_only=True)
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

__all__ = [
    "ATTENTIONS",
    "GPT",
    "GPTConfig",
    "KVCache",
    "POSITIONS",
    "attend",
    "sinusoidal_positions",
]
