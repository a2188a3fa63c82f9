"""Run the ledger: per-claim caching, dependencies, results.json and the reports.

Cache layout: ``OUT/cache/<claim id>-<key>.json``, where the key hashes the claim's module source,
the shared study code, the profile, its sizes, the seeds, the torch version, the device and (for
claims decided by wall-clock timings) the thread count. A changed claim therefore reruns; an
unchanged one is read back, so ``--only T3`` recomputes T3 and the report is rebuilt from every
claim cached for the same profile and seeds. A damaged cache file (a killed write, an edit)
is recomputed with a notice, never trusted. Trained models live in ``OUT/cache/runs/`` (see
:mod:`archlab.study.training`).

Parallel claims (``--jobs``): the study's models are small, and small models barely use a second
thread (measured on a 2-core Zen 3, 30 standard-profile steps of each T1 model at 1 vs 2 threads:
LSTM 0.62 vs 0.65 s, GRU 1.74 vs 1.92 s, tanh RNN 1.22 vs 1.02 s, GPT 4.69 vs 2.99 s; a CNN 1.17
vs 0.84 s). Two claims trained side by side, one thread each, finish sooner than one after the
other on two threads. So on the CPU the runner starts one worker process per group of claims that
share trained models (``Claim.models``, or one needs the other's), ``jobs`` at a time, each with
``threads // jobs`` threads and ``--only`` its group; the workers write the same per-claim cache
this process then reads. Claims decided by timings (T2, V4) and the analytic ones run here,
afterwards, alone on every thread.
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
from archlab.hardware import resolve_precision
from archlab.study.claim import MAX_SEEDS, MIN_SEEDS, PROFILES, Claim, get_claim, ledger
from archlab.study.context import StudyContext
from archlab.study.measure import rounded

log = logging.getLogger(__name__)
WORKER_ENV = "ARCHLAB_STUDY_WORKER"  # set in a worker: it fills the cache, the parent reports
MARKER = ".archlab-study"  # marks an output folder as ours, so we never write into a user's folder
# Shared code every cache key covers: the study's helpers, and the packages the claims build on
# (cost engine, models, data layer). Editing one claim module reruns only that claim.
HELPERS = (
    "archlab.study.claim",
    "archlab.study.context",
    "archlab.study.data",
    "archlab.study.measure",
    "archlab.study.nets",
    "archlab.study.pools",
    "archlab.study.stats",
    "archlab.study.tasks",
    "archlab.study.training",
    "archlab.study.vision",
    "archlab.study.claims._engine",
)
PACKAGES = ("archlab/cost", "archlab/models", "archlab/data", "archlab/train")


@dataclass
class StudyOptions:
    profile: str = "quick"
    only: list[str] | None = None
    out: Path = field(default_factory=lambda: Path("archlab-study"))
    seeds: int | None = None  # None: the profile's minimum (MIN_SEEDS)
    use_cache: bool = True
    progress: bool = True
    device: str = "auto"  # auto: CUDA when there is one, else the CPU
    threads: int | None = None  # torch intra-op threads; None: the physical cores
    offline: bool = False  # never try to fetch the full datasets
    jobs: int | None = None  # worker processes on the CPU; None: the physical cores

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ArchlabError(f"unknown profile {self.profile!r}; valid: {', '.join(PROFILES)}")
        lo = MIN_SEEDS[self.profile]
        if self.seeds is None:
            self.seeds = lo
        if not lo <= self.seeds <= MAX_SEEDS:
            raise ArchlabError(
                f"--seeds must be in {lo}..{MAX_SEEDS} for the {self.profile} profile (effects "
                f"need >= {lo} paired seeds), got {self.seeds}"
            )
        if self.threads is not None and not 1 <= self.threads <= 1024:
            raise ArchlabError(f"--threads must be in 1..1024, got {self.threads}")
        if self.jobs is not None and not 1 <= self.jobs <= 64:
            raise ArchlabError(f"--jobs must be in 1..64, got {self.jobs}")
        if self.only is not None:
            self.only = [c.strip().upper() for c in self.only if c.strip()]
            if not self.only:
                raise ArchlabError("--only: no claim ids given (e.g. --only T1,R3)")
        if self.device not in ("auto", "cpu", "cuda"):
            raise ArchlabError(f"--device must be auto, cpu or cuda, got {self.device!r}")
        if self.device == "auto":
            self.device = "cuda" if torch.cuda.is_available() else "cpu"
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ArchlabError(
                f"--device cuda: this torch has no usable CUDA device (torch {torch.__version__})"
            )
        self.out = Path(self.out)


@functools.lru_cache(maxsize=1)
def code_hash() -> str:
    """Hash of the study's shared code and the packages it builds on (cache keys, run dirs)."""
    return _shared_hash()


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
            "offline": opts.offline,
            # the precision ``auto`` resolves to here: a claim computed in fp32 on an AVX2 CPU is
            # not read back as this machine's answer where bf16 is chosen (and the reverse)
            "precision": resolve_precision("auto", opts.device)[0],
            "deps": dict(dep_keys),
            # Threads decide a timing verdict; elsewhere they only change float rounding, so a
            # claim a worker trained on one thread is read back by a run on two.
            "threads": torch.get_num_threads() if claim.timing_verdict else None,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def machine() -> dict[str, Any]:
    import jinja2
    import matplotlib
    import numpy

    from archlab.hardware import _cpu_name, cpu_flags, physical_cores

    dev = "cpu"
    if torch.cuda.is_available():
        dev = torch.cuda.get_device_name(0)
    return {
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_flags": " ".join(sorted(cpu_flags())),
        "cpu_count": os.cpu_count(),
        "physical_cores": physical_cores(),
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
    try:
        (out / "cache" / "runs").mkdir(parents=True, exist_ok=True)
        (out / MARKER).write_text("written by archlab study; safe to delete with this folder\n")
    except OSError as e:
        raise ArchlabError(f"--out {out}: cannot write there ({e.strerror or e})") from None


def write_atomic(path: Path, data: str | bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


_ENTRY_KEYS = {"id", "metrics", "verdict", "effect", "checks", "literature", "timing", "key"}


def _read_cache(
    path: Path, claim: Claim, key: str, opts: StudyOptions, quiet: bool = False
) -> dict | None:
    """The cached entry, or None (with a notice) when the file is damaged or not ours.

    Only the metrics and timings are data: the fields that follow from the claim and the options
    must be theirs, and the verdict, effect, checks, literature and method must have the shape
    the claim's rule gives the metrics (the text may differ: it follows the metrics' key order,
    which the file sorts). The report renders all of them, so one that does not
    (``"checks": null``) means an edited or damaged file, recomputed rather than shown. An entry
    also carries the digest of its content, so an edit of a metric is damage too (entries
    written before the digest are checked by their shape, and their tables built)."""
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(entry, dict) or not _ENTRY_KEYS <= set(entry):
            raise ValueError("not a study cache entry")
        digest = entry.pop("digest", None)
        if digest is not None and digest != _digest(entry):
            raise ValueError("its content does not match its digest")
        if entry["id"] != claim.id or entry["key"] != key:
            raise ValueError("written for another claim or key")
        timing = entry["timing"]
        if not isinstance(timing, dict) or not all(
            isinstance(timing.get(k), (int, float)) for k in ("elapsed_s", "cpu_s")
        ):
            raise ValueError("its timing is not a pair of numbers")
        static = json.loads(json.dumps(_static(claim, opts)))  # as the file holds it
        metrics = entry["metrics"]
        rule = {"method": claim.method(metrics), **_verdict_json(claim.verdict(metrics))}
        rule = json.loads(json.dumps(rule))
        wrong = [k for k, v in static.items() if _json(entry.get(k)) != _json(v)]
        wrong += [k for k, v in rule.items() if _shape(entry.get(k)) != _shape(v)]
        if wrong:
            raise ValueError(f"{', '.join(wrong)} do not follow from the claim and its metrics")
        claim.tables(metrics)  # what the report renders from the metrics must build
        return entry
    except Exception as e:  # noqa: BLE001  (any damage means: recompute, never trust it)
        if quiet:
            return None
        log.warning("study: cache file %s is damaged (%s); recomputing %s", path, e, claim.id)
        return None


def _run_claim(claim: Claim, opts: StudyOptions, deps: dict[str, Mapping[str, Any]]) -> dict:
    ctx = StudyContext(
        claim_id=claim.id,
        profile=opts.profile,
        seeds=list(range(opts.seeds)),
        sizes=dict(claim.sizes[opts.profile]),
        device=torch.device(opts.device),
        show_progress=opts.progress,
        deps=deps,
        runs_dir=opts.out / "cache" / "runs",
        offline=opts.offline,
    )
    t0, c0 = time.perf_counter(), time.process_time()
    metrics = rounded(claim.run(ctx))
    metrics = json.loads(json.dumps(metrics))  # exactly what the cache and results.json hold
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    verdict = claim.verdict(metrics)
    if claim.trains and (verdict.effect is None or verdict.literature is None):
        raise RuntimeError(f"claim {claim.id} trains but its verdict has no effect or literature")
    return {
        "id": claim.id,
        **_static(claim, opts),
        "method": claim.method(metrics),
        "metrics": metrics,
        **_verdict_json(verdict),
        "timing": {"elapsed_s": round(elapsed, 3), "cpu_s": round(cpu, 3), "from_cache": False},
    }


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True)


def _digest(entry: Mapping[str, Any]) -> str:
    """sha256 of a cache entry's content as written (``from_cache`` false, no digest)."""
    return hashlib.sha256(_json(entry).encode()).hexdigest()[:16]


def _shape(obj: Any) -> Any:
    """A JSON value's shape: dicts by their keys (recursively), everything else by its kind."""
    if isinstance(obj, dict):
        return {k: _shape(v) for k, v in obj.items()}
    if isinstance(obj, bool) or obj is None:
        return repr(type(obj))
    return "number" if isinstance(obj, (int, float)) else type(obj).__name__


def _static(claim: Claim, opts: StudyOptions) -> dict[str, Any]:
    """An entry's fields that follow from the claim and the options alone."""
    return {
        "part": claim.part,
        "title": claim.title,
        "subject": claim.subject,
        "seed_quote": claim.seed_quote,
        "profile": opts.profile,
        "seeds": list(range(opts.seeds)),
        "sizes": dict(claim.sizes[opts.profile]),
        "trains": claim.trains,
        "uses": list(claim.uses),
        "spread": claim.spread,
        "timing_verdict": claim.timing_verdict,
    }


def _verdict_json(v: Any) -> dict[str, Any]:
    return {
        "verdict": v.to_json(),
        "effect": v.effect.to_json() if v.effect is not None else None,
        "checks": dict(v.checks),
        "literature": v.literature.to_json() if v.literature is not None else None,
    }


def run_study(opts: StudyOptions) -> dict[str, Any]:
    """Run (or read from cache) the selected claims; write results.json, report.md, report.html."""
    from archlab.hardware import fastest_threads, physical_cores

    previous_threads = torch.get_num_threads()
    if opts.threads is not None:
        threads, probe = opts.threads, {"requested": opts.threads}
    elif torch.device(opts.device).type == "cpu":
        # Physical cores, unless other processes keep them busy right now (measured).
        threads, probe = fastest_threads(physical_cores())
        probe = {"physical_cores": physical_cores(), "chosen": threads, **probe}
    else:
        threads, probe = physical_cores(), {"physical_cores": physical_cores()}
    jobs = opts.jobs
    if jobs is None:
        jobs = physical_cores() if torch.device(opts.device).type == "cpu" else 1
    torch.set_num_threads(threads)
    try:
        return _run_study(opts, threads, probe, jobs)
    finally:
        torch.set_num_threads(previous_threads)


def _to_compute(opts: StudyOptions, claims: list[Claim], needed: set[str]) -> list[Claim]:
    """The needed claims without an intact cache entry (in ledger order), checked quietly."""
    keys: dict[str, str] = {}
    out = []
    for claim in claims:
        keys[claim.id] = claim_key(claim, opts, {r: keys.get(r, "") for r in claim.requires})
        if claim.id not in needed:
            continue
        path = opts.out / "cache" / f"{claim.id}-{keys[claim.id]}.json"
        if (
            opts.use_cache
            and path.exists()
            and _read_cache(path, claim, keys[claim.id], opts, quiet=True)
        ):
            continue
        out.append(claim)
    return out


def _cpu_s() -> float:
    """CPU seconds of this process plus those of its finished children (the claim workers): the
    study's whole CPU time, not only the parent's, which mostly waits on its workers."""
    try:
        import resource
    except ImportError:  # not on POSIX: the parent's own time only
        return time.process_time()
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def _groups(todo: list[Claim]) -> list[list[Claim]]:
    """``todo``'s claims in groups that share trained models (``Claim.models``) or depend on one
    another (``requires``), largest first: each group runs in one worker, in ledger order."""
    group: dict[str, list[Claim]] = {}
    of: dict[str, str] = {}
    for c in todo:
        joined = next((of[r] for r in c.requires if r in of), None)
        g = joined or c.models or c.id
        group.setdefault(g, []).append(c)
        of[c.id] = g
    return sorted(group.values(), key=lambda g: -len(g))


def _run_workers(opts: StudyOptions, groups: list[list[Claim]], jobs: int, threads: int) -> None:
    """Run each group in its own ``archlab study`` process (see the module docstring), ``jobs`` at
    a time; an ArchlabError if one fails (its own message is on stderr)."""
    import subprocess

    def start(g: list[Claim]) -> subprocess.Popen:
        log.info("study: worker (%d thread(s)): %s", threads, ", ".join(c.id for c in g))
        cmd = [sys.executable, "-m", "archlab", "study", "--profile", opts.profile]
        cmd += ["--only", ",".join(c.id for c in g), "--out", str(opts.out)]
        cmd += ["--seeds", str(opts.seeds), "--device", opts.device, "--threads", str(threads)]
        cmd += ["--jobs", "1", "--no-progress"]
        cmd += ["--offline"] if opts.offline else []
        cmd += ["--no-cache"] if not opts.use_cache else []
        env = {**os.environ, WORKER_ENV: "1"}
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL)

    queue, running = list(groups), []
    try:
        while queue or running:
            while queue and len(running) < jobs:
                g = queue.pop(0)
                running.append((g, start(g)))
            time.sleep(0.2)
            for g, proc in list(running):
                if proc.poll() is None:
                    continue
                running.remove((g, proc))
                if proc.returncode != 0:
                    ids = ", ".join(c.id for c in g)
                    raise ArchlabError(
                        f"study: the worker running {ids} failed (exit {proc.returncode}); "
                        "its message is above"
                    )
    finally:
        for _, proc in running:
            if proc.poll() is None:
                proc.terminate()
                proc.wait()


