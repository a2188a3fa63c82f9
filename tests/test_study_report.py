"""The study report: golden report.md / report.html from a fixture results.json, and the HTML in a
real headless browser (Debian's chromium; skipped with the reason when it is not installed).

Regenerate the goldens after an intended change with ``ARCHLAB_UPDATE_GOLDEN=1 python -m pytest
tests/test_study_report.py`` and review the diff.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import markupsafe
import pytest

from archlab.study.report import claim_views, fmt, render_html, render_markdown, write_reports

GOLDEN = Path(__file__).parent / "golden"
REGEN = os.environ.get("ARCHLAB_UPDATE_GOLDEN") == "1"
B64_PNG = re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+")


@pytest.fixture(scope="module")
def results() -> dict:
    return json.loads((GOLDEN / "study_results.json").read_text())


@pytest.fixture(scope="module")
def views(results) -> list[dict]:
    return claim_views(results)  # figures drawn once for the module


@pytest.fixture(scope="module")
def report_dir(results, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("report")
    write_reports(results, out)
    return out


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if REGEN:
        path.write_text(text)
    assert path.exists(), f"missing golden {path}; run with ARCHLAB_UPDATE_GOLDEN=1"
    assert text == path.read_text(), (
        f"{name} differs from the golden file (ARCHLAB_UPDATE_GOLDEN=1)"
    )


def test_markdown_matches_golden(results, views):
    _golden("report.md", render_markdown(results, views))


def test_html_matches_golden_without_image_bytes(results, views):
    html = render_html(results, views)
    assert len(B64_PNG.findall(html)) == len(results["claims"])
    _golden("report.html", B64_PNG.sub("data:image/png;base64,PNG", html))


def test_html_is_self_contained(results, views):
    html = render_html(results, views)
    assert "<script" not in html.lower()
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    for c in results["claims"]:  # the seed's sentence, the verdict and why, for every claim
        assert c["seed_quote"].replace("'", "&#39;") in html
        assert c["verdict"]["label"].replace("'", "&#39;") in html
        assert str(markupsafe.escape(c["literature"]["ref"])) in html
    # the header names both data sources
    head = html[: html.index('id="summary"')]
    assert results["data"]["text"]["source"] in head and results["data"]["images"]["source"] in head


def test_fmt_units():
    assert fmt(60200) == "60,200"
    assert fmt(0.5904) == "0.59"
    assert fmt(1.5e-7) == "1.50e-07"
    assert fmt(None) == "—"
    assert fmt({"a": 1, "b": [2, 3]}) == "{a=1, b=2, 3}"


def _png_size_and_variety(path: Path) -> tuple[int, int, int]:
    """(width, height, distinct byte values in the first rows) — a blank page has ~1."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", data[16:24])
    idat = b"".join(
        data[i + 8 : i + 8 + struct.unpack(">I", data[i : i + 4])[0]]
        for i in [m.start() - 4 for m in re.finditer(b"IDAT", data)]
    )
    raw = zlib.decompress(idat)
    return w, h, len(set(raw[: min(len(raw), 400_000)]))


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# Skipped without a browser on a developer's machine, never in CI (.ci/run installs Chromium).
NO_BROWSER = CHROMIUM is None and not os.environ.get("CI")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Appended to a COPY of the report only: records load errors and undecodable images in the DOM,
# which --dump-dom then shows. The CSP of the copy is widened to allow exactly this script.
PROBE = """<script>
window.__errors = [];
window.addEventListener('error', e => \
window.__errors.push(String(e.message || e.target.src)), true);
document.addEventListener('securitypolicyviolation', e => \
window.__errors.push('csp:' + e.violatedDirective));
window.addEventListener('load', () => {
  const bad = [...document.images].filter(i => !i.complete || i.naturalWidth === 0).length;
  document.body.setAttribute('data-probe', \
`images=${document.images.length} broken=${bad} \
errors=${window.__errors.join('|')}`);
});
</script>"""


@pytest.mark.skipif(NO_BROWSER, reason="chromium not installed (apt-get install -y chromium)")
def test_html_in_headless_chromium(results, report_dir, tmp_path):
    page = report_dir / "report.html"
    common = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    # 1) the real file: it renders, a screenshot is taken, the console reports nothing
    shot = tmp_path / "shot.png"
    r = subprocess.run(
        [
            *common,
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            "--window-size=1280,2000",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.exists(), r.stderr[-2000:]
    w, h, variety = _png_size_and_variety(shot)
    assert (w, h) == (1280, 2000) and variety > 20, "screenshot is blank"
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln or "Refused to" in ln]
    assert console == [], console
    # 2) an instrumented copy: every image decodes, no error or CSP violation on load
    probe = report_dir / "probe.html"
    html = page.read_text().replace(
        "default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';"
    )
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    r = subprocess.run(
        [*common, "--dump-dom", "--virtual-time-budget=5000", probe.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r'data-probe="images=(\d+) broken=(\d+) errors=([^"]*)"', r.stdout)
    assert m, r.stdout[-1000:] + r.stderr[-1000:]
    assert int(m.group(1)) == len(results["claims"]) and m.group(2) == "0" and m.group(3) == ""


@pytest.mark.skipif(NO_BROWSER, reason="chromium not installed (apt-get install -y chromium)")
def test_chromium_checks_can_fail(report_dir, tmp_path):
    """The browser checks detect what they claim to: a script or a network load in the page shows
    up on the console (as a CSP violation), and a corrupted image is reported as broken."""
    html = (report_dir / "report.html").read_text()
    bad = tmp_path / "bad.html"
    bad.write_text(
        html.replace("</body>", '<script>1</script><img src="https://example.com/x.png"></body>')
    )
    r = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'p1'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={tmp_path / 's.png'}",
            bad.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln]
    assert any("script" in ln for ln in console) and any("example.com" in ln for ln in console), (
        console
    )
    html = B64_PNG.sub("data:image/png;base64,AAAA", html, count=1)
    html = html.replace("default-src 'none';", "default-src 'none'; script-src 'unsafe-inline';")
    probe = tmp_path / "broken.html"
    probe.write_text(html.replace("</body>", PROBE + "</body>"))
    r = subprocess.run(
        [
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={tmp_path / 'p2'}",
            "--dump-dom",
            "--virtual-time-budget=5000",
            probe.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(r'data-probe="images=(\d+) broken=(\d+)', r.stdout)
    assert m and m.group(2) == "1", r.stdout[-500:]
