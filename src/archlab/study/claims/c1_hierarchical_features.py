"""C1: CNNs build a spatial hierarchy of features (edges → parts → objects) across their layers.

On the shared CNN of the image pool (four conv stages on 28 px Fashion-MNIST images; it must pass
its positive control first), a linear probe (Alain & Bengio 2016) is fitted in closed form on the
frozen output of every stage, and each stage's receptive field is computed (theoretical: Araujo
et al. 2019; effective, 90% of the gradient mass: Luo et al. 2016). The claim predicts that class
information becomes more linearly decodable with depth as the receptive fields grow, and that
training, not only the architecture, makes it so: the effect is the seed-paired probe accuracy of
the last stage minus the first; the same network at initialization and raw pixels are the
baselines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from archlab.models import create_model
from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.claims._common import fmt_ci, literature, undertrained
from archlab.study.context import StudyContext
from archlab.study.measure import mean_std
from archlab.study.plots import band, subplots, to_png
from archlab.study.pools import IMAGE, IMAGE_CONTROL, image_fit, pool_model
from archlab.study.stats import paired, side
from archlab.study.vision import conv_outputs, effective_rf, receptive_fields

QUOTE = (
    "CNNs excel at capturing the spatial hierarchy in images through their layered architecture. "
    "Usually they do something like this: … Detect edges and textures at lower layers … Parts of "
    "objects in middle layers … High-level representations in deeper layers. … This hierarchical "
    "feature extraction is particularly well-suited for image classification."
)


def ridge_probe(
    f_tr: torch.Tensor,
    y_tr: torch.Tensor,
    f_te: torch.Tensor,
    y_te: torch.Tensor,
    lam: float,
    classes: int,
) -> float:
    """Test accuracy of a linear probe fitted in closed form: ridge regression of one-hot labels
    on z-scored features plus a bias, W = (XᵀX + λ·n·I)⁻¹ XᵀY."""
    f_tr, f_te = f_tr.double(), f_te.double()
    mu, sd = f_tr.mean(0), f_tr.std(0).clamp_min(1e-6)
    X = torch.cat([(f_tr - mu) / sd, torch.ones(len(f_tr), 1, dtype=torch.float64)], 1)  # (n, D+1)
    Xt = torch.cat([(f_te - mu) / sd, torch.ones(len(f_te), 1, dtype=torch.float64)], 1)
    Y = F.one_hot(y_tr, classes).double()  # (n, K)
    A = X.T @ X + lam * len(X) * torch.eye(X.shape[1], dtype=torch.float64)
    W = torch.linalg.solve(A, X.T @ Y)  # (D+1, K)
    return float(((Xt @ W).argmax(1) == y_te).float().mean())


@torch.no_grad()
def depth_features(model, x: torch.Tensor, grid: int, batch: int = 500) -> list[torch.Tensor]:
    """Each conv stage's output, average-pooled to grid×grid and flattened: (N, C·grid²)."""
    model.eval()
    dev = next(model.parameters()).device
    parts: list[list[torch.Tensor]] = []
    for i in range(0, len(x), batch):
        outs = conv_outputs(model, x[i : i + batch].to(dev))
        parts.append([F.adaptive_avg_pool2d(h, grid).flatten(1).float().cpu() for h in outs])
    return [torch.cat([p[j] for p in parts]) for j in range(len(parts[0]))]


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    images = ctx.images()
    x_tr, y_tr = images.train(s["probe_train"])
    x_tr = images.normalize(x_tr)
    x_te, y_te = images.normalize(images.test_x), images.test_y
    k = len(images.classes)
    pix = ridge_probe(x_tr.flatten(1), y_tr, x_te.flatten(1), y_te, s["ridge"], k)
    bar = ctx.progress(total=len(ctx.seeds), desc="train cnn / probe")
    probes: dict[str, list] = {"trained": [], "init": []}
    erf: dict[str, list] = {"trained": [], "init": []}
    acc, filters, grad_maps = [], {}, []
    for seed in ctx.seeds:
        f = image_fit(ctx, "cnn", seed, s["pool"])
        acc.append(float(f.final["accuracy"]))
        name, cfg = pool_model("cnn", s["pool"])
        torch.manual_seed(seed)  # the same network before training
        init = create_model(name, **cfg).to(ctx.device).eval()
        for which, model in (("trained", f.model), ("init", init)):
            tr = depth_features(model, x_tr, s["probe_grid"])
            te = depth_features(model, x_te, s["probe_grid"])
            probes[which].append(
                [ridge_probe(a, y_tr, b, y_te, s["ridge"], k) for a, b in zip(tr, te, strict=True)]
            )
            e = effective_rf(model.cpu(), x_te[: s["erf_images"]], s["erf_mass"])
            model.to(ctx.device)
            erf[which].append([r["erf"] for r in e])
            if seed == ctx.seeds[0]:
                filters[which] = (
                    model.features[0][0].weight.detach().cpu()[:, 0].flatten(1).tolist()
                )
                if which == "trained":
                    grad_maps = [r["grad"] for r in e]
        bar.update()
    bar.close()
    rf = receptive_fields(init)
    return {
        "depth": len(rf),
        "rf": [r["rf"] for r in rf],
        "jump": [r["jump"] for r in rf],
        "probe": probes,
        "probe_pixels": pix,
        "erf": erf,
        "erf_mass": s["erf_mass"],
        "filters": filters,
        "kernel": rf[0]["kernel"],
        "grad_maps": grad_maps,
        "probe_grid": s["probe_grid"],
        "probe_train": len(x_tr),
        "probe_test": len(x_te),
        "test_acc": acc,
        "control": IMAGE_CONTROL["cnn"],
        "steps": s["pool"]["steps"],
        "batch": s["pool"]["batch"],
        "n_train": images.desc["train"]
        if s["pool"]["n_train"] is None
        else min(s["pool"]["n_train"], images.desc["train"]),
        "data": images.desc["source"],
        "canvas": images.desc["canvas"],
    }


