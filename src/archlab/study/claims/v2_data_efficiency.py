"""V2: without CNN-like inductive biases, Transformers need more data to learn images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.context import StudyContext
from archlab.study.imagetrain import ARCH_LABELS, image_run, run_sizes
from archlab.study.measure import mean_std
from archlab.study.plots import band, subplots, to_png

QUOTE = (
    "Unlike CNNs, which have built-in biases towards capturing local patterns and hierarchies, "
    "Transformers lack these inductive biases, making them potentially less efficient at learning "
    "spatial hierarchies from scratch without sufficient data and computational power."
)
ARCHS = ("cnn", "vit")


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    sizes = s["train_sizes"]
    bar = ctx.progress(total=len(ARCHS) * len(sizes) * len(ctx.seeds) * s["steps"], desc="train")
    acc: dict[str, list[list[float]]] = {a: [] for a in ARCHS}  # [size][seed]
    secs: dict[str, list[float]] = {a: [] for a in ARCHS}
    used = []
    for n in sizes:
        for arch in ARCHS:
            runs = [image_run(arch, seed, s, train_size=n, bar=bar) for seed in ctx.seeds]
            acc[arch].append([r["test_acc"] for r in runs])
            secs[arch] += [r["train_s"] for r in runs]
        used.append(runs[0]["train_images"])
    bar.close()
    gaps = [[c - v for c, v in zip(acc["cnn"][i], acc["vit"][i], strict=True)]
            for i in range(len(sizes))]  # fmt: skip
    logn = np.log10(used)
    slopes = [float(np.polyfit(logn, [g[k] for g in gaps], 1)[0]) for k in range(len(ctx.seeds))]
    return {
        "train_images": used, "steps": s["steps"], "batch": s["batch"],
        "epochs": [s["steps"] * s["batch"] / n for n in used],
        "acc": {a: [mean_std(v) for v in acc[a]] for a in ARCHS},
        "gap": [mean_std(g) for g in gaps], "gap_slope_per_decade": mean_std(slopes),
        "params": {a: image_run(a, ctx.seeds[0], s)["params"] for a in ARCHS},
        "timing": {"vit_over_cnn_train_s": sum(secs["vit"]) / sum(secs["cnn"])},
        "data": image_run("cnn", ctx.seeds[0], s)["data"],
    }  # fmt: skip


def verdict(m: Mapping[str, Any]) -> Verdict:
    g0, g1 = m["gap"][0], m["gap"][-1]
    slope = m["gap_slope_per_decade"]
    n0, n1 = m["train_images"][0], m["train_images"][-1]
    facts = (f"CNN − ViT test accuracy: {g0['mean']:+.3f} ± {g0['std']:.3f} at {n0:,} images, "
             f"{g1['mean']:+.3f} ± {g1['std']:.3f} at {n1:,}; trend {slope['mean']:+.3f} ± "
             f"{slope['std']:.3f} per tenfold data (same {m['steps']} steps × {m['batch']} for all)")  # fmt: skip
    if g0["mean"] <= 0:
        return Verdict(
            "not supported", f"the ViT is as accurate as the CNN with little data: {facts}"
        )
    if slope["mean"] < 0 and g1["mean"] < g0["mean"]:
        return Verdict("supported", f"the CNN's lead is largest with the least data and shrinks as "
                       f"data grows: {facts}")  # fmt: skip
    return Verdict(
        "conditional",
        condition=f"the CNN leads at every size tested but the gap does not close up to {n1:,} "
        "images — at this step budget the ViT is short of compute as much as of data",
        reason=facts,
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    rows = []
    for i, n in enumerate(m["train_images"]):
        c, v, g = m["acc"]["cnn"][i], m["acc"]["vit"][i], m["gap"][i]
        rows.append([n, m["epochs"][i], f"{c['mean']:.3f} ± {c['std']:.3f}",
                     f"{v['mean']:.3f} ± {v['std']:.3f}", f"{g['mean']:+.3f} ± {g['std']:.3f}"])  # fmt: skip
    return [Table(f"Test accuracy vs training images ({m['data']['dataset']}, {m['data']['res']} px; "
                  f"CNN {m['params']['cnn']:,} params, ViT {m['params']['vit']:,}; ViT/CNN training "
                  f"time ratio {m['timing']['vit_over_cnn_train_s']:.1f}×)",
                  ["training images", "epochs", "CNN", "ViT", "gap CNN − ViT"], rows)]  # fmt: skip


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (a1, a2) = subplots(2, width=5)
    for a in ARCHS:
        band(a1, m["train_images"], m["acc"][a], ARCH_LABELS[a])
    band(a2, m["train_images"], m["gap"], "CNN − ViT", color="C3")
    a2.axhline(0, color="k", lw=0.8)
    for ax, yl, t in ((a1, "test accuracy", "Accuracy vs data (same steps)"),
                      (a2, "accuracy gap", "CNN lead vs data")):  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("training images")
        ax.set_ylabel(yl)
        ax.set_title(t)
        ax.legend(fontsize=8)
    return to_png(fig)


def _sizes(profile: str, train_sizes: list[int | None]) -> dict[str, Any]:
    base = run_sizes(profile)
    if base["train_size"] not in train_sizes:
        raise ValueError("train_sizes: must contain the shared run's train_size (reused runs)")
    return {**base, "train_sizes": train_sizes}


CLAIM = register_claim(
    Claim(
        id="V2",
        part=2,
        title="Inductive bias and data efficiency",
        subject="Transformer",
        seed_quote=QUOTE,
        method="Trains the CNN and the ViT on nested, class-balanced training subsets of growing "
        "size with the same budget (steps × batch, AdamW, no augmentation), 3 seeds each, and "
        "tracks the CNN − ViT test-accuracy gap and its trend per tenfold data (a least-squares "
        "slope per seed). The claim predicts a gap that is largest with little data and closes "
        "with more. Quick: 14 px, 500, 1,500 and 4,000 images, 300 steps; full: 28 px, four "
        "sizes from 500 to all 60,000, 3,000 steps (what ‘sufficient data’ needs — ImageNet-scale — is out of reach on a CPU).",
        sizes={
            "tiny": _sizes("tiny", [60, 300]),
            "quick": _sizes("quick", [500, 1500, 4000]),
            "full": _sizes("full", [500, 2000, 8000, None]),
        },  # fmt: skip
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        trains=True,
        spread="mean ± std over seeds (gap paired by seed); bands min–max",
    ),  # fmt: skip
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]
