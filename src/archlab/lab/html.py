"""HTML fragments of the lab's page: model cards, top-k bars, coloured token strips, heat maps.

Pure functions of numbers to strings (no Gradio), so they are tested as text. Every coloured cell
carries its exact value in ``title`` (hover) and ``data-*`` (tests), and every strip says what
its colour means. Images are inline PNG data URIs: the page loads nothing from elsewhere.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "CSS",
    "card",
    "heatmap_png",
    "image_grid",
    "png_data_uri",
    "strip",
    "topk_list",
    "visible",
]

CSS = """
.lab-cards { display: flex; flex-wrap: wrap; gap: 12px; }
.lab-card { flex: 1 1 280px; border: 1px solid #d9dee5; border-radius: 8px; padding: 10px 12px;
  background: #fff; min-width: 260px; }
.lab-card h3 { margin: 0 0 6px; font-size: 1.05rem; }
.lab-card h3 small { color: #56606d; font-weight: normal; }
.lab-card h4 { margin: 10px 0 4px; font-size: .85rem; color: #3b4452; }
.lab-topk { list-style: none; padding: 0; margin: 0; font-family: ui-monospace, monospace; }
.lab-topk li { display: flex; align-items: center; gap: 6px; margin: 2px 0; }
.lab-topk .tok { min-width: 4.5em; white-space: pre; }
.lab-topk .bar { height: 10px; background: #4c78a8; border-radius: 2px; }
.lab-topk .p { color: #3b4452; font-size: .85rem; }
.lab-strip { font-family: ui-monospace, monospace; line-height: 1.9; white-space: pre-wrap;
  word-break: break-all; }
.lab-strip span { padding: 1px 0; border-radius: 2px; }
.lab-note { color: #56606d; font-size: .8rem; margin: 2px 0; }
.lab-gen { font-family: ui-monospace, monospace; white-space: pre-wrap; background: #f4f6f9;
  padding: 6px; border-radius: 4px; max-height: 12em; overflow-y: auto; }
.lab-gen b { color: #1a5e9a; font-weight: normal; }
.lab-maps img { image-rendering: pixelated; margin: 2px; border: 1px solid #e3e7ec; }
.lab-error { color: #a1260d; font-weight: 600; }
.lab-status { padding: 6px 10px; border-radius: 6px; background: #eef1f5; }
.lab-claim { justify-content: flex-start !important; text-align: left !important; }
.lab-cost th { text-align: left; padding-right: 12px; }
"""

# Colours of the three strips: white -> the colour at the top of the scale.
_RGB = {"loss": (214, 39, 40), "saliency": (31, 119, 180), "attention": (44, 160, 44)}


def visible(token: str, space: bool = False) -> str:
    """A token as a person can see it: newline ⏎, tab ⇥, and with ``space`` a space ␣ (in a
    list a lone space is invisible; inside running text it stays a space)."""
    token = token.replace("\n", "⏎").replace("\t", "⇥")
    return token.replace(" ", "␣") if space else token


def topk_list(items: Sequence[dict], key: str = "token") -> str:
    """An ordered list of (token or label, probability) with a bar per item."""
    rows = []
    for it in items:
        p = float(it["prob"])
        name = html.escape(visible(str(it[key]), space=True))
        rows.append(
            f'<li data-prob="{p:.6f}"><span class="tok">{name!s}</span>'
            f'<span class="bar" style="width:{max(1.0, 120 * p):.1f}px"></span>'
            f'<span class="p">{p:.1%}</span></li>'
        )
    return f'<ol class="lab-topk">{"".join(rows)}</ol>'


def _shade(value: float | None, top: float, colour: str, decades: float = 0) -> str:
    if value is None or top <= 0:
        return "transparent"
    a = value / top
    if decades:  # log scale: full colour at top, white `decades` powers of ten below it
        a = 1 + math.log10(a) / decades if a > 0 else 0.0
    a = max(0.0, min(1.0, a))
    r, g, b = (round(255 - a * (255 - c)) for c in _RGB[colour])
    return f"rgb({r},{g},{b})"


def strip(
    tokens: Sequence[str],
    values: Sequence[float | None],
    colour: str,
    unit: str,
    top: float | None = None,
    decades: float = 0,
) -> str:
    """Tokens coloured by their value: white at 0, full colour at ``top`` (default: the max);
    with ``decades`` on a log scale, white at ``top`` / 10**decades (gradients that decay
    exponentially with distance, claim R3, are invisible on a linear one)."""
    finite = [v for v in values if v is not None]
    top = top if top is not None else (max(finite) if finite else 0.0)
    spans = []
    for t, v in zip(tokens, values, strict=True):
        tip = "—" if v is None else f"{v:.4g} {unit}"
        val = "" if v is None else f"{v:.6g}"
        spans.append(
            f'<span style="background:{_shade(v, top, colour, decades)}"'
            f' title="{html.escape(tip, quote=True)}"'
            f' data-v="{val}">{html.escape(visible(t))}</span>'
        )
    return f'<div class="lab-strip" data-kind="{colour}">{"".join(spans)}</div>'


def card(name: str, subtitle: str, body: str) -> str:
    return (
        f'<div class="lab-card" data-model="{html.escape(name, quote=True)}">'
        f"<h3>{html.escape(name)} <small>{html.escape(subtitle)}</small></h3>{body}</div>"
    )


def png_data_uri(rgb: np.ndarray) -> str:
    """uint8 (H, W, 3) or (H, W) -> ``data:image/png;base64,...``."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _colormap(a: np.ndarray) -> np.ndarray:
    """Values in [0, 1] (H, W) -> uint8 (H, W, 3), matplotlib's perceptually uniform magma."""
    import matplotlib

    return (matplotlib.colormaps["magma"](np.clip(a, 0, 1))[..., :3] * 255).astype(np.uint8)


def heatmap_png(
    a: np.ndarray, scale: int, under: np.ndarray | None = None, alpha: float = 0.6
) -> np.ndarray:
    """(h, w) values -> an RGB image ``scale`` x larger (nearest), normalized to its own max;
    over ``under`` (uint8 (H, W) grayscale, same size after scaling) when given."""
    top = float(a.max())
    rgb = _colormap(a / top if top > 0 else a).repeat(scale, 0).repeat(scale, 1)
    if under is not None:
        base = np.repeat(under[..., None], 3, axis=2).astype(np.float32)
        rgb = (alpha * rgb + (1 - alpha) * base).astype(np.uint8)
    return rgb


def image_grid(maps: Sequence[np.ndarray], labels: Sequence[str], size: int = 64) -> str:
    """A row of heat maps, each ``size`` pixels wide on the page, with a caption."""
    cells = []
    for m, label in zip(maps, labels, strict=True):
        scale = max(1, size // max(m.shape[:2]))
        rgb = m if m.ndim == 3 else heatmap_png(m, scale)
        cells.append(
            f'<figure style="display:inline-block;margin:2px;text-align:center">'
            f'<img src="{png_data_uri(rgb)}" width="{size}" height="{size}"'
            f' alt="{html.escape(label)}">'
            f'<figcaption class="lab-note">{html.escape(label)}</figcaption></figure>'
        )
    return f'<div class="lab-maps">{"".join(cells)}</div>'
