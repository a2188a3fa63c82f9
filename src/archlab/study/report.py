"""Render results.json into report.md (+ figures/*.png) and one self-contained report.html.

Figures are drawn at render time from each claim's metrics by the claim's own ``figure`` function,
so a report can always be rebuilt from results.json alone. The HTML embeds them as base64 PNG and
inlines its CSS: no scripts, no network (a student can mail the file).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2

from archlab.study.claim import Table, ledger

log = logging.getLogger(__name__)


def fmt(value: Any) -> str:
    """Numbers for people: ints with thousands separators, floats to 3 significant digits."""
    if isinstance(value, bool) or value is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:
            return "nan"
        if value == 0 or 1e-3 <= abs(value) < 1e6:
            return f"{value:,.3g}" if abs(value) >= 1000 else f"{value:.3g}"
        return f"{value:.2e}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def _env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("archlab.study", "templates"),
        autoescape=jinja2.select_autoescape(["html.j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["fmt"] = fmt
    env.filters["effect"] = fmt_effect
    env.filters["agrees"] = fmt_agrees
    return env


def fmt_effect(e: Mapping[str, Any] | None) -> str:
    """``+0.412 [+0.380, +0.444]`` (unit), or — ."""
    if not e:
        return "—"
    lo, hi = e["ci95"]
    b = "∞" if hi is None else fmt(float(hi))
    a = "−∞" if lo is None else fmt(float(lo))
    unit = f" {e['unit']}" if e.get("unit") else ""
    return f"{fmt(float(e['value']))} [{a}, {b}]{unit}"


def fmt_agrees(lit: Mapping[str, Any] | None) -> str:
    if not lit or lit.get("agrees") is None:
        return "—"
    return "yes" if lit["agrees"] else "no"


def claim_views(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per claim: the stored entry plus its tables and figure (drawn from the metrics)."""
    claims = {c.id: c for c in ledger()}
    views = []
    for entry in results["claims"]:
        claim = claims.get(entry["id"])
        tables: list[Table] = []
        png: bytes | None = None
        if claim is not None:
            tables = claim.tables(entry["metrics"])
            try:
                png = claim.figure(entry["metrics"])
            except Exception:  # a figure must never lose the numbers: report without it
                log.exception("figure for %s failed", entry["id"])
        views.append({**entry, "tables": tables, "png": png})
    return views


def render_markdown(results: Mapping[str, Any], views: list[dict] | None = None) -> str:
    views = claim_views(results) if views is None else views
    return _env().get_template("report.md.j2").render(r=results, claims=views)


def render_html(results: Mapping[str, Any], views: list[dict] | None = None) -> str:
    views = claim_views(results) if views is None else views
    views = [
        {**v, "png_b64": base64.b64encode(v["png"]).decode() if v["png"] else None} for v in views
    ]
    return _env().get_template("report.html.j2").render(r=results, claims=views)


def write_reports(results: Mapping[str, Any], out: Path) -> None:
    from archlab.study.runner import write_atomic

    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    views = claim_views(results)
    for v in views:
        if v["png"]:
            write_atomic(fig_dir / f"{v['id']}.png", v["png"])
    write_atomic(out / "report.md", render_markdown(results, views))
    write_atomic(out / "report.html", render_html(results, views))


__all__ = ["claim_views", "fmt", "render_html", "render_markdown", "write_reports"]
