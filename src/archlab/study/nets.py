"""Small language models the study's experiments need, with the hooks the experiments measure.

The claims need access the registry models do not promise: input embeddings to differentiate
against (R3), a key-padding mask and position offsets (R1), an explicit KV cache whose tensors can be
weighed (R2), and a switch between naive and fused attention (T3/R2). ``build_lm`` is the one place
that decides which implementation a claim gets.

- :class:`RNNLM`: embedding -> ``nn.RNN``/``nn.LSTM``/``nn.GRU`` -> linear head.
- :class:`GPTLM`: pre-LayerNorm decoder (Radford et al. 2019, as in nanoGPT) with learned,
  sinusoidal (Vaswani et al. 2017 §3.5) or no positions, and naive or SDPA attention.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

RNN_KINDS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


class RNNLM(nn.Module):
    def __init__(
        self, kind: str, vocab: int, hidden: int, layers: int = 1, n_out: int | None = None
    ):
        super().__init__()
        if kind not in RNN_KINDS:
            raise ValueError(f"kind must be one of {sorted(RNN_KINDS)}, got {kind!r}")
        self.kind, self.hidden, self.layers = kind, hidden, layers
        self.emb = nn.Embedding(vocab, hidden)
        self.rnn = RNN_KINDS[kind](hidden, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, n_out or vocab)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.forward_embeddings(self.emb(idx), lengths)[0]  # (B, T, V)

    def forward_embeddings(self, x: torch.Tensor, lengths: torch.Tensor | None = None, state=None):
        """x (B, T, H) -> (logits (B, T, V), final state). ``lengths`` packs right-padded input."""
        if lengths is not None:
            packed = nn.utils.rnn.pack_padded_sequence(
                x, lengths.cpu(), batch_first=True, enforce_sorted=False
            )
            out, state = self.rnn(packed, state)
            out, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
        else:
            out, state = self.rnn(x, state)  # (B, T, H)
        return self.head(out), state


def sinusoidal(length: int, d: int, offset: int = 0) -> torch.Tensor:
    """Vaswani et al. 2017 §3.5: PE(pos, 2i) = sin(pos / 10000^(2i/d)), PE(pos, 2i+1) = cos(...)."""
    pos = torch.arange(offset, offset + length, dtype=torch.float32)[:, None]  # (T, 1)
    inv = torch.exp(torch.arange(0, d, 2, dtype=torch.float32) * (-math.log(10000.0) / d))
    pe = torch.zeros(length, d)
    pe[:, 0::2] = torch.sin(pos * inv)
    pe[:, 1::2] = torch.cos(pos * inv)[:, : d // 2]
    return pe  # (T, d)


def attend(q, k, v, mask: torch.Tensor | None, impl: str, causal: bool = False) -> torch.Tensor:
    """q (B, H, Tq, hs), k/v (B, H, Tk, hs), mask bool (B|1, 1, Tq, Tk) True = may attend.

    ``impl="sdpa"`` is ``F.scaled_dot_product_attention`` (a fused, FlashAttention-style kernel
    where one applies: it never stores the (Tq, Tk) score matrix); ``"naive"`` materializes it.
    """
    if impl == "sdpa":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
    att = (q @ k.transpose(-2, -1)) / math.sqrt(q.size(-1))  # (B, H, Tq, Tk): the n² tensor
    if causal:
        mask = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool, device=q.device).tril()
    if mask is not None:
        att = att.masked_fill(~mask, float("-inf"))
    return F.softmax(att, dim=-1) @ v  # (B, H, Tq, hs)


class Block(nn.Module):
    def __init__(self, d: int, heads: int, attn: str):
        super().__init__()
        self.heads, self.attn_impl = heads, attn
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x, mask, cache: list | None = None, causal: bool = False):
        B, T, C = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(C, dim=2)  # each (B, T, C)
        q, k, v = (t.view(B, T, self.heads, C // self.heads).transpose(1, 2) for t in (q, k, v))
        if cache is not None:  # KV cache: keys/values of all earlier positions (B, H, t, hs)
            if cache:
                k, v = torch.cat([cache[0], k], 2), torch.cat([cache[1], v], 2)
            cache[:] = [k, v]
        y = (
            attend(q, k, v, mask, self.attn_impl, causal).transpose(1, 2).reshape(B, T, C)
        )  # (B, T, C)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x))


class GPTLM(nn.Module):
    def __init__(
        self,
        vocab: int,
        d: int,
        heads: int,
        layers: int,
        max_len: int,
        pos: str = "learned",
        attn: str = "sdpa",
        n_out: int | None = None,
    ):
        super().__init__()
        if pos not in ("learned", "sinusoidal", "none"):
            raise ValueError(f"pos must be learned/sinusoidal/none, got {pos!r}")
        if attn not in ("naive", "sdpa"):
            raise ValueError(f"attn must be naive/sdpa, got {attn!r}")
        if d % heads:
            raise ValueError(f"d ({d}) must be divisible by heads ({heads})")
        self.d, self.pos, self.max_len = d, pos, max_len
        self.emb = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(max_len, d) if pos == "learned" else None
        self.blocks = nn.ModuleList(Block(d, heads, attn) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, n_out or vocab)

    def forward(self, idx: torch.Tensor, key_padding_mask: torch.Tensor | None = None):
        return self.forward_embeddings(self.emb(idx), key_padding_mask)  # (B, T, V)

    def positions(self, T: int, offset: int = 0, pos_ids: torch.Tensor | None = None):
        if self.pos == "none":
            return 0.0
        if pos_ids is None:
            pos_ids = torch.arange(offset, offset + T)[None]  # (1, T)
        if self.pos == "learned":
            if int(pos_ids.max()) >= self.max_len:
                raise ValueError(
                    f"learned positions stop at {self.max_len}; got position {int(pos_ids.max())}"
                )
            return self.wpe(pos_ids)  # (B|1, T, d)
        return sinusoidal(int(pos_ids.max()) + 1, self.d)[pos_ids]  # (B|1, T, d)

    def forward_embeddings(
        self, x, key_padding_mask=None, cache: list | None = None, offset: int = 0
    ):
        """x (B, T, d) token embeddings. key_padding_mask bool (B, T), True = real token (left pad)."""
        B, T, _ = x.shape
        Tk = offset + T
        # causal: query i (absolute offset+i) sees keys j <= offset+i
        mask, causal, pos_ids = None, False, None
        if key_padding_mask is None and offset == 0:
            causal = True  # the kernels' own causal path (no mask tensor)
        elif T > 1 or key_padding_mask is not None:
            mask = torch.ones(T, Tk, dtype=torch.bool).tril(diagonal=offset)[
                None, None
            ]  # (1,1,T,Tk)
        if key_padding_mask is not None:
            mask = mask & key_padding_mask[:, None, None, :]  # (B, 1, T, T)
            # a pad query would see no key (NaN softmax): let it see itself; its output is unused
            mask = mask | torch.eye(T, dtype=torch.bool)[None, None]
            pos_ids = (key_padding_mask.long().cumsum(1) - 1).clamp(min=0)  # (B, T) from 0
        x = x + self.positions(T, offset, pos_ids)
        for i, blk in enumerate(self.blocks):
            x = blk(x, mask, None if cache is None else cache[i], causal)
        return self.head(self.ln_f(x))  # (B, T, V)

    def new_cache(self) -> list[list]:
        return [[] for _ in self.blocks]


def build_lm(
    arch: str,
    vocab: int,
    width: int,
    layers: int = 1,
    max_len: int = 256,
    pos: str = "learned",
    attn: str = "sdpa",
    n_out: int | None = None,
) -> nn.Module:
    """``arch`` in rnn/lstm/gru/gpt; ``width`` = hidden size (RNNs) or d_model (GPT, 4 heads if
    divisible else 2 or 1)."""
    if arch in RNN_KINDS:
        return RNNLM(arch, vocab, width, layers, n_out)
    if arch == "gpt":
        heads = next(h for h in (4, 2, 1) if width % h == 0)
        return GPTLM(vocab, width, heads, layers, max_len, pos, attn, n_out)
    raise ValueError(f"arch must be rnn/lstm/gru/gpt, got {arch!r}")


def registry_lm(
    arch: str, vocab: int, width: int, layers: int = 1, max_len: int = 256
) -> nn.Module:
    """The project's own model (``archlab.models.create_model``) at the study's sizes: dropout off,
    untied output (as :func:`build_lm`), 4 heads where the width allows."""
    from archlab.models import create_model

    if arch in RNN_KINDS:
        return create_model(arch, vocab_size=vocab, d_model=width, layers=layers, dropout=0.0)
    heads = next(h for h in (4, 2, 1) if width % h == 0)
    return create_model(
        "gpt",
        vocab_size=vocab,
        d_model=width,
        layers=layers,
        heads=heads,
        block_size=max_len,
        dropout=0.0,
        tie_weights=False,
    )


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def width_for_params(
    arch: str, target: int, vocab: int, layers: int = 1, builder=None, **kw
) -> int:
    """The width whose parameter count is closest to ``target`` (GPT widths are multiples of 4)."""
    builder = builder or build_lm
    step = 4 if arch == "gpt" else 1
    best, best_err = step, None
    for w in range(step, 1025, step):
        err = abs(n_params(builder(arch, vocab, w, layers, **kw)) - target)
        if best_err is None or err < best_err:
            best, best_err = w, err
        elif err > best_err:
            break  # params grow monotonically with width
    return best


__all__ = [
    "registry_lm",
    "GPTLM",
    "RNNLM",
    "RNN_KINDS",
    "attend",
    "build_lm",
    "n_params",
    "sinusoidal",
    "width_for_params",
]
