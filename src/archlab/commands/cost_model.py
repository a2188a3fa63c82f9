"""`archlab cost model PKG.MODULE:CALLABLE` — any-module analysis (owned by the analyze work)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the `model` sub-command under `archlab cost`."""
    return None
