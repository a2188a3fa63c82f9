"""`archlab cost <layer>` — per-layer derivations (seed Parts 3-5).

One sub-command per layer, each with only its own options (PyTorch's argument names in kebab
case), plus the sizes that turn a parameter count into FLOPs and memory. The work is done by the
pure functions in :mod:`archlab.cost.layers`; this module only maps options onto them.
"""

from __future__ import annotations

import argparse
import json
import sys

from archlab.commands import cost_model
from archlab.cost import layers as L
from archlab.cost.render import render_text


def _size(text: str) -> int | tuple[int, ...]:
    """`32`, `32x24` or `32,24` -> 32 / (32, 24) (values are validated by the formulas)."""
    try:
        parts = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or HxW, got {text!r}") from None
    return parts[0] if len(parts) == 1 else parts


def _padding(text: str) -> int | tuple[int, ...] | str:
    return text if text in ("same", "valid") else _size(text)


# option -> add_argument keywords; dest is the PyTorch keyword the formula takes.
OPTIONS: dict[str, dict] = {
    "--in-features": dict(type=int, required=True),
    "--out-features": dict(type=int, required=True),
    "--num-embeddings": dict(type=int, required=True),
    "--embedding-dim": dict(type=int, required=True),
    "--padding-idx": dict(type=int),
    "--input-size": dict(type=int, required=True),
    "--hidden-size": dict(type=int, required=True),
    "--num-layers": dict(type=int, default=1),
    "--nonlinearity": dict(choices=("tanh", "relu"), default="tanh"),
    "--bidirectional": dict(action="store_true"),
    "--proj-size": dict(type=int, default=0),
    "--no-reset-after": dict(
        dest="reset_after",
        action="store_false",
        help="Keras GRU(reset_after=False): one (3*units,) bias",
    ),
    "--in-channels": dict(type=int, required=True),
    "--out-channels": dict(type=int, required=True),
    "--kernel-size": dict(type=_size, required=True, help="K or KHxKW"),
    "--stride": dict(type=_size, default=1),
    "--padding": dict(type=_padding, default=0, help="P, PHxPW, 'same' or 'valid'"),
    "--dilation": dict(type=_size, default=1),
    "--groups": dict(type=int, default=1),
    "--normalized-shape": dict(type=int, required=True, help="the last dim (d_model)"),
    "--no-elementwise-affine": dict(dest="elementwise_affine", action="store_false"),
    "--num-features": dict(type=int, required=True),
    "--dims": dict(type=int, choices=(1, 2), default=2, help="BatchNorm1d or BatchNorm2d"),
    "--no-affine": dict(dest="affine", action="store_false"),
    "--no-track-running-stats": dict(dest="track_running_stats", action="store_false"),
    "--d-model": dict(type=int, required=True),
    "--heads": dict(type=int, required=True),
    "--d-ff": dict(type=int, help="default 4*d_model"),
    "--layers": dict(type=int, required=True),
    "--activation": dict(choices=("relu", "gelu", "tanh", "sigmoid", "silu"), default="relu"),
    "--norm-first": dict(action="store_true", help="pre-norm blocks"),
    "--final-norm": dict(action="store_true", help="a LayerNorm after the stack"),
    "--causal": dict(action="store_true", help="causal self-attention mask"),
    "--patch-size": dict(type=int, required=True),
    "--no-bias": dict(dest="bias", action="store_false"),
    "--seq-len": dict(type=int, help="sequence length n (tokens / time steps)"),
    "--batch-size": dict(type=int, help="batch size B (default 1 once a size is given)"),
    "--image-size": dict(type=_size, help="spatial input size: S or HxW (conv1d: length)"),
}
TOKENS = ("--seq-len", "--batch-size")
RECURRENT = (
    "--input-size",
    "--hidden-size",
    "--num-layers",
    "--bidirectional",
    "--no-bias",
    *TOKENS,
)
CONV = (
    "--in-channels",
    "--out-channels",
    "--kernel-size",
    "--stride",
    "--padding",
    "--dilation",
    "--groups",
    "--no-bias",
    "--image-size",
    "--batch-size",
)
ATTN = ("--d-model", "--heads", "--no-bias", "--causal", *TOKENS)
FFN = ("--d-model", "--d-ff", "--activation", "--no-bias", *TOKENS)
LAYERS: dict[str, tuple[object, str, tuple[str, ...]]] = {
    "linear": (
        L.linear,
        "nn.Linear / Keras Dense",
        ("--in-features", "--out-features", "--no-bias", *TOKENS),
    ),
    "embedding": (
        L.embedding,
        "nn.Embedding",
        ("--num-embeddings", "--embedding-dim", "--padding-idx", *TOKENS),
    ),
    "rnn": (L.rnn, "nn.RNN / Keras SimpleRNN (seed Part 3)", (*RECURRENT, "--nonlinearity")),
    "lstm": (L.lstm, "nn.LSTM (with proj_size)", (*RECURRENT, "--proj-size")),
    "gru": (L.gru, "nn.GRU", (*RECURRENT, "--no-reset-after")),
    "conv1d": (L.conv1d, "nn.Conv1d", CONV),
    "conv2d": (L.conv2d, "nn.Conv2d (seed Part 4)", CONV),
    "layernorm": (
        L.layernorm,
        "nn.LayerNorm over the last dim",
        ("--normalized-shape", "--no-elementwise-affine", "--no-bias", *TOKENS),
    ),
    "batchnorm": (
        L.batchnorm,
        "nn.BatchNorm1d/2d (training mode)",
        (
            "--num-features",
            "--dims",
            "--no-affine",
            "--no-track-running-stats",
            "--seq-len",
            "--image-size",
            "--batch-size",
        ),
    ),
    "attention": (L.attention, "multi-head self-attention", ATTN),
    "ffn": (L.ffn, "position-wise feed-forward network", FFN),
    "transformer-block": (
        L.transformer_block,
        "nn.TransformerEncoderLayer",
        (*ATTN, "--d-ff", "--activation", "--norm-first"),
    ),
    "transformer": (
        L.transformer,
        "a stack of L Transformer blocks (seed Part 5)",
        (*ATTN, "--layers", "--d-ff", "--activation", "--norm-first", "--final-norm"),
    ),
    "patch-embed": (
        L.patch_embed,
        "ViT patch embedding (Conv2d, kernel = stride = p)",
        ("--in-channels", "--d-model", "--patch-size", "--image-size", "--no-bias", "--batch-size"),
    ),
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost", help="parameters, FLOPs, memory and Big-O of a layer or model")
    layers = p.add_subparsers(dest="layer", metavar="LAYER", parser_class=type(p))
    layers.required = True
    for name, (_, help_, options) in LAYERS.items():
        lp = layers.add_parser(name, help=help_, description=help_)
        for opt in options:
            lp.add_argument(opt, **OPTIONS[opt])
        lp.add_argument(
            "--dtype",
            default="float32",
            choices=("float32", "float16", "bfloat16", "float64"),
            help="activation dtype (bytes per element)",
        )
        lp.add_argument("--convention", default="pytorch", choices=("pytorch", "keras"))
        lp.add_argument("--json", action="store_true", help="print one JSON object")
        lp.set_defaults(func=run, options=options)
    cost_model.register(layers)


def run(args: argparse.Namespace) -> int:
    fn = LAYERS[args.layer][0]
    kw = {OPTIONS[o].get("dest", o[2:].replace("-", "_")): None for o in args.options}
    kw = {k: getattr(args, k) for k in kw if getattr(args, k) is not None}
    cost = fn(**kw, dtype=args.dtype, convention=args.convention)  # type: ignore[operator]
    if args.json:
        json.dump(cost.to_json(), sys.stdout)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render_text(cost))
    return 0
