"""The lab's JSON API (archlab.lab.api) on the six default runs: every endpoint answers what the
library functions compute, and bad input — an empty or 100,000-character prompt, a body that is
not JSON, a non-image upload, absurd sizes — gets a 4xx with one line while the server keeps
serving."""

from __future__ import annotations

import io

import numpy as np
import pytest
from lab_fixtures import GOLDEN, study_dir, trained_models
from PIL import Image

from archlab.lab.costs import cost_json
from archlab.lab.state import Lab
from archlab.lab.vision import decode_image, predict
from archlab.train.inference import generate_text, predict_next

pytest.importorskip("fastapi", reason="the lab extra is not installed (pip install -e '.[lab]')")
pytest.importorskip("httpx", reason="fastapi's TestClient needs httpx (the lab extra has it)")
pytestmark = pytest.mark.usefixtures("one_thread")

PROMPT = "ROMEO:\nBut soft, what light through yonder window breaks?"


def make_client(lab: Lab):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from archlab.lab.api import add_api_routes

    app = FastAPI()
    add_api_routes(app, lab)
    return TestClient(app)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    return make_client(Lab(trained_models(), study_dir(tmp_path_factory.mktemp("lab"))))


def png_bytes(seed: int = 0) -> bytes:
    a = np.zeros((28, 28), np.uint8)
    a[5:22, 8:20] = np.random.default_rng(seed).integers(100, 255, (17, 12))
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def one_line_error(r, status: int) -> str:
    assert r.status_code == status, r.text
    msg = r.json()["error"]
    assert msg and "\n" not in msg
    return msg


def test_models_lists_every_run_with_kind_arch_and_params(client):
    r = client.get("/api/models")
    assert r.status_code == 200
    want = [
        {"name": m.name, "kind": m.kind, "arch": m.arch, "params": m.params}
        for m in trained_models()
    ]
    assert r.json() == want
    assert {m["kind"] for m in want} == {"lm", "image"} and all(m["params"] > 0 for m in want)


def test_next_word_is_predict_next_for_every_lm(client):
    r = client.post("/api/next-word", json={"prompt": PROMPT, "top_k": 4})
    assert r.status_code == 200
    got = r.json()
    lms = [m for m in trained_models() if m.kind == "lm"]
    assert list(got) == [m.name for m in lms]
    for m in lms:
        assert got[m.name] == predict_next(m.run, PROMPT, 4)  # JSON floats round-trip exactly
        probs = [t["prob"] for t in got[m.name]]
        assert len(probs) == 4 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6


def test_generate_is_seeded_and_returns_prompt_plus_continuation(client):
    body = {"prompt": "ROMEO:", "max_new_tokens": 30, "temperature": 0.8, "top_k": 10, "seed": 7}
    a, b = client.post("/api/generate", json=body), client.post("/api/generate", json=body)
    assert a.status_code == 200 and a.json() == b.json()
    for m in (m for m in trained_models() if m.kind == "lm"):
        out = a.json()[m.name]
        assert out["text"] == generate_text(m.run, "ROMEO:", 30, 0.8, 10, 7)
        assert out["text"] == "ROMEO:" + out["continuation"] and len(out["continuation"]) == 30
    greedy = client.post(
        "/api/generate", json={"prompt": "ROMEO:", "max_new_tokens": 5, "temperature": 0}
    )
    assert greedy.status_code == 200


def test_classify_takes_image_bytes_and_a_shift(client):
    data = png_bytes()
    images = [m for m in trained_models() if m.kind == "image"]
    r = client.post("/api/classify", content=data, headers={"Content-Type": "image/png"})
    assert r.status_code == 200 and list(r.json()) == [m.name for m in images]
    shifted = client.post(
        "/api/classify?dx=3&dy=-2&top_k=10", content=data, headers={"Content-Type": "image/png"}
    ).json()
    for m in images:
        image = decode_image(data, 1, 28)
        assert r.json()[m.name] == predict(m, image).top(3)
        assert shifted[m.name] == predict(m, image, 3, -2).top(10)
        assert sum(t["prob"] for t in shifted[m.name]) == pytest.approx(1.0, abs=1e-5)


def test_cost_answers_the_cli_json(client):
    body = {"layer": "rnn", "input_size": 100, "hidden_size": 200, "convention": "keras"}
    r = client.post("/api/cost", json=body)
    assert r.status_code == 200 and r.json() == cost_json(body) and r.json()["params"] == 60_200
    conv = client.post(
        "/api/cost",
        json={"layer": "conv2d", "in_channels": 3, "out_channels": 64, "kernel_size": 3},
    )
    assert conv.json()["params"] == 1_792


