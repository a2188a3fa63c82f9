"""One-epoch recipe sweep for the WikiText-2 lstm 2x200 (bptt 35, batch 20): which optimizer recipe
reaches the lowest valid perplexity after exactly one epoch?

Issue 3 item 6 asks for valid ppl <= 180 after one epoch. The epoch is fixed (2,983 steps of 20 x 35
tokens), so the only freedom is the recipe: optimizer, lr, schedule, clipping, dropout, tying. This
script is a plain, self-contained version of the Trainer's stateful TBPTT task (the same model class
``lstm-wt2``, the same ``batchify`` streams, state carried and detached, decoder + loss fused) so it
runs identically on the CPU or a GPU (where a whole epoch takes seconds and many recipes fit in one
go). The winner is then run through the product (``benchmarks/lm_wikitext.py`` = ``archlab train
lm``) on the CPU for the recorded figure.

Evaluation is the product's protocol: a full stateful pass over valid with 10 streams, bptt 35,
fp32.

Run: ``PYTHONPATH=src python benchmarks/sweep_wt2.py --recipe sgd20 --out r.json`` (one recipe per
process; ``--list`` prints them).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import set_data_root

B, T = 20, 35

# name -> recipe. opt: sgd (pytorch/examples: p -= lr * grad) | adamw. sched: constant | cosine
# (to lr/10 over the epoch, after `warmup` linear steps) | linear (to 0; one-cycle-like decay).
RECIPES: dict[str, dict] = {
    "sgd20": dict(opt="sgd", lr=20.0, clip=0.25, dropout=0.2, tied=False, sched="constant"),
    "sgd20-tied": dict(opt="sgd", lr=20.0, clip=0.25, dropout=0.2, tied=True, sched="constant"),
    "sgd20-tied-d0": dict(opt="sgd", lr=20.0, clip=0.25, dropout=0.0, tied=True, sched="constant"),
    "sgd20-tied-d0-lin": dict(
        opt="sgd", lr=20.0, clip=0.25, dropout=0.0, tied=True, sched="linear"
    ),
    "sgd40-tied-d0-lin": dict(
        opt="sgd", lr=40.0, clip=0.25, dropout=0.0, tied=True, sched="linear"
    ),
    "sgd20-d0-lin": dict(opt="sgd", lr=20.0, clip=0.25, dropout=0.0, tied=False, sched="linear"),
    "adam1e-3": dict(opt="adamw", lr=1e-3, clip=0.25, dropout=0.2, tied=False, sched="cosine"),
    "adam1e-3-tied-d0": dict(
        opt="adamw", lr=1e-3, clip=0.25, dropout=0.0, tied=True, sched="cosine"
    ),
    "adam3e-3-tied-d0": dict(
        opt="adamw", lr=3e-3, clip=0.25, dropout=0.0, tied=True, sched="cosine"
    ),
    "adam3e-3-tied-d0-c1": dict(
        opt="adamw", lr=3e-3, clip=1.0, dropout=0.0, tied=True, sched="cosine"
    ),
    "adam5e-3-tied-d0-c1": dict(
        opt="adamw", lr=5e-3, clip=1.0, dropout=0.0, tied=True, sched="cosine"
    ),
    "adam2e-3-d0-c1": dict(opt="adamw", lr=2e-3, clip=1.0, dropout=0.0, tied=False, sched="cosine"),
    "adam2e-3-tied-d0-lin-b999": dict(
        opt="adamw", lr=2e-3, clip=0.25, dropout=0.0, tied=True, sched="linear", betas=(0.9, 0.999)
    ),
    "sgd20-tied-d0-cos": dict(
        opt="sgd", lr=20.0, clip=0.25, dropout=0.0, tied=True, sched="cosine"
    ),
    "sgd40-tied-d0-cos": dict(
        opt="sgd", lr=40.0, clip=0.25, dropout=0.0, tied=True, sched="cosine"
    ),
    "sgd60-tied-d0-lin": dict(
        opt="sgd", lr=60.0, clip=0.25, dropout=0.0, tied=True, sched="linear"
    ),
    "sgd80-tied-d0-lin": dict(
        opt="sgd", lr=80.0, clip=0.25, dropout=0.0, tied=True, sched="linear"
    ),
    "sgd40-tied-d0-lin-c.5": dict(
        opt="sgd", lr=40.0, clip=0.5, dropout=0.0, tied=True, sched="linear"
    ),
}


def lr_at(step: int, total: int, r: dict) -> float:
    """Learning rate of ``step`` (0-based) under the recipe's schedule."""
    warm = r.get("warmup", 100 if r["opt"] == "adamw" else 0)
    if step < warm:
        return r["lr"] * (step + 1) / warm
    p = (step - warm) / max(1, total - warm)
    if r["sched"] == "cosine":
        lo = r["lr"] / 10
        return lo + 0.5 * (r["lr"] - lo) * (1 + math.cos(math.pi * p))
    if r["sched"] == "linear":
        return r["lr"] * max(0.02, 1 - p)
    return r["lr"]


