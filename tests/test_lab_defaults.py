"""The lab's first start (archlab.lab.defaults, archlab.lab.state): the six default runs are
trained through the one training stack into ordinary run directories on the embedded data, a
second start trains nothing, the progress the page and terminal show reaches 100%, and the
background path serves progress first and the models after."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from lab_fixtures import trained_models, trained_runs

from archlab.lab.defaults import (
    DEFAULT_RUNS,
    TRAIN_SECONDS,
    TrainingProgress,
    missing_defaults,
    train_defaults,
)
from archlab.lab.state import Lab, NotReady
from archlab.train.checkpoint import has_checkpoint


def test_the_budget_is_split_in_full_and_leaves_room_for_overhead():
    assert sum(r.share for r in DEFAULT_RUNS) == pytest.approx(1.0)
    # ~1.5-2 s per run of data loading, final evaluation and checkpoint, and a one-time ~3 s
    # import, on 2 cores: the first start's 90 s (benchmarks/lab_speed.py measures it).
    assert TRAIN_SECONDS + 6 * 2 + 3 <= 90
    assert [r.name for r in DEFAULT_RUNS] == ["rnn", "lstm", "gru", "gpt", "cnn", "vit"]


def test_default_runs_are_ordinary_run_directories_on_the_embedded_data():
    root, dirs = trained_runs()
    assert [d.name for d in dirs] == [r.name for r in DEFAULT_RUNS]
    assert all(has_checkpoint(d) for d in dirs) and missing_defaults(root) == []
    for d, r in zip(dirs, DEFAULT_RUNS, strict=True):
        cfg = json.loads((d / "config.json").read_text())
        assert cfg["task"] == r.task and cfg["model"]["name"] == r.arch
        data = cfg["data"]["corpus"] if r.task == "lm" else cfg["data"]["name"]
        assert data == ("tinyshakespeare" if r.task == "lm" else "fashion-mnist-subset")
        resolved = json.loads((d / "resolved_config.json").read_text())
        assert resolved["train"]["max_time"] == pytest.approx(3.0 * r.share)
    kinds = [(m.name, m.kind, m.family) for m in trained_models()]
    families = ["rnn", "rnn", "rnn", "gpt", "cnn", "vit"]
    assert kinds == [(r.name, r.task, f) for r, f in zip(DEFAULT_RUNS, families, strict=True)]


def test_a_second_start_trains_nothing():
    root, dirs = trained_runs()
    progress = TrainingProgress()
    t = time.monotonic()
    assert train_defaults(root, 3.0, progress) == dirs
    assert time.monotonic() - t < 1.0 and progress.runs == [] and progress.done


def test_progress_reaches_the_end_and_describes_itself(tmp_path):
    progress = TrainingProgress()
    train_defaults(tmp_path, 0.5, progress, runs=[DEFAULT_RUNS[4]], threads=1)  # the CNN alone
    s = progress.snapshot()
    assert s["done"] and s["fraction"] == 1.0 and s["runs"] == ["cnn"] and not s["training"]
    assert "1/1 cnn" in progress.line() and "100%" in progress.line()


def test_background_start_serves_progress_then_models(tmp_path):
    root = tmp_path / "models"
    shutil.copytree(trained_runs()[0], root)
    shutil.rmtree(root / "cnn")  # one default missing: only it is trained
    lab, thread = Lab.with_defaults(root, tmp_path / "study", seconds=0.3, threads=1)
    assert thread is not None and lab.progress.snapshot()["runs"] == ["cnn"]
    with pytest.raises(NotReady, match="still training"):
        lab.of_kind("lm")  # nothing is served until all are ready
    thread.join(timeout=300)
    assert not thread.is_alive() and lab.progress.snapshot()["done"]
    assert [m.name for m in lab.models] == [r.name for r in DEFAULT_RUNS]
    lab2, thread2 = Lab.with_defaults(root, tmp_path / "study")
    assert thread2 is None and len(lab2.models) == 6  # loaded at once the second time
