"""T3: self-attention's time and memory grow quadratically with sequence length."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from archlab.models.gpt import attend
from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.claims._engine import transformer_layer_flops
from archlab.study.context import StudyContext
from archlab.study.measure import fit_exponent, loglog_slope, mean_std, saved_bytes, sweep_times
from archlab.study.nets import gpt_block
from archlab.study.plots import subplots, to_png

QUOTE = (
    "A weakness of Transformer-based architectures is that the self-attention mechanism requires "
    "significant computational resources, especially for longer sequences, due to its quadratic "
    "complexity with respect to the sequence length. This aspect can make Transformers more "
    "demanding in terms of memory and compute power."
)
IMPLS = ("naive", "sdpa")


def _core(n: int, s: Mapping[str, Any], impl: str, gen: torch.Generator):
    shape = (1, s["heads"], n, s["head_size"])  # (B, H, n, hs)
    q, k, v = (torch.randn(shape, generator=gen).requires_grad_() for _ in range(3))

    def step() -> int:
        with saved_bytes() as box:
            y = attend(q, k, v, causal=True, impl=impl)  # (B, H, n, hs)
        y.sum().backward()
        return box["bytes"]

    return step


def _layer(n: int, s: Mapping[str, Any], impl: str, gen: torch.Generator):
    block = gpt_block(s["layer_d"], s["layer_heads"], impl)  # archlab's GPT block
    x = torch.randn(1, n, s["layer_d"], generator=gen).requires_grad_()  # (B, n, d)

    def step() -> None:
        block(x)[0].sum().backward()

    return step


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    gen = torch.Generator().manual_seed(ctx.seeds[0])
    ns, lns, reps = s["ns"], s["layer_ns"], s["repeats"]
    saved = {}
    per_rep, layer_rep = {}, {}
    bar = ctx.progress(total=4, desc="attention vs n")
    for impl in IMPLS:
        steps = [_core(n, s, impl, gen) for n in ns]
        saved[impl] = [step() for step in steps]  # bytes saved for backward (deterministic)
        per_rep[impl] = sweep_times(steps, reps, s["inner"])  # [repeat][n]
        bar.update()
        layer_rep[impl] = sweep_times([_layer(n, s, impl, gen) for n in lns], reps, s["inner"])
        bar.update()
    bar.close()
    eng = transformer_layer_flops(lns[0], s["layer_d"])
    nstar = eng["crossover_n"]
    flops = [transformer_layer_flops(n, s["layer_d"])["dense"] for n in lns]
    lo = [j for j, n in enumerate(lns) if n <= nstar]
    hi = [j for j, n in enumerate(lns) if n >= nstar]

    def sub(rows, idx):
        return [[r[j] for j in idx] for r in rows]

    timing = {
        "core_time_s": {i: per_rep[i] for i in IMPLS},
        "layer_time_s": {i: layer_rep[i] for i in IMPLS},
        "core_time_exponent": {i: fit_exponent(ns, per_rep[i]) for i in IMPLS},
        "layer_time_exponent_below_nstar": {
            i: fit_exponent([lns[j] for j in lo], sub(layer_rep[i], lo)) for i in IMPLS
        }
        if len(lo) > 1
        else None,
        "layer_time_exponent_above_nstar": {
            i: fit_exponent([lns[j] for j in hi], sub(layer_rep[i], hi)) for i in IMPLS
        }
        if len(hi) > 1
        else None,
        "sdpa_over_naive_time_at_max_n": mean_std(
            [per_rep["sdpa"][r][-1] / per_rep["naive"][r][-1] for r in range(reps)]
        ),
    }
    return {
        "ns": ns,
        "layer_ns": lns,
        "engine": eng["engine"],
        "crossover_n": nstar,
        "layer_flops": flops,
        "flops_exponent_below_nstar": loglog_slope([lns[j] for j in lo], [flops[j] for j in lo])
        if len(lo) > 1
        else None,
        "flops_exponent_above_nstar": loglog_slope([lns[j] for j in hi], [flops[j] for j in hi])
        if len(hi) > 1
        else None,
        "saved_bytes": saved,
        "memory_exponent": {i: loglog_slope(ns, saved[i]) for i in IMPLS},
        "timing": timing,
    }


def verdict(m: Mapping[str, Any]) -> Verdict:
    t = m["timing"]["core_time_exponent"]
    mem = m["memory_exponent"]
    tn, ts = t["naive"]["mean"], t["sdpa"]["mean"]
    facts = (
        f"fitted time exponents: naive {tn:.2f} ± {t['naive']['std']:.2f}, SDPA {ts:.2f} ± "
        f"{t['sdpa']['std']:.2f}; saved-for-backward memory exponents: naive {mem['naive']:.2f}, "
        f"SDPA {mem['sdpa']:.2f} (n = {m['ns'][0]}…{m['ns'][-1]}). In a whole layer the n² "
        f"term only dominates past n* = {m['crossover_n']:g} tokens (cost engine)."
    )
    time_quadratic = tn >= 1.5
    if not time_quadratic:
        return Verdict("not supported", f"attention time did not grow ~n² here: {facts}")
    if mem["naive"] >= 1.6 and mem["sdpa"] >= 1.6:
        return Verdict("supported", f"time and memory both grow ~n²: {facts}")
    if mem["naive"] >= 1.6:
        return Verdict(
            "conditional",
            condition=f"compute is quadratic (time exponent ≈{tn:.1f}); memory is quadratic only for "
            f"naive attention ({mem['naive']:.2f}) — a fused kernel (SDPA) stores O(n) ({mem['sdpa']:.2f})",
            reason=facts,
        )
    return Verdict(
        "conditional",
        condition=f"compute is quadratic, memory is not (exponent ≈{mem['naive']:.2f})",
        reason=facts,
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    t = m["timing"]
    naive_t = [sum(r[j] for r in t["core_time_s"]["naive"]) for j in range(len(m["ns"]))]
    sdpa_t = [sum(r[j] for r in t["core_time_s"]["sdpa"]) for j in range(len(m["ns"]))]
    rows = [
        [
            n,
            m["saved_bytes"]["naive"][j] / 2**20,
            m["saved_bytes"]["sdpa"][j] / 2**20,
            naive_t[j] / naive_t[0],
            sdpa_t[j] / sdpa_t[0],
        ]
        for j, n in enumerate(m["ns"])
    ]
    e = t["core_time_exponent"]
    fits = [
        [
            "time (attention core)",
            f"{e['naive']['mean']:.2f} ± {e['naive']['std']:.2f}",
            f"{e['sdpa']['mean']:.2f} ± {e['sdpa']['std']:.2f}",
        ],
        [
            "saved-for-backward bytes",
            f"{m['memory_exponent']['naive']:.2f}",
            f"{m['memory_exponent']['sdpa']:.2f}",
        ],
    ]
    for key, label in (("below", "≤"), ("above", "≥")):
        le = t[f"layer_time_exponent_{key}_nstar"]
        if le:
            fits.append(
                [
                    f"time (whole layer, n {label} n*)",
                    f"{le['naive']['mean']:.2f} ± {le['naive']['std']:.2f}",
                    f"{le['sdpa']['mean']:.2f} ± {le['sdpa']['std']:.2f}",
                ]
            )
            fits.append(
                [
                    f"FLOPs formula (whole layer, n {label} n*)",
                    f"{m[f'flops_exponent_{key}_nstar']:.2f}",
                    "",
                ]
            )
    return [
        Table(
            "Attention core vs n (memory in MiB; time relative to the smallest n)",
            ["n", "naive MiB", "SDPA MiB", "naive time ×", "SDPA time ×"],
            rows,
        ),
        Table(
            "Fitted exponents b in cost ∝ n^b (mean ± std over repeats)",
            ["quantity", "naive", "SDPA"],
            fits,
        ),
    ]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (a1, a2, a3) = subplots(3, width=4.2)
    t = m["timing"]
    for impl in IMPLS:
        reps = t["core_time_s"][impl]
        a1.plot(m["ns"], [min(r[j] for r in reps) for j in range(len(m["ns"]))], "o-", label=impl)
        a2.plot(m["ns"], [b / 2**20 for b in m["saved_bytes"][impl]], "o-", label=impl)
        lreps = t["layer_time_s"][impl]
        a3.plot(
            m["layer_ns"],
            [min(r[j] for r in lreps) for j in range(len(m["layer_ns"]))],
            "o-",
            label=impl,
        )
    a3.axvline(m["crossover_n"], color="gray", ls="--", label="n* (engine)")
    for ax, title, yl in (
        (a1, "attention time", "seconds (min of repeats)"),
        (a2, "saved for backward", "MiB"),
        (a3, "whole layer time", "seconds"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length n")
        ax.set_ylabel(yl)
        ax.set_title(title)
        ax.legend(fontsize=8)
    return to_png(fig)


CLAIM = register_claim(
    Claim(
        id="T3",
        part=1,
        title="Quadratic attention",
        subject="Transformer",
        seed_quote=QUOTE,
        method="Times forward+backward of causal self-attention (random q, k, v) for growing n, "
        "naive (materialized n×n scores) and PyTorch's fused scaled_dot_product_attention; weighs the "
        "bytes autograd saves for backward (saved_tensors_hooks); fits the exponent b of cost ∝ n^b "
        "per repeat. A whole Transformer layer is timed on both sides of the cost engine's crossover "
        "n*, where the n²·d attention term overtakes the n·d² projections.",
        sizes={
            "tiny": {
                "ns": [32, 64, 128],
                "heads": 2,
                "head_size": 8,
                "repeats": 2,
                "inner": 1,
                "layer_ns": [16, 32, 64],
                "layer_d": 8,
                "layer_heads": 2,
            },
            "quick": {
                "ns": [256, 512, 1024, 2048],
                "heads": 4,
                "head_size": 16,
                "repeats": 3,
                "inner": 2,
                "layer_ns": [32, 64, 128, 256, 512, 1024, 2048],
                "layer_d": 32,
                "layer_heads": 4,
            },
            "full": {
                "ns": [256, 512, 1024, 2048, 4096, 8192],
                "heads": 8,
                "head_size": 64,
                "repeats": 5,
                "inner": 3,
                "layer_ns": [64, 128, 256, 512, 1024, 2048, 4096, 8192],
                "layer_d": 128,
                "layer_heads": 8,
            },
        },
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        timing_verdict=True,
        spread="mean ± std over timing repeats",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]
