"""The lab in a real browser: ``archlab lab RUN_DIR...`` as a subprocess, driven by Playwright in
Debian's headless Chromium. Each tab's main interaction is performed and what a person would see
is asserted — the top-k lists appear and sum to at most 1, the Keras RNN 100->200 derivation ends
in 60,200, moving the shift slider changes the plot, a claim's button opens its tab — with no
console error and no request leaving 127.0.0.1; a screenshot of each tab is saved to
``test-artifacts/lab/`` and checked to be non-blank. A second server starts with one default model
missing and shows its training progress in the terminal and the page.

Skipped with the reason on a developer's machine without Chromium, Playwright or Gradio; never in
CI, where ``.ci/run`` installs them.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from lab_fixtures import REPO, study_dir, trained_runs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    import gradio  # noqa: F401
    import playwright.sync_api  # noqa: F401

    MISSING = "" if CHROMIUM else "chromium not installed (apt-get install -y chromium)"
except ImportError as e:
    MISSING = f"{e.name} not installed (pip install -e '.[lab]' playwright)"
pytestmark = pytest.mark.skipif(bool(MISSING) and not os.environ.get("CI"), reason=MISSING or "-")

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
ARTIFACTS = REPO / "test-artifacts" / "lab"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``python -m archlab lab ARGS`` on a free port; its terminal output goes to a log file."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.log = log
        env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
        self.out = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "archlab", "lab", *args, "--port", str(self.port)],
            stdout=self.out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, log.read_text()[-3000:]
            try:
                urllib.request.urlopen(self.url + "api/status", timeout=2).read()
                return
            except OSError:
                time.sleep(0.3)
        raise AssertionError("the lab did not start in 180 s:\n" + log.read_text()[-3000:])

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.out.close()


class Watch:
    """Every request the page makes and every console error or uncaught exception."""

    def __init__(self, page, port: int) -> None:
        self.local = f"http://127.0.0.1:{port}/"
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: self.errors.append(f"uncaught: {e}"))

    def foreign(self) -> list[str]:
        return [u for u in self.requests if not u.startswith((self.local, "data:", "blob:"))]


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    root, dirs = trained_runs()
    tmp = tmp_path_factory.mktemp("lab-browser")
    server = Server(
        [*map(str, dirs), "--study", str(study_dir(tmp)), "--models-dir", str(root)],
        tmp / "lab.log",
    )
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            args=FLAGS,
            headless=True,
            viewport={"width": 1400, "height": 1000},
        )
        yield context
        context.close()


def shot(page, name: str) -> Path:
    """A full-page screenshot under test-artifacts/lab/, checked to be a picture, not a blank."""
    from PIL import Image

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    a = np.asarray(Image.open(path).convert("RGB"))
    assert a.shape[1] == 1400 and a.shape[0] >= 800
    colours = len(np.unique(a.reshape(-1, 3)[::7], axis=0))
    assert colours > 50 and a.std() > 10, f"{path} looks blank ({colours} colours)"
    return path


def open_tab(page, name: str) -> None:
    page.get_by_role("tab", name=name).click()
    page.wait_for_selector(f"button[role=tab][aria-selected=true]:has-text('{name}')")


def test_every_tab_in_a_real_browser(lab_server, browser):
    page = browser.new_page()
    watch = Watch(page, lab_server.port)
    page.goto(lab_server.url)
    page.wait_for_selector("#prompt textarea")
    page.wait_for_selector("#status #lab-ready")

    # Next word: one prompt to four models; each top-k list sums to at most 1.
    page.fill("#prompt textarea", "ROMEO:\nBut soft, what light")
    page.click("#predict")
    page.wait_for_function("document.querySelectorAll('#lm-cards .lab-card').length === 4")
    for card in page.locator("#lm-cards .lab-card").all():
        probs = [
            float(p)
            for p in card.locator(".lab-topk li").evaluate_all(
                "els => els.map(e => e.dataset.prob)"
            )
        ]
        assert len(probs) == 5 and all(p > 0 for p in probs) and sum(probs) <= 1 + 1e-6
        assert card.locator(".lab-topk li").first.is_visible()
    assert page.locator("#lm-cards [data-kind=attention]").count() == 1  # the GPT's card
    assert page.locator("#lm-cards [data-kind=saliency]").count() == 4
    shot(page, "next-word")

    # Image: pick an example; moving the shift slider changes the plot.
    open_tab(page, "Image")
    page.locator("#examples button").first.click()
    page.wait_for_function("document.querySelectorAll('#img-cards .lab-card').length === 2")
    page.wait_for_selector("#shift-plot img")
    before = page.get_attribute("#shift-plot img", "src")
    page.fill("#dx input[type=number]", "3")
    page.press("#dx input[type=number]", "Enter")
    page.wait_for_function(
        "src => { const i = document.querySelector('#shift-plot img'); "
        "return i && i.src !== src; }",
        arg=before,
        timeout=30_000,
    )
    page.wait_for_selector("#img-cards :text('dx=3 dy=0')")
    assert (
        page.locator("#feature-maps img").count() == 24
        and page.locator("#vit-attention img").count() == 5
    )
    shot(page, "image")
    # ... or draw one: a stroke on the sketchpad is classified too
    cards_before = page.inner_html("#img-cards")
    page.get_by_role("tab", name="Draw").click()
    page.click("#sketch button[aria-label=Brush]")
    box = page.locator("#sketch canvas").first.bounding_box()
    page.mouse.move(box["x"] + 0.4 * box["width"], box["y"] + 0.2 * box["height"])
    page.mouse.down()
    page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.8 * box["height"], steps=12)
    page.mouse.up()
    page.wait_for_function(
        "h => document.querySelector('#img-cards').innerHTML !== h",
        arg=cards_before,
        timeout=30_000,
    )
    assert page.locator("#img-cards .lab-card").count() == 2
    # ... or upload a file
    cards_before = page.inner_html("#img-cards")
    page.get_by_role("tab", name="Upload").click()
    trouser = sorted((trained_runs()[0] / "examples").glob("*.png"))[1]
    page.set_input_files("#upload input[type=file]", str(trouser))
    page.wait_for_function(
        "h => document.querySelector('#img-cards').innerHTML !== h",
        arg=cards_before,
        timeout=30_000,
    )
    assert page.locator("#img-cards .lab-card").count() == 2  # (the thumbnail is the new file)

    # Cost: Part 3's preset; the Keras RNN 100->200 derivation ends in 60,200.
    open_tab(page, "Cost")
    page.click("#preset-P3")
    page.wait_for_selector("#derivation :text('60,200 params')")
    text = page.inner_text("#derivation")
    total = next(ln for ln in text.splitlines() if "total:" in ln)
    assert total.strip().endswith("= 60,200 params"), total
    assert "PyTorch counts 60,400 params" in text
    assert "60,400" in page.inner_text("#cost-summary")
    page.fill("#f-hidden_size input", "0")  # validated in the page: the engine's one line
    page.press("#f-hidden_size input", "Tab")
    page.wait_for_selector("#cost-summary .lab-error")
    assert "positive integer" in page.inner_text("#cost-summary")
    page.click("#preset-P5")
    page.wait_for_selector("#flops-plot img")
    assert "3,072 tokens" in page.inner_text("#cost-summary")
    shot(page, "cost")

    # Study: the report inside the page; a claim's button opens its tab.
    open_tab(page, "Study")
    frame = page.frame_locator("#study-report")
    frame.locator("#summary").wait_for()
    shot(page, "study")
    page.click("#claim-P4")
    page.wait_for_selector("button[role=tab][aria-selected=true]:has-text('Cost')")
    page.wait_for_selector("#derivation :text('1,792 params')")
    open_tab(page, "Study")
    page.click("#claim-C3")  # and a claim explored on the image tab
    page.wait_for_selector("button[role=tab][aria-selected=true]:has-text('Image')")

    assert watch.errors == [], watch.errors
    assert watch.requests and watch.foreign() == [], watch.foreign()
    page.close()


def test_the_watch_sees_foreign_requests_and_console_errors(lab_server, browser):
    """Negative control: the two global checks above can fail. The foreign request is aborted by
    a route before it reaches the network (and .invalid never resolves)."""
    page = browser.new_page()
    watch = Watch(page, lab_server.port)
    page.route("http://lab-test.invalid/**", lambda route: route.abort())
    page.goto(lab_server.url)
    page.wait_for_selector("#prompt textarea")
    page.evaluate("fetch('http://lab-test.invalid/font.woff').catch(() => 0)")
    page.evaluate("console.error('lab test error')")
    page.wait_for_timeout(500)
    assert "http://lab-test.invalid/font.woff" in watch.foreign()
    assert any("lab test error" in e for e in watch.errors)
    page.close()


def test_first_start_shows_training_progress_in_terminal_and_page(browser, tmp_path):
    root = tmp_path / "models"
    shutil.copytree(trained_runs()[0], root)
    shutil.rmtree(root / "cnn")  # a fresh machine in small: one default model to train
    server = Server(
        ["--models-dir", str(root), "--train-seconds", "150", "--study", str(tmp_path)],
        tmp_path / "lab.log",
    )
    try:
        page = browser.new_page()
        watch = Watch(page, server.port)
        page.goto(server.url)
        page.wait_for_selector("#status #lab-training progress")
        assert "training the default models" in page.inner_text("#status")
        page.wait_for_selector("#status #lab-ready", timeout=180_000)  # the page follows the run
        assert "cnn (image" in page.inner_text("#status")
        log = server.log.read_text()
        assert re.search(r"training default model 1/1 cnn .*\] +\d+%", log), log[-2000:]
        assert watch.errors == [] and watch.foreign() == []
        page.close()
    finally:
        server.stop()
