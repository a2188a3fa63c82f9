"""Tiny Shakespeare, gpt-nano vs nanoGPT's CPU recipe, side by side on this machine.

Issue 13, item 5: the time for the README's command to reach a full-pass validation loss <= 1.89
must be <= 0.5x the time nanoGPT's own CPU recipe needs for it.

1. **Baseline**: nanoGPT's ``train.py`` from a checkout of karpathy/nanoGPT (``--nanogpt DIR``;
   the script copies it to a temporary folder outside this repository and never imports it),
   with the CPU recipe of its README: ``config/train_shakespeare_char.py --device=cpu
   --compile=False --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4
   --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0``, on the same
   input.txt (prepared by its own ``prepare.py``). Its time is the wall time from launch to the
   first evaluation whose val loss (its own 20-batch estimate) is <= 1.89, else to its end.
   Without a checkout, a faithful fp32 loop of that recipe is timed instead.
2. **archlab**: exactly the README's command, ``archlab train lm --arch gpt --data
   tinyshakespeare --max-time B`` (the gpt-nano recipe, precision auto), with B = 0.5x the
   baseline's time, then ``archlab eval RUN --split val --json``: the full-pass validation loss
   (every character scored once; sliding window 64, stride 32, the recipe's protocol). Met when
   that loss is <= 1.89. Run at the physical core count (the default).

The machine (CPU model and flags, capabilities, load average) is recorded; the JSON goes to
``benchmarks/results/lm_shakespeare.json``.

Run: ``PYTHONPATH=src python benchmarks/lm_shakespeare.py --nanogpt /path/to/nanoGPT``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, load_average, machine_record, run_cli, write_result

TARGET_LOSS = 1.89
TARGET_RATIO = 0.5
NANOGPT_ARGS = [
    "config/train_shakespeare_char.py",
    "--device=cpu",
    "--compile=False",
    "--eval_iters=20",
    "--log_interval=1",
    "--block_size=64",
    "--batch_size=12",
    "--n_layer=4",
    "--n_head=4",
    "--n_embd=128",
    "--max_iters=2000",
    "--lr_decay_iters=2000",
    "--dropout=0.0",
]
EVAL_RE = re.compile(r"step (\d+): train loss ([\d.]+), val loss ([\d.]+)")


def nanogpt_baseline(src: Path, text: str, threads: int) -> dict:
    """Run nanoGPT's own train.py (CPU recipe) from a copy of ``src`` outside this repository."""
    with tempfile.TemporaryDirectory(prefix="nanogpt-") as tmp:
        work = Path(tmp) / "nanoGPT"
        shutil.copytree(src, work, ignore=shutil.ignore_patterns(".git", "out-*"))
        data = work / "data" / "shakespeare_char"
        (data / "input.txt").write_text(text, encoding="utf-8")
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": ""}
        subprocess.run(
            [sys.executable, "prepare.py"], cwd=data, check=True, env=env, capture_output=True
        )
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "train.py", *NANOGPT_ARGS],
            cwd=work,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        evals, lines = [], []
        for line in proc.stdout:
            lines.append(line.rstrip())
            m = EVAL_RE.search(line)
            if m:
                evals.append(
                    {
                        "step": int(m[1]),
                        "train": float(m[2]),
                        "val": float(m[3]),
                        "wall_s": round(time.perf_counter() - t0, 2),
                    }
                )
        proc.wait()
        total = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit("nanoGPT failed:\n" + "\n".join(lines[-20:]))
    hit = next((e for e in evals if e["val"] <= TARGET_LOSS), None)
    return {
        "source": "karpathy/nanoGPT train.py (its README's CPU recipe), run from a copy",
        "args": NANOGPT_ARGS,
        "evals": evals,
        "wall_s": round(total, 2),
        "time_to_target_s": hit["wall_s"] if hit else round(total, 2),
        "reached_target": hit is not None,
        "final_val": evals[-1]["val"] if evals else None,
    }


