"""Issue 14's fault-injection campaign; writes ``benchmarks/results/fault_injection.json``.

Training: four tiny runs (GPT + AdamW with dropout and gradient accumulation, a word-level LSTM +
SGD whose hidden state is checkpointed, a CNN + SGD trained in channels_last, an MLP + AdamW),
each SIGKILLed again and again — at a kill point drawn at random (inside a checkpoint write: a
tensor file or JSON file half written, before or after COMMIT, half the files moved, before the
temp dir goes; or after an optimizer step, half a metrics line, a tokenizer written before any
checkpoint) or by the parent at a random time — and resumed until it finishes. Every resume must
start at the last committed checkpoint, and the end must be bit-identical (weights, optimizer
state, metrics.jsonl without its clock fields) to the uninterrupted run.

Study: ``archlab study --only R1,C2,P3`` (two training claims and P3, the tiny profile) SIGKILLed
at random times and rerun, then rerun with every cache entry and one trained model broken: each
rerun must reuse what was whole, recompute what was broken with a notice, and end with the
uninterrupted study's results.json (timing fields aside).

The harness is ``tests/faults.py`` (the CI tests run a few of the same faults). One thread.

Run: ``PYTHONPATH=src:. python benchmarks/fault_injection.py [--kills 16] [--study-kills 10]``
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "src"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import torch  # noqa: E402

from archlab.machine import cpu_summary  # noqa: E402
from tests import faults  # noqa: E402
from tests.fuzzing import write_idx_dataset  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


def _corpus(path: Path) -> Path:
    words = "to be or not that is the question whether tis nobler in the mind".split()
    rng = random.Random(0)
    path.write_text("\n".join(" ".join(rng.choices(words, k=9)) for _ in range(200)) + "\n")
    return path


def train_campaign(root: Path, kills_per_run: int, seed: int) -> dict:
    """Each config killed at >= ``kills_per_run`` random faults (in as many runs as it takes)."""
    corpus = _corpus(root / "corpus.txt")
    rng = random.Random(seed)
    points = [p for p in faults.POINTS if p != "tokenizer"]
    out: dict = {}
    for cfg in faults.configs(corpus):
        t = time.perf_counter()
        work = root / cfg.name
        work.mkdir()
        log = work / "log"
        seconds = faults.reference(cfg, work / "ref", log)
        kills: list[str] = []
        problems: list[str] = []
        runs = attempts = identical = 0
        while len(kills) < kills_per_run:
            runs += 1
            run, record = work / f"run{runs}", work / f"record{runs}"
            c = faults.Campaign(cfg, run, record, rng, log)
            plan: list[str | float] = ["tokenizer"] if cfg.argv[1] == "lm" else []
            order = rng.sample(points, len(points))  # every point, in a random order
            for i in range(12):  # more than the run can take: it ends first
                if rng.random() < 0.25:  # a kill by the clock, anywhere in the run
                    plan.append(rng.uniform(0.05, 0.9) * seconds)
                else:
                    plan.append(order[(i + runs) % len(order)])
            finished = c.finish(plan)
            diff = faults.identical(run, work / "ref") if finished else ["did not finish"]
            problems += c.problems + [f"run {runs}: {d} differs" for d in diff]
            identical += finished and not diff and not c.problems
            attempts += c.attempts
            kills += c.kills
        out[cfg.name] = {
            "argv": cfg.full(Path("RUN")),
            "runs": runs,
            "attempts": attempts,
            "kills": len(kills),
            "kills_by_point": dict(collections.Counter(k.split()[0] for k in kills)),
            "bit_identical_runs": identical,
            "problems": problems,
            "seconds": round(time.perf_counter() - t, 1),
        }
        print(cfg.name, out[cfg.name]["kills_by_point"], problems or "ok", flush=True)
    return out


def study_campaign(root: Path, kills: int, seed: int, only: str) -> dict:
    log = root / "study.log"
    faults.warm_study()
    t = time.perf_counter()
    assert faults.wait(faults.fork(faults.study(root / "ref", only), log)) == 0, log
    duration = time.perf_counter() - t
    expected = faults.study_results(root / "ref")
    rng = random.Random(seed)
    total: list[str] = []
    problems: list[str] = []
    notices: list[str] = []
    rounds = broken = 0
    while len(total) < kills:
        rounds += 1
        c = faults.StudyCampaign(root / f"run{rounds}", only, expected, duration, rng, log)
        c.finish(kills=kills - len(total))
        notices += c.damage_and_rerun()
        broken += c.broken
        total += c.kills
        problems += c.problems
    return {
        "only": only,
        "profile": "tiny",
        "uninterrupted_s": round(duration, 2),
        "rounds": rounds,
        "kills": len(total),
        "kill_times_s": [float(k.split()[1][:-1]) for k in total],
        "damage_reruns": rounds,
        "files_damaged": broken,
        "notices": len(notices),
        "same_results": not problems,
        "problems": problems,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kills", type=int, default=16, help="kills per training config (4 configs)")
    ap.add_argument("--study-kills", type=int, default=10)
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--out", type=Path, default=RESULTS / "fault_injection.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        (root / "data").mkdir()
        write_idx_dataset(root / "data" / "mnist", 160, 40)
        os.environ.update(
            {"ARCHLAB_DATA": str(root / "data"), "ARCHLAB_OFFLINE": "1", "HOME": str(root)}
        )
        (root / "train").mkdir()
        training = train_campaign(root / "train", args.kills, args.seed)
        (root / "study").mkdir()
        study = study_campaign(root / "study", args.study_kills, args.seed, "R1,C2,P3")
    kills = sum(r["kills"] for r in training.values())
    result = {
        "training": training,
        "study": study,
        "totals": {
            "training_kills": kills,
            "study_kills": study["kills"],
            "faults_injected": kills + study["kills"] + study["files_damaged"],
            "problems": sum(len(r["problems"]) for r in training.values()) + len(study["problems"]),
            "checkpoints_lost": sum(
                "was lost" in p for r in training.values() for p in r["problems"]
            ),
            "cache_entries_or_models_lost": sum(
                "recomputed or lost" in p or "trained again or lost" in p for p in study["problems"]
            ),
            "bit_identical": all(not r["problems"] for r in training.values()),
            "study_same_results": study["same_results"],
        },
        "cpu": cpu_summary(),
        "torch": torch.__version__,
        "threads": 1,
        "seed": args.seed,
        "wall_s": round(time.perf_counter() - t, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    import json

    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result["totals"]))


if __name__ == "__main__":
    main()
