"""V4: self-attention processes the input in parallel, so Transformers may train faster."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from archlab.models import create_model
from archlab.models.vit import ViT
from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.context import StudyContext
from archlab.study.measure import mean_std, sweep_times
from archlab.study.plots import subplots, to_png

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
        m = create_model("vit", image_size=s["res"], patch_size=s["patch"], d_model=d,
                         layers=s["vit_layers"], heads=s["heads"], pool="mean")  # fmt: skip
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
    x = torch.randn(s["batch"], 1, s["res"], s["res"], generator=gen)  # (B, 1, res, res)
    y = torch.randint(10, (s["batch"],), generator=gen)
    cnn = create_model("cnn", image_size=s["res"], channels=s["cnn_channels"], convs_per_stage=2,
                       pool="max")  # fmt: skip
    cnn_flops = forward_flops(cnn, x[:1])
    vit, vit_flops = matched_vit(s, cnn_flops, x)
    models = {"cnn": cnn, "vit": vit}
    opts = {k: torch.optim.SGD(m.parameters(), lr=1e-3) for k, m in models.items()}

    def infer(m):
        def fn() -> None:
            with torch.no_grad():
                m(x)

        return fn

    def train(k):
        def fn() -> None:
            m = models[k]
            m.train()
            opts[k].zero_grad(set_to_none=True)
            F.cross_entropy(m(x), y).backward()
            opts[k].step()

        return fn

    bar = ctx.progress(total=2, desc="images/s")
    out: dict[str, Any] = {}
    for mode, make in (("inference", lambda k: infer(models[k])), ("training", train)):
        if mode == "inference":
            for m in models.values():
                m.eval()
        t = sweep_times([make("cnn"), make("vit")], s["repeats"], s["inner"])  # [repeat][model]
        out[mode] = {"seconds": t, "vit_over_cnn_images_per_s": mean_std([r[0] / r[1] for r in t]),
                     "cnn_images_per_s": mean_std([s["batch"] / r[0] for r in t]),
                     "vit_images_per_s": mean_std([s["batch"] / r[1] for r in t])}  # fmt: skip
        bar.update()
    bar.close()
    return {
        "res": s["res"], "batch": s["batch"], "threads": torch.get_num_threads(),
        "device": str(ctx.device), "cnn_flops": cnn_flops, "vit_flops": vit_flops,
        "flops_ratio": vit_flops / cnn_flops, "vit_d_model": vit.config.d_model,
        "vit_layers": vit.config.layers, "patch": s["patch"], "cnn_channels": list(s["cnn_channels"]),
        "params": {k: sum(p.numel() for p in m.parameters()) for k, m in models.items()},
        "timing": out,
    }  # fmt: skip


def verdict(m: Mapping[str, Any]) -> Verdict:
    tr = m["timing"]["training"]["vit_over_cnn_images_per_s"]
    inf = m["timing"]["inference"]["vit_over_cnn_images_per_s"]
    facts = (f"ViT/CNN images per second at matched forward FLOPs ({m['cnn_flops']:,} vs "
             f"{m['vit_flops']:,} per image): training {tr['mean']:.2f} ± {tr['std']:.2f}, "
             f"inference {inf['mean']:.2f} ± {inf['std']:.2f} on {m['device']} with "
             f"{m['threads']} thread(s), batch {m['batch']}. Both architectures process every "
             "position of a layer at once: convolution is as parallel as attention (neither "
             "has the RNN's step-by-step recurrence)")  # fmt: skip
    if tr["mean"] >= FASTER:
        return Verdict("supported", f"the ViT trains faster per image at equal FLOPs: {facts}")
    if tr["mean"] <= SLOWER:
        return Verdict(
            "conditional",
            condition=f"not on this hardware ({m['device']}): at equal FLOPs the ViT trains "
            f"{1 / tr['mean']:.1f}× slower per image than the CNN; any speed-up needs hardware "
            "that runs its matmuls more efficiently than the CNN's convolutions",
            reason=facts,
        )
    return Verdict(
        "conditional",
        condition=f"no faster than a CNN at equal FLOPs on {m['device']} (ratio {tr['mean']:.2f}): "
        "parallelism is shared by both, the gain over RNNs is not a gain over CNNs",
        reason=facts,
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    rows = []
    for mode in ("training", "inference"):
        t = m["timing"][mode]
        r = t["vit_over_cnn_images_per_s"]
        rows.append([mode, f"{r['mean']:.2f} ± {r['std']:.2f}", f"{r['min']:.2f}–{r['max']:.2f}"])
    return [
        Table("Models at matched forward FLOPs (FlopCounterMode, per image)",
              ["model", "config", "params", "forward FLOPs"],
              [["CNN", f"channels {m['cnn_channels']}, 2 convs/stage, max-pool", m["params"]["cnn"],
                m["cnn_flops"]],
               ["ViT", f"d = {m['vit_d_model']}, {m['vit_layers']} layers, patch {m['patch']}",
                m["params"]["vit"], m["vit_flops"]]]),
        Table(f"Throughput ratio ViT / CNN (images per second, batch {m['batch']}, {m['res']} px; "
              "mean ± std over interleaved repeats)", ["mode", "ratio", "min–max"], rows),
    ]  # fmt: skip


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (ax,) = subplots(width=5.5, height=3.4)
    modes = ("training", "inference")
    r = [m["timing"][k]["vit_over_cnn_images_per_s"] for k in modes]
    ax.bar(modes, [v["mean"] for v in r], yerr=[v["std"] for v in r], capsize=4,
           color=["#4c72b0", "#55a868"])  # fmt: skip
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
        method="Builds a CNN (the cnn-fmnist stack: 2 convs per stage, max-pool) and picks the ViT "
        "width whose forward FLOPs (FlopCounterMode) match it, then measures images per second for "
        "inference and for a training step (forward, backward, SGD update) with the two models "
        "interleaved over repeats; only their ratio is reported. Quick: 14 px images (patch 2), "
        "batch 32, on the study's device (CPU here); full: 28 px (patch 4) and batch 128 — run it "
        "on a GPU to test the ‘modern hardware’ part.",
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
        },  # fmt: skip
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        timing_verdict=True,
        spread="mean ± std over timing repeats",
    ),  # fmt: skip
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]
