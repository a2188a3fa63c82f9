"""Run the ledger: per-claim caching, dependencies, results.json and the reports.

Cache layout: ``OUT/cache/<claim id>-<key>.json``, where the key hashes the claim's module source,
the shared study helpers, the profile, its sizes, the seeds, the torch version and the device. A
changed claim therefore reruns; an unchanged one is read back, so ``--only T3`` recomputes T3 and
the report is rebuilt from every claim cached for the same profile and seeds.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

import archlab
from archlab import __version__
from archlab.errors import ArchlabError
from archlab.study.claim import PROFILES, Claim, get_claim, ledger
from archlab.study.context import StudyContext
from archlab.study.measure import rounded

log = logging.getLogger(__name__)
MARKER = ".archlab-study"  # marks an output folder as ours, so we never write into a user's folder
# Shared code every cache key covers: the study's helpers, and the packages the claims build on
# (cost engine, models, data layer). Editing one claim module reruns only that claim.
HELPERS = (
    "archlab.study.context",
    "archlab.study.imagetrain",
    "archlab.study.lmtrain",
    "archlab.study.measure",
    "archlab.study.nets",
    "archlab.study.vision",
    "archlab.study.claims._engine",
)
PACKAGES = ("archlab/cost", "archlab/models", "archlab/data")


@dataclass
class StudyOptions:
    profile: str = "quick"
    only: list[str] | None = None
    out: Path = field(default_factory=lambda: Path("archlab-study"))
    seeds: int = 3
    use_cache: bool = True
    progress: bool = True
    device: str = "cpu"  # the experiments run on the CPU; a GPU path is not implemented yet
    # torch intra-op threads. None: 1 for tiny/quick (the models are small; on a loaded 2-core
    # machine 2 spinning OpenMP threads made training 25x slower than 1, measured), torch's default
    # for full.
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.threads is not None and self.threads < 1:
            raise ArchlabError(f"--threads must be >= 1, got {self.threads}")
        if self.profile not in PROFILES:
            raise ArchlabError(f"unknown profile {self.profile!r}; valid: {', '.join(PROFILES)}")
        if self.seeds < 1:
            raise ArchlabError(f"--seeds must be >= 1, got {self.seeds}")
        self.out = Path(self.out)


@functools.lru_cache(maxsize=1)
def _shared_hash() -> str:
    h = hashlib.sha256()
    for name in HELPERS:
        h.update(inspect.getsource(importlib.import_module(name)).encode())
    root = Path(archlab.__file__).parent.parent
    for pkg in PACKAGES:
        for f in sorted((root / pkg).rglob("*.py")):
            h.update(f.relative_to(root).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def _source_hash(claim: Claim) -> str:
    h = hashlib.sha256(inspect.getsource(sys.modules[claim.module]).encode())
    h.update(_shared_hash().encode())
    return h.hexdigest()


def claim_key(claim: Claim, opts: StudyOptions, dep_keys: Mapping[str, str]) -> str:
    blob = json.dumps(
        {
            "src": _source_hash(claim),
            "profile": opts.profile,
            "sizes": claim.sizes[opts.profile],
            "seeds": opts.seeds,
            "torch": torch.__version__,
            "device": opts.device,
            "deps": dict(dep_keys),
            "threads": torch.get_num_threads(),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def machine() -> dict[str, Any]:
    import jinja2
    import matplotlib
    import numpy

    dev = "cpu"
    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name(0)
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "accelerator": dev,
        "python": platform.python_version(),
        "versions": {
            "archlab": __version__,
            "torch": torch.__version__,
            "numpy": numpy.__version__,
            "matplotlib": matplotlib.__version__,
            "jinja2": jinja2.__version__,
        },
    }


def _prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ArchlabError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).exists():
        raise ArchlabError(
            f"--out {out} is a non-empty folder not made by 'archlab study'; "
            "choose an empty or new folder"
        )
    (out / "cache").mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by archlab study; safe to delete with this folder\n")


def write_atomic(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data.encode() if isinstance(data, str) else data)
    os.replace(tmp, path)


def _run_claim(claim: Claim, opts: StudyOptions, deps: dict[str, Mapping[str, Any]]) -> dict:
    ctx = StudyContext(
        claim_id=claim.id,
        profile=opts.profile,
        seeds=list(range(opts.seeds)),
        sizes=dict(claim.sizes[opts.profile]),
        device=torch.device(opts.device),
        show_progress=opts.progress,
        deps=deps,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    metrics = rounded(claim.run(ctx))
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    verdict = claim.verdict(metrics)
    return {
        "id": claim.id,
        "part": claim.part,
        "title": claim.title,
        "subject": claim.subject,
        "seed_quote": claim.seed_quote,
        "method": claim.method,
        "profile": opts.profile,
        "seeds": ctx.seeds,
        "sizes": ctx.sizes,
        "trains": claim.trains,
        "spread": claim.spread,
        "metrics": metrics,
        "verdict": verdict.to_json(),
        "timing_verdict": claim.timing_verdict,
        "timing": {"elapsed_s": round(elapsed, 3), "cpu_s": round(cpu, 3), "from_cache": False},
    }


def run_study(opts: StudyOptions) -> dict[str, Any]:
    """Run (or read from cache) the selected claims; write results.json, report.md, report.html."""
    previous_threads = torch.get_num_threads()
    threads = opts.threads or (previous_threads if opts.profile == "full" else 1)
    torch.set_num_threads(threads)
    try:
        return _run_study(opts, threads)
    finally:
        torch.set_num_threads(previous_threads)


def _run_study(opts: StudyOptions, threads: int) -> dict[str, Any]:
    from archlab.study import imagetrain, lmtrain
    from archlab.study.report import write_reports

    lmtrain.clear_memo()  # every study run trains afresh (shared only between its own claims)
    imagetrain.clear_memo()

    claims = ledger()
    selected = {get_claim(c).id for c in opts.only} if opts.only else {c.id for c in claims}
    _prepare_out(opts.out)
    cache_dir = opts.out / "cache"
    t0, c0 = time.perf_counter(), time.process_time()
    entries: dict[str, dict] = {}
    keys: dict[str, str] = {}
    needed = set(selected)
    for c in reversed(claims):  # dependencies of selected claims are needed too
        if c.id in needed:
            needed.update(c.requires)
    for claim in claims:  # ledger order puts dependencies first (Part order)
        missing = [r for r in claim.requires if r not in entries]
        keys[claim.id] = claim_key(claim, opts, {r: keys.get(r, "") for r in claim.requires})
        path = cache_dir / f"{claim.id}-{keys[claim.id]}.json"
        force = claim.id in selected and not opts.use_cache
        if path.exists() and not force:
            entry = json.loads(path.read_text())
            entry["timing"]["from_cache"] = True
            entries[claim.id] = entry
            continue
        if claim.id not in needed:
            continue
        if missing:
            raise ArchlabError(f"claim {claim.id} needs {', '.join(missing)}, which could not run")
        log.info("study: running %s (%s, profile %s)", claim.id, claim.title, opts.profile)
        entry = _run_claim(claim, opts, {r: entries[r]["metrics"] for r in claim.requires})
        entry["key"] = keys[claim.id]
        write_atomic(path, json.dumps(entry, indent=1, sort_keys=True))
        entries[claim.id] = entry
        log.info(
            "study: %s -> %s (%.1f s)",
            claim.id,
            entry["verdict"]["label"],
            entry["timing"]["elapsed_s"],
        )
    from archlab.study.lmtrain import study_corpus

    results = {
        "archlab_study": 1,
        "profile": opts.profile,
        "seeds": list(range(opts.seeds)),
        "device": opts.device,
        "machine": {**machine(), "torch_threads": threads},
        "data": study_corpus()[1],
        "claims": [entries[c.id] for c in claims if c.id in entries],
        "not_run": [c.id for c in claims if c.id not in entries],
        "timing": {
            "elapsed_s": round(time.perf_counter() - t0, 3),
            "cpu_s": round(time.process_time() - c0, 3),
            "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    }
    text = json.dumps(results, indent=1, sort_keys=True)
    write_atomic(opts.out / "results.json", text)
    results = json.loads(text)  # the report shows exactly what results.json holds
    write_reports(results, opts.out)
    return results


def strip_timing(results: Any, timing_verdicts: bool = True) -> Any:
    """``results`` without wall-clock fields: every ``timing`` key, and (by default) the verdict of
    claims whose verdict is decided by timings. What remains must be identical across runs with the
    same seeds on the same machine (issue 5, "Determinism")."""
    if isinstance(results, dict):
        out = {k: strip_timing(v, timing_verdicts) for k, v in results.items() if k != "timing"}
        if timing_verdicts and out.get("timing_verdict"):
            out.pop("verdict", None)
        return out
    if isinstance(results, list):
        return [strip_timing(v, timing_verdicts) for v in results]
    return results


__all__ = [
    "MARKER",
    "StudyOptions",
    "claim_key",
    "machine",
    "run_study",
    "strip_timing",
    "write_atomic",
]
