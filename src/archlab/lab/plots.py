"""The lab's two plots, as matplotlib Figures (the page shows them as PNG images).

``matplotlib.figure.Figure`` objects, not pyplot: nothing is registered globally, so a figure
made in one request thread is freed with its answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from matplotlib.figure import Figure

from archlab.lab.costs import Curve

__all__ = ["flops_figure", "shift_figure"]


def shift_figure(
    curves: Mapping[str, tuple[str, Sequence[float]]], dxs: Sequence[int], dx: int, dy: int
) -> Figure:
    """p(top-1 class of the unshifted image) against the horizontal shift, one line per model."""
    fig = Figure(figsize=(6.0, 3.2), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    for name, (label, probs) in curves.items():
        ax.plot(list(dxs), list(probs), marker="o", ms=3, label=f"{name}: p({label})")
        if dx in dxs:
            ax.plot([dx], [probs[list(dxs).index(dx)]], "ko", ms=6)
    ax.axvline(dx, color="0.4", ls="--", lw=1)
    ax.set_xlabel(f"horizontal shift dx (pixels), at dy = {dy}")
    ax.set_ylabel("probability of the class\nseen unshifted")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("C3: does the prediction survive a translation?", fontsize=10)
    ax.legend(fontsize=8, loc="lower center")
    ax.grid(alpha=0.3)
    return fig


def flops_figure(curve: Curve, seq_len: int, layer: str) -> Figure:
    """Forward dense FLOPs against sequence length, n² terms vs the rest, n* marked (Part 5)."""
    fig = Figure(figsize=(6.0, 3.4), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    total = [a + b for a, b in zip(curve.quadratic, curve.linear, strict=True)]
    ax.loglog(curve.n, total, color="k", lw=2, label="all dense FLOPs")
    if any(curve.quadratic):
        ax.loglog(curve.n, curve.quadratic, label="n² terms (QKᵀ, AV)")
        ax.loglog(curve.n, curve.linear, label="n terms (projections, FFN)")
    if curve.n_star:
        ax.axvline(curve.n_star, color="tab:red", ls="--", lw=1)
        ax.annotate(
            f"n* = {curve.n_star:,.0f}",
            (curve.n_star, min(total)),
            xytext=(4, 4),
            textcoords="offset points",
            color="tab:red",
        )
    ax.axvline(seq_len, color="0.5", ls=":", lw=1)
    ax.set_xlabel("sequence length n (tokens)")
    ax.set_ylabel("forward dense FLOPs")
    ax.set_title(f"{layer}: FLOPs against n (dotted: your n = {seq_len:,})", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, which="both")
    return fig
