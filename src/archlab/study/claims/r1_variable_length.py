"""R1: RNNs handle variable-length input naturally (a hidden state updated per token)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.context import StudyContext
from archlab.study.lmtrain import ARCH_LABELS, TEXT_RUNS, per_position_loss, text_run
from archlab.study.measure import mean_std, seed_all
from archlab.study.nets import study_lm
from archlab.study.plots import band, subplots, to_png

QUOTE = (
    "RNNs are designed to handle variable-length input sequences naturally, as they maintain a "
    "hidden state that is updated with each input token. This can be beneficial for next word "
    "prediction in scenarios where the input sequences have varying lengths."
)
EXACT = 1e-4  # max |difference| in logits that counts as "the same output" (float32 reductions)
RUNS = (("lstm", "none"), ("gpt", "learned"), ("gpt", "sinusoidal"))


def padding_checks(s: Mapping[str, Any], seed: int) -> dict[str, dict[str, float]]:
    """Max |logit difference| between a padded batch and each sequence run alone."""
    gen = seed_all(seed)
    V, L = s["vocab"], s["pad_len"]
    lengths = [L, L - 3, L // 2, 3]
    seqs = [torch.randint(1, V, (n,), generator=gen) for n in lengths]
    out: dict[str, dict[str, float]] = {}
    with torch.no_grad():
        for kind in ("rnn", "lstm", "gru"):
            m = study_lm(kind, V, s["width"]).eval()
            right = torch.zeros(len(seqs), L, dtype=torch.long)  # (B, L) right-padded with 0
            for i, q in enumerate(seqs):
                right[i, : len(q)] = q
            lens = torch.tensor(lengths)
            packed, h_packed = m(right, return_state=True, lengths=lens)  # (B, L, V)
            plain, h_plain = m(right, return_state=True)
            d_out = d_hp = d_hn = 0.0
            for i, q in enumerate(seqs):
                alone, h_alone = m(q[None], return_state=True)  # (1, n, V)
                hp = h_packed[0] if kind == "lstm" else h_packed  # (layers, B, H)
                hn = h_plain[0] if kind == "lstm" else h_plain
                ha = h_alone[0] if kind == "lstm" else h_alone
                d_out = max(d_out, float((packed[i, : len(q)] - alone[0]).abs().max()))
                d_hp = max(d_hp, float((hp[:, i] - ha[:, 0]).abs().max()))
                d_hn = max(d_hn, float((hn[:, i] - ha[:, 0]).abs().max()))
            out[kind] = {
                "packed_outputs": d_out,
                "packed_final_state": d_hp,
                "unpacked_final_state": d_hn,
            }
        g = study_lm("gpt", V, s["width"], 2, max_len=L, heads=2).eval()
        left = torch.zeros(len(seqs), L, dtype=torch.long)  # (B, L) left-padded
        valid = torch.zeros(len(seqs), L, dtype=torch.bool)
        for i, q in enumerate(seqs):
            left[i, L - len(q) :], valid[i, L - len(q) :] = q, True
        masked, unmasked = g(left, key_padding_mask=valid), g(left)
        d_m = d_u = 0.0
        for i, q in enumerate(seqs):
            alone = g(q[None])[0]  # (n, V)
            d_m = max(d_m, float((masked[i, L - len(q) :] - alone).abs().max()))
            d_u = max(d_u, float((unmasked[i, L - len(q) :] - alone).abs().max()))
        out["gpt"] = {"masked_outputs": d_m, "unmasked_outputs": d_u}
    return out


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    text = s["text"]
    T, mult = text["train_len"], s["eval_mult"]
    bar = ctx.progress(total=len(RUNS) * len(ctx.seeds) * text["steps"], desc="train + extrapolate")
    curves: dict[str, Any] = {}
    for arch, pos in RUNS:
        label = ARCH_LABELS[(arch, pos)]
        rows, ratios, params = [], [], 0
        for seed in ctx.seeds:
            r = text_run(arch, pos, seed, text, bar)
            params = r["params"]
            length = T if pos == "learned" else mult * T  # learned positions stop at T
            loss = per_position_loss(r, length, s["eval_batches"], text["batch"], seed)
            rows.append(loss)
            if length > T:
                ratios.append(float(np.mean(loss[T:]) / np.mean(loss[T // 2 : T])))
        arr = np.asarray(rows)
        curves[label] = {
            "params": params,
            "per_position": [mean_std(arr[:, t].tolist()) for t in range(arr.shape[1])],
            "beyond_over_within": mean_std(ratios) if ratios else None,
            "can_extrapolate": pos != "learned",
        }
    bar.close()
    return {
        "train_len": T,
        "eval_len": mult * T,
        "padding": padding_checks(s, ctx.seeds[0]),
        "extrapolation": curves,
        "data": text_run(*RUNS[0], ctx.seeds[0], text)["data"],
    }


def verdict(m: Mapping[str, Any]) -> Verdict:
    p = m["padding"]
    rnn_ok = all(
        max(p[k]["packed_outputs"], p[k]["packed_final_state"]) < EXACT
        for k in ("rnn", "lstm", "gru")
    )
    gpt_ok = p["gpt"]["masked_outputs"] < EXACT
    e = m["extrapolation"]
    lstm = e["LSTM"]["beyond_over_within"]["mean"]
    sin = e["GPT (sinusoidal pos.)"]["beyond_over_within"]["mean"]
    T = m["train_len"]
    facts = (
        f"padded batches reproduce unpadded outputs: RNNs with packing (max |Δ| "
        f"{max(p[k]['packed_outputs'] for k in ('rnn', 'lstm', 'gru')):.1e}), GPT with a key-padding "
        f"mask ({p['gpt']['masked_outputs']:.1e}; without the mask {p['gpt']['unmasked_outputs']:.1e}); "
        f"without packing the RNN's final state is wrong (|Δ| up to "
        f"{max(p[k]['unpacked_final_state'] for k in ('rnn', 'lstm', 'gru')):.2f}). Past the training "
        f"length {T}, loss(beyond)/loss(last half of training window): LSTM {lstm:.2f}, GPT sinusoidal "
        f"{sin:.2f}; GPT with learned positions cannot run past {T} at all."
    )
    if not rnn_ok:
        return Verdict("not supported", facts)
    if lstm <= 1.05 and (sin > 1.1 or not gpt_ok):
        return Verdict(
            "conditional",
            condition=f"within the training length both handle variable lengths exactly (RNN by "
            f"packing, GPT by masking); only past it does the RNN's state help (loss ×{lstm:.2f} "
            f"vs ×{sin:.2f} for sinusoidal GPT; learned positions cannot run)",
            reason=facts,
        )
    if lstm <= 1.05:
        return Verdict(
            "conditional",
            condition="both handle variable lengths; only learned positions "
            "fail past the training length",
            reason=facts,
        )
    return Verdict(
        "conditional",
        condition=f"padding works for both, but neither extrapolates past "
        f"the training length (LSTM loss ×{lstm:.2f})",
        reason=facts,
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    rows = []
    for k, d in m["padding"].items():
        for check, v in d.items():
            rows.append([k, check.replace("_", " "), v, "yes" if v < EXACT else "no"])
    ext = []
    for k, d in m["extrapolation"].items():
        r = d["beyond_over_within"]
        ext.append(
            [k, d["params"], f"{r['mean']:.3f} ± {r['std']:.3f}" if r else "cannot run past T"]
        )
    return [
        Table(
            "Padding: max |logit or state difference| vs running each sequence alone",
            ["model", "check", "max |Δ|", "same output"],
            rows,
        ),
        Table(
            f"Length extrapolation: mean loss at positions ≥ T={m['train_len']} / positions "
            f"T/2..T (mean ± std over seeds)",
            ["model", "params", "loss ratio"],
            ext,
        ),
    ]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (ax,) = subplots(width=7, height=4)
    for k, d in m["extrapolation"].items():
        band(ax, list(range(len(d["per_position"]))), d["per_position"], k)
    ax.axvline(m["train_len"], color="gray", ls="--", label="training length")
    ax.set_xlabel("position in the window (characters of context − 1)")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_title("Loss per position, evaluated past the training length")
    ax.legend(fontsize=8)
    return to_png(fig)


CLAIM = register_claim(
    Claim(
        id="R1",
        part=1,
        title="Variable-length input",
        subject="RNN",
        seed_quote=QUOTE,
        method="(a) Padding: a batch of sequences of different lengths is run padded — RNN/LSTM/GRU "
        "right-padded with pack_padded_sequence, GPT left-padded with a key-padding mask — and "
        "compared with each sequence run alone (logits and final state). (b) Length: an LSTM and "
        "GPTs with learned and with sinusoidal positions (matched parameter count) are trained on "
        "character-level text at one window length T, then evaluated on windows of 4T.",
        sizes={
            p: {
                "vocab": 32,
                "width": 16,
                "pad_len": 12 if p == "tiny" else 24,
                "eval_mult": 4,
                "eval_batches": {"tiny": 1, "quick": 8, "full": 16}[p],
                "text": TEXT_RUNS[p],
            }
            for p in ("tiny", "quick", "full")
        },
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        trains=True,
        spread="mean ± std over seeds; bands min–max",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]
