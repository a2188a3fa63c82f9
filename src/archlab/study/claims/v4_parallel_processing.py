"""V4: self-attention processes the input in parallel, so Transformers may train faster.

Against the CNN (Part 2's comparison) both architectures are parallel over positions: a layer of
either computes every position at once, so neither has the recurrence's sequential depth. What
is left to measure is speed at equal work: images per second for a CNN and a ViT of matched
forward FLOPs (FlopCounterMode). That is a property of the hardware, which the claim names
("especially on modern hardware"): on a GPU the ratio decides; on a CPU we time at 1 and P threads
and the verdict is "inconclusive: needs other hardware" unless the ViT both scales better with
the threads and ends up faster, each with its CI clear.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from archlab.models import create_model
from archlab.models.vit import ViT
from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.claims._common import fmt_ci, literature
from archlab.study.context import StudyContext
from archlab.study.measure import mean_std, sweep_times
from archlab.study.plots import subplots, to_png
from archlab.study.stats import mean_effect, paired, side

QUOTE = (
    "Self-attention mechanism enables parallel processing of the input data, leading to "
    "potentially faster training times, especially on modern hardware designed to accelerate such "
    "computations."
)
FASTER, SLOWER = 1.1, 0.9  # throughput ratios (ViT / CNN) that count as faster / slower


def forward_flops(model, x: torch.Tensor) -> int:
    """Forward FLOPs per image counted by PyTorch's FlopCounterMode (2 per multiply-add, matmuls
    and convolutions; pointwise ops are not counted, for both models alike). A ViT is counted on
    its explicit-attention path: FlopCounterMode has no formula for the CPU fused attention kernel
    and would silently count QKᵀ and AV as zero (the same products, so the same FLOPs)."""
    model.eval()
    kw = {"return_attn": True} if isinstance(model, ViT) else {}
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x, **kw)
    return fc.get_total_flops() // x.shape[0]


def matched_vit(s: Mapping[str, Any], target: int, x: torch.Tensor):
    """The ViT (fixed depth, heads, patch) whose width gives forward FLOPs closest to ``target``."""
    best = None
    for d in range(s["heads"] * 2, 513, s["heads"]):
        m = create_model(
            "vit",
            image_size=s["res"],
            patch_size=s["patch"],
            d_model=d,
            layers=s["vit_layers"],
            heads=s["heads"],
            pool="mean",
        )
        f = forward_flops(m, x[:1])
        if best is None or abs(f - target) < abs(best[1] - target):
            best = (m, f)
        if f > target:
            break
    return best


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    torch.manual_seed(ctx.seeds[0])
    gen = torch.Generator().manual_seed(ctx.seeds[0])
    dev = ctx.device
    x = torch.randn(s["batch"], 1, s["res"], s["res"], generator=gen)  # (B, 1, res, res)
    y = torch.randint(10, (s["batch"],), generator=gen)
    cnn = create_model(
        "cnn", image_size=s["res"], channels=s["cnn_channels"], convs_per_stage=2, pool="max"
    )
    cnn_flops = forward_flops(cnn, x[:1])
    vit, vit_flops = matched_vit(s, cnn_flops, x)
    models = {"cnn": cnn.to(dev), "vit": vit.to(dev)}
    x, y = x.to(dev), y.to(dev)
    if dev.type == "cpu":  # the Trainer's conv layout on the CPU (see archlab.train.trainer)
        models["cnn"] = models["cnn"].to(memory_format=torch.channels_last)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    opts = {k: torch.optim.SGD(m.parameters(), lr=1e-3) for k, m in models.items()}

    def infer(m):
        def fn() -> None:
            with torch.no_grad():
                m(x)
            sync()

        return fn

    def train(k):
        def fn() -> None:
            m = models[k]
            m.train()
            opts[k].zero_grad(set_to_none=True)
            F.cross_entropy(m(x), y).backward()
            opts[k].step()
            sync()

        return fn

    threads = torch.get_num_threads()
    thread_counts = [1, threads] if dev.type == "cpu" and threads > 1 else [threads]
    bar = ctx.progress(total=2 * len(thread_counts), desc="images/s")
    out: dict[str, Any] = {}
    try:
        for th in thread_counts:
            torch.set_num_threads(th)
            for mode, make in (("inference", lambda k: infer(models[k])), ("training", train)):
                for m in models.values():
                    m.train(mode == "training")
                t = sweep_times([make("cnn"), make("vit")], s["repeats"], s["inner"])  # [rep][2]
                out.setdefault(str(th), {})[mode] = {
                    "seconds": t,
                    "vit_over_cnn_images_per_s": [r[0] / r[1] for r in t],
                }
                bar.update()
    finally:
        torch.set_num_threads(threads)
        bar.close()
    return {
        "res": s["res"],
        "batch": s["batch"],
        "threads": thread_counts,
        "device": str(dev),
        "cnn_flops": cnn_flops,
        "vit_flops": vit_flops,
        "flops_ratio": vit_flops / cnn_flops,
        "vit_d_model": vit.config.d_model,
        "vit_layers": vit.config.layers,
        "patch": s["patch"],
        "cnn_channels": list(s["cnn_channels"]),
        "params": {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()},
        "timing": out,
    }


def verdict(m: Mapping[str, Any]) -> Verdict:
    th = m["threads"]
    top = m["timing"][str(th[-1])]["training"]["vit_over_cnn_images_per_s"]
    ratio = mean_effect(
        top, "ViT / CNN training images per second at matched FLOPs", "×", "repeats"
    )
    checks: dict[str, Any] = {
        "positive_control": "n/a",
        "device": m["device"],
        "threads": th[-1],
        "flops_ratio": round(m["flops_ratio"], 3),
    }
    facts = (
        f"ViT / CNN training images per second at matched forward FLOPs ({m['cnn_flops']:,} vs "
        f"{m['vit_flops']:,} per image): {fmt_ci(ratio, 2)} on {m['device']} with {th[-1]} "
        "thread(s). Both process every position of a layer at once: convolution is as parallel "
        "as attention, neither has the RNN's step-by-step recurrence"
    )
    if m["device"].startswith("cuda"):
        effect, decided = ratio, side(ratio, 1.0)
        checks["timing"] = "decided on a GPU"
    elif len(th) > 1:
        one = m["timing"]["1"]["training"]["vit_over_cnn_images_per_s"]
        effect = paired(
            top, one, f"change of the ViT/CNN ratio from 1 to {th[-1]} threads", "×", "repeats"
        )
        facts += f"; from 1 to {th[-1]} threads the ratio changes by {fmt_ci(effect, 2)}"
        decided = 1 if side(effect) > 0 and side(ratio, 1.0) > 0 else 0
        checks["timing"] = "decided" if decided else "inconclusive: needs other hardware"
    else:
        effect, decided = ratio, 0
        checks["timing"] = "inconclusive: needs other hardware"
    if decided > 0:
        return Verdict(
            "supported",
            "Supported: at matched FLOPs the ViT trains on more images "
            f"per second than the CNN on {m['device']}.",
            facts,
            effect,
            checks,
            literature("dosovitskiy2020", True),
        )
    if decided < 0:
        return Verdict(
            "contradicted",
            "Contradicted: at matched FLOPs the ViT trains on fewer "
            f"images per second than the CNN on {m['device']}.",
            facts,
            effect,
            checks,
            literature("dosovitskiy2020", False),
        )
    return Verdict(
        "inconclusive",
        "Inconclusive (needs other hardware): both architectures are parallel over positions; "
        "whether attention trains faster than convolution at equal FLOPs is a property of the "
        f"hardware, and this one ({m['device']}, {th[-1]} thread(s)) cannot show it.",
        facts,
        effect,
        checks,
        literature("dosovitskiy2020", None),
        why_inconclusive="needs other hardware",
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    rows = []
    for th in m["threads"]:
        for mode in ("training", "inference"):
            r = mean_std(m["timing"][str(th)][mode]["vit_over_cnn_images_per_s"])
            rows.append(
                [th, mode, f"{r['mean']:.2f} ± {r['std']:.2f}", f"{r['min']:.2f}–{r['max']:.2f}"]
            )
    return [
        Table(
            "Models at matched forward FLOPs (FlopCounterMode, per image)",
            ["model", "config", "params", "forward FLOPs"],
            [
                [
                    "CNN",
                    f"channels {m['cnn_channels']}, 2 convs/stage, max-pool",
                    m["params"]["cnn"],
                    m["cnn_flops"],
                ],
                [
                    "ViT",
                    f"d = {m['vit_d_model']}, {m['vit_layers']} layers, patch {m['patch']}",
                    m["params"]["vit"],
                    m["vit_flops"],
                ],
            ],
        ),
        Table(
            f"Throughput ratio ViT / CNN (images per second, batch {m['batch']}, {m['res']} px; "
            "mean ± std over interleaved repeats)",
            ["threads", "mode", "ratio", "min–max"],
            rows,
        ),
    ]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (ax,) = subplots(width=5.5, height=3.4)
    labels, r = [], []
    for th in m["threads"]:
        for k in ("training", "inference"):
            labels.append(f"{k}\n{th} thread(s)")
            r.append(mean_std(m["timing"][str(th)][k]["vit_over_cnn_images_per_s"]))
    ax.bar(
        labels,
        [v["mean"] for v in r],
        yerr=[v["std"] for v in r],
        capsize=4,
        color=["#4c72b0", "#55a868"] * len(m["threads"]),
    )
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_ylabel("ViT images/s ÷ CNN images/s")
    ax.set_title(f"Matched FLOPs (ViT/CNN = {m['flops_ratio']:.2f}), {m['device']}")
    return to_png(fig)


CLAIM = register_claim(
    Claim(
        id="V4",
        part=2,
        title="Parallel processing",
        subject="Transformer",
        seed_quote=QUOTE,
        method=lambda m: (
            f"Builds a CNN (channels {m['cnn_channels']}, 2 convs per stage, max-pool) and picks "
            "the ViT width whose forward FLOPs (FlopCounterMode) match it, then measures images "
            "per second for inference and for a training step (forward, backward, SGD update), "
            f"the two models interleaved over repeats, at {m['res']} px, batch {m['batch']}, on "
            f"{m['device']} with {' and '.join(map(str, m['threads']))} thread(s); only ratios "
            "are reported."
        ),
        sizes={
            "tiny": {
                "res": 8,
                "patch": 2,
                "cnn_channels": (4, 8),
                "vit_layers": 1,
                "heads": 2,
                "batch": 4,
                "repeats": 2,
                "inner": 1,
            },
            "quick": {
                "res": 14,
                "patch": 2,
                "cnn_channels": (32, 64, 128),
                "vit_layers": 6,
                "heads": 4,
                "batch": 32,
                "repeats": 3,
                "inner": 2,
            },
            "standard": {
                "res": 14,
                "patch": 2,
                "cnn_channels": (32, 64, 128),
                "vit_layers": 6,
                "heads": 4,
                "batch": 32,
                "repeats": 5,
                "inner": 2,
            },
            "full": {
                "res": 28,
                "patch": 4,
                "cnn_channels": (32, 64, 128),
                "vit_layers": 6,
                "heads": 4,
                "batch": 128,
                "repeats": 5,
                "inner": 3,
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
