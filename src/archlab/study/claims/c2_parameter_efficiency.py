"""C2: weight sharing and local receptive fields make CNNs parameter-efficient."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.context import StudyContext
from archlab.study.imagetrain import ARCH_LABELS, image_run, run_sizes
from archlab.study.measure import mean_std
from archlab.study.plots import subplots, to_png

QUOTE = (
    "Due to weight sharing and local receptive fields, CNNs are highly efficient in terms of the "
    "number of parameters. This efficiency allows them to achieve good performance even with "
    "relatively less computational resources."
)
ARCHS = ("cnn", "vit", "mlp")


def conv_vs_dense(c_in: int, c_out: int, k: int, image_sizes: list[int]) -> list[dict[str, Any]]:
    """Cost engine: a k×k conv's parameters (k²·C_in·C_out + C_out, the same at every image size)
    against a fully connected layer mapping the same input map to the same output map
    ((H·W·C_in)·(H·W·C_out) + H·W·C_out: grows as the image's pixel count squared)."""
    from archlab.cost import layers

    rows = []
    for hw in image_sizes:
        conv = layers.conv(c_in, c_out, k, padding=k // 2, image_size=hw)
        dense = layers.linear(c_in * hw * hw, c_out * hw * hw)
        rows.append({"image_size": hw, "conv_params": conv.params,
                     "conv_flops": conv.flops_forward_dense, "dense_params": dense.params})  # fmt: skip
    return rows


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    points = []
    bar = ctx.progress(total=len(ARCHS) * len(s["scales"]) * len(ctx.seeds) * s["steps"],
                       desc="train cnn/vit/mlp")  # fmt: skip
    data = None
    for arch in ARCHS:
        for scale in s["scales"]:
            runs = [image_run(arch, seed, s, scale=scale, bar=bar) for seed in ctx.seeds]
            data = runs[0]["data"]
            points.append({"arch": arch, "scale": scale, "params": runs[0]["params"],
                           "acc": mean_std([r["test_acc"] for r in runs]),
                           "acc_seeds": [r["test_acc"] for r in runs],
                           "timing": {"train_s": mean_std([r["train_s"] for r in runs])}})  # fmt: skip
    bar.close()
    eng = s["engine_layer"]
    return {"points": points, "data": data, "steps": s["steps"], "batch": s["batch"],
            "train_images": image_run("cnn", ctx.seeds[0], s)["train_images"], "engine_layer": eng,
            "conv_vs_dense": conv_vs_dense(eng["c_in"], eng["c_out"], eng["k"], s["image_sizes"])}  # fmt: skip


def _dominated(p: Mapping[str, Any], by: list[Mapping[str, Any]]) -> bool:
    """``p`` is dominated when some point of ``by`` has no more parameters and higher accuracy."""
    return any(q["params"] <= p["params"] and q["acc"]["mean"] > p["acc"]["mean"] for q in by)


def verdict(m: Mapping[str, Any]) -> Verdict:
    rows = m["conv_vs_dense"]
    if len({r["conv_params"] for r in rows}) != 1:
        return Verdict("not supported", "the conv layer's parameter count changed with image size")
    cnn = [p for p in m["points"] if p["arch"] == "cnn"]
    others = [p for p in m["points"] if p["arch"] != "cnn"]

    def show(p):
        return f"{p['arch']} {p['params']:,} params {p['acc']['mean']:.3f}"

    undominated = [p for p in others if not _dominated(p, cnn)]
    beaten_cnn = [p for p in cnn if _dominated(p, others)]
    conv = (f"A {m['engine_layer']['k']}×{m['engine_layer']['k']} conv keeps "
            f"{rows[0]['conv_params']:,} parameters at every image size "
            f"({rows[0]['image_size']}–{rows[-1]['image_size']} px) while a dense layer over the "
            f"same maps grows from {rows[0]['dense_params']:,} to {rows[-1]['dense_params']:,}.")  # fmt: skip
    pts = "; ".join(show(p) for p in m["points"])
    if not undominated and not beaten_cnn:
        return Verdict("supported", f"every ViT/MLP model is beaten by a CNN with no more "
                       f"parameters (test accuracy, mean of seeds: {pts}). {conv}")  # fmt: skip
    if len(beaten_cnn) == len(cnn):
        return Verdict("not supported", f"every CNN is beaten by a model with no more parameters "
                       f"({pts}). {conv}")  # fmt: skip
    ahead = ", ".join(show(p) for p in undominated + beaten_cnn)
    return Verdict(
        "conditional",
        condition=f"the CNN is not the most accurate per parameter everywhere — not dominated: "
        f"{ahead}",
        reason=f"Pareto comparison of accuracy against parameter count at one training budget "
        f"({pts}). {conv}",
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    rows = [[ARCH_LABELS[p["arch"]], p["scale"], p["params"],
             f"{p['acc']['mean']:.3f} ± {p['acc']['std']:.3f}",
             f"{p['acc']['min']:.3f}–{p['acc']['max']:.3f}"] for p in m["points"]]  # fmt: skip
    cvd = [[r["image_size"], r["conv_params"], r["conv_flops"], r["dense_params"]]
           for r in m["conv_vs_dense"]]  # fmt: skip
    e = m["engine_layer"]
    return [
        Table(f"Test accuracy after {m['steps']} steps × {m['batch']} images drawn from "
              f"{m['train_images']:,} ({m['data']['dataset']}, {m['data']['res']} px)",
              ["model", "width ×", "params", "accuracy (mean ± std)", "min–max"], rows),
        Table(f"Cost engine: conv {e['c_in']}→{e['c_out']}, {e['k']}×{e['k']} vs a dense layer "
              "between the same feature maps",
              ["image side (px)", "conv params", "conv forward FLOPs", "dense params"], cvd),
    ]  # fmt: skip


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (a1, a2) = subplots(2, width=5)
    for arch in ARCHS:
        pts = [p for p in m["points"] if p["arch"] == arch]
        x = [p["params"] for p in pts]
        a1.errorbar(x, [p["acc"]["mean"] for p in pts], yerr=[p["acc"]["std"] for p in pts],
                    marker="o", capsize=3, label=ARCH_LABELS[arch])  # fmt: skip
    a1.set_xscale("log")
    a1.set_xlabel("parameters")
    a1.set_ylabel("test accuracy (mean ± std over seeds)")
    a1.set_title("Accuracy vs parameters, same budget")
    a1.legend(fontsize=8)
    rows = m["conv_vs_dense"]
    xs = [r["image_size"] for r in rows]
    a2.plot(xs, [r["conv_params"] for r in rows], "o-", label="conv (k²·C_in·C_out + C_out)")
    a2.plot(xs, [r["dense_params"] for r in rows], "s-", label="dense over the same maps")
    a2.set_xscale("log", base=2)
    a2.set_yscale("log")
    a2.set_xlabel("image side (px)")
    a2.set_ylabel("parameters")
    a2.set_title("Cost engine: weight sharing")
    a2.legend(fontsize=8)
    return to_png(fig)


_ENGINE = {"c_in": 3, "c_out": 64, "k": 3}  # the seed's Part 4 layer
CLAIM = register_claim(
    Claim(
        id="C2",
        part=2,
        title="Parameter efficiency",
        subject="CNN",
        seed_quote=QUOTE,
        method="Trains a CNN, a ViT and an MLP at two widths each on the same images with the same "
        "budget (steps × batch, AdamW, no augmentation), 3 seeds each, and compares test accuracy "
        "against parameter count: a model is beaten when another architecture reaches higher mean "
        "accuracy with no more parameters. The cost engine shows why: a conv layer's k²·C_in·C_out "
        "weights do not depend on the image size, while a dense layer between the same feature maps "
        "grows with the pixel count squared. Quick: Fashion-MNIST downsampled to 14 px, 4,000 "
        "training images, 300 steps; full: 28 px, all 60,000 images, 3,000 steps, three widths.",
        sizes={
            "tiny": run_sizes("tiny", scales=[0.5, 1.0], image_sizes=[8, 32], engine_layer=_ENGINE),
            "quick": run_sizes(
                "quick", scales=[0.5, 1.0], image_sizes=[14, 28, 56, 112, 224], engine_layer=_ENGINE
            ),
            "full": run_sizes(
                "full",
                scales=[0.5, 1.0, 2.0],
                image_sizes=[14, 28, 56, 112, 224],
                engine_layer=_ENGINE,
            ),
        },  # fmt: skip
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        trains=True,
        spread="mean ± std over seeds (sample std); min–max shown",
    ),  # fmt: skip
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]
