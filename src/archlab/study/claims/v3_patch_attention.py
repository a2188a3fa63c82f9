"""V3 (Part 2): a ViT's self-attention cost grows quadratically with the number of image patches."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from archlab.cost import layers
from archlab.models import create_model
from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.context import StudyContext
from archlab.study.measure import fit_exponent, loglog_slope, saved_bytes, sweep_times
from archlab.study.plots import subplots, to_png

QUOTE = (
    "Computational complexity of self-attention grows quadratically with the sequence length (or "
    "the number of image patches). This growth can make Transformers computationally intensive, "
    "especially for high-resolution images."
)


def _vit(s: Mapping[str, Any], image: int):
    return create_model(
        "vit",
        image_size=image,
        patch_size=s["patch"],
        d_model=s["d_model"],
        layers=s["layers"],
        heads=s["heads"],
        in_channels=1,
    )


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    gen = torch.Generator().manual_seed(ctx.seeds[0])
    tokens, flops, mem, steps = [], [], [], []
    bar = ctx.progress(total=len(s["images"]) + 1, desc="ViT vs patches")
    for image in s["images"]:
        torch.manual_seed(ctx.seeds[0])
        model = _vit(s, image)
        x = torch.randn(1, 1, image, image, generator=gen)  # (B, C, H, W)
        n = (image // s["patch"]) ** 2 + 1  # patches + class token
        tokens.append(n)
        cost = layers.transformer(
            s["d_model"], s["heads"], s["layers"], 4 * s["d_model"], seq_len=n, norm_first=True
        )
        flops.append(cost.flops_forward_dense)
        with saved_bytes(exclude=list(model.parameters())) as box:
            out = model(x)  # (1, classes)
        out.sum().backward()
        mem.append(box["bytes"])

        def step(model=model, x=x) -> None:
            model(x).sum().backward()

        steps.append(step)
        bar.update()
    times = sweep_times(steps, s["passes"], s["inner"])  # [pass][image]
    bar.update()
    bar.close()
    nstar = layers.transformer(s["d_model"], s["heads"], 1, 4 * s["d_model"], seq_len=8).derived[
        "crossover"
    ]["n_star_dense"]
    above = [j for j, n in enumerate(tokens) if n >= nstar]
    return {
        "images": s["images"],
        "patch": s["patch"],
        "tokens": tokens,
        "crossover_tokens": nstar,
        "crossover_image": int(s["patch"] * (nstar - 1) ** 0.5),
        "flops": flops,
        "flops_exponent": loglog_slope(tokens, flops),
        "flops_exponent_above": loglog_slope([tokens[j] for j in above], [flops[j] for j in above])
        if len(above) > 1
        else None,
        "saved_bytes": mem,
        "memory_exponent": loglog_slope(tokens, mem),
        "timing": {
            "step_s": times,
            "time_exponent": fit_exponent(tokens, times),
            "time_exponent_above": fit_exponent(
                [tokens[j] for j in above], [[r[j] for j in above] for r in times]
            )
            if len(above) > 1
            else None,
        },
    }


def verdict(m: Mapping[str, Any]) -> Verdict:
    t = m["timing"]
    above = t["time_exponent_above"]
    facts = (
        f"forward FLOPs (cost engine) grow as N^{m['flops_exponent']:.2f} over N = "
        f"{m['tokens'][0]}…{m['tokens'][-1]} tokens; measured time N^{t['time_exponent']['mean']:.2f} ± "
        f"{t['time_exponent']['std']:.2f}; saved-for-backward memory N^{m['memory_exponent']:.2f}. "
        f"Attention's N²·d term overtakes the N·d² terms at n* = {m['crossover_tokens']} tokens "
        f"(a {m['crossover_image']} px image at patch {m['patch']})."
    )
    if above is None:
        return Verdict(
            "conditional",
            condition=f"no resolution measured reaches n* = "
            f"{m['crossover_tokens']} tokens, where the quadratic term starts to dominate",
            reason=facts,
        )
    facts += f" Above n*: time N^{above['mean']:.2f} ± {above['std']:.2f}."
    if above["mean"] < 1.5:
        return Verdict("not supported", f"time did not grow ~N² even above n*: {facts}")
    if m["memory_exponent"] >= 1.6:
        return Verdict("supported", facts)
    return Verdict(
        "conditional",
        condition=f"compute grows ~N^{above['mean']:.1f} beyond "
        f"n* = {m['crossover_tokens']} tokens (≈{m['crossover_image']} px at patch "
        f"{m['patch']}); memory stays ~linear (N^{m['memory_exponent']:.2f}) with fused "
        "attention",
        reason=facts,
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    t = m["timing"]["step_s"]
    base = min(r[0] for r in t)
    rows = [
        [img, n, m["flops"][j], m["saved_bytes"][j] / 2**20, min(r[j] for r in t) / base]
        for j, (img, n) in enumerate(zip(m["images"], m["tokens"], strict=True))
    ]
    return [
        Table(
            "ViT (1 image): tokens, forward FLOPs, MiB saved for backward, time vs the smallest",
            ["image px", "tokens N", "FLOPs", "saved MiB", "time ×"],
            rows,
        )
    ]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (ax,) = subplots(width=6)
    t = m["timing"]["step_s"]
    for y, label in (
        ([min(r[j] for r in t) for j in range(len(m["tokens"]))], "time (min over passes)"),
        (m["flops"], "forward FLOPs"),
        (m["saved_bytes"], "bytes saved for backward"),
    ):
        ax.plot(m["tokens"], [v / y[0] for v in y], "o-", label=label)
    ax.axvline(m["crossover_tokens"], color="gray", ls="--", label="n* (engine)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens N (patches + class token)")
    ax.set_ylabel("relative to the smallest image")
    ax.set_title("ViT cost vs number of patches")
    ax.legend(fontsize=8)
    return to_png(fig)


CLAIM = register_claim(
    Claim(
        id="V3",
        part=2,
        title="Quadratic cost in patches",
        subject="Transformer (vision)",
        seed_quote=QUOTE,
        method="The project's ViT (archlab.models, one block, patch 4) on ever larger images: the "
        "number of tokens N grows with the square of the side. For each size: forward+backward "
        "time (interleaved passes, min of repeated calls), bytes autograd saves for backward, and "
        "the cost engine's forward FLOPs; exponents b in cost ∝ N^b, with the crossover n* where "
        "attention's N²·d overtakes the N·d² projections.",
        sizes={
            "tiny": {
                "images": [8, 16, 24],
                "patch": 4,
                "d_model": 8,
                "heads": 2,
                "layers": 1,
                "passes": 2,
                "inner": 1,
            },
            "quick": {
                "images": [16, 32, 64, 96, 128, 160],
                "patch": 4,
                "d_model": 32,
                "heads": 4,
                "layers": 1,
                "passes": 3,
                "inner": 2,
            },
            "full": {
                "images": [32, 64, 128, 192, 256, 384, 512],
                "patch": 8,
                "d_model": 192,
                "heads": 3,
                "layers": 1,
                "passes": 5,
                "inner": 3,
            },
        },
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        timing_verdict=True,
        spread="mean ± std over timing passes",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]
