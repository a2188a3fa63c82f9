"""Describe the machine a number was measured on, and measure its matmul peak.

Benchmarks and the study record this beside every figure: absolute times on a shared machine are
noisy, so figures are reported as ratios, and the machine is named so a reader can judge them.
MFU (model FLOPs utilisation, PaLM paper Appendix B) needs a peak; we *measure* the peak of a large
square matmul in the same process rather than trusting a datasheet.
"""

from __future__ import annotations

import os
import platform
import time
from datetime import datetime, timezone
from typing import Any

import torch


def describe_machine() -> dict[str, Any]:
    """A JSON-serialisable description: CPU (with its flags), cores, threads, accelerator,
    library versions."""
    from archlab.hardware import _cpu_name, cpu_flags, physical_cores

    flags = cpu_flags()
    d: dict[str, Any] = {
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "physical_cores": physical_cores(),
        "torch_threads": torch.get_num_threads(),
        "amx_bf16": "amx_bf16" in flags,
        "avx512f": "avx512f" in flags,
        "avx512_bf16": "avx512_bf16" in flags,
        "cpu_flags": " ".join(sorted(flags)),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    return d


def cpu_summary() -> dict[str, Any]:
    """The CPU's model name and sorted flags: the short record every benchmark JSON carries."""
    from archlab.hardware import _cpu_name, cpu_flags

    return {"model": _cpu_name(), "flags": sorted(cpu_flags())}


def measure_matmul_peak(
    dtype: torch.dtype = torch.bfloat16,
    n: int = 2048,
    seconds: float = 1.0,
    device: str = "cpu",
) -> float:
    """Achieved FLOP/s of an n×n×n matmul in ``dtype`` (2·n³ FLOPs each), best of repeated runs.

    "Best of" because interference only ever slows a run down; the fastest run is the closest
    estimate of what the hardware can do.
    """
    a = torch.randn(n, n, device=device).to(dtype)
    b = torch.randn(n, n, device=device).to(dtype)
    flops = 2.0 * n**3
    torch.matmul(a, b)  # warm-up: first call pays for packing/allocation
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while True:
        if device != "cpu":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        torch.matmul(a, b)
        if device != "cpu":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    return flops / best


__all__ = ["cpu_summary", "describe_machine", "measure_matmul_peak"]