def _run_study(
    opts: StudyOptions, threads: int, thread_probe: dict, jobs: int = 1
) -> dict[str, Any]:
    from archlab.study import training
    from archlab.study.data import load_images, load_text
    from archlab.study.report import write_reports

    training.clear_memo()  # every study process trains (or loads) afresh
    claims = ledger()
    selected = {get_claim(c).id for c in opts.only} if opts.only else {c.id for c in claims}
    _prepare_out(opts.out)
    cache_dir = opts.out / "cache"
    t0, c0 = time.perf_counter(), _cpu_s()
    entries: dict[str, dict] = {}
    keys: dict[str, str] = {}
    needed = set(selected)
    for c in reversed(claims):  # dependencies of selected claims are needed too
        if c.id in needed:
            needed.update(c.requires)
    by_workers: set[str] = set()
    if jobs > 1 and not os.environ.get(WORKER_ENV):
        # timed claims run alone, below; the analytic ones take seconds
        todo = [c for c in _to_compute(opts, claims, needed) if c.trains and not c.timing_verdict]
        groups = _groups(todo)
        if len(groups) > 1:  # one group gains nothing from a worker
            jobs = min(jobs, len(groups))
            _run_workers(opts, groups, jobs, max(1, threads // jobs))
            by_workers = {c.id for g in groups for c in g}
    for claim in claims:  # ledger order puts dependencies first (Part order)
        missing = [r for r in claim.requires if r not in entries]
        keys[claim.id] = claim_key(claim, opts, {r: keys.get(r, "") for r in claim.requires})
        path = cache_dir / f"{claim.id}-{keys[claim.id]}.json"
        force = claim.id in selected and not opts.use_cache and claim.id not in by_workers
        if path.exists() and not force:
            entry = _read_cache(path, claim, keys[claim.id], opts)
            if entry is not None:
                entry["timing"]["from_cache"] = claim.id not in by_workers  # else: this run's
                entries[claim.id] = entry
                continue
            if claim.id not in needed:  # damaged and not asked for: leave it out this time
                continue
        if claim.id not in needed:
            continue
        if missing:
            raise ArchlabError(f"claim {claim.id} needs {', '.join(missing)}, which could not run")
        log.info("study: running %s (%s, profile %s)", claim.id, claim.title, opts.profile)
        entry = _run_claim(claim, opts, {r: entries[r]["metrics"] for r in claim.requires})
        entry["key"] = keys[claim.id]
        text = json.dumps({**entry, "digest": _digest(entry)}, indent=1, sort_keys=True)
        write_atomic(path, text)
        entries[claim.id] = entry
        log.info(
            "study: %s -> %s (%.1f s)",
            claim.id,
            entry["verdict"]["short"],
            entry["timing"]["elapsed_s"],
        )
    results = {
        "archlab_study": 2,
        "profile": opts.profile,
        "seeds": list(range(opts.seeds)),
        "device": opts.device,
        "machine": {**machine(), "torch_threads": threads, "thread_choice": thread_probe},
        "data": {"text": load_text().desc, "images": load_images(opts.profile, opts.offline).desc},
        "claims": [entries[c.id] for c in claims if c.id in entries],
        "not_run": [c.id for c in claims if c.id not in entries],
        "timing": {
            "elapsed_s": round(time.perf_counter() - t0, 3),
            "cpu_s": round(_cpu_s() - c0, 3),  # this process and its finished workers
            "finished_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    }
    if os.environ.get(WORKER_ENV):  # a worker: the parent writes results.json and the reports
        return results
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
            for k in ("verdict", "effect", "checks", "literature"):
                out.pop(k, None)
        return out
    if isinstance(results, list):
        return [strip_timing(v, timing_verdicts) for v in results]
    return results


__all__ = [
    "MARKER",
    "StudyOptions",
    "claim_key",
    "code_hash",
    "machine",
    "run_study",
    "strip_timing",
    "write_atomic",
]
