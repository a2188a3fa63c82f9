"""Capability probe and the choices made from it, tested on both branches on any CPU.

Each decision (precision auto, attention kernel, fp32 recurrent core) is exercised with the probe
forced both ways (``set_capabilities`` in-process; a cache file under a fresh HOME for the CLI), so
a CI machine with AVX-512 BF16 and one with AVX2 only test the same code paths. Where a branch
needs hardware this CPU lacks (a real bf16 LSTM kernel) the test skips and says why.
"""

from __future__ import annotations

import json
import time

import pytest
import torch

from archlab import hardware
from archlab.hardware import Capabilities, set_capabilities

FAST = Capabilities("cpu", "test cpu (bf16 fast)", ("avx512_bf16",), 100.0, 400.0, True, 0.1)
SLOW = Capabilities("cpu", "test cpu (AVX2 only)", ("avx2",), 100.0, 1.0, False, 0.1)


@pytest.fixture(autouse=True)
def _forget():
    set_capabilities(None)
    yield
    set_capabilities(None)


def _native_bf16_rnn() -> bool:
    try:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.LSTM(4, 4)(torch.randn(2, 1, 4))
        return True
    except RuntimeError:
        return False


def test_probe_is_fast_cached_and_recovers_from_a_damaged_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    t = time.perf_counter()
    caps = hardware.capabilities()
    assert caps.source == "measured" and caps.probe_s < 1.0, caps
    assert time.perf_counter() - t < 2.0
    assert caps.fp32_gflops > 0 and caps.bf16_rnn == _native_bf16_rnn()
    path = hardware.cache_path()
    assert path.is_file() and path.is_relative_to(tmp_path / ".cache" / "archlab")
    set_capabilities(None)
    again = hardware.capabilities()
    assert again.source == "cache" and again.fp32_gflops == caps.fp32_gflops
    for junk in ("not json", "[1, 2]", '{"device": "cpu"}'):
        path.write_text(junk)
        set_capabilities(None)
        assert hardware.capabilities().source == "measured"  # re-measured, no traceback


def test_auto_precision_follows_the_measured_speed():
    set_capabilities(FAST)
    assert hardware.resolve_precision("auto")[0] == "bf16"
    set_capabilities(SLOW)
    precision, why = hardware.resolve_precision("auto")
    assert precision == "fp32" and "0.01x" in why
    for asked in ("fp32", "bf16"):  # an explicit request is honoured on either machine
        assert hardware.resolve_precision(asked) == (asked, "requested")
    with pytest.raises(ValueError, match="precision"):
        hardware.resolve_precision("fp8")


def test_attention_kernel_follows_the_measured_speed():
    from archlab.models.layers import attention

    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 16, 8, generator=g) for _ in range(3))
    ref = attention(q, k, v, is_causal=True)
    for caps, path in ((FAST, "explicit"), (SLOW, "sdpa")):
        set_capabilities(caps)
        assert hardware.attention_path(torch.bfloat16, "cpu") == path
        assert hardware.attention_path(torch.float32, "cpu") == "sdpa"
        out = attention(q.bfloat16(), k.bfloat16(), v.bfloat16(), is_causal=True)
        assert out.dtype == torch.bfloat16
        assert (out.float() - ref).abs().max() < 0.05  # bf16 rounding, either kernel


def _rnn_core_output(model, idx):
    seen = {}
    h = model.rnn.register_forward_hook(lambda m, i, o: seen.setdefault("out", o[0]))
    try:
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            model(idx)
    finally:
        h.remove()
    return seen["out"]


def test_recurrent_core_stays_fp32_without_a_bf16_kernel():
    """Forced 'no bf16 RNN kernel': under bf16 autocast the LSTM core runs in fp32 and gives
    exactly the fp32 model's recurrent outputs; the decoder still follows autocast."""
    from archlab.models import create_model

    set_capabilities(SLOW)
    torch.manual_seed(0)
    model = create_model("lstm", vocab_size=11, d_model=8, layers=2, dropout=0.0).eval()
    idx = torch.randint(11, (2, 5))
    with torch.no_grad():
        ref, _ = model.rnn(model.embed(idx))
    out = _rnn_core_output(model, idx)
    assert out.dtype == torch.float32 and torch.equal(out, ref)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(idx).dtype == torch.bfloat16


