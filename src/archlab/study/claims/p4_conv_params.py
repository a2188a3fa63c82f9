"""P4: the answer sheet's conv layer parameter count (3→64 channels, 3×3 kernel)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.claims._common import every_profile, literature
from archlab.study.claims._engine import conv_params
from archlab.study.context import StudyContext
from archlab.study.plots import subplots, to_png
from archlab.study.stats import exact

QUOTE = (
    "Convolutional filters: Each filter has shape (kernel_size, kernel_size, input_channels) … "
    "Total number of filter params: 64 x 27 = 1728 … Bias terms: … Total: 1728 + 64 = 1792"
)
SEED_ANSWER = 1_792


def run(ctx: StudyContext) -> dict[str, Any]:
    c_in, c_out, k = ctx.sizes["in_channels"], ctx.sizes["out_channels"], ctx.sizes["kernel_size"]
    layer = nn.Conv2d(c_in, c_out, k)
    # independent of image size: the same layer on two resolutions has the same parameters
    return {
        "in_channels": c_in,
        "out_channels": c_out,
        "kernel_size": k,
        "seed_answer": SEED_ANSWER,
        **{f"engine_{k_}": v for k_, v in conv_params(c_in, c_out, k).items()},
        "torch_numel": sum(p.numel() for p in layer.parameters()),
        "torch_weight": int(layer.weight.numel()),
        "torch_bias": int(layer.bias.numel()),
    }


def verdict(m: Mapping[str, Any]) -> Verdict:
    """Exact counts: the sheet's sum against the cost engine and nn.Conv2d's numel."""
    seed, eng, pt = m["seed_answer"], m["engine_params"], m["torch_numel"]
    effect = exact(seed - pt, "sheet − nn.Conv2d numel", "params")
    checks = {"positive_control": "n/a", "engine_equals_numel": eng == pt}
    if seed == eng == pt:
        return Verdict(
            "supported",
            f"Supported: {seed:,} = {m['torch_weight']:,} weights + {m['torch_bias']} biases.",
            "equal to nn.Conv2d's numel and to the cost engine (PyTorch and Keras both keep one "
            "bias per filter).",
            effect,
            checks,
            literature("keras_pytorch_conv", True),
        )
    return Verdict(
        "contradicted",
        f"Contradicted: the sheet says {seed:,}; the engine gives {eng:,}, nn.Conv2d {pt:,}.",
        "the sum does not match the layer.",
        effect,
        checks,
        literature("keras_pytorch_conv", False),
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    return [
        Table(
            "Parameters (count)",
            ["source", "weights", "biases", "total"],
            [
                ["the answer sheet", 1728, 64, m["seed_answer"]],
                [f"cost engine ({m['engine_engine']})", None, None, m["engine_params"]],
                ["nn.Conv2d sum(p.numel())", m["torch_weight"], m["torch_bias"], m["torch_numel"]],
            ],
        )
    ]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (ax,) = subplots(width=6, height=2.6)
    ax.barh(
        ["sheet", "engine", "nn.Conv2d"],
        [m["seed_answer"], m["engine_params"], m["torch_numel"]],
        color=["#8a97a8", "#4c72b0", "#55a868"],
    )
    ax.set_xlabel("parameters")
    ax.set_title(
        f"Conv {m['in_channels']}→{m['out_channels']}, {m['kernel_size']}×{m['kernel_size']}"
    )
    return to_png(fig)


CLAIM = register_claim(
    Claim(
        id="P4",
        part=4,
        title="Conv layer parameter count",
        subject="Conv layer",
        seed_quote=QUOTE,
        method=lambda m: (
            f"Counts the parameters of a {m['in_channels']}→{m['out_channels']} channel, "
            f"{m['kernel_size']}×{m['kernel_size']} convolution: the sheet's sum, the cost engine, "
            "and sum(p.numel()) of a real torch.nn.Conv2d."
        ),
        sizes=every_profile({"in_channels": 3, "out_channels": 64, "kernel_size": 3}),
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        spread="exact (no randomness)",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]
