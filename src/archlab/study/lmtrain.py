"""Training runs shared by the Part 1 claims: char-level LMs on the study's text, memoized.

The text is ``archlab.data``'s: ``resolve_corpus(None, download=False)`` (Tiny Shakespeare if it is
found under ``$ARCHLAB_DATA`` or ``~/.cache/archlab``, else the built-in pydoc corpus — never a
download, so the quick profile runs offline), the char tokenizer ``archlab train lm`` fits, and
``get_batch``'s random windows. The models are archlab's own (:mod:`archlab.study.nets`).

T1 (per-position loss), T2 (time to a target loss) and R1 (length extrapolation) read the same runs
(same sizes, same seeds), so a full study trains each (arch, positions, seed) once. The memo lives
for one process; ``--only`` reruns train what they need. Optimizer: AdamW (Loshchilov & Hutter 2019)
at a constant learning rate — a fixed, small budget is the point, not the best possible model.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.data import Corpus, TokenStreams, encode_corpus, fit_tokenizer, resolve_corpus
from archlab.study.measure import seed_all
from archlab.study.nets import n_params, study_lm, width_for_params

# One definition of the shared text runs per profile (claims merge it into their own sizes).
TEXT_RUNS: dict[str, dict[str, Any]] = {
    "tiny": {
        "train_len": 16,
        "batch": 4,
        "steps": 6,
        "target_params": 3000,
        "lr": 3e-3,
        "eval_every": 3,
        "eval_batches": 1,
        "gpt_layers": 1,
        "max_chars": 20_000,
    },
    "quick": {
        "train_len": 64,
        "batch": 16,
        "steps": 400,
        "target_params": 25_000,
        "lr": 3e-3,
        "eval_every": 20,
        "eval_batches": 4,
        "gpt_layers": 2,
        "max_chars": 400_000,
    },
    "full": {
        "train_len": 128,
        "batch": 32,
        "steps": 3000,
        "target_params": 400_000,
        "lr": 1e-3,
        "eval_every": 100,
        "eval_batches": 16,
        "gpt_layers": 4,
        "max_chars": None,
    },
}
ARCH_LABELS = {
    ("lstm", "none"): "LSTM",
    ("gpt", "learned"): "GPT (learned pos.)",
    ("gpt", "sinusoidal"): "GPT (sinusoidal pos.)",
    ("gru", "none"): "GRU",
    ("rnn", "none"): "tanh RNN",
}


def train_loop(
    model: nn.Module,
    batch_fn: Callable[[int], tuple],
    steps: int,
    lr: float,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    every: int = 0,
    eval_fn: Callable[[], float] | None = None,
    bar=None,
) -> dict:
    """Plain AdamW loop. Records train loss per step, the cumulative training seconds (evaluation
    excluded) and, every ``every`` steps, ``eval_fn()``."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses, evals, elapsed = [], [], 0.0
    for step in range(steps):
        model.train()
        x, y = batch_fn(step)
        t0 = time.perf_counter()
        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        elapsed += time.perf_counter() - t0
        losses.append(loss.item())
        if eval_fn is not None and every and ((step + 1) % every == 0 or step + 1 == steps):
            model.eval()
            evals.append({"step": step + 1, "loss": eval_fn(), "train_s": elapsed})
        if bar is not None:
            bar.update()
    return {"train_loss": losses, "evals": evals, "train_s": elapsed}


def lm_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), y.flatten())  # (B*T, V) vs (B*T,)


_MEMO: dict[tuple, dict] = {}


def clear_memo() -> None:
    """Forget the memoized runs (the runner calls this at the start of every study run)."""
    _MEMO.clear()


@functools.lru_cache(maxsize=1)
def study_corpus() -> tuple[Corpus, dict[str, Any]]:
    """(corpus, description for the report): what ``resolve_corpus(None, download=False)`` finds."""
    corpus, notice = resolve_corpus(None, download=False)
    home = str(Path.home())
    desc = {
        "source": corpus.name if notice is None else "pydoc (built-in fallback)",
        "path": [s.replace(home, "~") for s in corpus.sources],
        "note": notice,
        "chars": len(corpus.train) + len(corpus.val),
    }
    return corpus, desc