@pytest.mark.skipif(
    not _native_bf16_rnn(),
    reason="this CPU has no bf16 LSTM kernel (oneDNN "
    "needs AVX-512); the fp32-core branch is tested above",
)
def test_recurrent_core_runs_in_bf16_where_the_kernel_exists():
    from archlab.models import create_model

    set_capabilities(FAST)
    model = create_model("lstm", vocab_size=11, d_model=8, layers=1, dropout=0.0).eval()
    assert _rnn_core_output(model, torch.randint(11, (2, 5))).dtype == torch.bfloat16


def test_physical_cores_counts_cores_not_hyperthreads(monkeypatch):
    info = []
    for proc, core in ((0, 0), (1, 1), (2, 0), (3, 1)):  # 4 logical CPUs on 2 cores
        info += [f"processor\t: {proc}", "physical id\t: 0", f"core id\t\t: {core}", ""]
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: info)
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda _: {0, 1, 2, 3}, raising=False)
    assert hardware.physical_cores() == 2
    monkeypatch.setattr(hardware.os, "sched_getaffinity", lambda _: {0, 2}, raising=False)
    assert hardware.physical_cores() == 1  # two hyper-threads of one core
    monkeypatch.setattr(hardware, "_cpuinfo", lambda: [])
    assert hardware.physical_cores() == 2  # no cpuinfo: the usable CPUs
    assert hardware.resolve_threads(3) == 3


TINY_LM = [
    "--layers",
    "1",
    "--heads",
    "1",
    "--d-model",
    "8",
    "--block-size",
    "8",
    "--max-steps",
    "2",
    "--no-progress",
]


@pytest.mark.parametrize("caps", [FAST, SLOW], ids=["bf16-fast", "bf16-slow"])
def test_cli_precision_auto_follows_the_probe(caps, cli, tmp_path, monkeypatch):
    """Through the real CLI with the probe forced by its cache file: auto -> bf16 or fp32,
    recorded with the request beside it; threads default to the physical cores."""
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    path = hardware.cache_path("cpu")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(caps.to_dict()))
    corpus = tmp_path / "t.txt"
    corpus.write_text("abcdefgh " * 200)
    run = tmp_path / "run"
    r = cli(
        "train",
        "lm",
        "--arch",
        "gpt",
        "--data",
        str(corpus),
        *TINY_LM,
        "--out",
        str(run),
        env={"HOME": str(home)},
    )
    assert r.returncode == 0, r.stderr
    rc = json.loads((run / "resolved_config.json").read_text())
    want = "bf16" if caps is FAST else "fp32"
    assert rc["train"]["precision"] == want and rc["requested"]["precision"] == "auto"
    assert rc["hardware"]["capabilities"]["name"] == caps.name
    assert rc["train"]["threads"] == hardware.physical_cores()
    assert rc["origins"]["train.precision"] == "default"


def test_cli_explicit_bf16_lstm_runs_on_any_cpu(cli, tmp_path):
    """`--precision bf16` for an LSTM on a CPU without oneDNN's bf16 LSTM keeps the recurrent core
    in fp32 (recorded) instead of dying in oneDNN."""
    corpus = tmp_path / "t.txt"
    corpus.write_text("abcdefgh " * 200)
    run = tmp_path / "run"
    r = cli(
        "train",
        "lm",
        "--arch",
        "lstm",
        "--data",
        str(corpus),
        "--layers",
        "1",
        "--d-model",
        "8",
        "--block-size",
        "8",
        "--max-steps",
        "2",
        "--precision",
        "bf16",
        "--no-progress",
        "--out",
        str(run),
    )
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    rc = json.loads((run / "resolved_config.json").read_text())
    assert rc["train"]["precision"] == "bf16"
    assert rc["hardware"]["bf16_rnn_kernel"] == _native_bf16_rnn()
    if not _native_bf16_rnn():
        assert "fp32" in rc["hardware"]["note"]
