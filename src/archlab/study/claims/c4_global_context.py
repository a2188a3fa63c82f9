"""C4: a CNN's ability to relate distant parts of an image is limited.

Same or different (:class:`archlab.study.tasks.TwoMarks`): two 4 px marks on a 32 px canvas, d px
apart, horizontally or vertically; is it the same mark twice? Three models are trained on all
distances at once (fresh images every step, ≥ 1,000 steps in the standard profile) through archlab's
Trainer: a shallow CNN whose receptive field (18 px) covers a near pair but not a far one, a deep
CNN whose field (38 px) covers the whole canvas, and a ViT. Both CNNs must first solve the nearest
pairs, whose span lies well inside both fields (positive control: ≥ 0.9); then the far-pair
accuracies decide. The control is not "every pair inside the theoretical field": a unit's effective
field is a Gaussian far narrower than its theoretical one (Luo et al. 2016), so a shallow CNN's
accuracy already falls inside its 18 px field, which is part of the finding. A unit that never sees
both marks cannot compare them after global pooling and a linear head (tasks.TwoMarks), so the
shallow CNN is expected at chance far away; what the claim needs to settle is whether a CNN *whose
field covers the image* also fails (Kim, Ricci & Serre 2018) or not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.claims._common import fmt_ci, literature, undertrained
from archlab.study.context import StudyContext
from archlab.study.measure import mean_std
from archlab.study.plots import band, subplots, to_png
from archlab.study.stats import paired, side
from archlab.study.tasks import TwoMarks
from archlab.study.training import StreamTask, fit, recipe
from archlab.study.vision import receptive_fields

QUOTE = (
    "While CNNs are excellent at identifying local patterns within an image, their ability to "
    "capture global context or the relationship between distant parts of an image is limited. "
    "This limitation can affect performance in complex scenes or tasks requiring a holistic "
    "understanding of the image."
)
MODELS = ("shallow CNN", "deep CNN", "ViT")
CONTROL = 0.9  # both CNNs on the nearest pairs
LEARNT = 0.9  # far-pair accuracy that counts as "relates them"
CHANCE_BAND = 0.6  # at or below: near chance (0.5)


def model_config(name: str, task: TwoMarks) -> tuple[str, dict[str, Any]]:
    size = task.size
    if name == "shallow CNN":
        return "cnn", {
            "image_size": size,
            "num_classes": 2,
            "channels": (16, 32, 32),
            "convs_per_stage": 1,
            "pool": "max",
        }
    if name == "deep CNN":
        return "cnn", {
            "image_size": size,
            "num_classes": 2,
            "channels": (16, 32, 64, 64),
            "convs_per_stage": 1,
            "pool": "max",
        }
    return "vit", {
        "image_size": size,
        "num_classes": 2,
        "patch_size": task.mark,
        "d_model": 64,
        "layers": 2,
        "heads": 4,
        "pool": "mean",
        "mlp_ratio": 2.0,
    }


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    task = TwoMarks(size=s["image"], mark=s["mark"])
    dists = s["distances"]
    eval_gen = torch.Generator().manual_seed(40_000)
    evals = [task.batch(s["eval_per_distance"], [d], eval_gen)[:2] for d in dists]

    def sample(gen: torch.Generator):
        return task.batch(s["batch"], dists, gen)[:2]

    def loss(model, x, y):
        return F.cross_entropy(model(x), y), x.size(0)

    @torch.no_grad()
    def per_distance(model) -> list[float]:
        model.eval()
        dev = next(model.parameters()).device
        return [float((model(x.to(dev)).argmax(-1).cpu() == y).float().mean()) for x, y in evals]

    bar = ctx.progress(total=len(MODELS) * len(ctx.seeds), desc="two marks")
    acc: dict[str, list[list[float]]] = {n: [] for n in MODELS}
    rf: dict[str, int] = {}
    for name in MODELS:
        if name == "ViT" and not all(
            np.mean([a[0] for a in acc[c]]) >= CONTROL for c in ("shallow CNN", "deep CNN")
        ):
            break  # the CNNs failed their near-pair control: nothing to compare the ViT with
        arch, cfg = model_config(name, task)
        for seed in ctx.seeds:
            stream = StreamTask(sample, loss, lambda m: {"near": per_distance(m)[0]}, seed)
            train = recipe(max_steps=s["steps"], batch_size=s["batch"], lr=s["lr"])
            data = {"task": "two-marks", "image": s["image"], "mark": s["mark"], "distances": dists}
            run_id = f"c4-{name.replace(' ', '-').lower()}-s{seed}"
            f = fit(ctx, run_id, arch, cfg, stream, train, seed=seed, data_key=data)
            acc[name].append(per_distance(f.model))
            if arch == "cnn":
                rf[name] = receptive_fields(f.model)[-1]["rf"]
            bar.update()
    bar.close()
    return {
        "distances": dists,
        "span": [task.span(d) for d in dists],
        "mark": s["mark"],
        "image": s["image"],
        "rf": rf,
        "steps": s["steps"],
        "batch": s["batch"],
        "acc": acc,
        "eval_per_distance": s["eval_per_distance"],
        "control": CONTROL,
    }


def split(m: Mapping[str, Any]) -> tuple[list[int], list[int]]:
    """Indices of the distances whose span fits in the shallow CNN's field, and the rest."""
    rf = m["rf"]["shallow CNN"]
    near = [j for j, sp in enumerate(m["span"]) if sp <= rf]
    far = [j for j, sp in enumerate(m["span"]) if sp > rf]
    return near, far


