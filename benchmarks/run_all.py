"""The README's benchmark table, every row on this machine in one run (issue 13, item 5).

Runs, one after the other on the same machine, each benchmark script — which itself runs the
README's command for its row (``archlab train ... ; archlab eval ...``) — then collects their
results into ``benchmarks/results/readme_table_<cpu kind>.json`` with the CPU (model and flags)
and prints the markdown table the README shows:

* ``lm_shakespeare.py`` — gpt-nano vs nanoGPT's own CPU recipe (``--nanogpt DIR``);
* ``image_fmnist.py`` — cnn (120 s), the pure ViT (600 s), mlp (30 s);
* ``lm_wikitext.py`` — lstm-wt2, one epoch, vs pytorch/examples' loop.

Run: ``PYTHONPATH=src python benchmarks/run_all.py --nanogpt /path/to/nanoGPT
[--data-root ../shared/data]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import RESULTS, ROOT, write_result  # noqa: E402


def _run(script: str, *args: str) -> None:
    cmd = [sys.executable, str(HERE / script), *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})


def table(sh: dict, img: dict, wt: dict) -> str:
    rows = ["| row | target | result on this machine | met |", "|---|---|---|---|"]
    a, b = sh["archlab"], sh["baseline"]
    rows.append(
        f"| gpt-nano, Tiny Shakespeare (`{a['command']}`) | full-pass val ≤ 1.89 in ≤ 0.5× "
        f"nanoGPT's time | {a['val']['loss']:.3f} after {a['budget_s']:g} s (0.5× nanoGPT's "
        f"{b['time_to_target_s']:.0f} s to {b.get('final_val')}); {a['tokens_per_s']:,.0f} tok/s, "
        f"MFU {a['mfu_vs_fp32_peak']:.0%} of fp32 peak, {a['resolved']['train']['precision']} | "
        f"{'yes' if sh['target_met'] else 'no'} |"
    )
    for arch, label, target in (
        ("cnn", "cnn", "≥ 93.0% in 120 s"),
        ("vit", "pure ViT", "≥ 91.0% in 600 s"),
        ("mlp", "mlp", "(reference)"),
    ):
        r = img["rows"].get(arch)
        if r is None:
            continue
        met = "—" if r["target_met"] is None else ("yes" if r["target_met"] else "no")
        rows.append(
            f"| {label}, Fashion-MNIST (`{r['command']}`) | {target} | {r['test_accuracy']:.2%} "
            f"test in {r['train_s']:.0f} s ({r['epochs']} epochs, {r['images_per_s']:,.0f} img/s, "
            f"{r['precision']}) | {met} |"
        )
    s, e = wt["speed"], wt["epoch"]
    rows.append(
        f"| lstm-wt2, WikiText-2 (`{wt['command']}`) | ≥ 1.5× pytorch/examples' tok/s; valid "
        f"ppl ≤ 180 after one epoch | {s['ratio']:.2f}× ({s['ours']['tokens_per_s']:,.0f} vs "
        f"{wt['baseline']['tokens_per_s']:,.0f} tok/s, median of {len(s.get('rounds', [1]))} "
        f"interleaved rounds); valid ppl {e['val']['perplexity']:.1f} "
        f"after {e['steps']:,} steps ({e['train_s']:.0f} s) | "
        f"{'yes' if all(wt['target_met'].values()) else 'no'} |"
    )
    return "\n".join(rows)


def cpu_kind(flags: str) -> str:
    """The flag that decides our fast path: native bf16 (AVX512-BF16 or AMX), else AVX-512, else
    AVX2. The README keeps one table per kind, since the same command differs by up to 4× across
    them."""
    have = set(flags.split())
    for kind in ("amx_bf16", "avx512_bf16", "avx512f", "avx2"):
        if kind in have:
            return kind
    return "other"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nanogpt", help="a checkout of karpathy/nanoGPT")
    ap.add_argument("--data-root", help="folder with the datasets (default $ARCHLAB_DATA)")
    ap.add_argument(
        "--skip", default="", help="comma list of rows to reuse: shakespeare,image,wikitext"
    )
    args = ap.parse_args()
    skip = set(args.skip.split(",")) - {""}
    data = ["--data-root", args.data_root] if args.data_root else []
    if "shakespeare" not in skip:
        _run("lm_shakespeare.py", *(["--nanogpt", args.nanogpt] if args.nanogpt else []))
    if "image" not in skip:
        _run("image_fmnist.py", *data)
    if "wikitext" not in skip:
        _run("lm_wikitext.py", *data)
    sh = json.loads((RESULTS / "lm_shakespeare.json").read_text())
    img = json.loads((RESULTS / "image_fmnist_cli.json").read_text())
    wt = json.loads((RESULTS / "lm_wikitext.json").read_text())
    md = table(sh, img, wt)
    print(md)
    m = sh["machine"]
    write_result(
        f"readme_table_{cpu_kind(m.get('cpu_flags') or '')}",  # one table per CPU kind we ran on
        {
            "machine": {
                k: m.get(k) for k in ("cpu", "cpu_flags", "physical_cores", "torch", "capabilities")
            },
            "markdown": md,
        },
    )


if __name__ == "__main__":
    main()
