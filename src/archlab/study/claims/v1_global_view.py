"""V1: self-attention relates any two parts of an image, regardless of their distance.

Two measurements on the image pool's ViT, read only once it has passed its positive control:
(1) reach — the mean attention distance of every head in every layer (Dosovitskiy et al. 2020,
Fig. 7: the attention-weighted pixel distance between query and key patches), against uniform
attention and against the receptive field of the pool's CNN at the same depth; (2) use — an
ablation: the same ViT trained with attention limited to a 3×3 window of patches (local
self-attention). The claim's "global view can lead to a more comprehensive understanding"
predicts the global ViT to be more accurate: the effect is the seed-paired accuracy difference.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from archlab.models import create_model
from archlab.models.vit import mean_attention_distance
from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.claims._common import fmt_ci, literature, undertrained
from archlab.study.context import StudyContext
from archlab.study.plots import subplots, to_png
from archlab.study.pools import IMAGE, IMAGE_CONTROL, image_fit, pool_model
from archlab.study.stats import mean_effect, paired, side
from archlab.study.vision import receptive_fields, uniform_attention_distance, window_mean_distance

QUOTE = (
    "Transformers process entire input sequences (or sets of image patches) simultaneously, "
    "allowing them to capture relationships between any two parts of an image, regardless of their "
    "spatial distance. This global view can lead to a more comprehensive understanding of the "
    "image as a whole."
)


@torch.no_grad()
def attention_distances(model, x: torch.Tensor) -> list[list[float]]:
    """[layer][head] mean attention distance (px) over the images ``x``."""
    model.eval()
    dev = next(model.parameters()).device
    _, attn = model(x.to(dev), return_attn=True)
    return [mean_attention_distance(a, model.config).tolist() for a in attn]


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    images = ctx.images()
    x = images.normalize(images.test_x[: s["eval_images"]])
    bar = ctx.progress(total=2 * len(ctx.seeds), desc="vit: global and local")
    dist, dist_init, acc, acc_local = [], [], [], []
    for seed in ctx.seeds:
        f = image_fit(ctx, "vit", seed, s["pool"])
        acc.append(float(f.final["accuracy"]))
        dist.append(attention_distances(f.model, x))
        name, cfg = pool_model("vit", s["pool"])
        torch.manual_seed(seed)
        dist_init.append(attention_distances(create_model(name, **cfg).to(ctx.device), x))
        bar.update()
    # The ablation is read only for a ViT that learned the task (its positive control): below
    # it, neither model's accuracy says anything about the global view, so it is not trained.
    if float(np.mean(acc)) >= IMAGE_CONTROL["vit"]:
        for seed in ctx.seeds:
            fl = image_fit(ctx, "vit-local", seed, s["pool"])
            acc_local.append(float(fl.final["accuracy"]))
            bar.update()
    bar.close()
    vname, vcfg = pool_model("vit", s["pool"])
    cfg = create_model(vname, **vcfg).config
    name, ccfg = pool_model("cnn", s["pool"])
    cnn_rf = receptive_fields(create_model(name, **ccfg))
    return {
        "layers": cfg.layers,
        "heads": cfg.heads,
        "grid": cfg.grid_size,
        "patch": cfg.patch_size,
        "canvas": images.desc["canvas"],
        "distance": dist,
        "distance_init": dist_init,
        "uniform": uniform_attention_distance(cfg.grid_size, cfg.patch_size),
        "local_window_distance": window_mean_distance(3) * cfg.patch_size,
        "cnn_rf": [r["rf"] for r in cnn_rf],
        "cnn_rf_mean_distance": [window_mean_distance(r["rf"]) for r in cnn_rf],
        "acc": acc,
        "acc_local": acc_local,
        "control": IMAGE_CONTROL["vit"],
        "control_local": IMAGE_CONTROL["vit-local"],
        "eval_images": len(x),
        "steps": s["pool"]["steps"],
        "data": images.desc["source"],
    }


def verdict(m: Mapping[str, Any]) -> Verdict:
    if not m["acc_local"]:  # the ViT failed its control, so the ablation was not trained
        effect = mean_effect(
            m["acc"],
            "ViT test accuracy (the local-attention ablation is "
            "trained only once the ViT passes its control)",
        )
        ctrl = f"ViT {np.mean(m['acc']):.3f} (≥ {m['control']:.2f})"
        checks = {"positive_control": "fail"}
        return undertrained("the ViT's global view", ctrl, effect, checks, "dosovitskiy2020")
    effect = paired(m["acc"], m["acc_local"], "test accuracy, global − local (3×3) attention ViT")
    d = np.asarray(m["distance"])  # (seeds, layers, heads)
    far = d.max(axis=2).mean(0)  # widest head per layer, mean over seeds
    cnn = m["cnn_rf_mean_distance"]
    beyond = [bool(far[i] > cnn[i]) for i in range(min(len(far), len(cnn)))]
    acc, acc_l = float(np.mean(m["acc"])), float(np.mean(m["acc_local"]))
    ok = acc >= m["control"] and acc_l >= m["control_local"]
    ctrl = (
        f"ViT {acc:.3f} (≥ {m['control']:.2f}), local ViT {acc_l:.3f} (≥ {m['control_local']:.2f})"
    )
    checks = {
        "positive_control": "pass" if ok else "fail",
        "layer1_widest_head_px": round(float(far[0]), 2),
        "uniform_px": round(m["uniform"], 2),
        "heads_look_beyond_cnn_rf": beyond,
    }
    facts = (
        "widest head per layer: "
        + ", ".join(f"layer {i + 1} {far[i]:.1f} px" for i in range(len(far)))
        + f" (uniform attention {m['uniform']:.1f} px; the CNN's receptive field at the same depth "
        + ", ".join(f"{r} px" for r in m["cnn_rf"][: len(far)])
        + f"); accuracy global {acc:.3f} vs local 3×3 window {acc_l:.3f}, difference "
        f"{fmt_ci(effect)}. Positive control: {ctrl}."
    )
    if not ok:
        return undertrained("the ViT's global view", ctrl, effect, checks, "dosovitskiy2020")
    if not beyond[0]:
        return Verdict(
            "contradicted",
            "Contradicted: the trained ViT's first-layer heads look no "
            "farther than a CNN unit at the same depth.",
            facts,
            effect,
            checks,
            literature("dosovitskiy2020", False),
        )
    s = side(effect)
    if s > 0:
        return Verdict(
            "supported",
            f"Supported: already in layer 1 a head attends across the image (mean distance "
            f"{far[0]:.1f} px, {far[0] / m['uniform']:.0%} of uniform attention, where a CNN "
            f"unit sees {m['cnn_rf'][0]} px), and restricting attention to neighbouring patches "
            f"costs accuracy ({fmt_ci(effect)}).",
            facts,
            effect,
            checks,
            literature("dosovitskiy2020", True),
        )
    if s < 0:
        return Verdict(
            "contradicted",
            "Contradicted: the ViT with local attention is more accurate than the global one.",
            facts,
            effect,
            checks,
            literature("dosovitskiy2020", False),
        )
    return Verdict(
        "supported within scope",
        f"Supported within scope: the trained heads do attend across the image from layer 1 on "
        f"({far[0]:.1f} px against the CNN's {m['cnn_rf'][0]} px field), but on this data a ViT "
        f"limited to 3×3 patch windows is as accurate (difference {fmt_ci(effect)}): the global "
        "view is used, a more comprehensive understanding is not measurable here.",
        facts,
        effect,
        checks,
        literature("dosovitskiy2020", True),
        scope="the reach of attention; its benefit for accuracy is within noise on Fashion-MNIST",
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    d = np.asarray(m["distance"])
    d0 = np.asarray(m["distance_init"])
    rows = []
    for i in range(m["layers"]):
        rf = m["cnn_rf"][i] if i < len(m["cnn_rf"]) else None
        rows.append(
            [i + 1]
            + [f"{d[:, i, h].mean():.2f} ± {d[:, i, h].std():.2f}" for h in range(m["heads"])]
            + [float(d0[:, i].mean()), rf]
        )
    cols = ["layer"] + [f"head {h + 1} (px)" for h in range(m["heads"])]
    cols += ["all heads at init (px)", "CNN RF at this depth (px)"]
    acc = [["global attention", f"{np.mean(m['acc']):.3f} ± {np.std(m['acc']):.3f}"]]
    if m["acc_local"]:
        loc = m["acc_local"]
        acc.append(["3×3 local attention", f"{np.mean(loc):.3f} ± {np.std(loc):.3f}"])
    else:
        acc.append(["3×3 local attention", "not trained (the ViT failed its control)"])
    return [
        Table(
            f"Mean attention distance of the trained ViTs ({m['eval_images']} test images, "
            f"patch {m['patch']}, {m['grid']}×{m['grid']} patches; uniform attention: "
            f"{m['uniform']:.2f} px)",
            cols,
            rows,
        ),
        Table("Ablation: test accuracy (mean ± std over seeds)", ["ViT", "accuracy"], acc),
    ]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (ax,) = subplots(width=6.5, height=4)
    d = np.asarray(m["distance"])  # (seeds, layers, heads)
    for i in range(m["layers"]):
        ys = d[:, i].mean(0)
        ax.errorbar(
            [i + 1 + 0.06 * (h - len(ys) / 2) for h in range(len(ys))],
            ys,
            yerr=d[:, i].std(0),
            fmt="o",
            color="C0",
            capsize=2,
            label="ViT heads (trained)" if i == 0 else None,
        )
    depth = range(1, len(m["cnn_rf_mean_distance"]) + 1)
    ax.plot(depth, m["cnn_rf_mean_distance"], "s--", color="C1", label="CNN receptive field")
    ax.plot(
        range(1, m["layers"] + 1),
        np.asarray(m["distance_init"]).mean((0, 2)),
        "x:",
        color="gray",
        label="ViT at initialization",
    )
    ax.axhline(m["uniform"], color="k", lw=0.8, label="uniform attention")
    ax.axhline(m["local_window_distance"], color="C2", lw=0.8, ls="--", label="3×3 window")
    ax.set_xlabel("depth (ViT layer / CNN stage)")
    ax.set_ylabel("mean distance (px)")
    ax.set_title("How far each layer looks")
    ax.legend(fontsize=8)
    return to_png(fig)


def method(m: Mapping[str, Any]) -> str:
    return (
        f"For the image pool's ViT (patch {m['patch']}, {m['layers']} layers × {m['heads']} "
        f"heads, trained {m['steps']} steps on {m['data']}; {len(m['acc'])} seeds) computes the "
        f"mean attention distance of every head over {m['eval_images']} test images, as in the "
        "ViT paper (Fig. 7), against the same ViT at initialization, uniform attention and the "
        "receptive field of the pool's CNN at the same depth; then trains the same ViT with "
        "attention restricted to a 3×3 window of patches and compares test accuracy."
    )


CLAIM = register_claim(
    Claim(
        id="V1",
        part=2,
        title="Global view",
        subject="Transformer",
        seed_quote=QUOTE,
        method=method,
        sizes={p: {"pool": IMAGE[p], "eval_images": 32 if p == "tiny" else 500} for p in IMAGE},
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        trains=True,
        uses=("images",),
        models="image pool",
        spread="mean ± std over seeds; effect: paired 95% CI",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]
