"""V4 (Part 2): self-attention processes patches in parallel, so a ViT trains faster than a CNN."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from archlab.models import create_model
from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.context import StudyContext
from archlab.study.measure import mean_std, sweep_times
from archlab.study.nets import n_params
from archlab.study.plots import band, subplots, to_png

QUOTE = (
    "Self-attention mechanism enables parallel processing of the input data, leading to "
    "potentially faster training times, especially on modern hardware designed to accelerate such "
    "computations."
)
MARGIN = 0.1  # throughput ratios within 1 ± MARGIN count as a tie


def forward_flops(model: torch.nn.Module, image: int) -> int:
    """Forward FLOPs of one image (FlopCounterMode; 2 per multiply-add). Attention runs on the math
    backend while counting, because the counter has no rule for the fused CPU kernel."""
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 1, image, image))
    return counter.get_total_flops()


def _vit(s: Mapping[str, Any], d: int):
    return create_model(
        "vit",
        image_size=s["image"],
        patch_size=s["patch"],
        d_model=d,
        layers=s["vit_layers"],
        heads=4,
    )


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    torch.manual_seed(ctx.seeds[0])
    cnn = create_model("cnn", channels=tuple(s["cnn_channels"]), image_size=s["image"])
    target = forward_flops(cnn, s["image"])
    # the ViT width (multiple of 4 heads) whose forward FLOPs are closest to the CNN's
    d = min(range(4, 257, 4), key=lambda w: abs(forward_flops(_vit(s, w), s["image"]) - target))
    torch.manual_seed(ctx.seeds[0])
    models = {"cnn": cnn, "vit": _vit(s, d)}
    gen = torch.Generator().manual_seed(ctx.seeds[0])
    bar = ctx.progress(total=len(models), desc="images/s at matched FLOPs")
    times = {}
    for name, model in models.items():
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

        def make(b: int, model=model, opt=opt):
            x = torch.randn(b, 1, s["image"], s["image"], generator=gen)  # (B, 1, H, W)
            y = torch.randint(10, (b,), generator=gen)

            def step() -> None:
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            return step

        times[name] = sweep_times([make(b) for b in s["batches"]], s["passes"], s["inner"])
        bar.update()
    bar.close()
    ratio = [
        mean_std([times["cnn"][p][j] / times["vit"][p][j] for p in range(s["passes"])])
        for j in range(len(s["batches"]))
    ]  # ViT images/s over CNN images/s = CNN time / ViT time
    return {
        "device": str(ctx.device),
        "threads": torch.get_num_threads(),
        "batches": s["batches"],
        "flops": {"cnn": target, "vit": forward_flops(models["vit"], s["image"])},
        "params": {k: n_params(m) for k, m in models.items()},
        "vit_d_model": d,
        "timing": {"step_s": times, "vit_over_cnn_images_per_s": ratio},
    }


def verdict(m: Mapping[str, Any]) -> Verdict:
    r = [x["mean"] for x in m["timing"]["vit_over_cnn_images_per_s"]]
    where = f"{m['device']}, {m['threads']} thread(s)"
    facts = (
        f"at matched forward FLOPs (CNN {m['flops']['cnn']:,}, ViT {m['flops']['vit']:,} per "
        f"image) the ViT trains " + ", ".join(f"{x:.2f}×" for x in r) + " the CNN's images/s "
        "at batch " + ", ".join(map(str, m["batches"])) + f" on {where}."
    )
    if min(r) >= 1 + MARGIN:
        return Verdict("supported", facts)
    if max(r) <= 1 - MARGIN:
        return Verdict(
            "conditional",
            condition=f"not on {where}: the ViT is slower per image "
            f"({min(r):.2f}–{max(r):.2f}× the CNN's throughput); the sheet's 'modern "
            "hardware' (GPUs) is not measured here",
            reason=facts,
        )
    return Verdict(
        "conditional",
        condition=f"on {where} neither is consistently faster per image "
        f"at matched FLOPs ({min(r):.2f}–{max(r):.2f}×)",
        reason=facts,
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    rows = [
        [b, f"{x['mean']:.2f} ± {x['std']:.2f}"]
        for b, x in zip(m["batches"], m["timing"]["vit_over_cnn_images_per_s"], strict=True)
    ]
    return [
        Table(
            "Models at matched forward FLOPs",
            ["model", "params", "forward FLOPs / image"],
            [
                ["CNN", m["params"]["cnn"], m["flops"]["cnn"]],
                [f"ViT (d_model {m['vit_d_model']})", m["params"]["vit"], m["flops"]["vit"]],
            ],
        ),
        Table(
            "ViT / CNN training throughput (images/s), mean ± std over passes",
            ["batch", "ViT / CNN"],
            rows,
        ),
    ]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (ax,) = subplots(width=5.5)
    band(ax, m["batches"], m["timing"]["vit_over_cnn_images_per_s"], "ViT / CNN images/s")
    ax.axhline(1, color="gray", ls="--", lw=1)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("batch size")
    ax.set_ylabel("throughput ratio")
    ax.set_title("Training throughput at matched FLOPs")
    ax.legend(fontsize=8)
    return to_png(fig)


CLAIM = register_claim(
    Claim(
        id="V4",
        part=2,
        title="Parallel processing of images",
        subject="Transformer (vision)",
        seed_quote=QUOTE,
        method="The project's CNN and ViT (archlab.models) on 1-channel images, the ViT's width "
        "chosen so its forward FLOPs (FlopCounterMode) match the CNN's; the time of a full "
        "training step (forward, backward, AdamW) is measured at several batch sizes "
        "(interleaved passes, min of repeated calls) and reported as a throughput ratio.",
        sizes={
            "tiny": {
                "image": 12,
                "patch": 4,
                "cnn_channels": [4, 8],
                "vit_layers": 1,
                "batches": [2, 4],
                "passes": 2,
                "inner": 1,
            },
            "quick": {
                "image": 28,
                "patch": 4,
                "cnn_channels": [16, 32, 64],
                "vit_layers": 2,
                "batches": [8, 32],
                "passes": 3,
                "inner": 2,
            },
            "full": {
                "image": 28,
                "patch": 4,
                "cnn_channels": [32, 64, 128],
                "vit_layers": 6,
                "batches": [16, 64, 256],
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
