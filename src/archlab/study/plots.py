"""Figure helpers: matplotlib's Agg backend to PNG bytes, the same bytes for the same data."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def subplots(ncols: int = 1, width: float = 5.0, height: float = 3.6):
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def to_png(fig) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def band(ax, x, stats: list[dict], label: str, **kw) -> None:
    """Plot mean with a shaded min-max band from a list of mean_std() dicts."""
    mean = [s["mean"] for s in stats]
    (line,) = ax.plot(x, mean, marker="o", ms=3, label=label, **kw)
    ax.fill_between(
        x,
        [s["min"] for s in stats],
        [s["max"] for s in stats],
        color=line.get_color(),
        alpha=0.18,
        lw=0,
    )


__all__ = ["band", "plt", "subplots", "to_png"]