def test_status_and_study_report(client, tmp_path):
    s = client.get("/api/status").json()
    assert s["models"] == 6 and s["training"]["done"] and not s["training"]["training"]
    r = client.get("/study/report.html")
    assert r.status_code == 200 and r.text == (GOLDEN / "report.html").read_text()
    missing = make_client(Lab(trained_models(), tmp_path / "none"))
    one_line_error(missing.get("/study/report.html"), 404)


@pytest.mark.parametrize(
    "path,body,status,message",
    [
        ("/api/next-word", {"prompt": ""}, 422, "empty"),
        ("/api/next-word", {"prompt": "x" * 100_000}, 413, "100,000 characters"),
        ("/api/next-word", {"prompt": 42}, 422, "string"),
        ("/api/next-word", {}, 422, "string"),
        ("/api/next-word", {"prompt": "a", "top_k": 0}, 422, "top_k"),
        ("/api/next-word", {"prompt": "a", "top_k": 10**9}, 422, "top_k"),
        ("/api/next-word", {"prompt": "a", "topk": 3}, 422, "unknown field"),
        ("/api/next-word", [1, 2], 422, "JSON object"),
        ("/api/generate", {"prompt": ""}, 422, "empty"),
        ("/api/generate", {"prompt": "a", "max_new_tokens": 10**6}, 422, "max_new_tokens"),
        ("/api/generate", {"prompt": "a", "temperature": -1}, 422, "temperature"),
        ("/api/generate", {"prompt": "a", "seed": "x"}, 422, "seed"),
        ("/api/cost", {"layer": "rnn", "input_size": 10**12, "hidden_size": 200}, 422, "too large"),
        (
            "/api/cost",
            {"layer": "transformer", "d_model": 512, "heads": 7, "layers": 6},
            422,
            "divide",
        ),
        ("/api/cost", {"layer": "rnn", "input_size": -1, "hidden_size": 2}, 422, "positive"),
        ("/api/cost", {"layer": "nope"}, 422, "unknown layer"),
    ],
)
def test_bad_json_input_is_a_4xx_line_and_the_server_keeps_serving(
    client, path, body, status, message
):
    assert message in one_line_error(client.post(path, json=body), status)
    assert client.get("/api/models").status_code == 200


@pytest.mark.parametrize(
    "query,content,kind,status,message",
    [
        ("", b"hello, I am text", "text/plain", 415, "Content-Type image"),
        ("", b"hello, I am text", "image/png", 422, "not an image"),
        ("", b"", "image/png", 422, "empty"),
        ("?dx=100", None, "image/png", 422, "whole pixels"),
        ("?dx=left", None, "image/png", 422, "dx must be an integer"),
        ("?top_k=0", None, "image/png", 422, "top_k"),
        ("?invert=maybe", None, "image/png", 422, "invert"),
    ],
)
def test_bad_uploads_are_refused_in_one_line(client, query, content, kind, status, message):
    data = png_bytes() if content is None else content
    r = client.post(f"/api/classify{query}", content=data, headers={"Content-Type": kind})
    assert message in one_line_error(r, status)
    assert client.get("/api/models").status_code == 200


def test_not_json_and_too_large_bodies(client):
    r = client.post(
        "/api/next-word", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert "not JSON" in one_line_error(r, 400)
    big = b"\x00" * (10 * 2**20 + 1)
    r = client.post("/api/classify", content=big, headers={"Content-Type": "image/png"})
    assert "at most 10 MiB" in one_line_error(r, 413)  # refused by its Content-Length

    def chunks():  # no Content-Length: the size is checked after reading
        yield big

    r = client.post("/api/classify", content=chunks(), headers={"Content-Type": "image/png"})
    assert "at most 10 MiB" in one_line_error(r, 413)


def test_no_models_yet_is_503_not_a_crash(tmp_path):
    empty = make_client(Lab([], tmp_path))
    assert empty.get("/api/models").json() == []
    assert "no language model" in one_line_error(
        empty.post("/api/next-word", json={"prompt": "a"}), 503
    )
    r = empty.post("/api/classify", content=png_bytes(), headers={"Content-Type": "image/png"})
    assert "no image model" in one_line_error(r, 503)


def test_a_curl_d_body_is_read_as_json_whatever_its_content_type(client):
    """``curl -d '{...}'`` sends application/x-www-form-urlencoded (the README's examples)."""
    body = b'{"layer": "conv2d", "in_channels": 3, "out_channels": 64, "kernel_size": 3}'
    kind = {"Content-Type": "application/x-www-form-urlencoded"}
    assert client.post("/api/cost", content=body, headers=kind).json()["params"] == 1_792
