"""R2: RNNs need less memory than Transformers because they do not keep the whole sequence."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.claims._common import literature
from archlab.study.context import StudyContext
from archlab.study.measure import loglog_slope, saved_bytes, seed_all
from archlab.study.nets import n_params, study_lm, width_for_params
from archlab.study.plots import subplots, to_png
from archlab.study.stats import exact

QUOTE = (
    "RNNs typically require less memory compared to Transformers, as they do not need to store the "
    "entire input sequence in memory during processing. This can be good when working with "
    "resource-constrained environments or when dealing with extremely long sequences."
)
TRAIN_MODELS = (
    ("LSTM (BPTT)", "lstm", "sdpa"),
    ("GPT, naive attention", "gpt", "naive"),
    ("GPT, SDPA", "gpt", "sdpa"),
)


def _state_bytes(state) -> int:
    """Bytes of the tensors a generator must keep between tokens (RNN state or KV cache)."""
    if isinstance(state, torch.Tensor):
        return state.numel() * state.element_size()
    return sum(_state_bytes(t) for t in state)


def inference(s: Mapping[str, Any], seed: int, bar) -> dict[str, list[int]]:
    """Generate greedily token by token; weigh the carried state after each checkpoint length."""
    gen = seed_all(seed)
    V, L = s["vocab"], s["layers"]
    out = {}
    for label, arch in (("LSTM state", "lstm"), ("GPT KV cache", "gpt")):
        model = study_lm(
            arch, V, s["width"][arch], L, max_len=max(s["gen_lens"]), positions="sinusoidal"
        ).eval()
        tok = torch.randint(V, (1, 1), generator=gen)  # (B=1, 1)
        state, sizes = None, []  # RNN state, or the GPT's KV cache (per layer: keys, values)
        with torch.no_grad():
            for t in range(1, max(s["gen_lens"]) + 1):
                if arch == "gpt":
                    logits, state = model(tok, past_kv=state, use_cache=True)  # (1, 1, V)
                else:
                    logits, state = model(tok, state, return_state=True)  # (1, 1, V)
                tok = logits[:, -1].argmax(-1, keepdim=True)  # (1, 1)
                if t in s["gen_lens"]:
                    sizes.append(_state_bytes(state))
                    bar.update()
        out[label] = sizes
    return out


def training(s: Mapping[str, Any], seed: int, bar) -> dict[str, list[int]]:
    """Bytes autograd keeps for backward during one forward of a (B=1, n) batch, params excluded."""
    gen = seed_all(seed)
    V, L = s["vocab"], s["layers"]
    out = {}
    for label, arch, attn in TRAIN_MODELS:
        model = study_lm(arch, V, s["width"][arch], L, max_len=max(s["train_lens"]), attention=attn)
        sizes = []
        for n in s["train_lens"]:
            idx = torch.randint(V, (1, n + 1), generator=gen)  # (1, n+1)
            with saved_bytes(exclude=list(model.parameters())) as box:
                logits = model(idx[:, :-1])  # (1, n, V)
                loss = F.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten())
            loss.backward()
            sizes.append(box["bytes"])
            bar.update()
        out[label] = sizes
    return out


def run(ctx: StudyContext) -> dict[str, Any]:
    s = dict(ctx.sizes)
    V, L = s["vocab"], s["layers"]
    s["width"] = {
        a: width_for_params(a, s["target_params"], V, L, max_len=max(s["train_lens"]))
        for a in ("lstm", "gpt")
    }
    bar = ctx.progress(
        total=2 * len(s["gen_lens"]) + 3 * len(s["train_lens"]), desc="state/activation bytes"
    )
    inf = inference(s, ctx.seeds[0], bar)
    tr = training(s, ctx.seeds[0], bar)
    bar.close()
    d = {a: s["width"][a] for a in ("lstm", "gpt")}
    return {
        "width": d,
        "layers": L,
        "params": {a: n_params(study_lm(a, V, d[a], L, max_len=max(s["train_lens"]))) for a in d},
        "gen_lens": s["gen_lens"],
        "inference_bytes": inf,
        "inference_formula_bytes": {
            "LSTM state": [2 * L * d["lstm"] * 4 for _ in s["gen_lens"]],
            "GPT KV cache": [2 * L * n * d["gpt"] * 4 for n in s["gen_lens"]],
        },
        "inference_exponent": {k: loglog_slope(s["gen_lens"], v) for k, v in inf.items()},
        "train_lens": s["train_lens"],
        "training_bytes": tr,
        "training_exponent": {k: loglog_slope(s["train_lens"], v) for k, v in tr.items()},
    }


def verdict(m: Mapping[str, Any]) -> Verdict:
    """Exact byte counts: the state a generator carries, and what training keeps for backward."""
    ie, te = m["inference_exponent"], m["training_exponent"]
    inf, tr = m["inference_bytes"], m["training_bytes"]
    n_inf, n_tr = m["gen_lens"][-1], m["train_lens"][-1]
    kv_ratio = inf["GPT KV cache"][-1] / inf["LSTM state"][-1]
    effect = exact(
        kv_ratio, f"KV cache / LSTM state bytes at n = {n_inf:,}", "×", "exact byte counts"
    )
    ratios = {k: tr[k][-1] / tr["LSTM (BPTT)"][-1] for k in tr if k != "LSTM (BPTT)"}
    checks = {
        "positive_control": "n/a",
        "state_exponent": round(ie["LSTM state"], 3),
        "kv_cache_exponent": round(ie["GPT KV cache"], 3),
        "bptt_exponent": round(te["LSTM (BPTT)"], 3),
        "formula_matches": m["inference_bytes"] == m["inference_formula_bytes"],
    }
    facts = (
        f"inference: the LSTM carries {inf['LSTM state'][-1]:,} bytes at every length (exponent "
        f"{ie['LSTM state']:.2f}); the GPT's key/value cache grows as n^{ie['GPT KV cache']:.2f} "
        f"to {inf['GPT KV cache'][-1]:,} bytes at n = {n_inf:,} ({kv_ratio:,.0f}×), both equal "
        f"to their formulas. Training, bytes saved for backward at n = {n_tr:,}: LSTM (BPTT) "
        f"exponent {te['LSTM (BPTT)']:.2f}, GPT naive {te['GPT, naive attention']:.2f}, GPT "
        "fused "
        + f"{te['GPT, SDPA']:.2f}; GPT/LSTM = "
        + ", ".join(f"{r:.2f}× ({k})" for k, r in ratios.items())
    )
    inference_holds = ie["LSTM state"] < 0.05 and ie["GPT KV cache"] > 0.95
    if not inference_holds:
        return Verdict(
            "contradicted",
            "Contradicted: at generation time the recurrent state "
            "does not stay constant while the KV cache grows.",
            facts,
            effect,
            checks,
            literature("katharopoulos2020", False),
        )
    if te["LSTM (BPTT)"] > 0.9:
        return Verdict(
            "supported within scope",
            f"Supported within scope: generating, an RNN carries O(1) state against the "
            f"Transformer's O(n) key/value cache ({kv_ratio:,.0f}× at n = {n_inf:,}); training "
            f"with backpropagation through time still stores O(n) activations (exponent "
            f"{te['LSTM (BPTT)']:.2f}), as a fused-attention Transformer does.",
            facts,
            effect,
            checks,
            literature("katharopoulos2020", True),
            scope="inference (token-by-token generation); not training, where BPTT keeps O(n)",
        )
    return Verdict(
        "supported",
        "Supported: the RNN needs O(1) memory in the sequence length at "
        "generation and in training.",
        facts,
        effect,
        checks,
        literature("katharopoulos2020", True),
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    inf = [
        [
            n,
            m["inference_bytes"]["LSTM state"][j],
            m["inference_formula_bytes"]["LSTM state"][j],
            m["inference_bytes"]["GPT KV cache"][j],
            m["inference_formula_bytes"]["GPT KV cache"][j],
        ]
        for j, n in enumerate(m["gen_lens"])
    ]
    keys = list(m["training_bytes"])
    tr = [
        [n] + [m["training_bytes"][k][j] / 2**20 for k in keys]
        for j, n in enumerate(m["train_lens"])
    ]
    tr.append(["exponent"] + [m["training_exponent"][k] for k in keys])
    return [
        Table(
            f"Inference: bytes carried between tokens (measured vs formula; widths {m['width']}, "
            f"params {_params(m)})",
            ["generated n", "LSTM state", "formula 2·L·d·4", "GPT KV cache", "formula 2·L·n·d·4"],
            inf,
        ),
        Table("Training: MiB saved for backward (params excluded), batch 1", ["n"] + keys, tr),
    ]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (a1, a2) = subplots(2, width=5)
    for k, v in m["inference_bytes"].items():
        a1.plot(m["gen_lens"], v, "o-", label=k)
    for k, v in m["training_bytes"].items():
        a2.plot(m["train_lens"], [b / 2**20 for b in v], "o-", label=k)
    for ax, t, yl in (
        (a1, "inference state vs generated length", "bytes"),
        (a2, "training: saved for backward", "MiB"),
    ):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("tokens n")
        ax.set_ylabel(yl)
        ax.set_title(t)
        ax.legend(fontsize=8)
    return to_png(fig)


CLAIM = register_claim(
    Claim(
        id="R2",
        part=1,
        title="Memory",
        subject="RNN",
        seed_quote=QUOTE,
        method=lambda m: (
            f"Inference: an LSTM and a GPT of matched parameter count ({_params(m)}) generate "
            f"tokens one by one up to n = {m['gen_lens'][-1]:,}; after n tokens we weigh the "
            "tensors each must carry to the next step (LSTM h and c; GPT's key/value cache) and "
            "compare with the formulas. Training: one forward pass at length n = "
            f"{m['train_lens'][0]:,}…{m['train_lens'][-1]:,} with saved_tensors_hooks counting "
            "the bytes autograd keeps for backward (parameters excluded) — BPTT for the LSTM, "
            "naive and fused attention for GPT. Memory is deterministic, so one seed."
        ),
        sizes={
            "tiny": {
                "vocab": 16,
                "layers": 1,
                "target_params": 3000,
                "gen_lens": [2, 4, 8],
                "train_lens": [8, 16, 32],
            },
            "quick": {
                "vocab": 64,
                "layers": 2,
                "target_params": 50_000,
                "gen_lens": [16, 64, 256, 1024],
                "train_lens": [64, 128, 256, 512, 1024],
            },
            "standard": {
                "vocab": 64,
                "layers": 2,
                "target_params": 50_000,
                "gen_lens": [16, 64, 256, 1024, 4096],
                "train_lens": [64, 128, 256, 512, 1024, 2048],
            },
            "full": {
                "vocab": 64,
                "layers": 4,
                "target_params": 1_000_000,
                "gen_lens": [16, 64, 256, 1024, 4096],
                "train_lens": [128, 256, 512, 1024, 2048, 4096],
            },
        },
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        spread="exact byte counts",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]


def _params(m: Mapping[str, Any]) -> str:
    return " and ".join(f"{k.upper()} {v:,}" for k, v in m["params"].items())
