"""T3: self-attention's compute and memory grow quadratically with sequence length.

Big-O is a statement about operation counts, so compute is decided by the exact FLOP count of
the attention core (QKᵀ and AV, counted by torch's FlopCounterMode on the explicit path and by
the cost engine); memory by the exact bytes autograd saves for backward, for the textbook
(materialized) attention and for PyTorch's fused kernel. Wall time is reported beside them as a
separate finding (fitted exponents with CIs over repeats, naive and fused, the fused kernel up to
n = 8192): on a CPU it also measures memory traffic, which is not what the Big-O counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from archlab.models.gpt import attend
from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.claims._common import fmt_ci, literature
from archlab.study.claims._engine import transformer_layer_flops
from archlab.study.context import StudyContext
from archlab.study.measure import loglog_slope, saved_bytes, sweep_times
from archlab.study.plots import subplots, to_png
from archlab.study.stats import exact, mean_effect

QUOTE = (
    "A weakness of Transformer-based architectures is that the self-attention mechanism requires "
    "significant computational resources, especially for longer sequences, due to its quadratic "
    "complexity with respect to the sequence length. This aspect can make Transformers more "
    "demanding in terms of memory and compute power."
)
IMPLS = ("naive", "sdpa")
QUADRATIC = 1.8  # an exponent this close to 2 between the two largest n counts as quadratic
LINEAR = 1.2  # and one at or below this as (near) linear


def _qkv(n: int, s: Mapping[str, Any], gen: torch.Generator, device: torch.device):
    shape = (1, s["heads"], n, s["head_size"])  # (B, H, n, hs)
    return [torch.randn(shape, generator=gen).to(device).requires_grad_() for _ in range(3)]


def core_flops(n: int, s: Mapping[str, Any]) -> int:
    """Forward FLOPs of the attention core at length n, counted by FlopCounterMode (explicit
    path: the fused CPU kernel has no FLOP formula in torch and would count 0)."""
    q, k, v = (
        t.detach() for t in _qkv(n, s, torch.Generator().manual_seed(0), torch.device("meta"))
    )
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        attend(q, k, v, causal=False, impl="naive")
    return int(fc.get_total_flops())


def _step(n: int, s: Mapping[str, Any], impl: str, gen: torch.Generator, device: torch.device):
    q, k, v = _qkv(n, s, gen, device)

    def step() -> int:
        with saved_bytes() as box:
            y = attend(q, k, v, causal=True, impl=impl)  # (B, H, n, hs)
        y.sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return box["bytes"]

    return step


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    gen = torch.Generator().manual_seed(ctx.seeds[0])
    out: dict[str, Any] = {"heads": s["heads"], "head_size": s["head_size"], "ns": {}, "saved": {}}
    timing: dict[str, Any] = {"time_s": {}, "exponent": {}}
    bar = ctx.progress(total=len(IMPLS), desc="attention vs n")
    for impl in IMPLS:
        ns = s["ns_" + impl]
        steps = [_step(n, s, impl, gen, ctx.device) for n in ns]
        out["ns"][impl] = ns
        out["saved"][impl] = [st() for st in steps]  # exact bytes saved for backward
        times = sweep_times(steps, s["repeats"], s["inner"])  # [repeat][n]
        timing["time_s"][impl] = times
        # exponent between consecutive sizes at the top of the range, one per repeat
        timing["exponent"][impl] = [loglog_slope(ns[-3:], t[-3:]) for t in times]
        bar.update()
    bar.close()
    ns = out["ns"]["sdpa"]
    out["flops"] = [core_flops(n, s) for n in ns]
    d = s["heads"] * s["head_size"]
    out["engine_flops"] = [4 * n * n * d for n in ns]  # QKᵀ and AV: 2·n²·d each
    out["flops_exponent"] = loglog_slope(ns[-2:], out["flops"][-2:])
    out["memory_exponent"] = {
        i: loglog_slope(out["ns"][i][-2:], out["saved"][i][-2:]) for i in IMPLS
    }
    out["layer_crossover_n"] = transformer_layer_flops(64, s["layer_d"])["crossover_n"]
    out["layer_d"] = s["layer_d"]
    out["device"] = str(ctx.device)
    out["threads"] = torch.get_num_threads()
    out["timing"] = timing
    return out


def verdict(m: Mapping[str, Any]) -> Verdict:
    fe, mem = m["flops_exponent"], m["memory_exponent"]
    engine_ok = m["flops"] == m["engine_flops"]
    effect = exact(
        fe,
        "attention FLOPs exponent b (FLOPs ∝ n^b) at the largest n",
        "",
        "exact FLOP counts (FlopCounterMode = engine)",
    )
    checks = {
        "positive_control": "n/a",
        "engine_equals_flop_counter": engine_ok,
        "memory_exponent_naive": round(mem["naive"], 3),
        "memory_exponent_fused": round(mem["sdpa"], 3),
    }
    t = m["timing"]["exponent"]
    ne, se = (
        mean_effect(t["naive"], "naive time exponent", what="repeats"),
        mean_effect(t["sdpa"], "fused time exponent", what="repeats"),
    )
    n_hi = m["ns"]["sdpa"][-1]
    findings = (
        f"Wall time ({m['device']}, {m['threads']} threads; not what the Big-O counts): naive "
        f"attention grows as n^{fmt_ci(ne, 2)} and the fused kernel as n^{fmt_ci(se, 2)} over the "
        f"largest sizes (fused up to n = {n_hi:,}). Beyond the FLOPs, naive attention writes and "
        "re-reads the n×n score matrix (memory traffic), the fused kernel keeps it in cache-sized "
        "tiles (Dao et al. 2022), so its time follows the FLOPs more closely.",
        f"In a whole Transformer layer (d = {m['layer_d']}) the n² terms only dominate past "
        f"n* = 2d + d_ff = {m['layer_crossover_n']:g} tokens (P5).",
    )
    facts = (
        f"exact FLOPs of QKᵀ and AV: 4·n²·d, counted equal by FlopCounterMode and the cost engine "
        f"({'equal' if engine_ok else 'NOT equal'}); exponent {fe:.2f} between n = "
        f"{m['ns']['sdpa'][-2]:,} and {n_hi:,}. Bytes saved for backward grow as n^"
        f"{mem['naive']:.2f} for naive attention and n^{mem['sdpa']:.2f} for the fused kernel."
    )
    if not engine_ok or fe < QUADRATIC:
        return Verdict(
            "contradicted",
            "Contradicted: the attention FLOP count does not grow quadratically.",
            facts,
            effect,
            checks,
            literature("vaswani2017", False),
            timing_findings=findings,
        )
    if mem["naive"] >= QUADRATIC and mem["sdpa"] <= LINEAR:
        return Verdict(
            "supported within scope",
            "Supported within scope: compute is quadratic in sequence length for every "
            "implementation (exact count); memory is quadratic only when the n×n scores are "
            "stored — a fused kernel (FlashAttention-style) keeps it linear.",
            facts,
            effect,
            checks,
            literature("dao2022", True),
            scope="compute always; memory only for attention that materializes the n×n scores",
            timing_findings=findings,
        )
    if mem["naive"] >= QUADRATIC and mem["sdpa"] >= QUADRATIC:
        return Verdict(
            "supported",
            "Supported: compute and memory both grow quadratically.",
            facts,
            effect,
            checks,
            literature("vaswani2017", True),
            timing_findings=findings,
        )
    return Verdict(
        "supported within scope",
        "Supported within scope: compute is quadratic (exact count); memory is not quadratic in "
        "any implementation measured.",
        facts,
        effect,
        checks,
        literature("vaswani2017", True),
        scope="compute (memory grows more slowly than n²)",
        timing_findings=findings,
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    t = m["timing"]["time_s"]
    rows = []
    ns = m["ns"]["sdpa"]
    for j, n in enumerate(ns):
        jn = m["ns"]["naive"].index(n) if n in m["ns"]["naive"] else None
        rows.append(
            [
                n,
                m["flops"][j],
                m["saved"]["naive"][jn] / 2**20 if jn is not None else None,
                m["saved"]["sdpa"][j] / 2**20,
                min(r[jn] for r in t["naive"]) if jn is not None else None,
                min(r[j] for r in t["sdpa"]),
            ]
        )
    return [
        Table(
            f"Attention core (1 sequence, {m['heads']} heads of {m['head_size']}), causal: exact "
            "FLOPs, MiB saved for backward, seconds for forward + backward (min of repeats)",
            ["n", "FLOPs (forward)", "naive MiB", "fused MiB", "naive s", "fused s"],
            rows,
        )
    ]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (a1, a2, a3) = subplots(3, width=4.2)
    t = m["timing"]["time_s"]
    a1.plot(m["ns"]["sdpa"], m["flops"], "o-", label="FLOPs (exact)")
    for impl in IMPLS:
        a2.plot(m["ns"][impl], [b / 2**20 for b in m["saved"][impl]], "o-", label=impl)
        a3.plot(
            m["ns"][impl],
            [min(r[j] for r in t[impl]) for j in range(len(m["ns"][impl]))],
            "o-",
            label=impl,
        )
    for ax, title, yl in (
        (a1, "operations (decides)", "forward FLOPs"),
        (a2, "saved for backward (decides)", "MiB"),
        (a3, "wall time (finding)", "seconds (min of repeats)"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length n")
        ax.set_ylabel(yl)
        ax.set_title(title)
        ax.legend(fontsize=8)
    return to_png(fig)


def method(m: Mapping[str, Any]) -> str:
    nn_, ns = m["ns"]["naive"], m["ns"]["sdpa"]
    return (
        f"Causal self-attention on random q, k, v (1 sequence, {m['heads']} heads of "
        f"{m['head_size']}) at n = {ns[0]:,} … {ns[-1]:,}: FLOPs of QKᵀ and AV counted by "
        "FlopCounterMode and by the cost engine; bytes autograd saves for backward "
        "(saved_tensors_hooks) for naive attention (materialized n×n scores, up to n = "
        f"{nn_[-1]:,}) and PyTorch's fused scaled_dot_product_attention; forward + backward timed "
        "as interleaved repeats, one exponent fit per repeat."
    )


CLAIM = register_claim(
    Claim(
        id="T3",
        part=1,
        title="Quadratic attention",
        subject="Transformer",
        seed_quote=QUOTE,
        method=method,
        sizes={
            "tiny": {
                "ns_naive": [32, 64, 128],
                "ns_sdpa": [32, 64, 128],
                "heads": 2,
                "head_size": 8,
                "repeats": 2,
                "inner": 1,
                "layer_d": 8,
            },
            "quick": {
                "ns_naive": [256, 512, 1024, 2048],
                "ns_sdpa": [256, 512, 1024, 2048, 4096, 8192],
                "heads": 4,
                "head_size": 16,
                "repeats": 3,
                "inner": 1,
                "layer_d": 32,
            },
            "standard": {
                "ns_naive": [256, 512, 1024, 2048, 4096],
                "ns_sdpa": [256, 512, 1024, 2048, 4096, 8192],
                "heads": 4,
                "head_size": 16,
                "repeats": 5,
                "inner": 2,
                "layer_d": 32,
            },
            "full": {
                "ns_naive": [256, 512, 1024, 2048, 4096, 8192],
                "ns_sdpa": [256, 512, 1024, 2048, 4096, 8192, 16384],
                "heads": 8,
                "head_size": 64,
                "repeats": 5,
                "inner": 3,
                "layer_d": 128,
            },
        },
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        spread="exact counts; timing: mean with 95% CI over repeats",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]