@torch.no_grad()
def evaluate(model, data: torch.Tensor, device: str) -> float:
    """Full stateful pass: 10 streams, bptt 35, fp32 (the product's ``archlab eval``)."""
    from archlab.data import batchify

    model.eval()
    src = batchify(data, 10).to(device)  # (L, 10)
    state = model.init_state(10, device)
    total, n = 0.0, 0
    for i in range(0, src.size(0) - 1, T):
        t = min(T, src.size(0) - 1 - i)
        x, y = src[i : i + t].t(), src[i + 1 : i + 1 + t].t()  # (10, t)
        loss, state = model(x, state, return_state=True, targets=y)
        total += loss.item() * y.numel()
        n += y.numel()
    model.train()
    return total / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--recipe", help="a name from --list")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--data-root")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--steps", type=int, help="default: one epoch (2,983 steps)")
    ap.add_argument("--evals", type=int, default=4, help="valid passes during the epoch")
    ap.add_argument("--seed", type=int, default=1111)
    ap.add_argument("--forget-bias", type=float, help="LSTM forget-gate bias at init")
    ap.add_argument(
        "--unigram-bias",
        action="store_true",
        help="init the decoder bias to the log unigram frequencies of train (add-one)",
    )
    ap.add_argument("--lr", type=float, help="override the recipe's lr")
    ap.add_argument(
        "--average",
        action="store_true",
        help="also evaluate weight averages at the end: EMA 0.999 and the uniform mean of the "
        "last half of the epoch (Polyak & Juditsky 1992; AWD-LSTM's ASGD, Merity et al. 2018)",
    )
    ap.add_argument(
        "--clip-groups",
        action="store_true",
        help="clip the recurrent weights and the embedding/decoder separately (each to --clip): "
        "the 33k-row decoder gradient dominates a global norm, so one clip starves the LSTM",
    )
    ap.add_argument(
        "--emb-init", type=float, help="embedding init U(-r, r) (default r = 0.1, pytorch/examples)"
    )
    ap.add_argument("--momentum", type=float, default=0.0, help="SGD momentum")
    ap.add_argument("--rnn-adam", type=float, help="Adam (this peak lr) for rnn.* weights")
    ap.add_argument("--rnn-lr-mult", type=float, default=1.0, help="lr multiplier, rnn.* weights")
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.list:
        print("\n".join(f"{k}: {v}" for k, v in RECIPES.items()))
        return
    r = dict(RECIPES[args.recipe])
    if args.lr is not None:
        r["lr"] = args.lr
    set_data_root(args.data_root)
    from archlab.data import batchify, encode_corpus, fit_tokenizer, load_corpus
    from archlab.models import create_model
    from archlab.train.optim import param_groups

    torch.manual_seed(args.seed)
    corpus = load_corpus("wikitext2")
    streams = encode_corpus(corpus, fit_tokenizer("word", corpus))
    V, dev = streams.tokenizer.vocab_size, args.device
    extra = {} if args.forget_bias is None else {"forget_bias": args.forget_bias}
    model = create_model(
        "lstm-wt2", vocab_size=V, dropout=r["dropout"], tie_weights=r["tied"], **extra
    )
    if args.emb_init is not None:
        torch.nn.init.uniform_(model.embedding.weight, -args.emb_init, args.emb_init)
    if args.unigram_bias:
        counts = torch.bincount(streams.train, minlength=V).double() + 1  # (V,) add-one
        with torch.no_grad():
            model.decoder.bias.copy_((counts / counts.sum()).log().float())
    model.to(dev).train()
    data = batchify(streams.train, B).to(dev)  # (L, 20)
    steps = args.steps or (data.size(0) - 1) // T
    if r["opt"] == "adamw":
        opt = torch.optim.AdamW(
            param_groups(model, r.get("wd", 0.01)), lr=r["lr"], betas=r.get("betas", (0.9, 0.95))
        )
    else:
        rnn = [p for n, p in model.named_parameters() if n.startswith("rnn.")]
        rest = [p for n, p in model.named_parameters() if not n.startswith("rnn.")]
        groups = [{"params": rest}, {"params": rnn, "mult": args.rnn_lr_mult}]
        if args.rnn_adam:  # SGD for the embedding/decoder, Adam for the recurrent weights
            groups = groups[:1]
            adam = torch.optim.Adam(rnn, lr=args.rnn_adam, betas=(0.9, 0.999))
        opt = torch.optim.SGD(groups, lr=r["lr"], momentum=args.momentum)
    amp = torch.autocast(dev.split(":")[0], torch.bfloat16, enabled=args.precision == "bf16")
    state = model.init_state(B, dev)
    curve, evals, t0 = [], [], time.perf_counter()
    every = max(1, steps // args.evals)
    params = list(model.parameters())
    ema = [p.detach().clone() for p in params] if args.average else []
    mean = [torch.zeros_like(p) for p in params] if args.average else []
    n_mean = 0
    for s in range(steps):
        x, y = data[s * T : (s + 1) * T].t(), data[s * T + 1 : (s + 1) * T + 1].t()  # (20, 35)
        for g in opt.param_groups:
            g["lr"] = lr_at(s, steps, r) * g.get("mult", 1.0)
        state = model.detach_state(state)
        with amp:
            loss, state = model(x, state, return_state=True, targets=y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if args.clip_groups:
            norms = [
                torch.nn.utils.clip_grad_norm_(g["params"], r["clip"]) for g in opt.param_groups
            ]
        else:
            norms = [torch.nn.utils.clip_grad_norm_(model.parameters(), r["clip"])]
        if s % 500 == 0:
            print(f"step {s} grad norms {[round(float(n), 3) for n in norms]}", flush=True)
        opt.step()
        if args.rnn_adam:
            adam.param_groups[0]["lr"] = args.rnn_adam * lr_at(s, steps, r) / r["lr"]
            adam.step()
            adam.zero_grad(set_to_none=True)
        if args.average:
            with torch.no_grad():
                torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - 0.999)
                if s >= steps // 2:
                    n_mean += 1
                    torch._foreach_lerp_(mean, [p.detach() for p in params], 1 / n_mean)
        if s % 100 == 0:
            curve.append((s, round(loss.item(), 4)))
        if (s + 1) % every == 0 or s + 1 == steps:
            v = evaluate(model, streams.val, dev)
            evals.append({"step": s + 1, "val_loss": round(v, 4), "val_ppl": round(math.exp(v), 1)})
            print(f"{args.recipe}: step {s + 1}/{steps} val ppl {math.exp(v):.1f}", flush=True)
    averaged = {}
    for name, avg in (("ema0.999", ema), ("mean_last_half", mean)) if args.average else ():
        with torch.no_grad():
            for p, a in zip(params, avg, strict=True):
                p.copy_(a)
        v = evaluate(model, streams.val, dev)
        averaged[name] = {"val_loss": round(v, 4), "val_ppl": round(math.exp(v), 1)}
        print(f"{args.recipe}: {name} val ppl {math.exp(v):.1f}", flush=True)
    out = {
        "recipe": args.recipe,
        "forget_bias": args.forget_bias,
        "unigram_bias": args.unigram_bias,
        "clip_groups": args.clip_groups,
        "rnn_lr_mult": args.rnn_lr_mult,
        "emb_init": args.emb_init,
        "momentum": args.momentum,
        "rnn_adam": args.rnn_adam,
        "averaged": averaged,
        **r,
        "precision": args.precision,
        "device": dev,
        "steps": steps,
        "seconds": round(time.perf_counter() - t0, 1),
        "val_ppl": evals[-1]["val_ppl"],
        "evals": evals,
        "train_curve": curve,
    }
    print(
        json.dumps({k: out[k] for k in ("recipe", "precision", "val_ppl", "averaged", "seconds")})
    )
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
