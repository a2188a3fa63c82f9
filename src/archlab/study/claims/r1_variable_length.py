"""R1: RNNs handle variable-length input naturally (a hidden state updated per token).

Two measurements. (a) Padding, exactly: a batch of sequences of different lengths run padded —
the RNNs right-padded with ``pack_padded_sequence``, the GPT left-padded with a key-padding mask —
must give each sequence the outputs it gets alone. (b) Lengths beyond training: an LSTM and a GPT
with sinusoidal positions (matched parameters, trained on Tiny Shakespeare windows of T
characters through archlab's Trainer) are scored per position on windows of 4T; the effect is the
seed-paired difference of loss(beyond T) / loss(last half of the training window) between them. A
GPT with learned positions cannot run past T at all (checked).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from archlab.errors import ArchlabError
from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.claims._common import fmt_ci, literature, undertrained
from archlab.study.context import StudyContext
from archlab.study.measure import mean_std, seed_all
from archlab.study.nets import study_lm
from archlab.study.plots import band, subplots, to_png
from archlab.study.pools import TEXT, TEXT_ARCHS, bigram_loss, per_position_loss, text_fit
from archlab.study.stats import paired, side

QUOTE = (
    "RNNs are designed to handle variable-length input sequences naturally, as they maintain a "
    "hidden state that is updated with each input token. This can be beneficial for next word "
    "prediction in scenarios where the input sequences have varying lengths."
)
EXACT = 1e-4  # max |difference| in logits that counts as "the same output" (float32 reductions)
# Positive control: each text model's validation loss must beat a bigram model's (pools.bigram_loss)
LSTM, GPT = (n for n, _, _ in TEXT_ARCHS)


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


def learned_positions_stop(T: int, vocab: int) -> bool:
    """A GPT with a learned position table of T rows refuses a longer input (one-line error)."""
    g = study_lm("gpt", vocab, 8, 1, max_len=T, heads=1)
    try:
        g(torch.zeros(1, T + 1, dtype=torch.long))
    except ArchlabError:
        return True
    return False


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    text = s["text"]
    T, mult = text["context"], s["eval_mult"]
    streams = ctx.text().streams
    bar = ctx.progress(total=len(TEXT_ARCHS) * len(ctx.seeds), desc="train + extrapolate")
    curves: dict[str, Any] = {}
    for label, _, _ in TEXT_ARCHS:
        rows, ratios, losses, params = [], [], [], 0
        for seed in ctx.seeds:
            f = text_fit(ctx, label, seed, text)
            params = f.params
            loss = per_position_loss(f.model, streams.val, mult * T, s["eval_windows"], seed)
            rows.append(loss)
            ratios.append(float(np.mean(loss[T:]) / np.mean(loss[T // 2 : T])))
            losses.append(float(f.final["loss"]))
            bar.update()
        arr = np.asarray(rows)
        curves[label] = {
            "params": params,
            "val_loss": losses,
            "per_position": [mean_std(arr[:, t].tolist()) for t in range(arr.shape[1])],
            "beyond_over_within": ratios,
        }
    bar.close()
    return {
        "train_len": T,
        "eval_len": mult * T,
        "steps": text["steps"],
        "padding": padding_checks(s, ctx.seeds[0]),
        "learned_positions_stop_at_T": learned_positions_stop(T, ctx.text().vocab),
        "extrapolation": curves,
        "control": round(bigram_loss(streams), 4),
        "data": ctx.text().desc["source"],
    }


def verdict(m: Mapping[str, Any]) -> Verdict:
    p, e = m["padding"], m["extrapolation"]
    rnn_exact = max(
        max(p[k]["packed_outputs"], p[k]["packed_final_state"]) for k in ("rnn", "lstm", "gru")
    )
    gpt_exact = p["gpt"]["masked_outputs"]
    effect = paired(
        e[GPT]["beyond_over_within"],
        e[LSTM]["beyond_over_within"],
        "GPT − LSTM loss ratio beyond / within the training length",
    )
    status = "pass" if all(np.mean(v["val_loss"]) < m["control"] for v in e.values()) else "fail"
    ctrl = ", ".join(
        f"{k} val loss {np.mean(v['val_loss']):.3f} (< {m['control']:.3f}, a bigram model's)"
        for k, v in e.items()
    )
    checks = {
        "positive_control": status,
        "rnn_padding_exact": rnn_exact < EXACT,
        "gpt_masking_exact": gpt_exact < EXACT,
        "learned_positions_cannot_extrapolate": m["learned_positions_stop_at_T"],
    }
    T = m["train_len"]
    lstm, gpt = (float(np.mean(e[k]["beyond_over_within"])) for k in (LSTM, GPT))
    facts = (
        f"padded batches reproduce each sequence's outputs: RNNs with packing (max |Δ| "
        f"{rnn_exact:.1e}), the GPT with a key-padding mask ({gpt_exact:.1e}; without the mask "
        f"{p['gpt']['unmasked_outputs']:.1e}); without packing an RNN's final state is wrong (|Δ| "
        f"up to {max(p[k]['unpacked_final_state'] for k in ('rnn', 'lstm', 'gru')):.2f}). Past "
        f"the training length T = {T}: loss ×{lstm:.2f} for the LSTM, ×{gpt:.2f} for the "
        f"sinusoidal GPT (effect {fmt_ci(effect)}); a GPT with learned positions cannot run past "
        f"T. Positive control: {ctrl}."
    )
    if status == "fail":
        return undertrained("the length extrapolation", ctrl, effect, checks, "press2022")
    if rnn_exact >= EXACT:
        return Verdict(
            "contradicted",
            "Contradicted: packed RNN outputs differ from unpadded ones.",
            facts,
            effect,
            checks,
            literature("press2022", False),
        )
    s = side(effect)
    if s > 0:
        return Verdict(
            "supported within scope",
            f"Supported within scope: within the training length both architectures handle "
            f"variable lengths exactly (RNN by packing, Transformer by masking); beyond it the "
            f"RNN's running state keeps its loss (×{lstm:.2f}) while the sinusoidal Transformer "
            f"degrades (×{gpt:.2f}) and a learned-position one cannot run at all.",
            facts,
            effect,
            checks,
            literature("press2022", True),
            scope=f"inputs longer than the training length ({T} characters here); within it a "
            "masked Transformer is equally exact",
        )
    if s < 0:
        return Verdict(
            "contradicted",
            "Contradicted: the Transformer extrapolates past its "
            "training length better than the RNN.",
            facts,
            effect,
            checks,
            literature("press2022", False),
        )
    return Verdict(
        "inconclusive",
        "Inconclusive (within noise): both handle variable lengths exactly within the training "
        "length, and beyond it the difference between them is within the seeds' spread.",
        facts,
        effect,
        checks,
        literature("press2022", None),
        why_inconclusive="within noise",
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    rows = []
    for k, d in m["padding"].items():
        for check, v in d.items():
            rows.append([k, check.replace("_", " "), v, "yes" if v < EXACT else "no"])
    ext = []
    for k, d in m["extrapolation"].items():
        r = mean_std(d["beyond_over_within"])
        ext.append(
            [k, d["params"], float(np.mean(d["val_loss"])), f"{r['mean']:.3f} ± {r['std']:.3f}"]
        )
    ext.append(
        [
            "GPT, learned positions",
            None,
            None,
            "cannot run past T" if m["learned_positions_stop_at_T"] else "runs past T",
        ]
    )
    return [
        Table(
            "Padding: max |logit or state difference| vs running each sequence alone",
            ["model", "check", "max |Δ|", "same output"],
            rows,
        ),
        Table(
            f"Length extrapolation: mean loss at positions ≥ T = {m['train_len']} / at positions "
            f"T/2..T (mean ± std over seeds; models trained {m['steps']} steps)",
            ["model", "params", "val loss (nats/char)", "loss ratio"],
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


def method(m: Mapping[str, Any]) -> str:
    params = ", ".join(f"{k} {v['params']:,}" for k, v in m["extrapolation"].items())
    return (
        "(a) Padding: a batch of sequences of different lengths is run padded — RNN/LSTM/GRU "
        "right-padded with pack_padded_sequence, GPT left-padded with a key-padding mask — and "
        "compared with each sequence run alone (logits and final state). (b) Length: an LSTM "
        f"(forget bias 1) and a GPT with sinusoidal positions ({params} parameters) are trained "
        f"for {m['steps']} steps on {m['data']} windows of T = {m['train_len']} characters "
        f"through archlab's Trainer, then scored per position on windows of {m['eval_len']}."
    )


def _sizes(profile: str) -> dict[str, Any]:
    return {
        "vocab": 32,
        "width": 16,
        "pad_len": 12 if profile == "tiny" else 24,
        "eval_mult": 4,
        "eval_windows": {"tiny": 8, "quick": 64, "standard": 128, "full": 256}[profile],
        "text": {
            **TEXT[profile],
            "context": {"tiny": 16, "quick": 64, "standard": 64, "full": 128}[profile],
            "steps": {"tiny": 8, "quick": 600, "standard": 1200, "full": 5000}[profile],
        },
    }


CLAIM = register_claim(
    Claim(
        id="R1",
        part=1,
        title="Variable-length input",
        subject="RNN",
        seed_quote=QUOTE,
        method=method,
        sizes={p: _sizes(p) for p in ("tiny", "quick", "standard", "full")},
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        trains=True,
        uses=("text",),
        spread="mean ± std over seeds; effect: paired 95% CI; bands min–max",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]
