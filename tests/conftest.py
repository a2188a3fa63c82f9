"""Shared test fixtures. Tests run on the CPU with tiny models; GPU tests are marked `gpu`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# The read-only data beside the checkout (tests that need it skip when it is absent).
SHARED_DATA = REPO.parent / "shared" / "data"

torch.set_num_threads(min(2, os.cpu_count() or 1))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "tinyshakespeare" / "input.txt").exists():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run `python -m archlab ARGS` in a subprocess; returns CompletedProcess (text)."""
    e = {**os.environ, "PYTHONPATH": str(REPO / "src"), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "archlab", *args],
        capture_output=True,
        text=True,
        env=e,
        cwd=cwd,
        timeout=600,
    )


@pytest.fixture
def cli():
    return run_cli


@pytest.fixture
def main_cli(capsys):
    """``archlab ARGS`` in this process: ``main_cli(*args)`` -> CompletedProcess-like (returncode,
    stdout, stderr); argparse's errors exit through SystemExit(2), caught here."""
    from archlab.cli import main

    def call(*args: str) -> subprocess.CompletedProcess:
        capsys.readouterr()
        try:
            rc = main(list(args))
        except SystemExit as e:
            rc = e.code
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(list(args), rc, out, err)

    return call


@pytest.fixture
def one_thread():
    """Tiny models run fastest on one thread (and the CI machine is shared); restored after.
    Modules that want it for every test say
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
