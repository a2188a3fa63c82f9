"""`archlab cost model PKG.MODULE:CALLABLE --input-shape 1x128` — any-module analysis."""

from __future__ import annotations

import argparse
import json

from archlab.errors import ArchlabError

_DTYPES = ("float32", "float64", "float16", "bfloat16", "long", "int")


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `model` sub-command under `archlab cost`."""
    p = sub.add_parser(
        "model",
        help="per-layer params/FLOPs/activation bytes of any nn.Module (like torchinfo)",
        description="Analyse an nn.Module: formulas where archlab has one, op-level measurement "
        "elsewhere, uncounted ops listed, reconciled with FlopCounterMode. The model runs on fake "
        "tensors (shapes only), so input values never matter.",
    )
    p.add_argument(
        "target",
        metavar="PKG.MODULE:CALLABLE",
        help="an nn.Module instance, class or no-argument factory (the current directory is "
        "importable, as with python -m)",
    )
    p.add_argument(
        "--input-shape",
        action="append",
        required=True,
        metavar="SHAPE",
        help="e.g. 1x128; repeat for several positional inputs",
    )
    p.add_argument(
        "--input-dtype",
        default="float32",
        help=f"one of {', '.join(_DTYPES)} (default float32); inputs are shapes only (fake "
        "tensors), so no size allocates memory and values never matter",
    )
    p.add_argument("--depth", type=int, default=None, help="fold rows deeper than N into parents")
    p.add_argument("--no-backward", action="store_true", help="forward pass only")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from archlab.cost.analyze import analyze
    from archlab.cost.target import build_inputs, load_target

    if args.depth is not None and args.depth < 0:
        raise ArchlabError(f"--depth must be >= 0, got {args.depth}")
    model = load_target(args.target)
    inputs, note = build_inputs(model, args.input_shape, args.input_dtype)
    report = analyze(model, inputs, backward=not args.no_backward)
    if args.json:
        print(json.dumps({**report.to_json(), "input_note": note}, indent=2))
    else:
        print(report.table(depth=args.depth))
        print(f"Inputs: {note}")
    return 0
