"""Training runs shared by the Part 1 claims: char-level LMs on the study's text, memoized.

T1 (per-position loss), T2 (time to a target loss) and R1 (length extrapolation) read the same runs
(same sizes, same seeds), so a full study trains each (arch, positions, seed) once. The memo lives
for one process; ``--only`` reruns train what they need. Optimizer: AdamW (Loshchilov & Hutter 2019)
at a constant learning rate — a fixed, small budget is the point, not the best possible model.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.study.measure import seed_all
from archlab.study.nets import build_lm, n_params, width_for_params
from archlab.study.textdata import CharCorpus, load_text

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


def corpus_for(sizes: Mapping[str, Any]) -> tuple[CharCorpus, dict[str, Any]]:
    text, desc = load_text()
    return CharCorpus(text, sizes["max_chars"]), desc


def text_run(arch: str, pos: str, seed: int, sizes: Mapping[str, Any], bar=None) -> dict[str, Any]:
    """Train one char-level LM at ``train_len`` and return the model with its curves (memoized)."""
    key = (arch, pos, seed, tuple(sorted((k, str(v)) for k, v in sizes.items())))
    if key in _MEMO:
        if bar is not None:
            bar.update(sizes["steps"])
        return _MEMO[key]
    corpus, desc = corpus_for(sizes)
    V, T = corpus.vocab_size, sizes["train_len"]
    kw = {"max_len": T, "pos": pos} if arch == "gpt" else {}
    layers = sizes["gpt_layers"] if arch == "gpt" else 1
    width = width_for_params(arch, sizes["target_params"], V, layers, **kw)
    gen = seed_all(seed)
    model = build_lm(arch, V, width, layers, **kw)
    eval_gen = torch.Generator().manual_seed(10_000 + seed)
    val = [corpus.batch("val", sizes["batch"], T, eval_gen) for _ in range(sizes["eval_batches"])]

    def eval_fn() -> float:
        with torch.no_grad():
            return sum(float(lm_loss(model(x), y)) for x, y in val) / len(val)

    curve = train_loop(
        model,
        lambda _: corpus.batch("train", sizes["batch"], T, gen),
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
            x, y = corpus.batch("val", batch, length, gen)  # (B, T)
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
    "text_run",
    "train_loop",
]
