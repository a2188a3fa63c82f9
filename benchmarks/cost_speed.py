"""How fast is ``archlab.cost.analyze`` on a GPT-2-small-shaped model? (issue 2, item 8)

Model: the fixture ``TinyGPT`` at GPT-2-small size — 12 layers, d_model 768, 12 heads, vocab 50257,
block 1024, tied LM head (124,439,808 params) — batch 1, sequence 1024.

Timed, in this one script on this machine:
* ``analyze(model, idx)``: the full analysis — fake-tensor forward and backward, op counting,
  module attribution, formulas, saved-tensor bytes, and the FlopCounterMode reconciliation (it runs
  inside ``analyze`` on the same fake forward) — ``--repeats`` times; each time and the median;
* the one-time imports a fresh process pays first (archlab.cost with sympy; torch._dynamo, which
  FakeTensorMode imports on first use), reported separately;
* one real forward pass under ``FlopCounterMode`` (the baseline: actual arithmetic).

Prints both and the ratio; writes benchmarks/results/cost_speed.json with the machine description.
Target (issue 2): analysis <= 2 s here. Run: ``PYTHONPATH=src:. python benchmarks/cost_speed.py``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT)]

_t0 = time.perf_counter()
from archlab.cost import analyze  # noqa: E402  (timed: imports sympy via the formulas)

IMPORT_SECONDS = time.perf_counter() - _t0

from archlab.machine import describe_machine  # noqa: E402
from tests.fixtures_models import TinyGPT  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed analyses (median reported)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cost_speed.json")
    args = ap.parse_args()

    torch.manual_seed(0)
    model = TinyGPT(vocab=50257, d=768, heads=12, layers=12, block_size=1024)
    idx = torch.randint(0, 50257, (1, 1024))  # (B, T)

    # FakeTensorMode's first construction imports torch._dynamo (once per process); time that
    # separately so the per-analysis figure is the analysis itself.
    t0 = time.perf_counter()
    importlib.import_module("torch._dynamo")

    dynamo_import = time.perf_counter() - t0

    times, report = [], None
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        report = analyze(model, idx)
        times.append(time.perf_counter() - t0)

    t0 = time.perf_counter()
    with torch.no_grad(), FlopCounterMode(display=False) as fcm:
        model(idx)
    t_fcm = time.perf_counter() - t0

    median = statistics.median(times)
    result = {
        "model": "TinyGPT(vocab=50257, d=768, heads=12, layers=12, block_size=1024), "
        "batch 1, seq 1024",
        "params": report.params,
        "analysis_includes": "fake-tensor forward+backward, op counting, attribution, "
        "saved-tensor bytes, FlopCounterMode reconciliation",
        "import_archlab_cost_seconds": IMPORT_SECONDS,
        "analysis_seconds": times,
        "torch_dynamo_import_seconds": dynamo_import,
        "note": "one-time per process: importing archlab.cost (sympy) and torch._dynamo (which "
        "FakeTensorMode imports on first use) are timed separately from the analyses",
        "analysis_seconds_first": times[0],
        "analysis_seconds_median": median,
        "flopcountermode_real_forward_seconds": t_fcm,
        "ratio_analysis_median_over_fcm_forward": median / t_fcm,
        "target_seconds": 2.0,
        "meets_target": median <= 2.0,
        "flops_forward_dense": report.flops_forward_dense,
        "flops_backward_dense": report.flops_backward_dense,
        "flopcountermode_forward_flops_real": fcm.get_total_flops(),
        "flopcountermode_forward_flops_in_analysis": report.reconciliation[
            "flopcountermode_forward"
        ],
        "activation_bytes": report.activation_bytes,
        "machine": describe_machine(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(args.out)

    print(f"params {report.params:,}; dense forward {report.flops_forward_dense:,} FLOPs")
    print(
        f"one-time imports: archlab.cost {IMPORT_SECONDS:.3f} s, "
        f"torch._dynamo {dynamo_import:.3f} s"
    )
    print("analysis (s): " + ", ".join(f"{t:.3f}" for t in times) + f"  median {median:.3f}")
    print(f"one real FlopCounterMode forward: {t_fcm:.3f} s")
    print(f"ratio analysis/forward: {median / t_fcm:.3f}  (target: analysis <= 2 s)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
