"""T2: Transformers train in parallel over the sequence, RNNs sequentially — so training is faster."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.context import StudyContext
from archlab.study.lmtrain import ARCH_LABELS, TEXT_RUNS, lm_loss, text_run
from archlab.study.measure import first_crossing, fit_exponent, mean_std, seed_all, sweep_times
from archlab.study.nets import n_params, study_lm, width_for_params
from archlab.study.plots import band, subplots, to_png

QUOTE = (
    "RNNs process data sequentially, while Transformers can process entire sequences of data in "
    "parallel during training. This characteristic significantly reduces training time and allows "
    "for more efficient scaling with larger datasets and more complex models."
)
ARCHS = ("lstm", "gpt")


def step_times(s: Mapping[str, Any], seed: int, bar) -> dict[str, Any]:
    """Seconds per training step (forward + backward + AdamW) vs n, as [pass][n] per arch."""
    gen = seed_all(seed)
    V, ns = s["vocab"], s["ns"]
    out: dict[str, Any] = {"times": {}, "params": {}, "width": {}}
    for arch in ARCHS:
        layers = s["layers"]
        w = width_for_params(arch, s["target_params"], V, layers, max_len=max(ns))
        model = study_lm(arch, V, w, layers, max_len=max(ns))  # the project's models
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        out["params"][arch], out["width"][arch] = n_params(model), w

        def make(n: int, model=model, opt=opt):
            x = torch.randint(V, (s["batch"], n + 1), generator=gen)  # (B, n+1)

            def step() -> None:
                loss = lm_loss(model(x[:, :-1]), x[:, 1:])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            return step

        out["times"][arch] = sweep_times([make(n) for n in ns], s["passes"], s["inner"])
        bar.update()
    return out


def _to_target(runs: dict[str, list[dict]]) -> dict[str, Any]:
    """Steps and seconds for every run to reach the target all of them reach: the worst of the
    runs' best validation losses."""
    target = max(min(e["loss"] for e in r["evals"]) for rs in runs.values() for r in rs)
    out: dict[str, Any] = {"target": target, "steps": {}, "seconds": {}}
    for a, rs in runs.items():
        losses = [[e["loss"] for e in r["evals"]] for r in rs]
        out["steps"][a] = [
            first_crossing([e["step"] for e in r["evals"]], ls, target)
            for r, ls in zip(rs, losses, strict=True)
        ]
        out["seconds"][a] = [
            first_crossing([e["train_s"] for e in r["evals"]], ls, target)
            for r, ls in zip(rs, losses, strict=True)
        ]
    return out


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    text, lens = s["text"], s["ttt_lens"]
    bar = ctx.progress(
        total=2 + 2 * len(lens) * len(ctx.seeds) * text["steps"], desc="step time + time to target"
    )
    st = step_times(s, ctx.seeds[0], bar)
    per_len, curves = [], {}
    for L in lens:
        sizes = {**text, "train_len": L}
        runs = {
            a: [
                text_run(a, "learned" if a == "gpt" else "none", seed, sizes, bar)
                for seed in ctx.seeds
            ]
            for a in ARCHS
        }
        per_len.append(_to_target(runs))
        curves = {  # learning curves at the longest length, for the figure
            a: {
                "step": [e["step"] for e in rs[0]["evals"]],
                "loss": [
                    mean_std([r["evals"][i]["loss"] for r in rs])
                    for i in range(len(rs[0]["evals"]))
                ],
            }
            for a, rs in runs.items()
        }
        params = {a: rs[0]["params"] for a, rs in runs.items()}
        data = runs["lstm"][0]["data"]
    bar.close()
    ns, T = s["ns"], st["times"]
    ratio = [[T["gpt"][p][j] / T["lstm"][p][j] for j in range(len(ns))] for p in range(s["passes"])]
    layers = s["layers"]
    return {
        "device": str(ctx.device),
        "threads": torch.get_num_threads(),
        "ns": ns,
        "params": st["params"],
        "width": st["width"],
        "layers": layers,
        "sequential_steps": {"lstm": [layers * n for n in ns], "gpt": [layers for _ in ns]},
        "ttt_lens": lens,
        "target_loss": [p["target"] for p in per_len],
        "text_params": params,
        "steps_to_target": {a: [mean_std(p["steps"][a]) for p in per_len] for a in ARCHS},
        "curves": curves,
        "data": data,
        "timing": {
            "step_s": T,
            "gpt_over_lstm_step": [mean_std([r[j] for r in ratio]) for j in range(len(ns))],
            "step_exponent": {a: fit_exponent(ns, T[a]) for a in ARCHS},
            "time_to_target_s": [p["seconds"] for p in per_len],
            "gpt_over_lstm_time_to_target": [
                mean_std(
                    [g / l for g, l in zip(p["seconds"]["gpt"], p["seconds"]["lstm"], strict=True)]
                )
                for p in per_len
            ],
        },
    }


