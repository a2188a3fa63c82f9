"""Shared plumbing for the training benchmarks: machine record, matmul peak, FLOP counts, JSON.

Every benchmark script records, beside its numbers, the machine (``archlab.machine``), the load
average when it started (the machine is shared; a loaded machine makes every time pessimistic),
and the bf16/fp32 matmul peaks measured *in the same process*, so MFU is achieved FLOP/s divided by
what this machine did at that moment, not by a datasheet.

Model FLOPs per training step are counted by ``torch.utils.flop_counter.FlopCounterMode`` on one
real forward + backward of the exact batch shape (matmuls, convolutions and attention; FLOPs =
2 x MACs). Element-wise ops, norms, softmax and the optimizer are not counted (as in PaLM's MFU,
Chowdhery et al. 2022, Appendix B, which counts only the matmul work a model needs).
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))

from archlab.machine import describe_machine, measure_matmul_peak  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"

__all__ = [
    "RESULTS",
    "ROOT",
    "count_step_flops",
    "run_cli",
    "load_average",
    "machine_record",
    "set_data_root",
    "write_result",
]


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages (runnable processes; > cpu_count means contention)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def set_data_root(arg: str | None) -> str:
    """Point the data layer at ``arg``, else ``$ARCHLAB_DATA``, else ``../shared/data`` (CI)."""
    root = arg or os.environ.get("ARCHLAB_DATA") or str(ROOT.parent / "shared" / "data")
    os.environ["ARCHLAB_DATA"] = root
    return root


def machine_record(threads: int) -> dict[str, Any]:
    """Machine description + load average + measured matmul peaks (FLOP/s), at ``threads``."""
    from archlab.hardware import capabilities

    torch.set_num_threads(threads)
    load = load_average()
    t = time.perf_counter()
    # Where bf16 is emulated (AVX2: ~1 GFLOP/s) one 2048³ matmul takes ~20 s: measure at 512.
    n16 = 2048 if capabilities().bf16_fast else 512
    bf16 = measure_matmul_peak(torch.bfloat16, n=n16, seconds=2.0)
    fp32 = measure_matmul_peak(torch.float32, n=2048, seconds=2.0)
    return {
        **describe_machine(),
        "load_average_at_start": load,
        "matmul_peak_flops": {"bf16": bf16, "fp32": fp32, "n": 2048, "n_bf16": n16},
        "peak_measure_s": round(time.perf_counter() - t, 1),
    }


def run_cli(args: list[str], timeout: float = 3600) -> dict[str, Any]:
    """``archlab ARGS`` as a user runs it (a subprocess with this checkout's code); its output
    and wall time. Raises SystemExit with the error when it fails."""
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    t = time.perf_counter()
    r = subprocess.run(
        [sys.executable, "-m", "archlab", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    if r.returncode != 0:
        raise SystemExit(f"archlab {' '.join(args)} failed ({r.returncode}): {r.stderr[-2000:]}")
    return {"stdout": r.stdout, "stderr": r.stderr, "wall_s": round(time.perf_counter() - t, 2)}


def count_step_flops(step: Callable[[], torch.Tensor]) -> int:
    """FLOPs (2 x MACs) of one forward + backward: ``step()`` returns the loss to backpropagate."""
    with FlopCounterMode(display=False) as fc:
        step().backward()
    return int(fc.get_total_flops())


def write_result(name: str, payload: dict[str, Any], out: str | None = None) -> Path:
    path = Path(out) if out else RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    tmp.replace(path)
    print(f"wrote {path}")
    return path
