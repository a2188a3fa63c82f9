"""Language-model batches: random windows, contiguous BPTT, and full-pass evaluation.

Token streams are 1-D ``int64`` tensors. Conventions: models take ``x`` of shape (B, T) and predict
``y`` (B, T) where ``y[b, t]`` is the token after ``x[b, t]``; evaluation targets that must not be
scored (padding, tokens already scored) are :data:`IGNORE_INDEX` (= -100, the default
``ignore_index`` of ``F.cross_entropy``), so ``sum of losses / number of non-ignored targets`` is
the exact mean over the split.

A split of N tokens has N - 1 targets (token 0 has no predecessor); the full-pass iterators below
score each of those N - 1 targets exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from archlab.data.text import Corpus
from archlab.data.tokenizers import Tokenizer
from archlab.errors import ArchlabError

__all__ = [
    "IGNORE_INDEX",
    "TokenStreams",
    "batchify",
    "bptt_batches",
    "encode_corpus",
    "get_batch",
    "sliding_window_eval",
    "stream_eval_batches",
]

IGNORE_INDEX = -100


@dataclass
class TokenStreams:
    """The token ids of each split of a corpus under one tokenizer."""

    train: torch.Tensor  # (N_train,) int64
    val: torch.Tensor  # (N_val,) int64
    test: torch.Tensor  # (N_test,) int64
    tokenizer: Tokenizer
    corpus: str

    def split(self, name: str) -> torch.Tensor:
        if name not in ("train", "val", "test"):
            raise ArchlabError(f"unknown split {name!r}; use train, val or test")
        return getattr(self, name)

    def get_batch(
        self, split: str, batch_size: int, block_size: int, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        return get_batch(self.split(split), batch_size, block_size, generator)


def encode_corpus(corpus: Corpus, tokenizer: Tokenizer) -> TokenStreams:
    """Encode the three splits (once each; a test split identical to val is shared)."""

    def enc(text: str) -> torch.Tensor:
        return torch.tensor(tokenizer.encode(text), dtype=torch.int64)

    train, val = enc(corpus.train), enc(corpus.val)
    test = val if corpus.test_is_val else enc(corpus.test)
    return TokenStreams(train, val, test, tokenizer, corpus.name)


def _check(data: torch.Tensor, **sizes: int) -> None:
    for name, v in sizes.items():
        if v < 1:
            raise ArchlabError(f"{name.replace('_', '-')} must be >= 1, got {v}")
    if data.dim() != 1:
        raise ValueError(f"data: expected a 1-D token tensor, got shape {tuple(data.shape)}")


def get_batch(
    data: torch.Tensor, batch_size: int, block_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """nanoGPT-style random windows: starts uniform in [0, N - block_size); x, y are (B, T)."""
    _check(data, batch_size=batch_size, block_size=block_size)
    n = data.numel()
    if n <= block_size:
        raise ArchlabError(f"block size {block_size} needs more than {block_size} tokens, have {n}")
    ix = torch.randint(n - block_size, (batch_size,), generator=generator)  # (B,)
    pos = ix[:, None] + torch.arange(block_size + 1)  # (B, T+1)
    w = data[pos]  # (B, T+1)
    return w[:, :-1], w[:, 1:]


def batchify(data: torch.Tensor, batch_size: int) -> torch.Tensor:
    """pytorch/examples layout: (N // B, B), column b = tokens [b*L, (b+1)*L); tail dropped."""
    _check(data, batch_size=batch_size)
    n = data.numel() // batch_size
    if n < 2:
        raise ArchlabError(f"{data.numel()} tokens are too few for batch size {batch_size}")
    return data[: n * batch_size].view(batch_size, n).t().contiguous()  # (L, B)


def bptt_batches(source: torch.Tensor, bptt: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive chunks of a :func:`batchify` layout for stateful RNN training.

    Like pytorch/examples' ``get_batch(source, i)`` with ``i = 0, bptt, 2*bptt, …`` but batch-first:
    yields ``x, y`` of shape (B, T) with T = bptt (shorter last chunk); carry the hidden state from
    one chunk to the next (detached).
    """
    if bptt < 1:
        raise ArchlabError(f"bptt must be >= 1, got {bptt}")
    for i in range(0, source.size(0) - 1, bptt):
        t = min(bptt, source.size(0) - 1 - i)
        yield source[i : i + t].t().contiguous(), source[i + 1 : i + 1 + t].t().contiguous()


def stream_eval_batches(
    data: torch.Tensor, batch_size: int, bptt: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Full pass for stateful models: every one of the N - 1 targets scored exactly once.

    The N - 1 (input, target) pairs are cut into ``batch_size`` contiguous streams of
    ``L = ceil((N - 1) / B)`` pairs (the last stream padded: input 0, target IGNORE_INDEX);
    chunks of ``bptt`` steps are yielded as (B, T). Start each pass with a zero state and carry it
    across chunks: the target of pair j in stream b is then predicted from the ``j - b * L + 1``
    tokens of its stream up to it, so only the first few targets of each stream start from a cold
    state; ``batch_size=1`` gives every target its full history.
    """
    _check(data, batch_size=batch_size, bptt=bptt)
    pairs = data.numel() - 1
    if pairs < 1:
        raise ArchlabError("a split needs at least 2 tokens to score")
    length = -(-pairs // batch_size)
    x = torch.zeros(batch_size * length, dtype=torch.int64)
    y = torch.full((batch_size * length,), IGNORE_INDEX, dtype=torch.int64)
    x[:pairs], y[:pairs] = data[:-1], data[1:]
    x, y = x.view(batch_size, length), y.view(batch_size, length)  # (B, L)
    for i in range(0, length, bptt):
        yield x[:, i : i + bptt], y[:, i : i + bptt]


def _windows(n_pairs: int, window: int, stride: int) -> list[tuple[int, int]]:
    """(begin, first_scored) per window over pair indices 0..n_pairs-1; see sliding_window_eval."""
    if n_pairs <= window:
        return [(0, 0)]
    out, scored = [(0, 0)], window  # the first window scores pairs [0, window)
    while scored < n_pairs:
        end = min(scored + stride, n_pairs)
        out.append((end - window, scored))
        scored = end
    return out


def sliding_window_eval(
    data: torch.Tensor, window: int, stride: int | None = None, batch_size: int = 8
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Full pass for a fixed-context model (the GPT): every target scored once, with context.

    Pair j predicts token j + 1 from tokens 0..j. With T = min(window, N - 1):

    * the first window covers pairs [0, T) and scores all of them: pair j sees j + 1 tokens (the
      opening tokens of a split have a short context, as in any LM evaluation);
    * each later window is the T pairs ending at the next ``stride`` unscored pairs, and only those
      are scored (earlier targets are IGNORE_INDEX); the last window is aligned to the end of the
      split, so every window has length T.

    Hence every target after the first window is predicted from at least ``window - stride + 1``
    and at most ``window`` tokens. ``stride = window`` gives non-overlapping blocks (cheapest, the
    weakest context); the default ``window // 2`` guarantees ≥ window/2 + 1 tokens of context at
    about twice that cost; ``stride = 1`` gives every target the full window (N - 1 forwards).
    Yields ``x, y`` of shape (≤ batch_size, T).
    """
    if stride is None:
        stride = max(1, window // 2)
    _check(data, window=window, stride=stride, batch_size=batch_size)
    if stride > window:
        raise ArchlabError(f"stride {stride} must not exceed the window {window}")
    pairs = data.numel() - 1
    if pairs < 1:
        raise ArchlabError("a split needs at least 2 tokens to score")
    t = min(window, pairs)
    specs = _windows(pairs, t, stride)
    for i in range(0, len(specs), batch_size):
        chunk: Sequence[tuple[int, int]] = specs[i : i + batch_size]
        begins = torch.tensor([b for b, _ in chunk])  # (b,)
        pos = begins[:, None] + torch.arange(t)  # (b, T) pair indices
        x, y = data[pos], data[pos + 1]  # (b, T)
        first = torch.tensor([s for _, s in chunk])[:, None]  # (b, 1)
        y = torch.where(pos >= first, y, torch.full_like(y, IGNORE_INDEX))
        yield x, y
