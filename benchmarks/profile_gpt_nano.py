"""Where gpt-nano's fp32 training step goes on this CPU (issue 13, item 6).

One process: the fp32 matmul peak measured here (2048³, best of ~2 s), then the gpt-nano recipe's
training step (the recipe's batch × 64 tokens, the model and loss archlab trains, fused AdamW,
clipping) run through ``torch.profiler``; self CPU time is grouped into matmuls, attention, GELU,
LayerNorm, copies, cross-entropy, optimizer and the rest. Tokens/s is timed without the profiler,
and MFU is the PaLM estimate of model FLOPs per token (6N + 12·L·T·d, Chowdhery et al. 2022 App. B)
× tokens/s over the measured fp32 peak. Writes ``benchmarks/results/profile_gpt_nano.json``.

Run: ``PYTHONPATH=src python benchmarks/profile_gpt_nano.py [--threads N] [--batch B]``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_record, write_result

GROUPS = {
    "matmul (linear layers)": ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul"),
    "attention (fused SDPA)": ("scaled_dot_product", "flash_attention"),
    "GELU": ("gelu",),
    "LayerNorm": ("layer_norm",),
    "copies / reshapes": ("aten::copy_", "aten::cat", "aten::clone", "aten::contiguous"),
    "cross-entropy": ("log_softmax", "nll_loss", "cross_entropy"),
    "optimizer (fused AdamW) + clipping": ("adamw", "_foreach", "vector_norm", "linalg"),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, help="default: the physical cores")
    from archlab.train.recipes import RECIPES

    r = RECIPES["gpt-nano"].train
    ap.add_argument("--batch", type=int, default=r["batch_size"], help="default: the recipe's")
    ap.add_argument("--steps", type=int, default=30)
    args = ap.parse_args()
    from archlab.hardware import physical_cores
    from archlab.models import create_model
    from archlab.train.optim import param_groups

    threads = args.threads or physical_cores()
    machine = machine_record(threads)
    torch.manual_seed(0)
    model = create_model("gpt-nano", vocab_size=66)
    opt = torch.optim.AdamW(param_groups(model, 0.1), lr=r["lr"], betas=r["betas"], fused=True)
    x = torch.randint(66, (args.batch, 65))

    def step() -> None:
        logits = model(x[:, :-1])  # (B, T, V)
        F.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten()).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    for _ in range(5):
        step()
    t = time.perf_counter()
    for _ in range(args.steps):
        step()
    dt = (time.perf_counter() - t) / args.steps
    tps = args.batch * 64 / dt
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(10):
            step()
    totals = {g: 0.0 for g in GROUPS}
    other = 0.0
    for ev in prof.key_averages():
        name = ev.key.lower()
        for g, keys in GROUPS.items():
            if any(k.lower() in name for k in keys):
                totals[g] += ev.self_cpu_time_total
                break
        else:
            other += ev.self_cpu_time_total
    total = sum(totals.values()) + other
    share = {g: round(v / total, 4) for g, v in {**totals, "other": other}.items()}
    n = sum(p.numel() for p in model.parameters())
    flops_tok = 6 * n + 12 * 4 * 64 * 128
    mfu = flops_tok * tps / machine["matmul_peak_flops"]["fp32"]
    print(
        f"gpt-nano fp32, batch {args.batch}, {threads} threads: {1e3 * dt:.1f} ms/step, "
        f"{tps:,.0f} tok/s, MFU {mfu:.1%} of the measured fp32 matmul peak "
        f"({machine['matmul_peak_flops']['fp32'] / 1e9:.0f} GFLOP/s)"
    )
    for g, v in sorted(share.items(), key=lambda kv: -kv[1]):
        print(f"  {g:<36} {v:6.1%}")
    write_result(
        "profile_gpt_nano",
        {
            "machine": machine,
            "threads": threads,
            "batch": args.batch,
            "ms_per_step": round(1e3 * dt, 2),
            "tokens_per_s": round(tps),
            "mfu_vs_fp32_peak": round(mfu, 4),
            "self_cpu_share": share,
        },
    )


if __name__ == "__main__":
    main()
