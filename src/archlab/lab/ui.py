"""The lab's page: four tabs of Gradio components wired to :mod:`archlab.lab.views`.

Gradio (``pip install -e ".[lab]"``) is imported only here and in :mod:`archlab.lab.server`.
Every handler is a thin adapter — component values in, a view's HTML or figure out — so what the
page shows is what the views compute (tested without a browser) and what the browser test sees.
Inputs a user edits fire ``.input`` (not ``.change``), so a preset that sets ten fields at once
recomputes once, not ten times.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from archlab.lab.state import Lab
from archlab.lab.views import (
    CLAIMS,
    COST_LAYERS,
    TAB_NAMES,
    cost_view,
    image_view,
    next_word_view,
    status_view,
    study_verdicts,
    study_view,
)

__all__ = ["COST_FIELDS", "build_ui"]

DEFAULT_PROMPT = (
    "ROMEO:\nBut soft, what light through yonder window breaks?\nIt is the east, and Juliet is the"
)

# Cost-tab number fields: (JSON key, label, default). Blank = not given (None).
COST_FIELDS: tuple[tuple[str, str, int | None], ...] = (
    ("input_size", "input size", 100),
    ("hidden_size", "hidden size", 200),
    ("num_layers", "num layers", 1),
    ("in_channels", "in channels", 3),
    ("out_channels", "out channels", 64),
    ("kernel_size", "kernel size", 3),
    ("image_size", "image size (blank: params only)", None),
    ("d_model", "d_model", 512),
    ("heads", "heads", 8),
    ("d_ff", "d_ff (blank: 4·d_model)", None),
    ("layers", "layers L", 6),
    ("seq_len", "sequence length n (blank: params only)", None),
    ("batch_size", "batch size (blank: 1)", None),
)
PRESET_LABELS = {
    "P3": "Part 3: RNN 100→200, Keras",
    "P4": "Part 4: conv 3→64, 3x3",
    "P5": "Part 5: Transformer d=512, L=6, n=1024",
}
COST_FLAGS = (("no_bias", "no bias"), ("causal", "causal mask"), ("bidirectional", "bidirectional"))


def _png(value: Any) -> bytes | None:
    """An upload's file path or a sketchpad's layers -> PNG bytes (what /api/classify takes)."""
    from PIL import Image

    if value is None:
        return None
    if isinstance(value, (str, Path)):
        return Path(value).read_bytes()
    a = value.get("composite") if isinstance(value, dict) else value
    if a is None:
        return None
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 4:  # strokes over a transparent canvas: put it on white
        alpha = a[..., 3:4].astype(np.float32) / 255
        a = (a[..., :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)
    if not a.any() or (a == 255).all():
        return None  # an empty canvas
    buf = io.BytesIO()
    Image.fromarray(a.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _layers(lab: Lab, family: str) -> tuple[int, int]:
    """(most layers, most heads) among the loaded models of ``family``; (12, 12) before any."""
    ms = [m.run.model.config for m in lab.models if m.family == family]
    if not ms:
        return 12, 12
    return max(c.layers for c in ms), max(c.heads for c in ms)


def _heads(n: int) -> list[str]:
    return ["mean", *map(str, range(1, n + 1))]


def _then_open(tab: str, fill: Any) -> Any:
    """A handler that opens ``tab`` and sets what ``fill()`` returns."""
    import gradio as gr

    return lambda: [gr.Tabs(selected=tab), *fill()]


def build_ui(lab: Lab, examples: Sequence[Path] = ()) -> Any:
    import gradio as gr

    gpt_layers, gpt_heads = _layers(lab, "gpt")
    vit_layers, vit_heads = _layers(lab, "vit")
    with gr.Blocks(title="archlab lab", analytics_enabled=False) as demo:
        gr.Markdown(
            "# archlab lab\nThe answer sheet's comparisons, live: **RNNs vs a GPT** on your "
            "prompt, **a CNN vs a ViT** on your image, **costs** as you type, and the "
            "**study**'s evidence."
        )
        status = gr.HTML(status_view(lab), elem_id="status")
        timer = gr.Timer(1.0, active=lab.busy)
        with gr.Tabs(selected="next", elem_id="tabs") as tabs:
            # ------------------------------------------------------------------ next word
            with gr.Tab("Next word", id="next", elem_id="tab-next"):
                gr.Markdown(
                    "One prompt to every language model. The strips colour each prompt token by "
                    "its loss, by how much the last prediction's gradient reaches it (claims "
                    "**T1**, **R3**: watch the tanh RNN fade), and for the GPT by attention."
                )
                prompt = gr.Textbox(DEFAULT_PROMPT, lines=3, label="prompt", elem_id="prompt")
                with gr.Row():
                    top_k = gr.Slider(1, 20, 5, step=1, label="top-k shown", elem_id="top-k")
                    max_new = gr.Slider(0, 400, 120, step=10, label="new tokens", elem_id="max-new")
                    temp = gr.Slider(0, 2, 0.8, step=0.05, label="temperature (0: greedy)")
                    sample_k = gr.Slider(0, 65, 20, step=1, label="sampling top-k (0: all)")
                    seed = gr.Number(0, precision=0, label="seed", elem_id="seed")
                with gr.Row():
                    layer = gr.Slider(
                        1, gpt_layers, 1, step=1, label="GPT layer", elem_id="gpt-layer"
                    )
                    head = gr.Dropdown(_heads(gpt_heads), value="mean", label="GPT head")
                    go = gr.Button("Predict", variant="primary", elem_id="predict")
                lm_cards = gr.HTML(elem_id="lm-cards")
                lm_inputs = [prompt, top_k, max_new, temp, sample_k, seed, layer, head]

                def run_lm(*values: Any) -> str:
                    return next_word_view(lab, *values)

                go.click(run_lm, lm_inputs, lm_cards)
                prompt.submit(run_lm, lm_inputs, lm_cards)
                for c in (top_k, max_new, temp, sample_k, layer, head):
                    c.input(run_lm, lm_inputs, lm_cards, trigger_mode="always_last")
            # ------------------------------------------------------------------ image
            with gr.Tab("Image", id="image", elem_id="tab-image"):
                gr.Markdown(
                    "Upload or draw an image (an image on a light background is inverted: the "
                    "training images are light on black). The shift sliders move it (claim "
                    "**C3**); below are the CNN's feature maps per stage (**C1**) and the ViT's "
                    "class-token attention (**V1**)."
                )
                current = gr.State(None)
                with gr.Row():
                    with gr.Column(scale=1):
                        with gr.Tabs():
                            with gr.Tab("Upload"):
                                upload = gr.Image(
                                    type="filepath", label="image", height=240, elem_id="upload"
                                )
                            with gr.Tab("Draw"):
                                # black ink, a stroke ~1/12 of the canvas: about a 2-pixel
                                # line at 28 px, like Fashion-MNIST's outlines
                                sketch = gr.Sketchpad(
                                    type="numpy",
                                    canvas_size=(280, 280),
                                    brush=gr.Brush(
                                        default_size=22, colors=["#000000"], color_mode="fixed"
                                    ),
                                    label="draw (pick the brush)",
                                    elem_id="sketch",
                                )
                        if examples:
                            gr.Examples(
                                [[str(p)] for p in examples],
                                [upload],
                                label="examples (Fashion-MNIST test images)",
                                elem_id="examples",
                            )
                    with gr.Column(scale=2):
                        with gr.Row():
                            dx = gr.Slider(-8, 8, 0, step=1, label="shift dx (px)", elem_id="dx")
                            dy = gr.Slider(-8, 8, 0, step=1, label="shift dy (px)", elem_id="dy")
                            img_k = gr.Slider(1, 10, 3, step=1, label="top-k")
                            invert = gr.Radio(["auto", "yes", "no"], value="auto", label="invert")
                        img_cards = gr.HTML(elem_id="img-cards")
                        shift_plot = gr.Plot(
                            label="top-1 probability against the shift", elem_id="shift-plot"
                        )
                with gr.Row():
                    vit_layer = gr.Slider(
                        1, vit_layers, 1, step=1, label="ViT layer", elem_id="vit-layer"
                    )
                    vit_head = gr.Dropdown(_heads(vit_heads), value="mean", label="ViT head")
                vit_maps = gr.HTML(elem_id="vit-attention")
                cnn_maps = gr.HTML(elem_id="feature-maps")
                img_inputs = [current, dx, dy, img_k, invert, vit_layer, vit_head]
                img_outputs = [img_cards, shift_plot, cnn_maps, vit_maps]

                def run_image(*values: Any) -> tuple:
                    return image_view(lab, *values)

                upload.change(_png, upload, current).then(run_image, img_inputs, img_outputs)
                sketch.change(_png, sketch, current).then(run_image, img_inputs, img_outputs)
                for c in (dx, dy, img_k, invert, vit_layer, vit_head):
                    c.change(run_image, img_inputs, img_outputs, trigger_mode="always_last")
            # ------------------------------------------------------------------ cost
            with gr.Tab("Cost", id="cost", elem_id="tab-cost"):
                gr.Markdown(
                    "Pick a layer and its sizes: the derivation is the one `archlab cost` prints "
                    "(Part 3's 60,200 vs 60,400, Part 4's 1,792), with FLOPs, memory and Big-O; "
                    "give n for the FLOPs-against-n plot and Part 5's crossover n*."
                )
                with gr.Row():
                    cost_layer = gr.Dropdown(
                        list(COST_LAYERS), value="rnn", label="layer", elem_id="layer"
                    )
                    convention = gr.Radio(
                        ["pytorch", "keras"],
                        value="pytorch",
                        label="convention",
                        elem_id="convention",
                    )
                    presets = {
                        cid: gr.Button(label, size="sm", elem_id=f"preset-{cid}")
                        for cid, label in PRESET_LABELS.items()
                    }
                with gr.Row():
                    fields = {
                        key: gr.Number(default, label=label, precision=0, elem_id=f"f-{key}")
                        for key, label, default in COST_FIELDS
                    }
                with gr.Row():
                    flags = {
                        key: gr.Checkbox(False, label=label, elem_id=f"f-{key}")
                        for key, label in COST_FLAGS
                    }
                cost_summary = gr.HTML(elem_id="cost-summary")
                with gr.Row():
                    derivation = gr.Code(
                        label="derivation (archlab cost)",
                        language=None,
                        wrap_lines=True,
                        elem_id="derivation",
                    )
                    flops_plot = gr.Plot(label="FLOPs against n", elem_id="flops-plot")
                cost_inputs = [cost_layer, convention, *fields.values(), *flags.values()]
                cost_outputs = [cost_summary, derivation, flops_plot]
                keys = ["layer", "convention", *fields, *flags]

                def visibility(layer_name: str) -> list:
                    from archlab.lab.costs import layer_options

                    allowed = set(layer_options(layer_name))
                    return [gr.update(visible=k in allowed) for k in [*fields, *flags]]

                def run_cost(*values: Any) -> tuple:
                    req = {k: v for k, v in zip(keys, values, strict=True) if v is not None}
                    return cost_view(
                        {k: int(v) if isinstance(v, float) else v for k, v in req.items()}
                    )

                def preset(cid: str) -> Any:
                    """Set the layer and every field to the claim's example, then derive."""
                    p = CLAIMS[cid].preset or {}
                    defaults = {key: default for key, _, default in COST_FIELDS}

                    def apply() -> list:
                        values = [p.get("layer", "rnn"), p.get("convention", "pytorch")]
                        values += [
                            p.get(k, None if k == "seq_len" else defaults[k]) for k in fields
                        ]
                        values += [bool(p.get(k, False)) for k in flags]
                        shown = visibility(values[0])
                        updates = [
                            gr.update(value=v, visible=u["visible"])
                            for v, u in zip(values[2:], shown, strict=True)
                        ]
                        return [values[0], values[1], *updates, *run_cost(*values)]

                    return apply

                field_comps = [*fields.values(), *flags.values()]
                preset_outputs = [cost_layer, convention, *field_comps, *cost_outputs]
                cost_layer.input(visibility, cost_layer, field_comps).then(
                    run_cost, cost_inputs, cost_outputs
                )
                for c in cost_inputs[1:]:
                    c.input(run_cost, cost_inputs, cost_outputs, trigger_mode="always_last")
                for cid, b in presets.items():
                    b.click(preset(cid), None, preset_outputs)
            # ------------------------------------------------------------------ study
            with gr.Tab("Study", id="study", elem_id="tab-study"):
                gr.Markdown(
                    f"The latest `archlab study` report from `{lab.study_dir}`; each claim's "
                    "button opens the tab where you can explore it on your own input."
                )
                verdicts = study_verdicts(lab)
                for cid, claim in CLAIMS.items():
                    verdict = f"  —  study: {verdicts[cid]}" if cid in verdicts else ""
                    b = gr.Button(
                        f"{cid}  {claim.how}  →  {TAB_NAMES[claim.tab]}{verdict}",
                        size="sm",
                        elem_id=f"claim-{cid}",
                        elem_classes="lab-claim",
                    )
                    if claim.preset:
                        b.click(_then_open("cost", preset(cid)), None, [tabs, *preset_outputs])
                    else:
                        b.click(lambda t=claim.tab: gr.Tabs(selected=t), None, tabs)
                gr.HTML(study_view(lab), elem_id="study")

        def tick(*lm_values: Any) -> list:
            """Progress while the defaults train; once they are loaded, the first predictions."""
            done = not lab.busy
            gl, gh = _layers(lab, "gpt")
            vl, vh = _layers(lab, "vit")
            return [
                status_view(lab),
                gr.Timer(active=not done),
                gr.Slider(maximum=gl),
                gr.Dropdown(choices=_heads(gh)),
                gr.Slider(maximum=vl),
                gr.Dropdown(choices=_heads(vh)),
                next_word_view(lab, *lm_values) if done and lab.models else gr.skip(),
            ]

        timer.tick(tick, lm_inputs, [status, timer, layer, head, vit_layer, vit_head, lm_cards])
        demo.load(visibility, cost_layer, field_comps).then(run_cost, cost_inputs, cost_outputs)
        demo.load(run_lm, lm_inputs, lm_cards)  # while training: the view says so
    return demo
