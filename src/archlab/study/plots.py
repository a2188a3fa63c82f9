"""Figure helpers: PNG bytes from matplotlib's object API, the same bytes for the same data.

No pyplot and no ``matplotlib.use``: a figure is a :class:`matplotlib.figure.Figure` rendered by
the Agg canvas directly, so importing the study never changes a host application's (Jupyter's)
backend or global figure state.
"""

from __future__ import annotations

import io


def subplots(ncols: int = 1, width: float = 5.0, height: float = 3.6, nrows: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width * ncols, height * nrows))
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def to_png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
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


__all__ = ["band", "subplots", "to_png"]
