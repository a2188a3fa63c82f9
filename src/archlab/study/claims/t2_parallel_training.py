"""T2: Transformers train in parallel over the sequence, RNNs sequentially — so training is faster.

Two parts, kept apart. (1) Parallelism, counted exactly: an L-layer recurrent net needs L·n
dependent steps for a sequence of n tokens, an L-layer Transformer L (Vaswani et al. 2017,
Table 1, "sequential operations"). (2) Training time: that fewer sequential steps means less wall
time needs hardware that runs the n positions at once. On a GPU we time a training step of an LSTM
and a GPT of matched parameters directly. On a CPU with P cores the positions can only spread over
P threads, so we time both at 1 and P threads at a fixed number of tokens per step: the claim
predicts that the GPT gains more from the extra threads than the LSTM (whose n steps stay
sequential). The timing part counts only when that difference clears its CI; otherwise it is
"inconclusive: needs other hardware".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.claims._common import fmt_ci, literature
from archlab.study.context import StudyContext
from archlab.study.measure import seed_all, sweep_times
from archlab.study.nets import n_params, study_lm, width_for_params
from archlab.study.plots import subplots, to_png
from archlab.study.stats import exact, mean_effect, paired, side

QUOTE = (
    "RNNs process data sequentially, while Transformers can process entire sequences of data in "
    "parallel during training. This characteristic significantly reduces training time and allows "
    "for more efficient scaling with larger datasets and more complex models."
)
ARCHS = ("lstm", "gpt")


def _steps(arch: str, s: Mapping[str, Any], gen: torch.Generator, device: torch.device):
    V, ns = s["vocab"], s["ns"]
    w = width_for_params(arch, s["target_params"], V, s["layers"], max_len=max(ns))
    model = study_lm(arch, V, w, s["layers"], max_len=max(ns)).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)

    def make(n: int):
        b = max(1, s["tokens"] // n)
        x = torch.randint(V, (b, n + 1), generator=gen).to(device)  # (b, n+1)

        def step() -> None:
            logits = model(x[:, :-1])  # (b, n, V)
            loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)

        return step

    return [make(n) for n in ns], n_params(model), w


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    gen = seed_all(ctx.seeds[0])
    threads = torch.get_num_threads()
    thread_counts = [1, threads] if ctx.device.type == "cpu" and threads > 1 else [threads]
    out: dict[str, Any] = {"params": {}, "width": {}}
    fns = {}
    for arch in ARCHS:
        fns[arch], out["params"][arch], out["width"][arch] = _steps(arch, s, gen, ctx.device)
    times: dict[str, dict[str, Any]] = {str(t): {} for t in thread_counts}
    bar = ctx.progress(total=len(thread_counts), desc="step time")
    try:
        for t in thread_counts:
            torch.set_num_threads(t)
            both = sweep_times(fns["lstm"] + fns["gpt"], s["repeats"], s["inner"])  # [rep][2n]
            k = len(s["ns"])
            times[str(t)] = {"lstm": [r[:k] for r in both], "gpt": [r[k:] for r in both]}
            bar.update()
    finally:
        torch.set_num_threads(threads)
        bar.close()
    L = s["layers"]
    return {
        "device": str(ctx.device),
        "threads": thread_counts,
        "ns": s["ns"],
        "tokens": s["tokens"],
        "layers": L,
        **out,
        "sequential_steps": {"lstm": [L * n for n in s["ns"]], "gpt": [L for _ in s["ns"]]},
        "timing": {"step_s": times},
    }


def verdict(m: Mapping[str, Any]) -> Verdict:
    n, L = m["ns"][-1], m["layers"]
    depth = m["sequential_steps"]["lstm"][-1] / m["sequential_steps"]["gpt"][-1]
    t = m["timing"]["step_s"]
    th = m["threads"]
    top = t[str(th[-1])]
    ratio = mean_effect(
        [g[-1] / lstm[-1] for g, lstm in zip(top["gpt"], top["lstm"], strict=True)],
        f"GPT / LSTM time per training step at n = {n}",
        "×",
        "repeats",
    )
    checks: dict[str, Any] = {
        "positive_control": "n/a",
        "device": m["device"],
        "threads": th[-1],
        "sequential_depth_ratio": depth,
    }
    structure = (
        f"sequential steps per training sequence: LSTM L·n = {L}·{n} = "
        f"{m['sequential_steps']['lstm'][-1]:,}, GPT L = {L} (exact count)"
    )
    if m["device"].startswith("cuda"):
        effect = ratio
        timing = f"on {m['device']} the GPT's training step takes {fmt_ci(ratio, 2)} of the LSTM's"
        faster = side(effect, 1.0) < 0
        checks["timing"] = "decided on a GPU"
    else:
        if len(th) < 2:
            effect = exact(depth, "sequential-depth ratio LSTM / GPT", "×")
            timing = f"one CPU thread cannot run positions in parallel ({th[-1]} thread)"
            faster = None
        else:
            one = t["1"]
            sp = {
                a: [o[-1] / p[-1] for o, p in zip(one[a], top[a], strict=True)]
                for a in ("gpt", "lstm")
            }
            effect = paired(
                sp["gpt"],
                sp["lstm"],
                f"GPT − LSTM speed-up from 1 to {th[-1]} threads at n = {n}",
                "×",
                "repeats",
            )
            timing = (
                f"from 1 to {th[-1]} CPU threads the GPT's step speeds up "
                f"{sum(sp['gpt']) / len(sp['gpt']):.2f}× and the LSTM's "
                f"{sum(sp['lstm']) / len(sp['lstm']):.2f}× (difference {fmt_ci(effect, 2)}); "
                f"GPT / LSTM step time at {th[-1]} threads {fmt_ci(ratio, 2)}"
            )
            faster = True if side(effect) > 0 and side(ratio, 1.0) < 0 else None
        checks["timing"] = "decided" if faster else "inconclusive: needs other hardware"
    facts = f"{structure}; {timing}."
    if faster:
        return Verdict(
            "supported",
            "Supported: the Transformer's training needs L sequential steps instead of L·n, and "
            f"on this hardware ({m['device']}) that makes its training step faster than the "
            "LSTM's at matched parameters.",
            facts,
            effect,
            checks,
            literature("vaswani2017", True),
        )
    if faster is False:
        return Verdict(
            "supported within scope",
            f"Supported within scope: training is parallel over positions (L instead of L·n "
            f"sequential steps), but on {m['device']} the GPT's step is not faster than the "
            "LSTM's at matched parameters.",
            facts,
            effect,
            checks,
            literature("vaswani2017", True),
            scope="the parallelism (sequential depth); not the wall time on this device",
        )
    return Verdict(
        "supported within scope",
        f"Supported within scope: training is parallel over positions — {L} sequential steps "
        f"instead of {L}·n ({depth:,.0f}× fewer at n = {n:,}), counted exactly; whether that "
        "reduces training time is inconclusive on this hardware (needs other hardware: a GPU, or "
        "enough CPU threads to show the scaling).",
        facts,
        effect,
        checks,
        literature("vaswani2017", True),
        scope="the sequential depth (exact); the training-time reduction is inconclusive here: "
        "needs other hardware",
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    rows = []
    for th in m["threads"]:
        t = m["timing"]["step_s"][str(th)]
        for j, n in enumerate(m["ns"]):
            lstm = min(r[j] for r in t["lstm"])
            gpt = min(r[j] for r in t["gpt"])
            rows.append(
                [
                    th,
                    n,
                    m["tokens"] // n,
                    m["sequential_steps"]["lstm"][j],
                    m["sequential_steps"]["gpt"][j],
                    lstm,
                    gpt,
                    gpt / lstm,
                ]
            )
    return [
        Table(
            f"Training step (forward + backward + AdamW), {m['tokens']:,} tokens per step, "
            f"params {_params(m)} ({m['device']}; seconds, min of repeats)",
            [
                "threads",
                "n",
                "batch",
                "LSTM sequential steps",
                "GPT sequential steps",
                "LSTM s",
                "GPT s",
                "GPT / LSTM",
            ],
            rows,
        )
    ]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (a1, a2) = subplots(2, width=5)
    a1.plot(m["ns"], m["sequential_steps"]["lstm"], "o-", label="LSTM (L·n)")
    a1.plot(m["ns"], m["sequential_steps"]["gpt"], "s-", label="GPT (L)")
    a1.set_xscale("log", base=2)
    a1.set_yscale("log")
    a1.set_xlabel("sequence length n")
    a1.set_ylabel("sequential steps (exact)")
    a1.set_title("Parallelism over positions")
    for th in m["threads"]:
        t = m["timing"]["step_s"][str(th)]
        for a, mk in (("lstm", "o"), ("gpt", "s")):
            a2.plot(
                m["ns"],
                [min(r[j] for r in t[a]) for j in range(len(m["ns"]))],
                mk + "-",
                label=f"{a.upper()}, {th} thread(s)",
            )
    a2.set_xscale("log", base=2)
    a2.set_yscale("log")
    a2.set_xlabel("sequence length n (tokens per step fixed)")
    a2.set_ylabel("seconds per training step")
    a2.set_title(f"Wall time on {m['device']}")
    for ax in (a1, a2):
        ax.legend(fontsize=8)
    return to_png(fig)


def method(m: Mapping[str, Any]) -> str:
    return (
        f"Counts the sequential steps each architecture needs per sequence ({m['layers']}-layer "
        "LSTM: one per token and layer; GPT: one per layer) and times a full training step "
        "(forward, backward, AdamW) of the project's LSTM and GPT at matched parameter count "
        f"({_params(m)}) for n = {m['ns'][0]}…{m['ns'][-1]} at a fixed {m['tokens']:,} tokens "
        f"per step, interleaved repeats, on {m['device']} with "
        f"{' and '.join(map(str, m['threads']))} thread(s)."
    )


CLAIM = register_claim(
    Claim(
        id="T2",
        part=1,
        title="Parallel training",
        subject="Transformer",
        seed_quote=QUOTE,
        method=method,
        sizes={
            "tiny": {
                "vocab": 16,
                "layers": 1,
                "target_params": 3000,
                "tokens": 64,
                "ns": [8, 16, 32],
                "repeats": 2,
                "inner": 1,
            },
            "quick": {
                "vocab": 64,
                "layers": 2,
                "target_params": 50_000,
                "tokens": 4096,
                "ns": [64, 256, 1024],
                "repeats": 3,
                "inner": 1,
            },
            "standard": {
                "vocab": 64,
                "layers": 2,
                "target_params": 50_000,
                "tokens": 4096,
                "ns": [64, 256, 1024, 2048],
                "repeats": 5,
                "inner": 2,
            },
            "full": {
                "vocab": 64,
                "layers": 4,
                "target_params": 1_000_000,
                "tokens": 16_384,
                "ns": [64, 256, 1024, 4096],
                "repeats": 5,
                "inner": 3,
            },
        },
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        timing_verdict=True,
        spread="exact counts; timing: mean with 95% CI over interleaved repeats",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]


def _params(m: Mapping[str, Any]) -> str:
    return " and ".join(f"{k.upper()} {v:,}" for k, v in m["params"].items())
