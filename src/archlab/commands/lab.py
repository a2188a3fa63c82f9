"""`archlab lab [RUN_DIR ...]`: the seed's comparisons in the browser (archlab.lab)."""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path

from archlab.errors import ArchlabError

log = logging.getLogger("archlab.lab")


def register(sub: argparse._SubParsersAction) -> None:
    from archlab.lab.defaults import TRAIN_SECONDS

    p = sub.add_parser(
        "lab",
        help="a local web app: RNNs vs GPT, CNN vs ViT, costs, the study (needs the lab extra)",
        description="Start the lab on http://127.0.0.1:PORT/. Without run directories it uses the "
        "default models under ~/.cache/archlab/lab/, training them on first start (~90 s).",
    )
    p.add_argument(
        "run_dirs", nargs="*", metavar="RUN_DIR", help="runs from archlab train (LM or image)"
    )
    p.add_argument("--port", type=int, default=7860, help="port (default: 7860)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to bind (default: 127.0.0.1, this machine only)",
    )
    p.add_argument(
        "--study",
        default="archlab-study",
        help="study folder to show (default: ./archlab-study)",
    )
    p.add_argument(
        "--models-dir",
        help="where the default models live (default: ~/.cache/archlab/lab)",
    )
    p.add_argument(
        "--train-seconds",
        type=float,
        default=TRAIN_SECONDS,
        help=f"first-start training budget of the six default models (default: {TRAIN_SECONDS:g})",
    )
    p.set_defaults(func=_lab)


def _lab(args: argparse.Namespace) -> int:
    from archlab.lab.defaults import default_models_dir
    from archlab.lab.examples import example_images
    from archlab.lab.server import build_app, check_port, serve
    from archlab.lab.state import Lab

    paths = [("--study", args.study), ("--models-dir", args.models_dir)]
    for flag, value in [*paths, *(("RUN_DIR", d) for d in args.run_dirs)]:
        if value == "":  # Path("") is the current folder: never read or written as one
            raise ArchlabError(f"{flag} is empty; give a folder")
    if not (math.isfinite(args.train_seconds) and args.train_seconds > 0):
        raise ArchlabError(f"--train-seconds must be a positive number, got {args.train_seconds}")
    study = Path(args.study)
    check_port(args.host, args.port)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding to %s: anyone who can reach this machine can use the lab", args.host)
    root = Path(args.models_dir) if args.models_dir is not None else default_models_dir()
    if args.run_dirs:
        lab = Lab.from_run_dirs([Path(d) for d in args.run_dirs], study)
    else:
        lab, _ = Lab.with_defaults(root, study, args.train_seconds)
    serve(build_app(lab, example_images(root)), args.host, args.port)
    return 0