def _per_seed(m: Mapping[str, Any], name: str, idx: list[int]) -> list[float]:
    return [float(np.mean([a[j] for j in idx])) for a in m["acc"][name]]


def verdict(m: Mapping[str, Any]) -> Verdict:
    near, far = split(m)
    rf = m["rf"]
    checks: dict[str, Any] = {
        "positive_control": "n/a",
        "near_distances": len(near),
        "far_distances": len(far),
        "deep_rf_covers_image": rf["deep CNN"] >= m["image"],
    }
    if not near or not far:
        from archlab.study.stats import exact

        e = exact(0.0, "no near/far split")
        return Verdict(
            "inconclusive",
            "Inconclusive (out of range): the distances do not fall "
            f"on both sides of the shallow CNN's {rf['shallow CNN']} px field.",
            "need near and far pairs",
            e,
            checks,
            literature("kim2018", None),
            why_inconclusive="out of range",
        )
    trained = [n for n in MODELS if m["acc"][n]]
    a = {
        n: (float(np.mean(_per_seed(m, n, near))), float(np.mean(_per_seed(m, n, far))))
        for n in trained
    }
    effect = paired(
        _per_seed(m, "deep CNN", far),
        _per_seed(m, "shallow CNN", far),
        "far-pair accuracy, deep CNN − shallow CNN",
    )
    deep = _per_seed(m, "deep CNN", far)
    vit = _per_seed(m, "ViT", far) if m["acc"]["ViT"] else deep  # not trained: no difference
    vit_vs_deep = paired(vit, deep, "far-pair accuracy, ViT − deep CNN")
    nearest = {n: float(np.mean(_per_seed(m, n, [0]))) for n in ("shallow CNN", "deep CNN")}
    control_ok = min(nearest.values()) >= m["control"]
    checks["positive_control"] = "pass" if control_ok else "fail"
    ctrl = (
        f"accuracy on the nearest pairs (span {m['span'][0]} px, ≥ {m['control']}): shallow "
        f"CNN {nearest['shallow CNN']:.2f}, deep CNN {nearest['deep CNN']:.2f}"
    )
    facts = (
        "accuracy on near → far pairs: "
        + "; ".join(f"{n} {v[0]:.2f} → {v[1]:.2f}" for n, v in a.items())
        + f" (chance 0.50; receptive fields: shallow {rf['shallow CNN']} px, deep "
        f"{rf['deep CNN']} px; {m['steps']} steps × {m['batch']} images). Deep − shallow on far "
        f"pairs {fmt_ci(effect)}; ViT − deep {fmt_ci(vit_vs_deep)}. Positive control: {ctrl}."
    )
    if not control_ok:
        return undertrained("relating distant marks", ctrl, effect, checks, "kim2018")
    sh_far, deep_far = a["shallow CNN"][1], a["deep CNN"][1]
    vit_far = a["ViT"][1] if "ViT" in a else float("nan")
    if sh_far >= LEARNT:
        return Verdict(
            "contradicted",
            "Contradicted: even the shallow CNN relates marks beyond its receptive field.",
            facts,
            effect,
            checks,
            literature("kim2018", False),
        )
    if side(effect) > 0 and deep_far >= LEARNT:
        return Verdict(
            "supported within scope",
            f"Supported within scope: a CNN cannot relate regions that none of its units sees "
            f"together — the shallow CNN (field {rf['shallow CNN']} px) is at "
            f"{sh_far:.2f} on far pairs — but the limit is the receptive field, not convolution: "
            f"a deeper CNN whose field ({rf['deep CNN']} px) covers the image relates the same "
            f"marks ({deep_far:.2f}).",
            facts,
            effect,
            checks,
            literature("kim2018", False),
            scope=f"CNNs whose receptive field ({rf['shallow CNN']} px) is smaller than the "
            "distance between the parts",
        )
    if sh_far <= CHANCE_BAND and side(vit_vs_deep) > 0 and vit_far >= LEARNT:
        deep_says = (
            f"both CNNs stay near chance (shallow {sh_far:.2f}, deep {deep_far:.2f}, although "
            "the deep one's field covers the image)"
            if deep_far <= CHANCE_BAND
            else f"the shallow CNN stays near chance ({sh_far:.2f}) and the deep CNN, whose "
            f"field covers the image, relates them only in part ({deep_far:.2f})"
        )
        return Verdict(
            "supported",
            f"Supported: far apart, {deep_says}, while the ViT relates the marks ({vit_far:.2f}).",
            facts,
            vit_vs_deep,
            checks,
            literature("kim2018", True),
        )
    return Verdict(
        "inconclusive",
        "Inconclusive (within noise): at this budget no model clearly "
        "relates the distant marks better than the others.",
        facts,
        effect,
        checks,
        literature("kim2018", None),
        why_inconclusive="within noise",
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    rows = []
    for j, (d, sp) in enumerate(zip(m["distances"], m["span"], strict=True)):
        row = [d, sp]
        for n in MODELS:
            if not m["acc"][n]:
                row.append("not trained")
                continue
            s = mean_std([a[j] for a in m["acc"][n]])
            row.append(f"{s['mean']:.3f} ± {s['std']:.3f}")
        rows.append(row)
    rf = ", ".join(f"{k} {v} px" for k, v in m["rf"].items())
    return [
        Table(
            f"Same/different accuracy vs distance ({m['image']} px canvas, {m['mark']} px "
            f"marks, {m['eval_per_distance']} test images per distance; receptive fields: "
            f"{rf})",
            ["distance (px)", "span (px)", *MODELS],
            rows,
        )
    ]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (ax,) = subplots(width=6.5, height=4)
    for n in MODELS:
        if not m["acc"][n]:
            continue
        stats = [mean_std([a[j] for a in m["acc"][n]]) for j in range(len(m["distances"]))]
        band(ax, m["span"], stats, n)
    for (n, r), c in zip(m["rf"].items(), ("C0", "C1"), strict=False):
        ax.axvline(r, color=c, ls="--", lw=1, label=f"{n} receptive field")
    ax.axhline(0.5, color="gray", lw=0.8, ls=":", label="chance")
    ax.set_xlim(0, m["image"] + 2)
    ax.set_xlabel("span of the two marks (px)")
    ax.set_ylabel("test accuracy (band: min–max over seeds)")
    ax.set_title("Same or different? Two marks at a distance")
    ax.legend(fontsize=8)
    return to_png(fig)


def method(m: Mapping[str, Any]) -> str:
    return (
        f"Two {m['mark']} px binary marks (from 4 random shapes) on a {m['image']} px canvas, d = "
        f"{m['distances']} px apart, horizontally or vertically, with pixel noise: is it the same "
        f"mark twice? A shallow CNN (3 stages, field {m['rf']['shallow CNN']} px), a deep CNN (4 "
        f"stages, field {m['rf']['deep CNN']} px) and a ViT (patch {m['mark']}) are trained on "
        f"all distances at once for {m['steps']} steps × {m['batch']} fresh images through "
        f"archlab's Trainer ({len(m['acc']['shallow CNN'])} seeds) and tested per distance; the "
        "ViT only once both CNNs pass their control on the nearest pairs."
    )


CLAIM = register_claim(
    Claim(
        id="C4",
        part=2,
        title="Limited global context",
        subject="CNN",
        seed_quote=QUOTE,
        method=method,
        sizes={
            "tiny": {
                "image": 32,
                "mark": 4,
                "distances": [4, 20],
                "steps": 6,
                "batch": 16,
                "lr": 3e-3,
                "eval_per_distance": 32,
            },
            "quick": {
                "image": 32,
                "mark": 4,
                "distances": [4, 12, 20, 24],
                "steps": 400,
                "batch": 64,
                "lr": 3e-3,
                "eval_per_distance": 400,
            },
            "standard": {
                "image": 32,
                "mark": 4,
                "distances": [4, 8, 12, 16, 20, 24],
                "steps": 1000,
                "batch": 64,
                "lr": 3e-3,
                "eval_per_distance": 1000,
            },
            "full": {
                "image": 32,
                "mark": 4,
                "distances": [4, 8, 12, 16, 20, 24, 28],
                "steps": 5000,
                "batch": 128,
                "lr": 2e-3,
                "eval_per_distance": 2000,
            },
        },
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        trains=True,
        spread="mean ± std over seeds; effect: paired 95% CI; bands min–max",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "split", "tables", "verdict"]
