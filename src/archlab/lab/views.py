"""The page's content for each tab, as HTML strings and figures (no Gradio here).

Each ``*_view`` takes the tab's inputs and returns what its output components show; the Gradio
wiring (:mod:`archlab.lab.ui`) only passes values through, so the views are tested directly.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from archlab.errors import ArchlabError
from archlab.lab import html as H
from archlab.lab.costs import flops_vs_seq_len, layer_cost, layer_options
from archlab.lab.models import LabModel
from archlab.lab.plots import flops_figure, shift_figure
from archlab.lab.service import check_int, generations, next_words
from archlab.lab.state import Lab, NotReady
from archlab.lab.text import last_attention, saliency, token_losses
from archlab.lab.vision import (
    decode_image,
    feature_maps,
    predict,
    shift,
    shift_curve,
    vit_attention,
)

__all__ = [
    "CLAIMS",
    "COST_LAYERS",
    "SHIFTS",
    "TAB_NAMES",
    "Claim",
    "cost_view",
    "image_view",
    "next_word_view",
    "status_view",
    "study_verdicts",
    "study_view",
]

SHIFTS = list(range(-8, 9))  # the shift plot's x axis, pixels
COST_LAYERS = ("rnn", "lstm", "gru", "conv2d", "attention", "transformer-block", "transformer")
TAB_NAMES = {"next": "Next word", "image": "Image", "cost": "Cost", "study": "Study"}


@dataclass(frozen=True)
class Claim:
    tab: str  # the tab id where it can be explored
    how: str  # what to do there
    preset: dict[str, Any] | None = None  # cost-tab inputs that show it


CLAIMS: dict[str, Claim] = {
    "T1": Claim("next", "long-range dependencies: the GPT's attention and saliency reach far back"),
    "T2": Claim("cost", "parallel training: a Transformer's FLOPs are matmuls over all n tokens"),
    "T3": Claim(
        "cost",
        "quadratic attention: the n² terms overtake the rest at n*",
        {"layer": "attention", "d_model": 512, "heads": 8, "seq_len": 1024},
    ),
    "R1": Claim("next", "variable length: an RNN reads any prompt; a GPT its last block only"),
    "R2": Claim("cost", "memory: an LSTM's activation bytes against a Transformer's at one n"),
    "R3": Claim("next", "vanishing gradients: the tanh RNN's saliency fades within a few tokens"),
    "C1": Claim("image", "hierarchy: the CNN's feature maps, stage by stage"),
    "C2": Claim(
        "cost",
        "parameter efficiency: one 3x3 conv layer's weights",
        {"layer": "conv2d", "in_channels": 3, "out_channels": 64, "kernel_size": 3},
    ),
    "C3": Claim("image", "translation invariance: the shift sliders and their plot"),
    "C4": Claim(
        "image", "limited global context: the CNN's last stage against the ViT's attention"
    ),
    "V1": Claim("image", "global view: the ViT's class token attends over every patch"),
    "V2": Claim("image", "weak inductive bias: CNN and ViT side by side, same data and budget"),
    "V3": Claim(
        "cost",
        "quadratic in patches: attention FLOPs against the number of tokens",
        {"layer": "transformer-block", "d_model": 64, "heads": 4, "seq_len": 50},
    ),
    "V4": Claim("cost", "parallelism: the whole patch sequence is one matmul per layer"),
    "P3": Claim(
        "cost",
        "Part 3: the RNN layer's 60,200 (Keras) vs 60,400 (PyTorch) parameters",
        {"layer": "rnn", "input_size": 100, "hidden_size": 200, "convention": "keras"},
    ),
    "P4": Claim(
        "cost",
        "Part 4: the conv layer's 1,792 parameters",
        {"layer": "conv2d", "in_channels": 3, "out_channels": 64, "kernel_size": 3},
    ),
    "P5": Claim(
        "cost",
        "Part 5: O(L(n²d + nd²)) and the crossover n*",
        {"layer": "transformer", "d_model": 512, "heads": 8, "layers": 6, "seq_len": 1024},
    ),
}


def _error(e: Exception) -> str:
    kind = "lab-status" if isinstance(e, NotReady) else "lab-error"  # waiting is not a mistake
    return f'<p class="{kind}">{html.escape(" ".join(str(e).split()))}</p>'


def _subtitle(m: LabModel) -> str:
    return f"{m.arch} · {m.params:,} params"


# ---------------------------------------------------------------------------- next word
def next_word_view(
    lab: Lab,
    prompt: str,
    top_k: int = 5,
    max_new_tokens: int = 120,
    temperature: float = 0.8,
    sample_top_k: int = 0,
    seed: int = 0,
    layer: int = 1,
    head: str = "mean",
) -> str:
    """One card per language model: top-k, a continuation, loss, saliency and attention strips."""
    try:
        tops = next_words(lab, prompt, top_k)
        gens = generations(
            lab, prompt, max_new_tokens, temperature, int(sample_top_k) or None, int(seed)
        )
    except ArchlabError as e:
        return _error(e)
    cards = []
    for m in lab.of_kind("lm"):
        losses = token_losses(m, prompt)
        target, sal = saliency(m, prompt)
        known = [v for v in losses.values if v is not None]
        mean = f"mean {sum(known) / len(known):.3f} nats/token" if known else "one token: no loss"
        body = [
            "<h4>Top-k next tokens</h4>",
            H.topk_list(tops[m.name]),
            f"<h4>Sampled continuation (temperature {temperature:g}, seed {int(seed)})</h4>",
            f'<div class="lab-gen">…{html.escape(prompt[-40:])}'
            f"<b>{html.escape(gens[m.name]['continuation'])}</b></div>",
            f"<h4>Per-token loss of the prompt ({mean})</h4>",
            # full red = as surprising as a uniform guess over the vocabulary (ln V nats)
            H.strip(
                losses.tokens, losses.values, "loss", "nats", math.log(m.run.tokenizer.vocab_size)
            ),
            f"<h4>Gradient saliency of the prediction {html.escape(H.visible(target, True))}</h4>",
            H.strip(sal.tokens, sal.values, "saliency", "grad norm", decades=3),
            '<p class="lab-note">‖∂ log p / ∂ embedding‖ per past token on a log scale: blue = '
            "the largest, white = 1,000 times smaller or less</p>",
        ]
        if m.family == "gpt":
            body += _attention_strip(m, prompt, layer, head)
        if losses.note:
            body.append(f'<p class="lab-note">{html.escape(losses.note)}</p>')
        cards.append(H.card(m.name, _subtitle(m), "".join(body)))
    return f'<div class="lab-cards">{"".join(cards)}</div>'


def _attention_strip(m: LabModel, prompt: str, layer: int, head: str) -> list[str]:
    tokens, att = last_attention(m, prompt)  # (L, nh, T)
    li = min(max(int(layer), 1), att.size(0))
    row = att[li - 1].mean(0) if head == "mean" else att[li - 1, min(int(head), att.size(1)) - 1]
    which = "mean of heads" if head == "mean" else f"head {min(int(head), att.size(1))}"
    return [
        f"<h4>Attention of the last position — layer {li}/{att.size(0)}, {which}</h4>",
        H.strip(tokens, row.tolist(), "attention", "weight"),
    ]


# ---------------------------------------------------------------------------- image
def image_view(
    lab: Lab,
    data: bytes | None,
    dx: int = 0,
    dy: int = 0,
    top_k: int = 3,
    invert: str = "auto",
    vit_layer: int = 1,
    vit_head: str = "mean",
) -> tuple[str, Any, str, str]:
    """(top-k cards, the shift figure, CNN feature maps, ViT attention) for an image file."""
    if not data:
        return '<p class="lab-note">Upload or draw an image, or pick an example.</p>', None, "", ""
    try:
        models = lab.of_kind("image")
        dx, dy = check_int("dx", int(dx), -8, 8), check_int("dy", int(dy), -8, 8)
        images = {}
        for m in models:
            shape = m.run.config["data"]["shape"]
            images[m.name] = decode_image(data, int(shape[0]), int(shape[-1]), invert)
    except ArchlabError as e:
        return _error(e), None, "", ""
    cards, curves, maps, attn = [], {}, [], []
    for m in models:
        seen = shift(torch.as_tensor(images[m.name]), dx, dy).numpy()  # (C, H, W)
        thumb = H.image_grid([_gray(seen)], [f"input, dx={dx} dy={dy}"], 84)
        cards.append(
            H.card(m.name, _subtitle(m), thumb + H.topk_list(predict(m, seen).top(top_k), "label"))
        )
        curves[m.name] = shift_curve(m, images[m.name], SHIFTS, dy)
        if m.family == "cnn":
            maps.append(_feature_maps(m, seen))
        if m.family == "vit":
            attn.append(_vit_maps(m, seen, vit_layer, vit_head))
    fig = shift_figure(curves, SHIFTS, dx, dy)
    return f'<div class="lab-cards">{"".join(cards)}</div>', fig, "".join(maps), "".join(attn)


def _gray(x: np.ndarray) -> np.ndarray:
    """uint8 (C, H, W) -> (H, W, 3) for display."""
    return (
        np.repeat(x[:1].transpose(1, 2, 0), 3, axis=2) if x.shape[0] == 1 else x.transpose(1, 2, 0)
    )


def _feature_maps(m: LabModel, seen: np.ndarray, per_stage: int = 8) -> str:
    rows = [f"<h4>{html.escape(m.name)}: the 8 most active channels at the end of each stage</h4>"]
    for s, fm in enumerate(feature_maps(m, seen), 1):  # (C, h, w)
        order = fm.mean(dim=(1, 2)).argsort(descending=True)[:per_stage]
        maps = [fm[int(c)].clamp_min(0).numpy() for c in order]
        labels = [f"ch {int(c)}" for c in order]
        rows.append(
            f'<p class="lab-note">stage {s}: {fm.size(0)} channels of {fm.size(1)}x{fm.size(2)}</p>'
        )
        rows.append(H.image_grid(maps, labels, 64))
    return "".join(rows)


def _vit_maps(m: LabModel, seen: np.ndarray, layer: int, head: str) -> str:
    att = vit_attention(m, seen)  # (L, nh, g, g)
    L, nh, g, _ = att.shape
    li = min(max(int(layer), 1), L)
    pick = att.mean(1) if head == "mean" else att[:, min(int(head), nh) - 1]  # (L, g, g)
    which = "mean of heads" if head == "mean" else f"head {min(int(head), nh)}"
    size = seen.shape[-1]
    scale = size // g
    big = H.heatmap_png(pick[li - 1].numpy(), scale * 6, under=seen[0].repeat(6, 0).repeat(6, 1))
    rows = [
        f"<h4>{html.escape(m.name)}: class-token attention over the {g}x{g} patch grid — "
        f"layer {li}/{L}, {which}</h4>",
        H.image_grid([big], [f"layer {li} over the input"], 168),
        '<p class="lab-note">every layer (same head):</p>',
        H.image_grid([pick[i].numpy() for i in range(L)], [f"layer {i + 1}" for i in range(L)], 72),
    ]
    return "".join(rows)


# ---------------------------------------------------------------------------- cost
def cost_view(request: dict[str, Any]) -> tuple[str, str, Any]:
    """(summary HTML, the ``archlab cost`` derivation text, the FLOPs-vs-n figure or None)."""
    from archlab.cost.render import human, render_text

    try:
        allowed = set(layer_options(str(request.get("layer"))))
        req = {k: v for k, v in request.items() if k == "layer" or k in allowed}
        cost = layer_cost(req)
    except ArchlabError as e:
        return _error(e), "", None
    rows = [("parameters", f"{cost.params:,} ({cost.convention})")]
    if cost.convention_diffs:
        other = "keras" if cost.convention == "pytorch" else "pytorch"
        sign = 1 if other == "keras" else -1
        delta = sum(sign * (d.keras_params - d.pytorch_params) for d in cost.convention_diffs)
        rows.append((f"parameters ({other})", f"{cost.params + delta:,}"))
    if cost.flops_forward_dense is not None:
        rows += [
            ("forward FLOPs, dense", human(cost.flops_forward_dense, "FLOPs")),
            ("forward FLOPs, pointwise", human(cost.flops_forward_pointwise, "FLOPs")),
            ("backward FLOPs, dense", human(cost.flops_backward_dense, "FLOPs")),
            ("activations saved for backward", human(cost.activation_bytes, "bytes")),
        ]
    if cost.complexity:
        rows.append(("complexity", cost.complexity))
    fig = None
    n = request.get("seq_len")
    if "seq_len" in allowed and n and cost.flops:
        curve = flops_vs_seq_len(cost, _lengths(int(n), cost))
        fig = flops_figure(curve, int(n), cost.layer)
        if curve.n_star:
            rows.append(("crossover n* (n² terms = the rest)", f"{curve.n_star:,.0f} tokens"))
    table = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return (
        f'<table class="lab-cost" data-params="{cost.params}">{table}</table>',
        render_text(cost),
        fig,
    )


def _lengths(n: int, cost: Any) -> list[int]:
    """Sequence lengths for the plot: powers of 2 around n and n*, 16 points or so."""
    cross = cost.derived.get("crossover") or {}
    hi = max(4 * n, 4 * int(cross.get("n_star_dense", 0)), 64)
    d = next((v["value"] for v in cost.symbols.values() if v["meaning"] == "d_model"), None)
    hi = max(hi, 16 * int(d)) if d else hi  # past a lone attention layer's n* = 2d
    ns = sorted({2**k for k in range(0, int(math.log2(hi)) + 2)} | {n})
    return ns


# ---------------------------------------------------------------------------- status, study
def status_view(lab: Lab) -> str:
    p = lab.progress.snapshot()
    if p["error"]:
        return (
            '<div class="lab-status lab-error">Training the default models failed: '
            f"{html.escape(p['error'])}</div>"
        )
    if lab.busy and not p["training"]:
        return '<div class="lab-status" id="lab-loading">Training done; loading the models…</div>'
    if p["training"]:
        return (
            f'<div class="lab-status" id="lab-training" data-fraction="{p["fraction"]}">'
            f"First start: training the default models on the data that ships with archlab — "
            f"{p['index']}/{len(p['runs'])} <b>{html.escape(p['current'])}</b>, "
            f"{p['fraction']:.0%} of the budget, {p['elapsed_s']:.0f} s"
            f'<progress max="1" value="{p["fraction"]}" style="width:100%"></progress></div>'
        )
    names = ", ".join(f"{m.name} ({m.kind}, {m.params:,} params)" for m in lab.models)
    return f'<div class="lab-status" id="lab-ready">Models: {html.escape(names) or "none"}</div>'


def study_verdicts(lab: Lab) -> dict[str, str]:
    """{claim id: verdict label} from the study's results.json; {} without one."""
    try:
        claims = json.loads((lab.study_dir / "results.json").read_text(encoding="utf-8"))["claims"]
        return {str(c["id"]): str(c["verdict"]["label"]) for c in claims}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def study_view(lab: Lab) -> str:
    """The study report itself (served at /study/report.html), or how to make one."""
    report = lab.study_dir / "report.html"
    if not report.exists():
        return (
            '<p class="lab-status">No study report in '
            f"<code>{html.escape(str(lab.study_dir))}</code>. "
            "Run <code>archlab study</code> (3–4 minutes on 2 cores) or start the lab with "
            "<code>--study DIR</code>, then restart it. Each claim above still opens the tab where "
            "you can try it yourself.</p>"
        )
    return (
        f'<p class="lab-note">The report from <code>{html.escape(str(report))}</code>:</p>'
        '<iframe id="study-report" src="/study/report.html" title="archlab study report" '
        'style="width:100%;height:75vh;border:1px solid #d9dee5;border-radius:6px"></iframe>'
    )
