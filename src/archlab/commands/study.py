"""`archlab study` — run the answer sheet's claims as experiments and write the report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger("archlab.study")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study",
        help="test each claim of the answer sheet by experiment; write report.html",
        description="Run the claims ledger (T1-T3, R1-R3, P3-P5 ...) and write report.html, "
        "report.md and results.json into --out. Results are cached per claim, so --only reruns "
        "some claims and the report is rebuilt from all of them.",
    )
    p.add_argument(
        "--profile",
        choices=("quick", "full"),
        default="quick",
        help="quick: <= 10 min on 2 CPU cores (default); full: a long CPU run (hours)",
    )
    p.add_argument("--only", metavar="IDS", help="comma-separated claim ids, e.g. T1,R3")
    p.add_argument(
        "--out",
        type=Path,
        default=Path("archlab-study"),
        help="output folder (default ./archlab-study/)",
    )
    p.add_argument("--seeds", type=int, default=3, help="seeds per training experiment (default 3)")
    p.add_argument("--no-cache", action="store_true", help="recompute the selected claims")
    p.add_argument("--threads", type=int, help="torch threads (default: 1 for quick, all for full)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from archlab.study.runner import StudyOptions, run_study

    only = [c.strip().upper() for c in args.only.split(",") if c.strip()] if args.only else None
    opts = StudyOptions(
        profile=args.profile,
        only=only,
        out=args.out,
        seeds=args.seeds,
        use_cache=not args.no_cache,
        progress=not args.no_progress,
        threads=args.threads,
    )
    results = run_study(opts)
    if results["seeds"] and len(results["seeds"]) < 3:
        log.warning("fewer than 3 seeds: spreads of training experiments are not meaningful")
    data = results["data"]
    print(f"data: {data['source']} ({data['chars']:,} characters)")
    for c in results["claims"]:
        src = "cached" if c["timing"]["from_cache"] else f"{c['timing']['elapsed_s']:.0f} s"
        print(f"{c['id']:<3} {c['title']:<32} {c['verdict']['label'][:90]}  [{src}]")
    if results["not_run"]:
        print(f"not run yet: {', '.join(results['not_run'])}")
    print(
        f"report: {opts.out / 'report.html'}  ({results['timing']['elapsed_s']:.0f} s wall, "
        f"{results['timing']['cpu_s']:.0f} CPU-s)"
    )
    return 0
