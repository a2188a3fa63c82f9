"""`archlab cost <layer>` — per-layer derivations (seed Parts 3-5)."""

from __future__ import annotations

import argparse

from archlab.commands import cost_model


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cost", help="parameters, FLOPs, memory and Big-O of a layer or model")
    layers = p.add_subparsers(dest="layer", metavar="LAYER", parser_class=type(p))
    layers.required = True
    cost_model.register(layers)
