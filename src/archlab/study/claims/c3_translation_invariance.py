"""C3: CNNs are designed to be translation-invariant."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.context import StudyContext
from archlab.study.imagetrain import ARCH_LABELS, image_run, load_images, predict, run_sizes
from archlab.study.measure import mean_std
from archlab.study.plots import band, subplots, to_png

QUOTE = (
    "Designed to be translation-invariant, meaning the network can recognize objects regardless of "
    "their position in the image. This property is crucial for robust image classification."
)
ARCHS = ("cnn", "cnn-circular", "vit")
MODES = ("circular", "zero-fill")
EXACT = 0.99  # consistency at or above this at every shift counts as invariant


def shift(x: torch.Tensor, dy: int, dx: int, mode: str, fill: float = 0.0) -> torch.Tensor:
    """Translate images (N, C, H, W) by (dy, dx) px: ``circular`` wraps around (torch.roll, the
    symmetry a circular stride-1 CNN respects exactly); ``zero-fill`` moves the content and fills
    the uncovered border with ``fill`` (the background value), cropping what leaves the frame."""
    if mode == "circular":
        return torch.roll(x, shifts=(dy, dx), dims=(-2, -1))
    if mode != "zero-fill":
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    H, W = x.shape[-2:]
    p = max(abs(dy), abs(dx))
    padded = F.pad(x, (p, p, p, p), value=fill)  # (N, C, H+2p, W+2p)
    return padded[..., p - dy : p - dy + H, p - dx : p - dx + W]  # (N, C, H, W)


def shift_each(x: torch.Tensor, offsets: torch.Tensor, mode: str, fill: float) -> torch.Tensor:
    """Shift image i by ``offsets[i] = (dy, dx)``, grouping images that share an offset."""
    out = torch.empty_like(x)
    for o in torch.unique(offsets, dim=0):
        sel = (offsets == o).all(dim=1)
        out[sel] = shift(x[sel], int(o[0]), int(o[1]), mode, fill)
    return out


def consistency(model, x: torch.Tensor, y: torch.Tensor, max_shift: int, mode: str, fill: float,
                gen: torch.Generator) -> dict[str, float]:  # fmt: skip
    """Zhang 2019 (Making CNNs shift-invariant again, §4.1): the fraction of images whose top-1
    class is the same under two random shifts, each offset uniform in [-s, s]² px; and the accuracy
    under the first shift."""
    o1 = torch.randint(-max_shift, max_shift + 1, (len(x), 2), generator=gen)
    o2 = torch.randint(-max_shift, max_shift + 1, (len(x), 2), generator=gen)
    p1 = predict(model, shift_each(x, o1, mode, fill))
    p2 = predict(model, shift_each(x, o2, mode, fill))
    return {"consistency": float((p1 == p2).float().mean()), "acc": float((p1 == y).float().mean())}


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    data = load_images(s["res"], s["test_size"])
    x, y = data.test_x[: s["eval_images"]], data.test_y[: s["eval_images"]]
    fill = float(data.train_x.min())  # a black pixel after normalization
    bar = ctx.progress(total=len(ARCHS) * len(ctx.seeds) * s["steps"], desc="train/shift")
    models: dict[str, Any] = {}
    for arch in ARCHS:
        per_seed: dict[str, list] = {"clean": [], **{m: [] for m in MODES}}
        for seed in ctx.seeds:
            r = image_run(arch, seed, s, bar=bar)
            per_seed["clean"].append(float((predict(r["model"], x) == y).float().mean()))
            for mode in MODES:
                gen = torch.Generator().manual_seed(30_000 + seed)
                per_seed[mode].append([consistency(r["model"], x, y, k, mode, fill, gen)
                                       for k in s["shifts"]])  # fmt: skip
        models[arch] = {"params": r["params"], "clean_acc": mean_std(per_seed["clean"])}
        for mode in MODES:
            models[arch][mode] = {
                q: [mean_std([run_[j][q] for run_ in per_seed[mode]]) for j in range(len(s["shifts"]))]
                for q in ("consistency", "acc")
            }  # fmt: skip
    bar.close()
    return {"shifts": s["shifts"], "models": models, "eval_images": len(x), "data": data.desc,
            "steps": s["steps"]}  # fmt: skip


def _worst(m: Mapping[str, Any], arch: str, mode: str) -> float:
    return min(c["mean"] for c in m["models"][arch][mode]["consistency"])


def verdict(m: Mapping[str, Any]) -> Verdict:
    cnn_z, cnn_c = _worst(m, "cnn", "zero-fill"), _worst(m, "cnn", "circular")
    circ_c, circ_z = _worst(m, "cnn-circular", "circular"), _worst(m, "cnn-circular", "zero-fill")
    vit_z = _worst(m, "vit", "zero-fill")
    facts = (f"lowest consistency over shifts of {m['shifts'][0]}–{m['shifts'][-1]} px (mean of "
             f"seeds): max-pool CNN {cnn_z:.3f} (zero-fill) / {cnn_c:.3f} (circular); stride-1 "
             f"circular GAP CNN {circ_z:.3f} / {circ_c:.3f}; ViT {vit_z:.3f} (zero-fill)")  # fmt: skip
    if cnn_z >= EXACT:
        return Verdict(
            "supported", f"even the pooled CNN keeps its prediction under shifts: {facts}"
        )
    if circ_c >= EXACT:
        first = m["models"]["cnn"]["zero-fill"]["consistency"][0]["mean"]
        return Verdict(
            "conditional",
            condition=f"exact only by design choice — a stride-1, circularly padded CNN with global "
            f"average pooling keeps {circ_c:.1%} of predictions under circular shifts; with "
            f"max-pooling {1 - first:.0%} of predictions change under shifts of ≤{m['shifts'][0]} px "
            f"and {1 - cnn_z:.0%} under ≤{m['shifts'][-1]} px (Zhang 2019: pooling and striding "
            "alias)",
            reason=f"{facts}. Convolutions are translation-equivariant; invariance comes from "
            "global pooling and is broken by subsampling. The ViT, with learned absolute positions, "
            "has no such symmetry.",
        )
    return Verdict(
        "not supported", f"no CNN variant tested kept its predictions under shifts: {facts}"
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    rows = []
    for arch, d in m["models"].items():
        for mode in MODES:
            rows.append([ARCH_LABELS[arch], mode, f"{d['clean_acc']['mean']:.3f}"]
                        + [f"{c['mean']:.3f} ± {c['std']:.3f}" for c in d[mode]["consistency"]]
                        + [f"{a['mean']:.3f}" for a in d[mode]["acc"]])  # fmt: skip
    cols = ["model", "shift", "clean acc."] + [f"consistency ≤{k}px" for k in m["shifts"]]
    cols += [f"acc. ≤{k}px" for k in m["shifts"]]
    return [Table(f"Prediction consistency under two random shifts (Zhang 2019), {m['eval_images']} "
                  "test images, mean ± std over seeds", cols, rows)]  # fmt: skip


def figure(m: Mapping[str, Any]) -> bytes:
    fig, axes = subplots(2, width=5)
    for ax, mode in zip(axes, MODES, strict=True):
        for arch, d in m["models"].items():
            band(ax, m["shifts"], d[mode]["consistency"], ARCH_LABELS[arch])
        ax.set_xlabel("maximum shift (px)")
        ax.set_ylabel("consistency (same top-1 under two shifts)")
        ax.set_title(f"{mode} shifts (band: min–max over seeds)")
        ax.set_xticks(m["shifts"])
        ax.legend(fontsize=8)
    return to_png(fig)


CLAIM = register_claim(
    Claim(
        id="C3",
        part=2,
        title="Translation invariance",
        subject="CNN",
        seed_quote=QUOTE,
        method="Takes the shared trained models (a CNN with 2×2 max-pooling, a stride-1 CNN with "
        "circular padding and global average pooling, a ViT; 3 seeds, no shift augmentation) and "
        "measures, for maximum shifts of 1–4 px, prediction consistency: the fraction of test images "
        "whose top-1 class is the same under two independent random shifts (Zhang 2019), plus the "
        "accuracy under shift. Shifts are circular (the exact symmetry of a circular convolution) "
        "and zero-filled (content moves, the border is background). Quick: 14 px images (a 4 px "
        "shift is 29% of the frame); full: 28 px and 2,000 test images.",
        sizes={
            "tiny": run_sizes("tiny", shifts=[1, 2], eval_images=64),
            "quick": run_sizes("quick", shifts=[1, 2, 3, 4], eval_images=300),
            "full": run_sizes("full", shifts=[1, 2, 3, 4], eval_images=2000),
        },  # fmt: skip
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        trains=True,
        spread="mean ± std over seeds (sample std); bands min–max",
    ),  # fmt: skip
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]
