"""Issue 14: inputs that grow with the user's data have a stated memory bound, checked here; writes
``benchmarks/results/memory_bounds.json``.

Each case is the real CLI in a fresh process (``python -m archlab``, one thread); its peak RSS
(``ru_maxrss`` from ``wait4``) and wall time are measured and compared with the bound:

* **Tokenizer fitting on a 20 MB single-line corpus** (the issue's case: ``--tokenizer word``
  reached 4.6 GB and hung, ``bpe --vocab-size 300`` took 94 s and 4.4 GB). Bound:
  :data:`TOKENIZER_RSS` peak RSS and :data:`TOKENIZER_SECONDS` for the whole ``train lm
  --max-steps 1`` (interpreter, torch, fitting, encoding, one step), for char, word and BPE, on
  ordinary words, on 20 MB of distinct words (word: refused in one line unless capped with
  ``--vocab-size``) and on 20 MB without a space.
* **Batch size.** Bound: a batch that cannot fit is one line (exit 2) at :data:`REFUSE_RSS` peak
  RSS, never an attempt to allocate it; an accepted batch costs memory linear in its size.

Run: ``PYTHONPATH=src python benchmarks/memory_bounds.py``
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
MiB = 2**20
TOKENIZER_RSS = 2048 * MiB  # bytes: a 20 MB one-line corpus, any tokenizer, whole train command
TOKENIZER_SECONDS = 180.0
REFUSE_RSS = 1024 * MiB  # bytes: a refused batch size
CORPUS_BYTES = 20 * 10**6
GPT = "--arch gpt --layers 1 --heads 2 --d-model 16 --block-size 16 --batch-size 4".split()
QUIET = ["--max-steps", "1", "--no-progress", "--threads", "1"]


def _corpora(d: Path) -> dict[str, Path]:
    rng = random.Random(0)
    vocab = [
        "".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(2, 9))) for _ in range(5000)
    ]
    out = {}
    words = []
    n = 0
    while n < CORPUS_BYTES:
        w = rng.choice(vocab)
        words.append(w)
        n += len(w) + 1
    out["words"] = " ".join(words)
    distinct, i, n = [], 0, 0
    while n < CORPUS_BYTES:
        w = f"w{i}"
        distinct.append(w)
        n += len(w) + 1
        i += 1
    out["distinct"] = " ".join(distinct)
    out["no-space"] = "".join(rng.choices("abcdefghijklmnopqrstuvwxyz.,", k=CORPUS_BYTES))
    paths = {}
    for k, text in out.items():
        p = d / f"{k}.txt"
        p.write_text(text[:CORPUS_BYTES])  # one line, no newline
        paths[k] = p
    return paths


def _measure(argv: list[str], env: dict[str, str]) -> dict:
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "archlab", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    err = proc.stderr.read().decode(errors="replace")
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = err.strip().splitlines()
    return {
        "exit": proc.returncode,
        "peak_rss_mib": round(usage.ru_maxrss * 1024 / MiB, 1),
        "seconds": round(time.perf_counter() - t, 2),
        "stderr_last": lines[-1][:300] if lines else "",
        "stderr_lines": len(lines),
        "traceback": "Traceback" in err,
    }


def main() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "OMP_NUM_THREADS": "1",
        "RAYON_NUM_THREADS": "1",
    }
    cases = []
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        env["HOME"] = str(root)
        corpora = _corpora(root)
        plan = [
            ("char", "words", []),
            ("word", "words", []),
            ("word", "distinct", []),
            ("word", "distinct", ["--vocab-size", "1000"]),
            ("bpe", "words", ["--vocab-size", "300"]),
            ("bpe", "no-space", ["--vocab-size", "300"]),
        ]
        for i, (tok, corpus, extra) in enumerate(plan):
            argv = ["train", "lm", *GPT, *QUIET, "--tokenizer", tok, *extra]
            argv += ["--data", str(corpora[corpus]), "--out", str(root / f"run{i}")]
            r = _measure(argv, env)
            ok = (
                r["exit"] in (0, 2)
                and not r["traceback"]
                and r["peak_rss_mib"] * MiB <= TOKENIZER_RSS
                and r["seconds"] <= TOKENIZER_SECONDS
            )
            cases.append(
                {
                    "kind": "tokenizer",
                    "tokenizer": tok,
                    "corpus": corpus,
                    "flags": extra,
                    **r,
                    "within_bound": ok,
                }
            )
            print(cases[-1], flush=True)
        image = "train image --arch mlp --hidden 16 --data fashion-mnist-subset".split()
        for bs in ("64", "1024", "1000000000000"):
            argv = [*image, *QUIET, "--batch-size", bs, "--out", str(root / f"img{bs}")]
            r = _measure(argv, env)
            refused = bs == "1000000000000"
            ok = not r["traceback"] and (
                (
                    r["exit"] == 2
                    and r["stderr_lines"] == 1
                    and r["peak_rss_mib"] * MiB <= REFUSE_RSS
                )
                if refused
                else r["exit"] == 0
            )
            cases.append({"kind": "batch", "batch_size": int(bs), **r, "within_bound": ok})
            print(cases[-1], flush=True)
    result = {
        "bounds": {
            "tokenizer_peak_rss_mib": TOKENIZER_RSS // MiB,
            "tokenizer_seconds": TOKENIZER_SECONDS,
            "refused_batch_peak_rss_mib": REFUSE_RSS // MiB,
            "corpus_bytes": CORPUS_BYTES,
        },
        "cases": cases,
        "all_within_bounds": all(c["within_bound"] for c in cases),
        "cpu": _cpu(),
        "threads": 1,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "memory_bounds.json").write_text(json.dumps(result, indent=1) + "\n")
    print("all within bounds:", result["all_within_bounds"])


def _cpu() -> dict:
    info = {"model": "", "flags": []}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and not info["model"]:
                info["model"] = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not info["flags"]:
                info["flags"] = sorted(line.split(":", 1)[1].split())
    except OSError:
        pass
    return info


if __name__ == "__main__":
    main()
