"""Issue 14, fault injection (CI: a few faults of each kind; ``benchmarks/fault_injection.py`` runs
the campaign). The harness, its kill points and its checks are in ``tests/faults.py``.

* A training run SIGKILLed (inside a checkpoint write, between steps, by the clock) resumes from
  its last committed checkpoint and ends bit-identical to the uninterrupted run: weights,
  optimizer state, the metrics log.
* ``archlab study`` SIGKILLed and rerun reuses the whole cache entries and trained models, and
  gives the uninterrupted study's results.json (timing aside); damaged entries and models are
  recomputed with a notice.
* A NaN/inf loss stops training with one line naming the step; the last good checkpoint stays.
* A full disk during a checkpoint (a patched writer raising ENOSPC) leaves the previous one intact.
"""

from __future__ import annotations

import errno
import json
import random
import shutil
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from archlab.cli import main
from tests import faults
from tests.fuzzing import write_idx_dataset

pytestmark = pytest.mark.usefixtures("one_thread")

TINY_GPT = "--arch gpt --layers 1 --heads 2 --d-model 16 --block-size 8 --batch-size 4".split()
QUIET = ["--no-progress", "--threads", "1"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    words = "to be or not that is the question whether tis nobler in the mind".split()
    rng = random.Random(0)
    p = tmp_path_factory.mktemp("text") / "corpus.txt"
    p.write_text("\n".join(" ".join(rng.choices(words, k=9)) for _ in range(200)) + "\n")
    return p


@pytest.fixture(scope="module")
def mnist(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data")
    write_idx_dataset(root / "mnist", 160, 40)
    return root


@pytest.fixture
def data_root(mnist, monkeypatch) -> Path:
    monkeypatch.setenv("ARCHLAB_DATA", str(mnist))
    monkeypatch.setenv("ARCHLAB_OFFLINE", "1")
    return mnist


def _run(capsys, *argv: str) -> tuple[int, str]:
    capsys.readouterr()
    try:
        rc = main(list(argv))
    except SystemExit as e:
        rc = e.code
    return rc, capsys.readouterr().err


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _files(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run.iterdir()) if p.is_file()}


# ------------------------------------------------------------------------------ resume
def test_resuming_a_finished_run_repeats_nothing(corpus, tmp_path, capsys):
    """--resume of a run that already reached --max-steps: no second evaluation line in
    metrics.jsonl (it used to evaluate and log the last step again), the same weights and
    optimizer state, and the same final metrics (train and val loss)."""
    out = tmp_path / "run"
    argv = ["train", "lm", *TINY_GPT, "--data", str(corpus), "--max-steps", "4", *QUIET]
    argv += ["--json", "--out", str(out)]
    capsys.readouterr()
    assert main(argv) == 0
    first = json.loads(capsys.readouterr().out)
    before = _files(out)
    assert main([*argv, "--resume"]) == 0
    again = json.loads(capsys.readouterr().out)
    after = _files(out)
    assert after["metrics.jsonl"] == before["metrics.jsonl"]
    recs = [json.loads(x) for x in after["metrics.jsonl"].decode().splitlines()]
    assert [r["step"] for r in recs if r["kind"] == "eval"] == [4]
    for name in ("model.safetensors", "optimizer.safetensors", "state.safetensors"):
        assert after[name] == before[name], name
    assert (again["step"], again["eval"], again["train_loss"]) == (
        first["step"],
        first["eval"],
        first["train_loss"],
    )
    assert first["train_loss"] is not None and "loss" in first["eval"]


# ------------------------------------------------------------------------------ SIGKILL
def test_identical_sees_a_one_bit_change(tmp_path, corpus):
    """Control for the oracle below: one optimizer moment nudged by one ulp is a difference."""
    cfg = faults.configs(corpus)[0]
    a, b = tmp_path / "a", tmp_path / "b"
    faults.reference(faults.Config(cfg.name, cfg.argv, steps=3), a, tmp_path / "log")
    shutil.copytree(a, b)
    assert faults.identical(a, b) == []
    opt = load_file(b / "optimizer.safetensors")
    k = sorted(opt)[-1]
    opt[k] = torch.nextafter(opt[k], torch.full_like(opt[k], float("inf")))
    save_file(opt, str(b / "optimizer.safetensors"), metadata={"archlab_step": "3"})
    assert faults.identical(a, b) == ["optimizer.safetensors"]


CI_PLANS = {  # a few faults per run; the campaign draws many more
    "gpt-adamw": ["tokenizer", "tensor-file", "after-commit", "mid-move", "step"],
    "cnn-sgd": ["before-commit", "json-file", "log", "before-cleanup", 0.6],
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(CI_PLANS))
def test_sigkilled_training_resumes_bit_identical(name, corpus, data_root, tmp_path):
    """Each planned fault SIGKILLs the run (the kill really happens: counted); every resume starts
    at the last committed checkpoint; the end equals the uninterrupted run bit for bit."""
    cfg = next(c for c in faults.configs(corpus) if c.name == name)
    log = tmp_path / "log"
    seconds = faults.reference(cfg, tmp_path / "ref", log)
    plan = [f if isinstance(f, str) else f * seconds for f in CI_PLANS[name]]
    c = faults.Campaign(cfg, tmp_path / "run", tmp_path / "record", random.Random(1), log)
    assert c.finish(plan), c.problems
    assert c.problems == [], c.problems
    points = [p for p in CI_PLANS[name] if isinstance(p, str)]
    assert c.kills[: len(points)] == points, c.kills  # each planned point was reached
    assert faults.identical(tmp_path / "run", tmp_path / "ref") == []
    assert not (tmp_path / "run" / ".checkpoint.tmp").exists()


@pytest.mark.slow
def test_sigkilled_study_reruns_to_the_same_results(tmp_path):
    """archlab study (a training claim and P3, the tiny profile) killed at random times, then
    with every cache entry and one trained model broken: each rerun reuses what was whole and
    ends with the uninterrupted study's results.json; every damage gets a notice."""
    ref, log = tmp_path / "ref", tmp_path / "log"
    only = "R1,P3"
    faults.warm_study()
    t0 = time.perf_counter()
    assert faults.wait(faults.fork(faults.study(ref, only), log)) == 0, log.read_text()
    duration = time.perf_counter() - t0
    expected = faults.study_results(ref)
    c = faults.StudyCampaign(tmp_path / "run", only, expected, duration, random.Random(3), log)
    c.finish(kills=2)
    assert c.problems == [], c.problems
    assert c.kills, "no kill happened"
    notices = c.damage_and_rerun()
    assert c.problems == [], c.problems
    assert notices


# ------------------------------------------------------------------------------ NaN, full disk
def test_nan_loss_stops_naming_the_step_and_keeps_the_checkpoint(corpus, tmp_path, cli):
    """SGD at lr 1e6 without clipping: the loss overflows within a few steps. archlab exits 2
    with one line naming the step; the run keeps the last checkpoint before it (finite weights)
    and no NaN reaches metrics.jsonl."""
    out = tmp_path / "run"
    argv = ["train", "lm", *TINY_GPT, "--data", str(corpus), "--max-steps", "40", *QUIET]
    argv += ["--optimizer", "sgd", "--lr", "1e6", "--grad-clip", "none", "--warmup", "0"]
    argv += ["--checkpoint-interval", "1", "--log-interval", "1", "--out", str(out)]
    r = cli(*argv, env={"OMP_NUM_THREADS": "1"})
    assert r.returncode == 2, (r.returncode, r.stderr)
    line = _one_line(r.stderr)
    assert "training diverged" in line and "at step" in line, line
    bad = int(line.split("at step ")[1].split(";")[0])
    saved = json.loads((out / "config.json").read_text())["step"]
    assert 1 <= saved < bad and f"step {saved}) is kept in {out}" in line
    weights = load_file(out / "model.safetensors")
    assert all(torch.isfinite(w).all() for w in weights.values())
    text = (out / "metrics.jsonl").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert max(json.loads(x)["step"] for x in text.splitlines()) <= saved + 1


@pytest.mark.parametrize("writer", ["save_file", "write_json_atomic"])
def test_full_disk_leaves_the_previous_checkpoint(writer, corpus, tmp_path, capsys, monkeypatch):
    """The disk fills while the second checkpoint is written (a writer raising ENOSPC): one line,
    exit 2, the first checkpoint byte-identical and loadable, no temp dir left; --resume then
    ends bit-identical to a run that never failed."""
    import archlab.train.checkpoint as ckpt

    argv = ["train", "lm", *TINY_GPT, "--data", str(corpus), "--max-steps", "6", *QUIET]
    argv += ["--checkpoint-interval", "3"]
    ref, out = tmp_path / "ref", tmp_path / "run"
    assert _run(capsys, *argv, "--out", str(ref))[0] == 0
    real = getattr(ckpt, writer)
    calls = {"n": 0, "at": None}
    per_checkpoint = 3  # model, optimizer, state tensors; optimizer.json, config.json, COMMIT

    def full(*a, **k):
        calls["n"] += 1
        if calls["n"] == per_checkpoint + 2:  # inside the second checkpoint
            calls["at"] = _files(out)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(*a, **k)

    monkeypatch.setattr(ckpt, writer, full)
    rc, err = _run(capsys, *argv, "--out", str(out))
    monkeypatch.setattr(ckpt, writer, real)
    assert rc == 2
    line = _one_line(err)
    assert "No space left on device" in line and "previous checkpoint is intact" in line, line
    assert calls["at"] is not None
    now = _files(out)
    for name in ("model.safetensors", "optimizer.safetensors", "config.json", "state.safetensors"):
        assert now[name] == calls["at"][name], name
    assert json.loads(now["config.json"])["step"] == 3
    assert not (out / ".checkpoint.tmp").exists()
    assert _run(capsys, *argv, "--out", str(out), "--resume")[0] == 0
    assert faults.identical(out, ref) == []