def faithful_loop(text: str, threads: int) -> dict:
    """nanoGPT's CPU recipe as a plain fp32 loop (when no checkout is at hand)."""
    import torch
    import torch.nn.functional as F

    from archlab.data import encode_corpus, fit_tokenizer, get_batch, resolve_corpus
    from archlab.models import create_model
    from archlab.train.optim import param_groups

    torch.set_num_threads(threads)
    corpus, _ = resolve_corpus("tinyshakespeare")
    s = encode_corpus(corpus, fit_tokenizer("char", corpus))
    torch.manual_seed(1337)
    model = create_model("gpt-nano", vocab_size=s.tokenizer.vocab_size)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=1e-3, betas=(0.9, 0.99))
    g = torch.Generator().manual_seed(1337)
    t0 = time.perf_counter()
    for _ in range(2000):
        x, y = get_batch(s.train, 12, 64, g)
        F.cross_entropy(model(x).flatten(0, 1), y.flatten()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    total = time.perf_counter() - t0
    return {
        "source": "faithful fp32 loop of nanoGPT's CPU recipe (no checkout given)",
        "wall_s": round(total, 2),
        "time_to_target_s": round(total, 2),
        "reached_target": None,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nanogpt", type=Path, help="a checkout of karpathy/nanoGPT")
    ap.add_argument("--budget", type=float, help="archlab's --max-time (default: 0.5x nanoGPT's)")
    ap.add_argument("--out", help="results JSON (default benchmarks/results/lm_shakespeare.json)")
    args = ap.parse_args()

    from archlab.data import resolve_corpus
    from archlab.hardware import capabilities, physical_cores

    threads = physical_cores()
    machine = machine_record(threads)
    corpus, _ = resolve_corpus("tinyshakespeare")
    text = corpus.train + corpus.val  # the canonical file (read_text normalizes nothing here)
    print(f"machine: {machine['cpu']} ({machine['cpu_flags'][:60]}…), {threads} threads")
    base = (
        nanogpt_baseline(args.nanogpt, text, threads)
        if args.nanogpt
        else faithful_loop(text, threads)
    )
    print(
        f"baseline: {base['source']}: {base['time_to_target_s']:.1f} s to val <= {TARGET_LOSS} "
        f"(final val {base.get('final_val')}, total {base['wall_s']:.1f} s)"
    )
    budget = args.budget or round(TARGET_RATIO * base["time_to_target_s"], 1)
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [
            "train",
            "lm",
            "--arch",
            "gpt",
            "--data",
            "tinyshakespeare",
            "--max-time",
            f"{budget:g}",
            "--out",
            str(run),
            "--no-progress",
            "--json",
        ]
        load = load_average()
        r = run_cli(cmd)
        trained = json.loads(r["stdout"].strip().splitlines()[-1])
        e = run_cli(["eval", str(run), "--split", "val", "--json"])
        ev = json.loads(e["stdout"].strip().splitlines()[-1])
        rc = json.loads((run / "resolved_config.json").read_text())
    val = ev["loss"]
    met = val <= TARGET_LOSS
    tps = trained["units_per_s"]
    fp32 = machine["matmul_peak_flops"]["fp32"]
    flops_tok = 6 * 809_984 + 12 * 4 * 64 * 128  # PaLM App. B estimate per token (gpt-nano)
    print(
        f"archlab (README command, --max-time {budget:g}): {trained['step']} steps, "
        f"{tps:,.0f} tok/s, full-pass val {val:.4f} -> {'MET' if met else 'NOT MET'}; "
        f"precision {rc['train']['precision']} ({rc['hardware']['precision']['why']})"
    )
    write_result(
        "lm_shakespeare",
        {
            "benchmark": "gpt-nano vs nanoGPT's CPU recipe, time to full-pass val <= 1.89",
            "machine": {**machine, "capabilities": capabilities().to_dict()},
            "baseline": base,
            "archlab": {
                "command": "archlab " + " ".join(cmd[:-4] + ["--out", "RUN"]),
                "eval_command": "archlab eval RUN --split val --json",
                "budget_s": budget,
                "load_average_at_start": load,
                "train": trained,
                "val": ev,
                "resolved": {k: rc[k] for k in ("train", "recipe", "requested", "hardware")},
                "tokens_per_s": tps,
                "mfu_vs_fp32_peak": round(flops_tok * tps / fp32, 4),
            },
            "target": {"val_loss": TARGET_LOSS, "time_ratio": TARGET_RATIO},
            "target_met": met,
            "repo": str(ROOT.name),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