def verdict(m: Mapping[str, Any]) -> Verdict:
    t = m["timing"]
    r = [x["mean"] for x in t["gpt_over_lstm_step"]]
    ttt = [x["mean"] for x in t["gpt_over_lstm_time_to_target"]]
    where = f"{m['device']}, {m['threads']} thread(s)"
    facts = (
        f"sequential steps: LSTM L·n (= {m['sequential_steps']['lstm'][-1]} at n={m['ns'][-1]}), "
        f"GPT L = {m['layers']} at any n. Measured on "
        f"{where}: GPT/LSTM time per training step {r[0]:.2f}× at n={m['ns'][0]} … {r[-1]:.2f}× at "
        f"n={m['ns'][-1]} (exponents: LSTM {t['step_exponent']['lstm']['mean']:.2f}, GPT "
        f"{t['step_exponent']['gpt']['mean']:.2f}); GPT/LSTM wall time to a common validation "
        "loss: "
        + ", ".join(f"{x:.2f}× at n={n}" for n, x in zip(m["ttt_lens"], ttt, strict=True))
        + "."
    )
    # GPT is "faster at n" only when the whole mean ± std band of the ratio lies below 1
    faster = [
        n for n, x in zip(m["ns"], t["gpt_over_lstm_step"], strict=True) if x["mean"] + x["std"] < 1
    ]
    if len(faster) == len(r) and max(ttt) < 1:
        return Verdict("supported", facts)
    if not faster:
        return Verdict(
            "conditional",
            condition=f"the Transformer's sequential depth is 1 instead of n per layer, but on "
            f"{where} GPT's training step is not faster at any length measured (GPT/LSTM "
            f"{min(r):.2f}–{max(r):.2f}×); the advantage needs hardware that runs the n positions "
            "in parallel",
            reason=facts,
        )
    return Verdict(
        "conditional",
        condition=f"GPT's training step is faster only for n in {faster} on {where}",
        reason=facts,
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    t = m["timing"]
    rows = [
        [
            n,
            m["sequential_steps"]["lstm"][j],
            m["sequential_steps"]["gpt"][j],
            f"{t['gpt_over_lstm_step'][j]['mean']:.2f} ± {t['gpt_over_lstm_step'][j]['std']:.2f}",
        ]
        for j, n in enumerate(m["ns"])
    ]

    def ms(x: dict, digits: int = 0) -> str:
        return f"{x['mean']:.{digits}f} ± {x['std']:.{digits}f}"

    tt = [
        [n, m["target_loss"][j]]
        + [ms(m["steps_to_target"][a][j]) for a in ARCHS]
        + [ms(t["gpt_over_lstm_time_to_target"][j], 2)]
        for j, n in enumerate(m["ttt_lens"])
    ]
    return [
        Table(
            f"Per training step (params {m['params']}, {m['layers']} layer(s)): sequential steps "
            "and GPT/LSTM time ratio (mean ± std over passes)",
            ["n", "LSTM sequential steps", "GPT sequential steps", "GPT/LSTM time"],
            rows,
        ),
        Table(
            f"Training on text to a common validation loss (the worst run's best; mean ± std over "
            f"seeds; params {m['text_params']})",
            ["n (train length)", "target loss", "LSTM steps", "GPT steps", "GPT/LSTM wall time"],
            tt,
        ),
    ]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (a1, a2) = subplots(2, width=5)
    t = m["timing"]
    band(a1, m["ns"], t["gpt_over_lstm_step"], "GPT / LSTM")
    a1.axhline(1, color="gray", ls="--", lw=1)
    a1.set_xscale("log", base=2)
    a1.set_xlabel("sequence length n")
    a1.set_ylabel("time per training step, ratio")
    a1.set_title("Who trains faster per step?")
    for a, c in m["curves"].items():
        band(a2, c["step"], c["loss"], ARCH_LABELS[(a, "learned" if a == "gpt" else "none")])
    a2.axhline(m["target_loss"][-1], color="gray", ls="--", lw=1, label="target")
    a2.set_xlabel("training step")
    a2.set_ylabel("validation loss (nats/char)")
    a2.set_title(f"Learning curves at n={m['ttt_lens'][-1]} (band: min–max)")
    a2.legend(fontsize=8)
    a1.legend(fontsize=8)
    return to_png(fig)


CLAIM = register_claim(
    Claim(
        id="T2",
        part=1,
        title="Parallel training",
        subject="Transformer",
        seed_quote=QUOTE,
        method="Counts the sequential steps each architecture needs per layer (LSTM: one per token; "
        "GPT: one), times a full training step (forward, backward, AdamW) of the project's LSTM and "
        "GPT (archlab.models) at matched parameter count at growing n (interleaved passes, min of repeated calls), and "
        "trains both on character-level text at several window lengths n to a common validation-loss "
        "target per n, recording steps and wall time to reach it.",
        sizes={
            "tiny": {
                "vocab": 16,
                "layers": 1,
                "target_params": 3000,
                "batch": 2,
                "ns": [8, 16, 32],
                "ttt_lens": [8, 16],
                "passes": 2,
                "inner": 1,
                "text": TEXT_RUNS["tiny"],
            },
            "quick": {
                "vocab": 64,
                "layers": 2,
                "target_params": 50_000,
                "batch": 8,
                "ns": [32, 64, 128, 256, 512],
                "ttt_lens": [32, 64],
                "passes": 3,
                "inner": 2,
                "text": TEXT_RUNS["quick"],
            },
            "full": {
                "vocab": 64,
                "layers": 4,
                "target_params": 1_000_000,
                "batch": 16,
                "ns": [64, 128, 256, 512, 1024, 2048],
                "ttt_lens": [64, 128, 256],
                "passes": 5,
                "inner": 3,
                "text": TEXT_RUNS["full"],
            },
        },
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        trains=True,
        timing_verdict=True,
        spread="mean ± std over seeds (training) or timing passes",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]
