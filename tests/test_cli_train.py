"""CLI oracles: train/eval/predict/generate/classify agree with the library; a SIGKILLed run
resumes bit-identically; bad input is one line on stderr and exit code 2."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from archlab.cli import main

REPO = Path(__file__).resolve().parents[1]
ENV = {"OMP_NUM_THREADS": "1"}  # tiny models: one thread is fastest, and the machine is shared
TINY_GPT = [
    "--arch",
    "gpt",
    "--layers",
    "1",
    "--heads",
    "2",
    "--d-model",
    "16",
    "--block-size",
    "16",
]


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, 1 thread


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    import random

    rng = random.Random(1)
    words = "to be or not that is the question whether tis nobler in mind suffer".split()
    lines = [" ".join(rng.choice(words) for _ in range(9)) for _ in range(400)]
    p = tmp_path_factory.mktemp("text") / "corpus.txt"
    p.write_text("\n".join(lines) + "\n")
    return p


def _run(*args: str, capsys) -> tuple[int, str, str]:
    """In-process CLI (same code path as the console script, minus interpreter start-up)."""
    rc = main(list(args))
    out, err = capsys.readouterr()
    return rc, out, err


def test_lm_cli_agrees_with_library(corpus, tmp_path, capsys):
    run = tmp_path / "gpt"
    rc, out, _ = _run(
        "train",
        "lm",
        *TINY_GPT,
        "--data",
        str(corpus),
        "--max-steps",
        "20",
        "--lr",
        "1e-2",
        "--no-progress",
        "--json",
        "--out",
        str(run),
        capsys=capsys,
    )
    assert rc == 0 and json.loads(out)["step"] == 20
    for f in ("config.json", "model.safetensors", "optimizer.safetensors", "optimizer.json",
              "tokenizer.json", "resolved_config.json", "metrics.jsonl"):  # fmt: skip
        assert (run / f).is_file(), f

    from archlab.train.inference import load_run, predict_next

    rc, out, _ = _run(
        "predict", str(run), "to be or not t", "--top-k", "4", "--json", capsys=capsys
    )
    got = json.loads(out)["next"]
    assert rc == 0 and len(got) == 4
    assert got == predict_next(load_run(run), "to be or not t", 4)
    # Independent check of the probabilities: softmax of the loaded model's last logits.
    r = load_run(run)
    ids = torch.tensor([r.tokenizer.encode("to be or not t")[-16:]])
    probs = torch.softmax(r.model(ids)[0, -1], -1)
    assert [g["prob"] for g in got] == pytest.approx(torch.topk(probs, 4).values.tolist(), abs=1e-6)

    gen = [_run("generate", str(run), "--prompt", "to be", "--max-new-tokens", "30", "--seed", "7",
                "--top-k", "5", capsys=capsys)[1] for _ in range(2)]  # fmt: skip
    assert gen[0] == gen[1] and gen[0].startswith("to be") and len(gen[0].rstrip("\n")) >= 30

    rc, out, _ = _run("eval", str(run), "--json", capsys=capsys)
    res = json.loads(out)
    n_val = len(r.tokenizer.encode(corpus.read_text()[int(0.9 * len(corpus.read_text())) :]))
    assert rc == 0 and res["tokens"] == n_val - 1  # every target scored exactly once
    assert res["perplexity"] == pytest.approx(math.exp(res["loss"]))
    assert (res["window"], res["stride"]) == (16, 8)
    rc, out, _ = _run("eval", str(run), capsys=capsys)
    assert "nats/token" in out and "window 16" in out and "stride 8" in out


def test_word_level_lstm_predicts_words(corpus, tmp_path, capsys):
    run = tmp_path / "lstm"
    rc, _, _ = _run("train", "lm", "--arch", "lstm", "--tokenizer", "word", "--layers", "1",
                    "--d-model", "16", "--block-size", "8", "--batch-size", "4", "--max-steps", "5",
                    "--data", str(corpus), "--no-progress", "--out", str(run),
                    "--optimizer", "sgd", "--lr", "5", "--schedule", "linear", "--tie-weights",
                    "--forget-bias", "1", capsys=capsys)  # fmt: skip
    assert rc == 0
    cfg = json.loads((run / "config.json").read_text())
    assert {k: cfg["train"][k] for k in ("optimizer", "lr", "schedule", "weight_decay")} == {
        "optimizer": "sgd", "lr": 5.0, "schedule": "linear", "weight_decay": None}  # fmt: skip
    assert cfg["model"]["config"]["tie_weights"] and cfg["model"]["config"]["forget_bias"] == 1.0
    assert "decoder.weight" not in _weights(run)  # tied: stored once, as the embedding
    rc, out, _ = _run("predict", str(run), "to be or not to", "--json", capsys=capsys)
    itos = json.loads((run / "tokenizer.json").read_text())["itos"]
    top = json.loads(out)["next"]
    assert (
        rc == 0 and len(top) == 5 and all(t["token"] in itos and len(t["token"]) > 1 for t in top)
    )
    rc, out, _ = _run("eval", str(run), "--split", "test", "--json", capsys=capsys)
    assert rc == 0 and json.loads(out)["protocol"] == "stateful"


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "model.safetensors")


def _train_losses(run: Path) -> list[tuple[int, float]]:
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"]) for r in recs]


def test_sigkilled_run_resumes_bit_identical(corpus, tmp_path):
    """SIGKILL the training process right after its first checkpoint (wherever it is: mid-step,
    mid-checkpoint-write), resume with --resume: final weights and loss log equal an
    uninterrupted run's exactly."""
    args = [sys.executable, "-m", "archlab", "train", "lm", *TINY_GPT, "--data", str(corpus),
            "--max-steps", "120", "--checkpoint-interval", "5", "--log-interval", "3",
            "--dropout", "0.1", "--grad-accum", "2", "--no-progress", "--json"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), **ENV}
    assert main([*args[3:], "--out", str(tmp_path / "full")]) == 0  # in-process, also 1 thread
    run = tmp_path / "killed"
    proc = subprocess.Popen([*args, "--out", str(run)], env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if json.loads((run / "config.json").read_text())["step"] >= 5:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = json.loads((run / "config.json").read_text())["step"]
    assert proc.returncode == -signal.SIGKILL and killed_at < 120, "run ended before the kill"
    res = subprocess.run(
        [*args, "--out", str(run), "--resume"], env=env, capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["step"] == 120
    a, b = _weights(tmp_path / "full"), _weights(run)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert _train_losses(tmp_path / "full") == _train_losses(run)


def test_classify_round_trip(shared_data, tmp_path, capsys, monkeypatch):
    """Train a tiny mlp on Fashion-MNIST, write test image 0 as PNG (lossless): the CLI's
    probabilities equal the model's softmax on the dataset tensor normalized as in training."""
    from PIL import Image

    import archlab.models
    from archlab.data import load_image_dataset
    from archlab.train.tasks import normalize_images

    monkeypatch.setenv("ARCHLAB_DATA", str(shared_data))
    run = tmp_path / "mlp"
    rc, _, _ = _run("train", "image", "--arch", "mlp", "--train-size", "600", "--batch-size", "50",
                    "--max-steps", "12", "--lr", "3e-3", "--no-progress", "--out", str(run),
                    capsys=capsys)  # fmt: skip
    assert rc == 0
    ds = load_image_dataset("fashion-mnist", val_size=5000, train_size=600)
    x0, y0 = ds.test_x[0], int(ds.test_y[0])  # (1, 28, 28) uint8
    png = tmp_path / "img.png"
    Image.fromarray(x0[0].numpy()).save(png)
    rgb = tmp_path / "img_rgb.png"  # R = G = B: the luma conversion gives back the same gray
    Image.fromarray(np.repeat(x0[0].numpy()[:, :, None], 3, axis=2)).save(rgb)

    model = archlab.models.load(run)
    with torch.no_grad():
        probs = torch.softmax(model(normalize_images(x0[None], ds.mean, ds.std))[0], -1)  # (10,)
    want = sorted(((float(p), ds.class_names[i]) for i, p in enumerate(probs)), reverse=True)
    for path in (png, rgb):
        rc, out, _ = _run("classify", str(run), str(path), "--top-k", "10", "--json", capsys=capsys)
        top = json.loads(out)["top"]
        assert rc == 0 and [t["label"] for t in top] == [n for _, n in want]
        assert [t["prob"] for t in top] == pytest.approx([p for p, _ in want], abs=1e-6)
    rc, out, _ = _run("classify", str(run), str(png), capsys=capsys)
    assert rc == 0 and len(out.strip().splitlines()) == 3  # default top-3, one per line

    rc, out, _ = _run("eval", str(run), "--split", "test", "--json", capsys=capsys)
    res = json.loads(out)
    assert rc == 0 and res["examples"] == 10000 and set(res["per_class"]) == set(ds.class_names)
    conf = torch.tensor(res["confusion"])
    assert conf.sum() == 10000 and res["accuracy"] == pytest.approx(float(conf.trace()) / 10000)
    assert res["accuracy"] > 0.5  # 12 steps of an mlp already beat chance (10%) by far
    assert Path(res["confusion_png"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert y0 in range(10)


@pytest.fixture(scope="module")
def tiny_run(corpus, tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("runs") / "gpt"
    assert main(["train", "lm", *TINY_GPT, "--data", str(corpus), "--max-steps", "2",
                 "--no-progress", "--out", str(run)]) == 0  # fmt: skip
    return run


def _bad_cases(tmp: Path, corpus: Path, run: Path) -> dict[str, list[str]]:
    (tmp / "empty.txt").write_text("")
    (tmp / "user").mkdir(exist_ok=True)
    (tmp / "user" / "notes.txt").write_text("mine")
    broken = tmp / "broken"
    if not broken.exists():
        import shutil

        shutil.copytree(run, broken)
        p = broken / "model.safetensors"
        p.write_bytes(p.read_bytes()[:100])
    (tmp / "fake.png").write_text("not an image")
    lm = ["train", "lm", *TINY_GPT, "--no-progress", "--max-steps", "1"]
    return {
        "missing corpus": [*lm, "--data", str(tmp / "nope.txt"), "--out", str(tmp / "o1")],
        "empty file": [*lm, "--data", str(tmp / "empty.txt"), "--out", str(tmp / "o2")],
        "block size < 1": [
            *lm,
            "--data",
            str(corpus),
            "--block-size",
            "0",
            "--out",
            str(tmp / "o3"),
        ],
        "unknown arch": [
            "train",
            "lm",
            "--arch",
            "transformer-xl",
            "--data",
            str(corpus),
            "--out",
            str(tmp / "o4"),
        ],
        "image arch for lm": [
            "train",
            "lm",
            "--arch",
            "cnn",
            "--data",
            str(corpus),
            "--out",
            str(tmp / "o5"),
        ],
        "flag the arch lacks": [
            "train",
            "lm",
            "--arch",
            "lstm",
            "--heads",
            "2",
            "--data",
            str(corpus),
            "--out",
            str(tmp / "o6"),
        ],
        "bad lr": [*lm, "--data", str(corpus), "--lr", "-1", "--out", str(tmp / "o7")],
        "user dir as --out": [*lm, "--data", str(corpus), "--out", str(tmp / "user")],
        "existing run without --resume": [*lm, "--data", str(corpus), "--out", str(run)],
        "corrupt checkpoint": ["eval", str(broken)],
        "not a run": ["predict", str(tmp / "user"), "to be"],
        "lm run for classify": ["classify", str(run), str(tmp / "fake.png")],
        "empty prompt": ["predict", str(run), ""],
    }


BAD = [
    "missing corpus", "empty file", "block size < 1", "unknown arch", "image arch for lm",
    "flag the arch lacks", "bad lr", "user dir as --out", "existing run without --resume",
    "corrupt checkpoint", "not a run", "lm run for classify", "empty prompt",
]  # fmt: skip


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_exit_2(case, corpus, tiny_run, tmp_path_factory, capsys):
    tmp = tmp_path_factory.getbasetemp() / "bad"
    tmp.mkdir(exist_ok=True)
    args = _bad_cases(tmp, corpus, tiny_run)[case]
    capsys.readouterr()
    rc, out, err = _run(*args, capsys=capsys)
    assert rc == 2, (case, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in err, err
    if case == "user dir as --out":
        assert os.listdir(tmp / "user") == ["notes.txt"]


def test_non_image_file_is_one_line_exit_2(shared_data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ARCHLAB_DATA", str(shared_data))
    run = tmp_path / "mlp"
    assert (
        _run(
            "train",
            "image",
            "--arch",
            "mlp",
            "--train-size",
            "100",
            "--batch-size",
            "50",
            "--max-steps",
            "1",
            "--no-progress",
            "--out",
            str(run),
            capsys=capsys,
        )[0]
        == 0
    )
    (tmp_path / "fake.png").write_text("not an image")
    for path in (tmp_path / "fake.png", tmp_path / "missing.png"):
        rc, _, err = _run("classify", str(run), str(path), capsys=capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1, err


def test_vit_shape_flags_reach_the_model(tmp_path, capsys):
    """--pool, --mlp-ratio, --patch-tokenizer and --lsa are applied and recorded."""
    import archlab.models

    run = tmp_path / "vit"
    vit = "train image --arch vit --data fashion-mnist-subset".split()
    shape = "--patch-size 7 --layers 1 --d-model 16 --heads 2 --pool mean --mlp-ratio 2"
    extra = "--patch-tokenizer spt --lsa --max-steps 2 --no-progress"
    rc, _, _ = _run(*vit, *shape.split(), *extra.split(), "--out", str(run), capsys=capsys)
    assert rc == 0
    m = archlab.models.load(run)
    assert m.config.pool == "mean" and m.cls_token is None and m.config.tokenizer == "spt"
    assert m.config.lsa and m.blocks[0].attn.scale.shape == (2,)
    assert m.blocks[0].mlp.fc.out_features == 32  # 2 x d_model
    rc, _, err = _run(*vit, "--pool", "max", "--out", str(tmp_path / "bad"), capsys=capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "pool" in err


def test_confusion_png_leaves_the_matplotlib_backend_alone(tmp_path):
    """A host application's backend (here svg, as a notebook would have its inline one) is
    neither switched nor is pyplot imported: the figure has its own Agg canvas."""
    code = (
        "import sys, matplotlib, torch; matplotlib.use('svg');"
        "from archlab.train.inference import save_confusion_png;"
        f"save_confusion_png(torch.tensor([[3, 1], [0, 4]]), ['a', 'b'], "
        f"__import__('pathlib').Path({str(tmp_path / 'c.png')!r}));"
        "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["svg", "False"]
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
