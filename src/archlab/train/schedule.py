"""Learning-rate schedule: linear warmup, then cosine (or linear) decay to ``min_lr``.

The schedule is a pure function of training progress, so a resumed run recomputes exactly the lr it
would have used (no scheduler object to checkpoint). Linear warmup (Goyal et al. 2017, "Accurate,
Large Minibatch SGD") keeps Adam's early, badly-estimated second moments from taking huge steps;
cosine decay follows Loshchilov & Hutter 2017 (SGDR) without restarts, as nanoGPT and GPT-3 do;
linear decay is the other common choice (BERT, Devlin et al. 2019; measured here the better one
for one epoch of SGD on the WikiText-2 LSTM, see benchmarks/lm_wikitext.py).
"""

from __future__ import annotations

import math

__all__ = ["lr_at"]


def lr_at(
    step: int,
    *,
    lr: float,
    min_lr: float,
    warmup_steps: int,
    max_steps: int,
    schedule: str = "cosine",
    progress: float | None = None,
) -> float:
    """The learning rate for optimizer step ``step`` (0-based).

    ``progress`` in [0, 1] overrides ``step / max_steps`` for the decay phase; the Trainer passes
    ``max(step / max_steps, elapsed / max_time)`` when a wall-clock budget is set, so the cosine
    reaches ``min_lr`` when whichever budget binds first runs out.
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return lr
    if progress is None:
        span = max(1, max_steps - warmup_steps)
        progress = (step - warmup_steps) / span
    progress = min(1.0, max(0.0, progress))
    if schedule == "linear":
        return lr + progress * (min_lr - lr)
    coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0
    return min_lr + coeff * (lr - min_lr)