def verdict(m: Mapping[str, Any]) -> Verdict:
    tr, ini = m["probe"]["trained"], m["probe"]["init"]
    effect = paired(
        [p[-1] for p in tr],
        [p[0] for p in tr],
        f"probe accuracy, stage {m['depth']} − stage 1 (trained)",
    )
    learned = paired([p[-1] for p in tr], [p[-1] for p in ini], "last stage: trained − init")
    acc = float(np.mean(m["test_acc"]))
    control = "pass" if acc >= m["control"] else "fail"
    ctrl = f"CNN test accuracy {acc:.3f} (≥ {m['control']})"
    checks = {
        "positive_control": control,
        "learned_over_init": round(learned.value, 4),
        "rf_covers_image": m["rf"][-1] >= m["canvas"],
    }
    mt, mi = np.mean(tr, 0), np.mean(ini, 0)
    erf = ", ".join(
        f"{np.mean([e[i] for e in m['erf']['trained']]):.0f}" for i in range(m["depth"])
    )
    facts = (
        f"linear-probe accuracy by stage {', '.join(f'{a:.3f}' for a in mt)} (trained) vs "
        f"{', '.join(f'{a:.3f}' for a in mi)} (the same network at initialization), raw pixels "
        f"{m['probe_pixels']:.3f}; receptive field {', '.join(map(str, m['rf']))} px (effective, "
        f"{m['erf_mass']:.0%} of the gradient mass: {erf} px). Depth effect {fmt_ci(effect)}; "
        f"trained − init at the last stage {fmt_ci(learned)}. Positive control: {ctrl}."
    )
    if control == "fail":
        return undertrained("the feature hierarchy", ctrl, effect, checks, "alain2016")
    s, sl = side(effect), side(learned)
    if s > 0 and sl > 0:
        return Verdict(
            "supported",
            f"Supported: class information becomes more linearly decodable stage by stage "
            f"({mt[0]:.2f} → {mt[-1]:.2f} probe accuracy) while the receptive field grows from "
            f"{m['rf'][0]} to {m['rf'][-1]} px, and training made it so (the untrained network "
            f"reaches {mi[-1]:.2f}).",
            facts,
            effect,
            checks,
            literature("alain2016", True),
        )
    if s > 0:
        return Verdict(
            "supported within scope",
            "Supported within scope: class information grows with depth, but the untrained "
            "network shows the same hierarchy — it comes from the architecture (pooling and "
            "growing receptive fields) more than from learning.",
            facts,
            effect,
            checks,
            literature("alain2016", True),
            scope="the architecture's hierarchy; training adds no measurable decodability",
        )
    if s < 0:
        return Verdict(
            "contradicted",
            "Contradicted: deeper stages are less linearly decodable than the first.",
            facts,
            effect,
            checks,
            literature("alain2016", False),
        )
    return Verdict(
        "inconclusive",
        "Inconclusive (within noise): probe accuracy does not change measurably with depth.",
        facts,
        effect,
        checks,
        literature("alain2016", None),
        why_inconclusive="within noise",
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    rows = []
    for i in range(m["depth"]):
        p = mean_std([r[i] for r in m["probe"]["trained"]])
        q = mean_std([r[i] for r in m["probe"]["init"]])
        rows.append(
            [
                i + 1,
                m["rf"][i],
                m["jump"][i],
                float(np.mean([e[i] for e in m["erf"]["trained"]])),
                float(np.mean([e[i] for e in m["erf"]["init"]])),
                f"{p['mean']:.3f} ± {p['std']:.3f}",
                f"{q['mean']:.3f} ± {q['std']:.3f}",
            ]
        )
    return [
        Table(
            f"Per conv stage: receptive field (px) and linear-probe test accuracy of frozen "
            f"features pooled to {m['probe_grid']}×{m['probe_grid']} ({m['probe_train']:,} "
            f"train / {m['probe_test']:,} test images; raw-pixel probe "
            f"{m['probe_pixels']:.3f})",
            [
                "stage",
                "theoretical RF",
                "jump",
                "effective RF (trained)",
                "effective RF (init)",
                "probe acc. trained",
                "probe acc. init",
            ],
            rows,
        )
    ]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (a0, a1, a2, a3) = subplots(4, width=3.6, height=3.4)
    w = np.asarray(m["filters"]["trained"])  # (C, k*k)
    k, n = m["kernel"], len(w)
    cols = int(np.ceil(np.sqrt(n)))
    grid = np.full((cols * (k + 1), cols * (k + 1)), np.nan)
    for i, f in enumerate(w):
        r, c = divmod(i, cols)
        f = f.reshape(k, k)
        grid[r * (k + 1) : r * (k + 1) + k, c * (k + 1) : c * (k + 1) + k] = f / (
            abs(f).max() + 1e-12
        )
    a0.imshow(grid, cmap="RdBu_r", vmin=-1, vmax=1)
    a0.set_title(f"first-layer filters ({k}×{k})")
    a0.axis("off")
    depth = list(range(1, m["depth"] + 1))
    for which, label in (("trained", "trained"), ("init", "at init")):
        band(
            a1,
            depth,
            [mean_std([r[i] for r in m["probe"][which]]) for i in range(m["depth"])],
            label,
        )
    a1.axhline(m["probe_pixels"], color="gray", ls=":", label="raw pixels")
    a1.set_xlabel("conv stage")
    a1.set_ylabel("linear-probe test accuracy")
    a1.set_title("Class information by depth")
    a1.legend(fontsize=8)
    a2.plot(depth, m["rf"], "o-", label="theoretical")
    band(
        a2,
        depth,
        [mean_std([e[i] for e in m["erf"]["trained"]]) for i in range(m["depth"])],
        f"effective ({m['erf_mass']:.0%} mass)",
    )
    a2.set_xlabel("conv stage")
    a2.set_ylabel("receptive field side (px)")
    a2.set_title("Receptive field")
    a2.legend(fontsize=8)
    a3.imshow(np.asarray(m["grad_maps"][-1]), cmap="magma")
    a3.set_title("|∂ centre unit / ∂ pixel|, last stage")
    a3.axis("off")
    return to_png(fig)


def method(m: Mapping[str, Any]) -> str:
    return (
        f"Uses the image pool's CNN (four stages of one 3×3 conv-BN-ReLU with 2×2 max-pooling, "
        f"trained for {m['steps']} steps × {m['batch']} on the first {m['n_train']:,} training "
        f"images of {m['data']}, 28 px on a {m['canvas']} px canvas; {len(m['test_acc'])} "
        "seeds). Shows the first-layer filters; fits a linear probe (closed-form ridge "
        f"regression on one-hot labels) on the frozen output of every stage, average-pooled to "
        f"{m['probe_grid']}×{m['probe_grid']}, with {m['probe_train']:,} training and "
        f"{m['probe_test']:,} test images, and compares it with the same network at "
        "initialization and with raw pixels; computes each stage's theoretical receptive field "
        "(Araujo et al. 2019) and effective receptive field (Luo et al. 2016)."
    )


CLAIM = register_claim(
    Claim(
        id="C1",
        part=2,
        title="Hierarchical features",
        subject="CNN",
        seed_quote=QUOTE,
        method=method,
        sizes={
            p: {
                "pool": IMAGE[p],
                "probe_train": 300 if p == "tiny" else 5000,
                "probe_grid": 2,
                "ridge": 1e-3,
                "erf_images": 8 if p == "tiny" else 64,
                "erf_mass": 0.9,
            }
            for p in IMAGE
        },
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        trains=True,
        uses=("images",),
        models="image pool",
        spread="mean ± std over seeds; effect: paired 95% CI; bands min–max",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "ridge_probe", "run", "tables", "verdict"]
