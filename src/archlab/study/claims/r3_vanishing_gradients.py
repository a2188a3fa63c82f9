"""R3: RNNs struggle with long-range dependencies because gradients vanish over time steps.

Measured on the models T1 trained (the same run directories): for sequences at T1's longest
distance, the loss at the query is differentiated with respect to every input embedding, and
‖∂L/∂x_t‖ is read as a function of the distance k from the query, relative to k = 1. A gradient
that vanishes with k means the model cannot learn from what it saw k steps ago (Bengio et al.
1994; Pascanu et al. 2013); the claim predicts vanishing gradients in the recurrent models — and
recall failing where they have vanished (T1). The same is measured at initialization, where the
textbook analysis applies, as a finding.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from archlab.models import create_model
from archlab.study.claim import Claim, Table, Verdict, register_claim
from archlab.study.claims._common import fmt_ci, literature, undertrained
from archlab.study.claims.t1_long_range import LABELS, RNNS
from archlab.study.context import StudyContext
from archlab.study.measure import mean_std
from archlab.study.plots import band, subplots, to_png
from archlab.study.pools import RECALL, RECALL_ARCHS, recall_fit, recall_model, recall_task
from archlab.study.stats import mean_effect, side

QUOTE = (
    "RNNs struggle with long-range dependencies due to the vanishing gradient problem, which makes "
    "it hard for them to maintain context over long text sequences. This limitation often results "
    "in poorer performance on tasks requiring understanding of complex, extended contexts."
)
VANISHED = -2.0  # log10 of the gradient ratio (far / near) below which it counts as vanished


def grad_by_distance(model, s: Mapping[str, Any], seed: int, device) -> list[float]:
    """Mean ‖∂L/∂x_t‖ over a batch at T1's longest distance, by distance k = 1..d from the query
    (index k - 1), for the recall loss at the query."""
    task = recall_task(s)
    d = max(s["distances"])
    x, y = task.batch(s["grad_batch"], d, torch.Generator().manual_seed(50_000 + seed))
    x, y = x.to(device), y.to(device)
    model.eval()
    emb = model.embed(x).detach().requires_grad_()  # (B, L, E)
    logits = model(inputs_embeds=emb)[:, -1, task.noise : task.noise + task.values]
    F.cross_entropy(logits, y).backward()
    g = emb.grad.norm(dim=-1).mean(0).cpu()  # (L,)
    L = g.numel()
    return [float(g[L - 1 - k]) for k in range(1, d + 1)]  # k = 1..d (the value is at k = d)


def run(ctx: StudyContext) -> dict[str, Any]:
    s = ctx.sizes
    t1 = ctx.result_of("T1")
    bar = ctx.progress(total=2 * len(LABELS) * len(ctx.seeds), desc="gradient vs distance")
    out: dict[str, Any] = {}
    for label in LABELS:
        trained, init = [], []
        for seed in ctx.seeds:
            f = recall_fit(ctx, label, seed, s)
            trained.append(grad_by_distance(f.model, s, seed, ctx.device))
            bar.update()
            arch, extra = next((a, e) for n, a, e in RECALL_ARCHS if n == label)
            name, cfg = recall_model(arch, extra, s)
            torch.manual_seed(seed)  # the same initial weights the run started from
            init.append(
                grad_by_distance(create_model(name, **cfg).to(ctx.device), s, seed, ctx.device)
            )
            bar.update()
        out[label] = {"trained": trained, "init": init}
    bar.close()
    return {
        "distance": max(s["distances"]),
        "report_at": [k for k in s["report_at"] if k <= max(s["distances"])],
        "grad": out,
        "recall_far": {k: [a[-1] for a in t1["recall"][k]["accuracy"]] for k in LABELS},
        "recall_distances": t1["distances"],
        "control": t1["control"],
        "recall_shortest": {
            k: float(np.mean([a[0] for a in t1["recall"][k]["accuracy"]])) for k in LABELS
        },
    }


def log_ratio(g: list[float]) -> float:
    """log10(‖g‖ at the value / ‖g‖ at distance 1), floored at 1e-30 (float32 underflow)."""
    return math.log10(max(g[-1], 1e-30) / max(g[0], 1e-30))


def verdict(m: Mapping[str, Any]) -> Verdict:
    d = m["distance"]
    ratios = {k: [log_ratio(g) for g in m["grad"][k]["trained"]] for k in LABELS}
    means = {k: float(np.mean(v)) for k, v in ratios.items()}
    # Per model: its seeds' mean log ratio is clearly below the threshold (vanished), clearly
    # above it (kept), or neither. Trained recurrent nets split by seed (one LSTM seed keeps its
    # gradient, the next loses 27 decades), so a wide interval is noise, never "kept".
    where = {k: side(mean_effect(ratios[k], k), VANISHED) for k in RNNS}
    vanished = {k: where[k] < 0 for k in RNNS}
    per_seed = {k: sum(r < VANISHED for r in ratios[k]) for k in RNNS}
    failed = {k: float(np.mean(m["recall_far"][k])) < 0.5 for k in LABELS}
    worst = min(RNNS, key=lambda k: means[k])
    effect = mean_effect(
        ratios[worst],
        f"log10 of ‖∂L/∂x‖ at distance {d} over distance 1, trained {worst}",
        "decades",
    )
    control = "pass" if min(m["recall_shortest"].values()) >= m["control"] else "fail"
    agree = [k for k in RNNS if vanished[k] == failed[k]]
    checks = {
        "positive_control": control,
        "gpt_gradient_vanishes": side(mean_effect(ratios["GPT"], "GPT"), VANISHED) < 0,
        "recurrent_models_vanished": [k for k in RNNS if vanished[k]],
        "vanishing_matches_recall_failure": len(agree) == len(RNNS),
    }
    init = {k: float(np.mean([log_ratio(g) for g in m["grad"][k]["init"]])) for k in LABELS}
    n = len(ratios[RNNS[0]])
    findings = (
        "At initialization (before any training): log10 gradient ratio at distance "
        f"{d}: " + ", ".join(f"{k} {v:+.1f}" for k, v in init.items()) + ".",
        f"Seeds whose gradient over {d} steps fell below 10^{VANISHED:g}: "
        + ", ".join(f"{k} {per_seed[k]}/{n}" for k in RNNS)
        + ".",
    )
    facts = (
        f"trained models, log10(‖∂L/∂x‖ at distance {d} / at distance 1): "
        + ", ".join(f"{k} {means[k]:+.1f}" for k in LABELS)
        + f"; recall at distance {d} (T1): "
        + ", ".join(f"{k} {np.mean(m['recall_far'][k]):.2f}" for k in LABELS)
        + f". Effect ({worst}): {fmt_ci(effect, 1)}."
    )
    if control == "fail":
        ctrl = ", ".join(f"{k} {v:.2f}" for k, v in m["recall_shortest"].items())
        return undertrained(
            "the gradient analysis",
            f"T1 recall at the shortest distance: {ctrl}",
            effect,
            checks,
            "pascanu2013",
        )
    van = [k for k in RNNS if where[k] < 0]
    kept = [k for k in RNNS if where[k] > 0]
    noisy = [k for k in RNNS if where[k] == 0]
    if len(kept) == len(RNNS):
        return Verdict(
            "contradicted",
            f"Contradicted: no trained recurrent model's gradient vanishes over {d} steps "
            f"(below 10^{VANISHED:g}).",
            facts,
            effect,
            checks,
            literature("pascanu2013", False),
            findings=findings,
        )
    if not van:
        return Verdict(
            "inconclusive",
            f"Inconclusive (within noise): whether the gradient vanishes over {d} steps "
            f"differs from seed to seed — it falls below 10^{VANISHED:g} in "
            + "; ".join(f"{per_seed[k]} of {n} seeds of the {k}" for k in noisy)
            + (f" — and it does not vanish in the {', '.join(kept)}" if kept else "")
            + ".",
            facts,
            effect,
            checks,
            literature("pascanu2013", None),
            why_inconclusive="within noise",
            findings=findings,
        )
    if len(van) == len(RNNS) and all(failed[k] for k in van):
        return Verdict(
            "supported",
            f"Supported: in every trained recurrent model the gradient from the query to what "
            f"it saw {d} steps earlier vanishes (by ≥ {-VANISHED:g} orders of magnitude), and "
            f"none of them recalls at that distance, while the GPT's gradient does not vanish.",
            facts,
            effect,
            checks,
            literature("pascanu2013", True),
            findings=findings,
        )
    mismatch = [k for k in RNNS if vanished[k] != failed[k]]
    return Verdict(
        "supported within scope",
        f"Supported within scope: the gradient vanishes over {d} steps in "
        f"{', '.join(van)}"
        + (f" but not in {', '.join(kept)}" if kept else "")
        + (f" (seed-dependent in {', '.join(noisy)})" if noisy else "")
        + (
            f"; vanishing and failed recall do not coincide for {', '.join(mismatch)}"
            if mismatch
            else "; where it vanishes, recall fails"
        )
        + ".",
        facts,
        effect,
        checks,
        literature("pascanu2013", True),
        scope=f"{', '.join(van)} at distance {d}",
        findings=findings,
    )


def tables(m: Mapping[str, Any]) -> list[Table]:
    rows = []
    for k in LABELS:
        g = np.asarray(m["grad"][k]["trained"])  # (seeds, d)
        rel = g / g[:, :1]
        r = mean_std([log_ratio(x) for x in m["grad"][k]["trained"]])
        rows.append(
            [k, f"{r['mean']:+.2f} ± {r['std']:.2f}", float(np.mean(m["recall_far"][k]))]
            + [float(rel[:, j - 1].mean()) for j in m["report_at"]]
        )
    cols = ["model (trained in T1)", "log10 ratio far/near", f"recall at {m['distance']}"]
    cols += [f"‖g‖ at k={k} (rel.)" for k in m["report_at"]]
    return [Table("Gradient of the query's loss w.r.t. the input k steps back", cols, rows)]


def figure(m: Mapping[str, Any]) -> bytes:
    fig, (a1, a2) = subplots(2, width=5)
    ks = list(range(1, m["distance"] + 1))
    for ax, which in ((a1, "trained"), (a2, "init")):
        for k in LABELS:
            g = np.asarray(m["grad"][k][which])
            rel = np.maximum(g / g[:, :1], 1e-30)
            stats = [mean_std(rel[:, j].tolist()) for j in range(rel.shape[1])]
            band(ax, ks, stats, k)
        ax.set_yscale("log")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("distance k from the query (steps)")
        ax.set_ylabel("‖∂L/∂x‖ relative to k = 1")
        ax.set_title(
            f"{'after training (T1 models)' if which == 'trained' else 'at initialization'}"
        )
        ax.legend(fontsize=7)
    return to_png(fig)


def method(m: Mapping[str, Any]) -> str:
    return (
        f"Takes T1's trained models (all seeds) and, for recall sequences at distance "
        f"{m['distance']}, differentiates the loss at the query with respect to every input "
        "embedding; the gradient norm is read by distance k from the query, relative to k = 1, "
        "and compared with the model's recall at that distance (T1). The same is measured on "
        "the models' initial weights."
    )


CLAIM = register_claim(
    Claim(
        id="R3",
        part=1,
        title="Vanishing gradients",
        subject="RNN",
        seed_quote=QUOTE,
        method=method,
        sizes={
            p: {
                **RECALL[p],
                "grad_batch": 64 if p != "tiny" else 8,
                "report_at": [1, 4, 16, 64, 256, 512],
            }
            for p in RECALL
        },
        run=run,
        verdict=verdict,
        figure=figure,
        tables=tables,
        trains=True,
        requires=("T1",),
        spread="mean ± std over seeds; effect: 95% t CI over seeds; bands min–max",
    ),
    __name__,
)

__all__ = ["CLAIM", "QUOTE", "figure", "run", "tables", "verdict"]
