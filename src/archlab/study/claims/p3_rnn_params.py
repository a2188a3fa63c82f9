"""P3: the answer sheet's RNN parameter count (input 100, hidden 200) against PyTorch and Keras."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.claims._common import every_profile, literature
from archlab.study.claims._engine import rnn_params
from archlab.study.context import StudyContext
from archlab.study.plots import subplots, to_png
from archlab.study.stats import exact

QUOTE = (
    "Input-to-hidden weight matrix (W_ih) of shape (hidden_dim, input_dim) … Hidden-to-hidden "
    "weight matrix (W_hh): of shape (hidden_dim, hidden_dim) … Bias term for hidden state (b_hh) … "
    "Total: 20,000 + 40,000 + 200 = 60,200"
)
SEED_ANSWER = 60_200


def run(ctx: StudyContext) -> dict[str, Any]:
    i, h = ctx.sizes["input_size"], ctx.sizes["hidden_size"]
    engine = rnn_params(i, h)
    layer = nn.RNN(i, h)  # the real layer: count what PyTorch allocates
    return {
        "input_size": i,
        "hidden_size": h,
        "seed_answer": SEED_ANSWER,
        "engine": engine["engine"],
        "engine_keras": engine["keras"],
        "engine_pytorch": engine["pytorch"],
        "torch_numel": sum(p.numel() for p in layer.parameters()),
        "torch_tensors": {n: list(p.shape) for n, p in layer.named_parameters()},
    }


def verdict(m: Mapping[str, Any]) -> Verdict:
    """Exact counts: the sheet's number against the engine under each convention and numel."""
    seed, keras, pt = m["seed_answer"], m["engine_keras"], m["torch_numel"]
    effect = exact(seed - keras, "sheet − engine count, Keras convention", "params")
    checks = {"positive_control": "n/a", "engine_equals_numel": m["engine_pytorch"] == pt}
    if m["engine_pytorch"] != pt:
        return Verdict(
            "inconclusive",
            "Inconclusive: the cost engine disagrees with PyTorch, so the derivation cannot be "
            "checked.",
            f"engine {m['engine_pytorch']:,} vs nn.RNN numel {pt:,}",
            effect,
            checks,
            literature("keras_pytorch_rnn", None),
            why_inconclusive="within noise",
        )
    if seed == keras == pt:
        return Verdict(
            "supported",
            f"Supported: {seed:,} parameters under both conventions.",
            f"Keras {keras:,}, PyTorch {pt:,}.",
            effect,
            checks,
            literature("keras_pytorch_rnn", True),
        )
    if seed == keras:
        return Verdict(
            "supported within scope",
            f"Supported within scope: 60,200 is the count of a layer with one bias vector (Keras "
            f"SimpleRNN); PyTorch's nn.RNN({m['input_size']}, {m['hidden_size']}) has {pt:,}.",
            f"the sheet counts W_ih ({m['hidden_size']}×{m['input_size']}), W_hh "
            f"({m['hidden_size']}×{m['hidden_size']}) and one bias; PyTorch keeps two bias "
            f"vectors (b_ih and b_hh), adding {pt - keras:,}: measured as sum(p.numel()).",
            effect,
            checks,
            literature("keras_pytorch_rnn", True),
            scope="the one-bias convention (Keras SimpleRNN, most textbooks)",
        )
    return Verdict(
        "contradicted",
        f"Contradicted: the sheet says {seed:,}; Keras gives {keras:,} and PyTorch {pt:,}.",
        "the sum does not match either convention.",
        effect,
        checks,
        literature("keras_pytorch_rnn", False),
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    rows = [
        ["the answer sheet", m["seed_answer"]],
        [f"cost engine, Keras ({m['engine']})", m["engine_keras"]],
        ["cost engine, PyTorch", m["engine_pytorch"]],
        ["nn.RNN sum(p.numel())", m["torch_numel"]],
    ]
    shapes = [[k, "×".join(map(str, v)), _prod(v)] for k, v in m["torch_tensors"].items()]
    return [
        Table("Parameters (count)", ["source", "params"], rows),
        Table("PyTorch's tensors", ["tensor", "shape", "params"], shapes),
    ]


def _prod(shape: list[int]) -> int:
    out = 1
    for s in shape:
        out *= s
    return out


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (ax,) = subplots(width=6, height=2.8)
    names = ["W_ih", "W_hh", "b_ih", "b_hh"]
    vals = [
        _prod(m["torch_tensors"][f"{n.lower().replace('w_', 'weight_').replace('b_', 'bias_')}_l0"])
        for n in names
    ]
    left = 0
    for name, v in zip(names, vals, strict=True):
        ax.barh(["PyTorch"], [v], left=left, label=name)
        left += v
    left = 0
    for name, v in zip(names[:2] + ["bias"], vals[:2] + [vals[3]], strict=True):
        ax.barh(["sheet / Keras"], [v], left=left, hatch="//" if name == "bias" else None)
        left += v
    ax.set_xlabel("parameters")
    ax.legend(ncol=4, fontsize=8, loc="lower right")
    ax.set_title("RNN 100→200: where the parameters are")
    return to_png(fig)


CLAIM = register_claim(
    Claim(
        id="P3",
        part=3,
        title="RNN layer parameter count",
        subject="RNN layer",
        seed_quote=QUOTE,
        method=lambda m: (
            f"Counts the parameters of a vanilla RNN layer (input {m['input_size']}, hidden "
            f"{m['hidden_size']}) three ways: the sheet's sum, the cost engine under the Keras and "
            "PyTorch conventions, and sum(p.numel()) of a real torch.nn.RNN."
        ),
        sizes=every_profile({"input_size": 100, "hidden_size": 200}),
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        spread="exact (no randomness)",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]
