"""Measurement helpers shared by the claims: timing, saved-for-backward bytes, fits, spreads.

Rules the study follows (issue 5 "Rigor"): timings are only reported as ratios or fitted exponents;
every spread says what it is (here: sample std over seeds/repeats, plus min-max where shown).
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch


def seed_all(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def mean_std(values: Sequence[float]) -> dict[str, float]:
    """{"mean", "std" (sample, ddof=1; 0 for one value), "min", "max", "n"}."""
    a = np.asarray(values, dtype=float)
    std = float(a.std(ddof=1)) if a.size > 1 else 0.0
    return {
        "mean": float(a.mean()),
        "std": std,
        "min": float(a.min()),
        "max": float(a.max()),
        "n": int(a.size),
    }


def loglog_slope(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of log y on log x: the fitted exponent b in y ~ a * x^b."""
    lx, ly = np.log(np.asarray(x, float)), np.log(np.asarray(y, float))
    return float(np.polyfit(lx, ly, 1)[0])


def fit_exponent(x: Sequence[float], ys: Sequence[Sequence[float]]) -> dict[str, float]:
    """Fit the exponent separately on each repeat ``ys[r]`` and report its spread over repeats."""
    return mean_std([loglog_slope(x, y) for y in ys])


def time_call(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``fn()`` per repeat (after ``warmup`` untimed calls)."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def sweep_times(
    steps: Sequence[Callable[[], Any]], passes: int, inner: int = 2
) -> list[list[float]]:
    """Seconds per call for each of ``steps``, as ``[pass][step]``.

    Each pass visits every step in turn (interleaved, so a burst of load from other processes hits
    all sizes alike) and keeps the minimum of ``inner`` calls — the least-disturbed estimate on a
    shared machine. Exponents are then fitted per pass, giving a spread over passes.
    """
    for fn in steps:  # warm-up: allocator, thread pool, kernel selection
        fn()
    out = []
    for _ in range(passes):
        out.append([min(time_call(fn, inner, warmup=0)) for fn in steps])
    return out


@contextlib.contextmanager
def saved_bytes(exclude: Sequence[torch.Tensor] = ()):
    """Count bytes autograd saves for backward inside the block (``saved_tensors_hooks``).

    Storages are deduplicated (views of one tensor count once) and ``exclude`` (parameters) is left
    out, so the total is the activation memory a backward pass keeps alive. tracemalloc cannot see
    tensor storage, which is why the hook is used (PyTorch docs, "Hooks for saved tensors").
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}
    box = {"bytes": 0}

    def pack(t: torch.Tensor) -> torch.Tensor:
        st = t.untyped_storage()
        if st.data_ptr() not in skip:
            seen[st.data_ptr()] = st.nbytes()
            box["bytes"] = sum(seen.values())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield box


def first_crossing(xs: Sequence[float], ys: Sequence[float], target: float) -> float | None:
    """First x where y <= target (linear interpolation between samples), None if never."""
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        if y <= target:
            if i == 0:
                return float(x)
            x0, y0 = xs[i - 1], ys[i - 1]
            return float(x0 + (x - x0) * (y0 - target) / (y0 - y))
    return None


def rounded(obj: Any, digits: int = 6) -> Any:
    """Round floats recursively (significant digits) so results.json stays readable."""
    if isinstance(obj, float):
        return float(f"{obj:.{digits}g}")
    if isinstance(obj, dict):
        return {k: rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [rounded(v, digits) for v in obj]
    return obj


__all__ = [
    "first_crossing",
    "fit_exponent",
    "loglog_slope",
    "mean_std",
    "rounded",
    "saved_bytes",
    "seed_all",
    "sweep_times",
    "time_call",
]
