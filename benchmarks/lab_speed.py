"""How fast is ``archlab lab``? (issue 15, items 1 and 9)

Measured on this machine, against the real server (``python -m archlab lab`` in a subprocess,
requests over HTTP from this process):

* **first start**: a fresh models folder, from launching the command until ``/api/models`` lists
  the six default models — their training (``--train-seconds``, default 66), data loading, final
  evaluations and checkpoints, and the server's own start (target: <= 90 s on 2 cores);
* **first page render**: the lab restarted on those models; from the moment the server answers
  until headless Chromium (Debian's, via Playwright) shows the next-word tab with the four
  models' cards (the page computes them on load) — target <= 3 s; also from the process launch,
  which adds Python's imports of torch and Gradio;
* ``POST /api/next-word`` with a 200-character prompt to the four language models, and
  ``POST /api/classify`` with a 28x28 PNG to the two image models: median of ``--repeats``
  requests after 3 warm-ups (targets 150 ms and 100 ms).

Writes benchmarks/results/lab_speed.json with the machine (``archlab.machine``) and the load
average (the machine is shared; load makes every number pessimistic). Run:
``PYTHONPATH=src python benchmarks/lab_speed.py [--train-seconds 70] [--repeats 30]``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from archlab.machine import describe_machine  # noqa: E402

PROMPT = (
    "ROMEO:\nBut soft, what light through yonder window breaks? It is the east, and Juliet is "
    "the sun. Arise, fair sun, and kill the envious moon, who is already sick and pale with "
    "grief, that thou her maid art far more fair"
)[:200]
# What headless Chromium needs on a machine without outside network (see tests/test_lab_browser.py).
CHROMIUM_FLAGS = "--headless --no-sandbox --disable-gpu --disable-quic --no-first-run".split() + [
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TARGETS = {
    "first_start_s": 90,
    "first_render_after_listen_s": 3,
    "next_word_ms": 150,
    "classify_ms": 100,
}


def launch(models: Path, log: Path, *extra: str) -> tuple[subprocess.Popen, str, float]:
    """Start the lab; returns (process, base URL, time.monotonic() at launch)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, "-m", "archlab", "lab", "--models-dir", str(models), "--port", str(port)]
    proc = subprocess.Popen([*cmd, *extra], stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    return proc, f"http://127.0.0.1:{port}", t0


def get(url: str) -> object:
    with urllib.request.urlopen(url, timeout=5) as r:
        return json.loads(r.read())


def post(url: str, body: bytes, kind: str) -> tuple[float, object]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": kind}, method="POST")
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=30) as r:
        out = json.loads(r.read())
    return time.perf_counter() - t, out


def wait_for(pred, timeout: float, proc: subprocess.Popen, log: Path) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("the lab exited:\n" + log.read_text()[-3000:])
        try:
            if pred():
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out after {timeout} s:\n" + log.read_text()[-3000:])


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def first_render(url: str, chromium: str) -> tuple[float, float]:
    """Seconds from navigation until (the page with its tabs and the loaded models' list is on
    screen, the four next-word cards computed on load are)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        ctx = p.chromium.launch_persistent_context(
            profile, executable_path=chromium, args=CHROMIUM_FLAGS, headless=True
        )
        page = ctx.new_page()
        t = time.monotonic()
        page.goto(url)
        page.wait_for_selector("#status #lab-ready", timeout=60_000)
        shell = time.monotonic() - t
        page.wait_for_function(
            "document.querySelectorAll('#lm-cards .lab-card').length === 4", timeout=60_000
        )
        cards = time.monotonic() - t
        ctx.close()
    return shell, cards


def final_evals(models: Path) -> dict[str, dict]:
    """Each default run's last full-pass validation record (loss, or accuracy) and its steps."""
    out = {}
    for d in sorted(models.iterdir()):
        lines = (
            (d / "metrics.jsonl").read_text().splitlines() if (d / "metrics.jsonl").exists() else []
        )
        evals = [json.loads(x) for x in lines if '"kind": "eval"' in x]
        if evals:
            e = evals[-1]
            out[d.name] = {k: e[k] for k in ("step", "loss", "accuracy") if k in e}
    return out


def png_28() -> bytes:
    from PIL import Image

    from archlab.data import load_image_dataset

    x, _ = load_image_dataset("fashion-mnist-subset", val_size=1000).split("test")
    buf = io.BytesIO()
    Image.fromarray(x[0, 0].numpy()).save(buf, format="PNG")
    return buf.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--train-seconds", type=float, default=None, help="(default: the lab's)")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--models-dir", type=Path, help="reuse trained defaults: skip the first start")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    load = [round(x, 2) for x in os.getloadavg()]
    out: dict = {"machine": describe_machine(), "load_average_at_start": load, "targets": TARGETS}
    tmp = Path(tempfile.mkdtemp(prefix="lab-speed-"))
    models = args.models_dir or tmp / "models"
    log = tmp / "lab.log"

    if args.models_dir is None:  # 1) the first start on a fresh folder
        extra = [] if args.train_seconds is None else ["--train-seconds", str(args.train_seconds)]
        proc, url, t0 = launch(models, log, *extra)
        t_ready = wait_for(lambda: len(get(url + "/api/models")) == 6, 600, proc, log)
        stop(proc)
        out["first_start_s"] = round(t_ready - t0, 1)
        out["first_start_log_tail"] = log.read_text().splitlines()[-3:]
        print(f"first start (train the six defaults, serve them): {out['first_start_s']} s")

    # 2) restart on the trained models: time to listen, then the page's first render
    proc, url, t0 = launch(models, log)
    try:
        t_listen = wait_for(lambda: get(url + "/api/status") is not None, 120, proc, log)
        shell, cards = first_render(url + "/", args.chromium)
        out["listen_after_launch_s"] = round(t_listen - t0, 2)
        out["first_render_after_listen_s"] = round(shell, 2)
        out["first_cards_after_listen_s"] = round(cards, 2)
        out["first_render_after_launch_s"] = round(t_listen - t0 + shell, 2)
        print(
            f"server answers {out['listen_after_launch_s']} s after launch (imports); the page "
            f"renders {out['first_render_after_listen_s']} s after that, with the four models' "
            f"next-word cards at {out['first_cards_after_listen_s']} s"
        )

        # 3) the two API latencies
        nw = json.dumps({"prompt": PROMPT, "top_k": 5}).encode()
        image = png_28()
        for name, path, body, kind, n_models in (
            ("next_word", "/api/next-word", nw, "application/json", 4),
            ("classify", "/api/classify", image, "image/png", 2),
        ):
            for _ in range(3):
                post(url + path, body, kind)
            times = []
            for _ in range(args.repeats):
                dt, answer = post(url + path, body, kind)
                assert len(answer) == n_models, answer
                times.append(dt * 1000)
            out[f"{name}_ms"] = {
                "median": round(statistics.median(times), 1),
                "p90": round(sorted(times)[int(0.9 * len(times)) - 1], 1),
                "n": len(times),
                "models": n_models,
            }
            print(f"POST {path} ({n_models} models): median {out[f'{name}_ms']['median']} ms")
    finally:
        stop(proc)
    out["default_models_val"] = final_evals(models)
    out["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    dest = ROOT / "benchmarks" / "results" / "lab_speed.json"
    dest.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {dest}  (models in {models})")


if __name__ == "__main__":
    main()
