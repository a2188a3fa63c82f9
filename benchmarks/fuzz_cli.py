"""Issue 14's long fuzz campaign; writes ``benchmarks/results/fuzz_cli.json``.

The CI suite (``tests/test_fuzz_cli.py``) runs ~100 derandomized cases per command; this runs the
same tests with other seeds and ``--scale`` times as many examples, in this process (each case is
``archlab.cli.main`` under the time and memory bounds of ``tests/fuzzing.py``). Each case is
checked by ``tests.fuzzing.check``: exit 0 or 2, no traceback (escaped, logged or printed), one
final error line on exit 2, and every file it was not meant to write byte-identical. A failure is
recorded, not raised, so the campaign runs to the end and reports every one.

The result: cases tried per command and per corrupt-file kind, their exit codes, tracebacks,
cases that changed files they should not have, failures (with the argv), the CPU and its flags.

Run: ``PYTHONPATH=src:. python benchmarks/fuzz_cli.py [--scale 2] [--seed 1]``
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for p in (ROOT, ROOT / "src"):
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))

import torch  # noqa: E402
from hypothesis import HealthCheck, seed, settings  # noqa: E402

import tests.test_fuzz_cli as suite  # noqa: E402
from archlab.machine import cpu_summary  # noqa: E402
from tests import fuzzing  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"


class Recorder:
    """Wraps the suite's ``run_case`` and ``check``: every outcome is counted under the group
    being fuzzed, and a failed check is recorded instead of stopping the group."""

    def __init__(self) -> None:
        self.group = ""
        self.cases: dict[str, list[fuzzing.Outcome]] = collections.defaultdict(list)
        self.failures: list[dict] = []

    def run_case(self, world: fuzzing.World, argv: list[str], **kw) -> fuzzing.Outcome:
        o = fuzzing.run_case(world, argv, **kw)
        self.cases[self.group].append(o)
        return o

    def check(self, o: fuzzing.Outcome) -> None:
        try:
            fuzzing.check(o)
        except AssertionError as e:
            self.failures.append({"group": self.group, "error": str(e)[:2000]})


def _traceback(o: fuzzing.Outcome) -> bool:
    return bool(o.escaped or o.logged or "Traceback" in o.stderr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scale", type=float, default=2.0, help="examples: the CI count times this")
    ap.add_argument("--seed", type=int, default=1, help="hypothesis seed (CI is derandomized)")
    ap.add_argument("--out", type=Path, default=RESULTS / "fuzz_cli.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    rec = Recorder()

    def fuzz(n: int = suite.EXAMPLES):
        s = settings(
            max_examples=int(n * args.scale),
            deadline=None,
            database=None,
            derandomize=False,
            suppress_health_check=list(HealthCheck),
        )
        return lambda f: seed(args.seed)(s(f))

    suite.fuzz, suite.run_case, suite.check = fuzz, rec.run_case, rec.check
    groups = [(f"argv {c}", suite.test_argv, (c,)) for c in sorted(suite.COMMANDS)]
    groups += [
        ("argv (top level)", suite.test_top_level_argv, ()),
        ("corrupt run files", suite.test_corrupt_run_files, ()),
        ("corrupt data files", suite.test_corrupt_data_files, ()),
        ("corrupt images", suite.test_corrupt_images, ()),
        ("corrupt study folder", suite.test_corrupt_study_folder, ()),
    ]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        world = fuzzing.World(Path(d)).build()
        try:
            for name, test, extra in groups:
                rec.group = name
                t = time.perf_counter()
                try:
                    test(world, *extra)
                except Exception as e:  # noqa: BLE001  (a test's own assertion: recorded)
                    rec.failures.append({"group": name, "error": " ".join(str(e).split())[:2000]})
                n = len(rec.cases[name])
                print(f"{name:<24} {n:5d} cases {time.perf_counter() - t:7.1f} s", flush=True)
            pristine = world._digests() == world.baseline
        finally:
            world.leave()
    per = {}
    for name, outs in rec.cases.items():
        per[name] = {
            "cases": len(outs),
            "exit_codes": dict(sorted(collections.Counter(str(o.rc) for o in outs).items())),
            "tracebacks": sum(_traceback(o) for o in outs),
            "files_changed_unexpectedly": sum(bool(o.problems) for o in outs),
            "max_case_s": round(max((o.seconds for o in outs), default=0.0), 2),
        }
    total = sum(v["cases"] for v in per.values())
    result = {
        "cases_total": total,
        "tracebacks": sum(v["tracebacks"] for v in per.values()),
        "files_changed_unexpectedly": sum(v["files_changed_unexpectedly"] for v in per.values()),
        "failures": rec.failures,
        "world_restored": pristine,
        "groups": per,
        "bounds": {
            "case_seconds": fuzzing.CASE_SECONDS,
            "case_address_space_bytes": fuzzing.CASE_MEMORY,
        },
        "hypothesis": {"seed": args.seed, "scale": args.scale},
        "cpu": cpu_summary(),
        "torch": torch.__version__,
        "threads": 1,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("cases_total", "tracebacks", "wall_s")}))
    print(f"failures: {len(rec.failures)}")


if __name__ == "__main__":
    main()
