"""C3: CNNs are designed to be translation-invariant.

Every model of the image pool sees its 28 px object on a 32 px black canvas (data.CANVAS), so the
object can move by up to 2 px in each direction without any of it being cut: a shift is then an
exact ``torch.roll`` of the canvas. For each test image the top-1 class is read at all 25 offsets
(dx, dy in −2…2); consistency is the probability that two offsets agree (Zhang 2019's measure,
over all pairs), and accuracy is averaged over the offsets. Models: the CNN with 2×2 max-pooling,
the same CNN with anti-aliased MaxBlurPool (Zhang 2019), and the ViT; none saw shifted training
images. The effect is the seed-paired consistency of the max-pool CNN minus the ViT's.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.claims._common import fmt_ci, literature, undertrained
from archlab.study.context import StudyContext
from archlab.study.measure import mean_std
from archlab.study.plots import band, subplots, to_png
from archlab.study.pools import IMAGE, IMAGE_CONTROL, LABEL, image_fit
from archlab.study.stats import paired, side

QUOTE = (
    "Designed to be translation-invariant, meaning the network can recognize objects regardless "
    "of their position in the image. This property is crucial for robust image classification."
)
MODELS = ("cnn", "cnn-blur", "vit")
INVARIANT = 0.99  # consistency at or above this counts as invariant


@torch.no_grad()
def shifted_predictions(model, x: torch.Tensor, max_shift: int, batch: int = 500) -> torch.Tensor:
    """Top-1 class of every image at every offset: (offsets, N), offsets in row-major order over
    dy, dx in -max_shift..max_shift."""
    model.eval()
    dev = next(model.parameters()).device
    out = []
    for dy in range(-max_shift, max_shift + 1):
        for dx in range(-max_shift, max_shift + 1):
            xs = torch.roll(x, shifts=(dy, dx), dims=(-2, -1))  # (N, C, H, W); nothing cut
            preds = [
                model(xs[i : i + batch].to(dev)).argmax(-1).cpu() for i in range(0, len(xs), batch)
            ]
            out.append(torch.cat(preds))
    return torch.stack(out)


def consistency(preds: torch.Tensor, classes: int) -> list[float]:
    """Per max shift s (1..S): P(two offsets within ±s agree), averaged over images."""
    offsets = preds.shape[0]
    S = (int(round(offsets**0.5)) - 1) // 2
    grid = [(dy, dx) for dy in range(-S, S + 1) for dx in range(-S, S + 1)]
    out = []
    for s in range(1, S + 1):
        keep = [i for i, (dy, dx) in enumerate(grid) if abs(dy) <= s and abs(dx) <= s]
        p = torch.nn.functional.one_hot(preds[keep], classes).float().mean(0)  # (N, K)
        out.append(float((p**2).sum(-1).mean()))  # Σ_c p_c²: agreement of two random offsets
    return out


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    images = ctx.images()
    x = images.normalize(images.test_x[: s["eval_images"]])
    y = images.test_y[: s["eval_images"]]
    # A roll by at most the canvas margin moves background into background: an exact shift.
    K = len(images.classes)
    bar = ctx.progress(total=len(MODELS) * len(ctx.seeds), desc="shift consistency")
    out: dict[str, Any] = {}
    for arch in MODELS:
        rows = {"clean_acc": [], "consistency": [], "shift_acc": []}
        for seed in ctx.seeds:
            f = image_fit(ctx, arch, seed, s["pool"])
            preds = shifted_predictions(f.model, x, s["max_shift"])
            rows["clean_acc"].append(float(f.final["accuracy"]))
            rows["consistency"].append(consistency(preds, K))
            rows["shift_acc"].append(float((preds == y).float().mean()))
            bar.update()
        out[arch] = rows
    bar.close()
    return {
        "models": out,
        "max_shift": s["max_shift"],
        "eval_images": len(y),
        "canvas": images.desc["canvas"],
        "control": dict(IMAGE_CONTROL),
        "steps": s["pool"]["steps"],
        "data": images.desc["source"],
    }


def verdict(m: Mapping[str, Any]) -> Verdict:
    r = m["models"]
    far = -1
    cons = {a: [c[far] for c in r[a]["consistency"]] for a in MODELS}
    effect = paired(
        cons["cnn"],
        cons["vit"],
        f"consistency under ±{m['max_shift']} px shifts, max-pool CNN − ViT",
    )
    blur = paired(cons["cnn-blur"], cons["cnn"], "BlurPool − max-pool CNN consistency")
    acc = {a: float(np.mean(r[a]["clean_acc"])) for a in MODELS}
    failed = [a for a in MODELS if acc[a] < m["control"][a]]
    control = "fail" if failed else "pass"
    ctrl = ", ".join(f"{LABEL[a]} {acc[a]:.3f} (≥ {m['control'][a]:.2f})" for a in MODELS)
    mean = {a: float(np.mean(cons[a])) for a in MODELS}
    checks = {
        "positive_control": control,
        "blurpool_minus_maxpool": round(blur.value, 4),
        "blurpool_helps": side(blur) > 0,
        "object_never_cut": True,
    }
    facts = (
        f"probability that two shifts of ≤ {m['max_shift']} px give the same top-1 class: "
        + ", ".join(f"{LABEL[a]} {mean[a]:.3f}" for a in MODELS)
        + f"; CNN − ViT {fmt_ci(effect)}; BlurPool − max-pool {fmt_ci(blur)}. Accuracy over "
        "all shifts: "
        + ", ".join(f"{LABEL[a]} {np.mean(r[a]['shift_acc']):.3f}" for a in MODELS)
        + f". Positive control (unshifted test accuracy): {ctrl}."
    )
    if control == "fail":
        return undertrained("shift consistency", ctrl, effect, checks, "zhang2019")
    s = side(effect)
    if s > 0 and mean["cnn"] >= INVARIANT:
        return Verdict(
            "supported",
            f"Supported: the CNN's prediction survives shifts of up to "
            f"{m['max_shift']} px ({mean['cnn']:.1%} consistent), more than the ViT's.",
            facts,
            effect,
            checks,
            literature("zhang2019", False),
        )
    if s > 0:
        return Verdict(
            "supported within scope",
            f"Supported within scope: the CNN is more shift-consistent than the ViT "
            f"({mean['cnn']:.1%} vs {mean['vit']:.1%}) but not invariant — "
            f"{1 - mean['cnn']:.1%} of shift pairs of ≤ {m['max_shift']} px change its "
            f"prediction; anti-aliased pooling "
            + ("reduces that" if side(blur) > 0 else "does not measurably change that")
            + f" ({mean['cnn-blur']:.1%} consistent). Convolution is equivariant; pooling and "
            "striding alias, so invariance is approximate.",
            facts,
            effect,
            checks,
            literature("zhang2019", True),
            scope=f"approximate invariance ({mean['cnn']:.1%} consistency under ≤ "
            f"{m['max_shift']} px shifts), better than the ViT's",
        )
    if s < 0:
        return Verdict(
            "contradicted",
            "Contradicted: the ViT's predictions are more consistent under shifts than the CNN's.",
            facts,
            effect,
            checks,
            literature("zhang2019", False),
        )
    return Verdict(
        "inconclusive",
        "Inconclusive (within noise): the CNN and the ViT are equally "
        "shift-consistent within the seeds' spread.",
        facts,
        effect,
        checks,
        literature("zhang2019", None),
        why_inconclusive="within noise",
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    rows = []
    for a, d in m["models"].items():
        c = np.asarray(d["consistency"])
        rows.append(
            [LABEL[a], float(np.mean(d["clean_acc"])), float(np.mean(d["shift_acc"]))]
            + [
                f"{c[:, j].mean():.4f} ± {c[:, j].std(ddof=1) if len(c) > 1 else 0:.4f}"
                for j in range(c.shape[1])
            ]
        )
    cols = ["model", "clean acc.", "acc. over shifts"]
    cols += [f"consistency ≤ {k} px" for k in range(1, m["max_shift"] + 1)]
    return [
        Table(
            f"Prediction consistency under shifts on the {m['canvas']} px canvas "
            f"({m['eval_images']:,} test images, every offset pair; mean ± std over seeds)",
            cols,
            rows,
        )
    ]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (ax,) = subplots(width=6, height=4)
    ks = list(range(1, m["max_shift"] + 1))
    for a, d in m["models"].items():
        c = np.asarray(d["consistency"])
        band(ax, ks, [mean_std(c[:, j].tolist()) for j in range(c.shape[1])], LABEL[a])
    ax.set_xlabel("maximum shift (px)")
    ax.set_ylabel("consistency (two shifts, same top-1)")
    ax.set_title("Shifts that cut nothing (band: min–max over seeds)")
    ax.set_xticks(ks)
    ax.legend(fontsize=8)
    return to_png(fig)


def method(m: Mapping[str, Any]) -> str:
    return (
        f"Takes the image pool's max-pool CNN, its BlurPool twin and the ViT (trained "
        f"{m['steps']} steps on {m['data']}, no shift augmentation; "
        f"{len(next(iter(m['models'].values()))['clean_acc'])} seeds) and reads the top-1 class "
        f"of {m['eval_images']:,} test images at every offset of up to ±{m['max_shift']} px on "
        f"the {m['canvas']} px canvas, where the 28 px object never leaves the frame; "
        "consistency is the probability that two offsets agree (Zhang 2019)."
    )


CLAIM = register_claim(
    Claim(
        id="C3",
        part=2,
        title="Translation invariance",
        subject="CNN",
        seed_quote=QUOTE,
        method=method,
        sizes={
            p: {
                "pool": IMAGE[p],
                "max_shift": 1 if p == "tiny" else 2,
                "eval_images": {"tiny": 64, "quick": 500}.get(p, 2000),
            }
            for p in IMAGE
        },
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        trains=True,
        uses=("images",),
        spread="mean ± std over seeds; effect: paired 95% CI; bands min–max",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "consistency", "figure", "run", "tables", "verdict"]