@functools.lru_cache(maxsize=4)
def _streams(max_chars: int | None) -> TokenStreams:
    corpus, _ = study_corpus()
    tokens = encode_corpus(
        corpus, fit_tokenizer("char", corpus)
    )  # as `archlab train lm --tokenizer char`
    if max_chars is None:
        return tokens
    # A budget of max_chars characters, split as the corpus's own train/val (9:1 for Shakespeare).
    n_val = max(max_chars // 10, 1)
    return TokenStreams(
        tokens.train[: max_chars - n_val],
        tokens.val[:n_val],
        tokens.test[:n_val],
        tokens.tokenizer,
        tokens.corpus,
    )


def corpus_for(sizes: Mapping[str, Any]) -> tuple[TokenStreams, dict[str, Any]]:
    """Char-level token streams of the study corpus, cut to ``sizes["max_chars"]``, and its
    description."""
    return _streams(sizes["max_chars"]), study_corpus()[1]


def text_run(arch: str, pos: str, seed: int, sizes: Mapping[str, Any], bar=None) -> dict[str, Any]:
    """Train one char-level LM at ``train_len`` and return the model with its curves (memoized)."""
    key = (arch, pos, seed, tuple(sorted((k, str(v)) for k, v in sizes.items())))
    if key in _MEMO:
        if bar is not None:
            bar.update(sizes["steps"])
        return _MEMO[key]
    corpus, desc = corpus_for(sizes)
    V, T = corpus.tokenizer.vocab_size, sizes["train_len"]
    kw = {"max_len": T, "positions": pos} if arch == "gpt" else {}
    layers = sizes["gpt_layers"] if arch == "gpt" else 1
    width = width_for_params(arch, sizes["target_params"], V, layers, **kw)
    gen = seed_all(seed)
    model = study_lm(arch, V, width, layers, **kw)
    eval_gen = torch.Generator().manual_seed(10_000 + seed)
    val = [
        corpus.get_batch("val", sizes["batch"], T, eval_gen) for _ in range(sizes["eval_batches"])
    ]

    def eval_fn() -> float:
        with torch.no_grad():
            return sum(float(lm_loss(model(x), y)) for x, y in val) / len(val)

    curve = train_loop(
        model,
        lambda _: corpus.get_batch("train", sizes["batch"], T, gen),
        sizes["steps"],
        sizes["lr"],
        lm_loss,
        sizes["eval_every"],
        eval_fn,
        bar,
    )
    model.eval()
    out = {
        "model": model,
        "width": width,
        "params": n_params(model),
        "layers": layers,
        "vocab": V,
        "corpus": corpus,
        "data": desc,
        **curve,
    }
    _MEMO[key] = out
    return out


def per_position_loss(
    run: Mapping[str, Any], length: int, batches: int, batch: int, seed: int
) -> list[float]:
    """Mean validation cross-entropy (nats/char) at each position 0..length-1 of fresh windows:
    position t is predicted from t+1 characters of context."""
    corpus, model = run["corpus"], run["model"]
    gen = torch.Generator().manual_seed(20_000 + seed)
    total = torch.zeros(length)
    with torch.no_grad():
        for _ in range(batches):
            x, y = corpus.get_batch("val", batch, length, gen)  # (B, T)
            logits = model(x)  # (B, T, V)
            total += F.cross_entropy(logits.transpose(1, 2), y, reduction="none").mean(0)  # (T,)
    return (total / batches).tolist()


__all__ = [
    "clear_memo",
    "ARCH_LABELS",
    "TEXT_RUNS",
    "corpus_for",
    "lm_loss",
    "per_position_loss",
    "study_corpus",
    "text_run",
    "train_loop",
]
