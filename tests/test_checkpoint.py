"""Checkpoint oracles: exact round trip, tied weights, atomic writes, corrupt files refused."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
import torch

import archlab.models
from archlab.data import build_tokenizer
from archlab.errors import ArchlabError
from archlab.models import create_model
from archlab.train.checkpoint import (
    has_checkpoint,
    load_training_state,
    prepare_run_dir,
    read_run_config,
    save_checkpoint,
)
from archlab.train.tasks import LMTask, is_stateful
from archlab.train.trainer import TrainConfig, Trainer

TEXT = "the quick brown fox jumps over the lazy dog; to be or not to be.\n" * 60


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny models, 1 thread


def _train(arch: str, run_dir: Path, steps: int = 6, **cfg) -> tuple[torch.nn.Module, Trainer]:
    tok = build_tokenizer("char", TEXT)
    ids = torch.tensor(tok.encode(TEXT), dtype=torch.int64)
    torch.manual_seed(0)
    extra = {"heads": 2, "block_size": 16} if arch == "gpt" else {}
    model = create_model(arch, vocab_size=tok.vocab_size, layers=1, d_model=16, **extra)
    task = LMTask(
        ids[:3000], ids[3000:], block_size=16, batch_size=4, seed=0, stateful=is_stateful(model)
    )
    meta = {"task": "lm", "model": {"name": arch, "config": dataclasses.asdict(model.config)}}
    config = TrainConfig(max_steps=steps, lr=1e-2, progress=False, log_interval=2, **cfg)
    tr = Trainer(model, task, config, run_dir=run_dir, run_meta=meta)
    tr.fit()
    return model, tr


@pytest.mark.parametrize("arch", ["gpt", "lstm"])
def test_load_rebuilds_the_trained_model(arch, tmp_path):
    model, _ = _train(arch, tmp_path / "run")
    loaded = archlab.models.load(tmp_path / "run")
    assert not loaded.training and type(loaded) is type(model)
    idx = torch.randint(0, model.config.vocab_size, (3, 16))
    model.eval()
    assert torch.equal(loaded(idx), model(idx))
    if arch == "gpt":  # tied weights are stored once and re-tied on load
        assert loaded.lm_head.weight is loaded.tok_emb.weight


def test_optimizer_state_round_trips_exactly(tmp_path):
    model, tr = _train("gpt", tmp_path / "run")
    fresh = create_model("gpt", **dataclasses.asdict(model.config))
    opt = Trainer(fresh, tr.task, tr.config).optimizer
    cfg, _ = load_training_state(tmp_path / "run", fresh, opt)
    assert cfg["step"] == 6
    a, b = tr.optimizer.state_dict(), opt.state_dict()
    assert a["param_groups"] == b["param_groups"]
    for i, st in a["state"].items():
        for k, v in st.items():
            assert torch.equal(v, b["state"][i][k]), (i, k)


def _corrupt_truncate(run: Path) -> None:
    p = run / "model.safetensors"
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _corrupt_garbage(run: Path) -> None:
    (run / "model.safetensors").write_bytes(b"\x00\x01not a safetensors file" * 10)


def _corrupt_config_json(run: Path) -> None:
    (run / "config.json").write_text('{"format": "archlab-run", "step": ')


def _corrupt_config_model(run: Path) -> None:
    cfg = json.loads((run / "config.json").read_text())
    cfg["model"]["config"]["d_model"] = 32  # weights no longer fit
    (run / "config.json").write_text(json.dumps(cfg))


def _mixed_step(run: Path) -> None:
    cfg = json.loads((run / "config.json").read_text())
    cfg["step"] = 3  # config.json from another checkpoint than the weights
    (run / "config.json").write_text(json.dumps(cfg))


def _missing_weights(run: Path) -> None:
    (run / "model.safetensors").unlink()


@pytest.mark.parametrize(
    "damage",
    [
        _corrupt_truncate,
        _corrupt_garbage,
        _corrupt_config_json,
        _corrupt_config_model,
        _mixed_step,
        _missing_weights,
    ],
)
def test_corrupt_checkpoint_is_a_one_line_error(damage, tmp_path):
    _train("gpt", tmp_path / "run", steps=2)
    damage(tmp_path / "run")
    with pytest.raises(ArchlabError) as e:
        archlab.models.load(tmp_path / "run")
    assert "\n" not in str(e.value) and str(tmp_path / "run") in str(e.value)


def _snapshot(d: Path) -> dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def test_interrupted_checkpoint_rolls_back_or_forward(tmp_path):
    """A crash before COMMIT leaves the previous checkpoint; after COMMIT the new one is what
    readers see. Readers change nothing; the writer (a resumed run) finishes or discards."""
    model, tr = _train("gpt", tmp_path / "run", steps=4)
    run = tmp_path / "run"
    old_weight = model.tok_emb.weight.detach().clone()
    # Crash mid-write (before COMMIT): half a new checkpoint sits in the temp dir.
    tmp = run / ".checkpoint.tmp"
    tmp.mkdir()
    (tmp / "model.safetensors").write_bytes(b"partial")
    before = _snapshot(run)
    assert read_run_config(run)["step"] == 4 and has_checkpoint(run)
    assert torch.equal(archlab.models.load(run).tok_emb.weight, old_weight)
    assert _snapshot(run) == before  # readers leave the directory alone
    assert prepare_run_dir(run, resume=True) and not tmp.exists()  # the writer discards it
    # Crash after COMMIT, during the moves: config.json (moved last) is still the old one.
    other = tmp_path / "other"
    other.mkdir()
    tr.step = 9
    with torch.no_grad():
        model.tok_emb.weight.add_(1.0)
    tr.run_dir = other
    tr.save()
    tmp.mkdir()
    files = ["model.safetensors", "optimizer.safetensors", "optimizer.json", "state.safetensors"]
    files.append("config.json")
    for name in files:
        shutil.copy(other / name, tmp / name)
    (tmp / "COMMIT").write_text(json.dumps({"files": files}))
    (tmp / "model.safetensors").replace(run / "model.safetensors")  # the first move happened
    before = _snapshot(run)
    assert read_run_config(run)["step"] == 9
    fresh = create_model("gpt", **dataclasses.asdict(model.config))
    assert load_training_state(run, fresh, None)[0]["step"] == 9  # every file is from step 9
    assert torch.equal(archlab.models.load(run).tok_emb.weight, model.tok_emb.weight)
    assert _snapshot(run) == before
    assert prepare_run_dir(run, resume=True) and not tmp.exists()  # the writer rolls forward
    assert json.loads((run / "config.json").read_text())["step"] == 9
    assert torch.equal(archlab.models.load(run).tok_emb.weight, model.tok_emb.weight)


def test_save_fsyncs_every_file_and_directory(tmp_path, monkeypatch):
    """After save_checkpoint returns, the files and the renames are on disk: each file and both
    directories (temp and run) are fsynced, the run dir after the last move."""
    import os

    synced: list[str] = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", spy)
    _train("gpt", tmp_path / "run", steps=1)
    run = str(tmp_path / "run")
    tmp = run + "/.checkpoint.tmp"
    for name in ("model.safetensors", "optimizer.safetensors", "state.safetensors", "config.json"):
        assert f"{tmp}/{name}" in synced, name
    assert tmp in synced and f"{tmp}/.COMMIT.tmp" in synced  # written, fsynced, renamed
    assert synced[-1] == run  # the moves are durable before the temp dir goes


def test_damaged_run_is_refused_not_restarted(tmp_path):
    """A run with weights but no config.json (or the reverse) is neither resumable nor empty:
    --resume must refuse it rather than train from scratch over what is left."""
    _train("gpt", tmp_path / "run", steps=2)
    (tmp_path / "run" / "resolved_config.json").write_text(json.dumps({"format": "archlab-run"}))
    for missing in ("config.json", "model.safetensors"):
        run = tmp_path / missing
        shutil.copytree(tmp_path / "run", run)
        (run / missing).unlink()
        before = _snapshot(run)
        with pytest.raises(ArchlabError, match="damaged checkpoint") as e:
            prepare_run_dir(run, resume=True)
        assert missing in str(e.value) and "\n" not in str(e.value)
        assert _snapshot(run) == before


def test_run_dir_never_overwrites_user_files(tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "thesis.tex").write_text("precious")
    with pytest.raises(ArchlabError, match="not an archlab run"):
        prepare_run_dir(user, resume=False)
    with pytest.raises(ArchlabError, match="not an archlab run"):
        prepare_run_dir(user, resume=True)
    assert (user / "thesis.tex").read_text() == "precious"
    _train("gpt", tmp_path / "run", steps=2)
    with pytest.raises(ArchlabError, match="--resume"):
        prepare_run_dir(tmp_path / "run", resume=False)
    assert prepare_run_dir(tmp_path / "run", resume=True) is True
    assert prepare_run_dir(tmp_path / "new" / "run", resume=False) is False
    started = tmp_path / "started"  # died before its first checkpoint
    started.mkdir()
    (started / "resolved_config.json").write_text(json.dumps({"format": "archlab-run"}))
    (started / "tokenizer.json").write_text("{}")
    with pytest.raises(ArchlabError, match="--resume"):
        prepare_run_dir(started, resume=False)
    assert prepare_run_dir(started, resume=True) is False  # ours, nothing to resume: start over
    assert (tmp_path / "new" / "run").is_dir()


def test_checkpoint_files_are_safetensors_and_json_only(tmp_path):
    """No pickle anywhere: every file parses as safetensors or JSON (or JSON lines)."""
    from safetensors.torch import load_file

    _train("lstm", tmp_path / "run", steps=3)
    save_checkpoint  # noqa: B018  (the writer under test, used by Trainer.save)
    for f in (tmp_path / "run").iterdir():
        if f.suffix == ".safetensors":
            load_file(f)
        elif f.suffix == ".json":
            json.loads(f.read_text())
        elif f.suffix == ".jsonl":
            [json.loads(x) for x in f.read_text().splitlines()]
        else:
            raise AssertionError(f"unexpected file {f.name}")
    state = load_file(tmp_path / "run" / "state.safetensors")
    assert set(state) == {"h", "c"} and state["h"].shape == (4, 1, 16)  # (B, layers, H)


class _FlatViews(torch.nn.Module):
    """Two parameters that are views of one flat buffer, as cuDNN packs an LSTM's weights on a
    GPU (``flatten_parameters``), plus a tied alias: reproduces that layout on the CPU."""

    def __init__(self):
        super().__init__()
        flat = torch.arange(12, dtype=torch.float32)
        self.a = torch.nn.Parameter(flat[:8].view(2, 4))
        self.b = torch.nn.Parameter(flat[8:])
        self.lin = torch.nn.Linear(4, 2)
        self.head = torch.nn.Linear(4, 2)
        self.head.weight = self.lin.weight  # tied: one Parameter, two names


_CFG = {"step": 3, "task": "lm", "model": {"name": "custom", "config": {}}}


def test_views_of_one_storage_save_and_tied_weights_are_stored_once(tmp_path):
    from safetensors.torch import load_file

    m = _FlatViews()
    assert m.a.untyped_storage().data_ptr() == m.b.untyped_storage().data_ptr()
    save_checkpoint(tmp_path, model=m, optimizer=None, config=_CFG)
    stored = load_file(tmp_path / "model.safetensors")
    assert set(stored) == {"a", "b", "lin.weight", "lin.bias", "head.bias"}
    fresh = _FlatViews()
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    load_training_state(tmp_path, fresh, None)
    for name, p in m.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], p), name
    assert fresh.head.weight is fresh.lin.weight


def test_tied_weights_load_from_either_name(tmp_path):
    """Older runs (safetensors' save_model) kept the alphabetically first name of a tied pair."""
    from safetensors.torch import load_file, save_file

    m = _FlatViews()
    save_checkpoint(tmp_path, model=m, optimizer=None, config=_CFG)
    t = load_file(tmp_path / "model.safetensors")
    t["head.weight"] = t.pop("lin.weight")
    save_file(t, tmp_path / "model.safetensors", metadata={"archlab_step": "3"})
    fresh = _FlatViews()
    torch.nn.init.zeros_(fresh.lin.weight)
    load_training_state(tmp_path, fresh, None)
    assert torch.equal(fresh.lin.weight, m.lin.weight) and fresh.head.weight is fresh.lin.weight
    del t["head.weight"]  # neither name: a real mismatch
    save_file(t, tmp_path / "model.safetensors", metadata={"archlab_step": "3"})
    with pytest.raises(ArchlabError, match="missing 2"):
        load_training_state(tmp_path, _FlatViews(), None)


def test_models_import_nothing_from_train():
    """Layering (data -> models -> train): ``import archlab.models`` (and its ``load``) must not
    load the Trainer, DDP or any other part of archlab.train."""
    import subprocess
    import sys

    code = (
        "import sys, archlab.models; archlab.models.load; "
        "print([m for m in sys.modules if m.startswith(('archlab.train', 'archlab.study'))])"
    )
    src = str(Path(__file__).resolve().parents[1] / "src")
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": src}
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
