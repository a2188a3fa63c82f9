"""`archlab study` — run the answer sheet's claims as experiments and write the report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("archlab.study")

PROFILE_HELP = (
    "tiny: the tests' profile, seconds, decides nothing; quick: <= 10 min on 2 CPU cores, a "
    "preview that may say inconclusive (default); "
    "standard: <= 75 min on 2 CPU cores, every training claim at its positive control, the "
    "citable run; full: for a GPU"
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="test each claim of the answer sheet by experiment; write report.html",
        description="Run the claims ledger (T1-T3, R1-R3, C1-C4, V1-V4, P3-P5) and write "
        "report.html, report.md and results.json into --out. Results are cached per claim, so "
        "--only reruns some claims and the report is rebuilt from all of them.",
    )
    p.add_argument(
        "--profile",
        choices=("tiny", "quick", "standard", "full"),
        default="quick",
        help=PROFILE_HELP,
    )
    p.add_argument("--only", metavar="IDS", help="comma-separated claim ids, e.g. T1,R3")
    p.add_argument(
        "--out", type=Path, default=Path("archlab-study"), help="output folder (./archlab-study/)"
    )
    p.add_argument(
        "--seeds", type=int, help="seeds per training experiment (default: 3 quick, 5 standard)"
    )
    p.add_argument("--no-cache", action="store_true", help="recompute the selected claims")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="device")
    p.add_argument("--threads", type=int, help="torch threads (default: the physical cores)")
    p.add_argument(
        "--jobs",
        type=int,
        help="claims trained side by side on the CPU, in worker processes of threads/jobs "
        "threads each (default: the physical cores; 1: one after the other)",
    )
    p.add_argument(
        "--offline", action="store_true", help="never try to fetch the full Fashion-MNIST"
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from archlab.study.runner import StudyOptions, run_study

    only = args.only.split(",") if args.only is not None else None
    opts = StudyOptions(
        profile=args.profile,
        only=only,
        out=args.out,
        seeds=args.seeds,
        use_cache=not args.no_cache,
        progress=not args.no_progress,
        device=args.device,
        threads=args.threads,
        jobs=args.jobs,
        offline=args.offline,
    )
    results = run_study(opts)
    data = results["data"]
    print(f"text:   {data['text']['source']}")
    print(f"images: {data['images']['source']}")
    for c in results["claims"]:
        src = "cached" if c["timing"]["from_cache"] else f"{c['timing']['elapsed_s']:.0f} s"
        print(f"{c['id']:<3} {c['title']:<34} {c['verdict']['short']:<32} [{src}]")
    if results["not_run"]:
        print(f"not run yet: {', '.join(results['not_run'])}")
    print(
        f"report: {opts.out / 'report.html'}  ({results['timing']['elapsed_s']:.0f} s wall, "
        f"{results['timing']['cpu_s']:.0f} CPU-s)"
    )
    return 0
