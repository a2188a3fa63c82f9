"""Same budget, matched parameters: LSTM vs GPT on Tiny Shakespeare (char), 120 s each.

Issue 3, item 6 (seed Part 1: "Transformers train in parallel, RNNs sequentially"). Models:
``lstm-char`` (2-layer LSTM 220 wide, forget-gate bias 1; 807,026 parameters at the 66-symbol
char vocabulary) and ``gpt-nano`` (4 layers, 4 heads, 128 wide, block 64; 809,984) — within 0.4%.

Both are trained by the project's training path (``archlab.train.runs.train_lm``) for the same
wall-clock budget with the same data (random 64-token windows for the GPT; 64-token truncated-BPTT
chunks of 32 contiguous streams with the state carried for the LSTM, as pytorch/examples), batch
32 x 64 tokens, bf16 autocast, AdamW (betas 0.9, 0.99) with 50 warmup steps and cosine decay by
time. Peak lr: GPT 6e-3 (the Tiny Shakespeare recipe of lm_shakespeare.py); LSTM 2e-3 (char-rnn's
default; on WikiText-2 larger Adam lrs stalled the LSTM, see lm_wikitext.py).

Val loss against wall time without spending the budget on evaluation: a callback copies the
weights every ``--every`` seconds of training (a state_dict copy, ~1 ms) and records the training
time; after the run each copy is scored with a full pass over the 111,540 validation characters
(fp32): the GPT with a sliding window of 64 and stride 32 (``archlab eval``'s protocol), the LSTM
statefully over 10 contiguous streams (its state carries all earlier context — the recurrent
model's natural advantage, stated rather than hidden).

Writes benchmarks/results/lm_budget.json and lm_budget.png (matplotlib, Agg).
Run: ``PYTHONPATH=src python benchmarks/lm_budget.py [--data-root ../shared/data]``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, load_average, machine_record, set_data_root, write_result

RECIPES = {  # preset -> lr, warmup steps
    "lstm-char": (2e-3, 50),
    "gpt-nano": (6e-3, 50),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", help="folder with tinyshakespeare/ (default $ARCHLAB_DATA)")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds per model")
    ap.add_argument("--every", type=float, default=10.0, help="seconds between weight snapshots")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--precision", default="bf16", choices=["fp32", "bf16"])
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--out", help="results JSON (default benchmarks/results/lm_budget.json)")
    args = ap.parse_args()

    data_root = set_data_root(args.data_root)
    from archlab.data import encode_corpus, load_corpus, load_tokenizer
    from archlab.train.checkpoint import load_model
    from archlab.train.runs import LMRunSpec, train_lm
    from archlab.train.tasks import evaluate_lm, is_stateful
    from archlab.train.trainer import Callback, TrainConfig

    machine = machine_record(args.threads)
    print(
        f"machine: {machine['cpu']}, {args.threads} threads, "
        f"load {machine['load_average_at_start']}"
    )
    T = 64

    class Snapshots(Callback):
        def __init__(self) -> None:
            self.taken: list[tuple[int, float, dict[str, torch.Tensor]]] = []
            self.next = 0.0

        def on_step_end(self, trainer, logs) -> None:  # noqa: ANN001
            if trainer.elapsed_s >= self.next:
                sd = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
                self.taken.append((trainer.step, trainer.elapsed_s, sd))
                self.next = trainer.elapsed_s + args.every

    runs = {}
    for preset, (lr, warmup) in RECIPES.items():
        config = TrainConfig(
            max_steps=1_000_000,
            max_time=args.budget,
            batch_size=args.batch_size,
            lr=lr,
            warmup_steps=warmup,
            betas=(0.9, 0.99),
            precision=args.precision,
            eval_interval=0,
            log_interval=50,
            seed=args.seed,
            progress=False,
        )
        spec = LMRunSpec(preset, "tinyshakespeare", "char", block_size=T)
        snaps = Snapshots()
        load0 = load_average()
        with tempfile.TemporaryDirectory() as tmp:
            run_dir = Path(tmp) / "run"
            res = train_lm(spec, config, run_dir, callbacks=[snaps])
            snaps.taken.append((res.step, res.elapsed_s, None))  # the final weights
            model = load_model(run_dir)
            tok = load_tokenizer(run_dir / "tokenizer.json")
        val = encode_corpus(load_corpus("tinyshakespeare"), tok).val
        stateful = is_stateful(model)
        final_sd = {k: v.clone() for k, v in model.state_dict().items()}
        curve = []
        for step, elapsed, sd in snaps.taken:
            model.load_state_dict(sd if sd is not None else final_sd)
            model.eval()
            e = evaluate_lm(model, val, block_size=T, stateful=stateful, stride=T // 2)
            curve.append(
                {"step": step, "train_s": round(elapsed, 2), "val_loss": round(e["loss"], 4)}
            )
        params = sum(p.numel() for p in model.parameters())
        tps = res.step * args.batch_size * T / res.elapsed_s
        runs[preset] = {
            "params": params,
            "train_config": config.to_dict(),
            "load_average_at_start": load0,
            "steps": res.step,
            "train_s": round(res.elapsed_s, 1),
            "tokens_per_s": round(tps, 1),
            "final_val_loss": curve[-1]["val_loss"],
            "eval": (
                {"protocol": "stateful", "streams": 10, "bptt": T}
                if stateful
                else {"protocol": "sliding-window", "window": T, "stride": T // 2}
            ),
            "curve": curve,
        }
        print(
            f"{preset} ({params:,} params): {res.step} steps, {tps:,.0f} tok/s, "
            f"val {curve[-1]['val_loss']:.4f} after {res.elapsed_s:.0f} s"
        )

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for preset, r in runs.items():
        xs = [c["train_s"] for c in r["curve"]]
        ys = [c["val_loss"] for c in r["curve"]]
        ax.plot(xs, ys, marker="o", ms=3, label=f"{preset} ({r['params']:,} params)")
    ax.set_xlabel("training wall time (s)")
    ax.set_ylabel("val loss (nats/char, full pass)")
    ax.set_title(f"Tiny Shakespeare, same {args.budget:.0f} s budget, {args.threads} CPU threads")
    ax.set_ylim(top=min(3.5, ax.get_ylim()[1]))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = Path(args.out).with_suffix(".png") if args.out else RESULTS / "lm_budget.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120)
    print(f"wrote {png}")
    write_result(
        "lm_budget",
        {
            "benchmark": "LSTM vs GPT, matched params, same wall budget (issue 3 item 6)",
            "machine": machine,
            "data_root": data_root,
            "budget_s": args.budget,
            "threads": args.threads,
            "seed": args.seed,
            "runs": runs,
            "plot": png.name,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
        args.out,
    )


if __name__ == "__main__":
    main()
