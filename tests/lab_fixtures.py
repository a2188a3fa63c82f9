"""Shared helpers of the lab tests: the six default runs trained once per test process on a tiny
budget (the real first-start path, seconds instead of minutes), in-memory LabModels built from
untrained tiny models (for exact oracles), and a study folder made from the golden report."""

from __future__ import annotations

import functools
import shutil
import tempfile
from pathlib import Path

import torch

from archlab.data.tokenizers import CharTokenizer
from archlab.lab.defaults import train_defaults
from archlab.lab.models import LabModel, load_models
from archlab.models import create_model
from archlab.train.inference import Run

REPO = Path(__file__).resolve().parents[1]
GOLDEN = REPO / "tests" / "golden"
TEXT = "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer\n"
TINY_LM = {
    "gpt": dict(block_size=16, layers=2, heads=2, d_model=16),
    "rnn": dict(d_model=8, hidden_size=12, layers=1, dropout=0.0),
    "lstm": dict(d_model=8, hidden_size=12, layers=2, dropout=0.0),
    "gru": dict(d_model=8, hidden_size=12, layers=1, dropout=0.0),
}


@functools.lru_cache(maxsize=1)
def trained_runs() -> tuple[Path, list[Path]]:
    """(models dir, the six default run dirs), trained through train_defaults on a 3 s budget
    (one thread: the test machine is shared, and two threads on one free core crawl)."""
    root = Path(tempfile.mkdtemp(prefix="archlab-lab-runs-"))
    return root, train_defaults(root, seconds=3.0, threads=1)


@functools.lru_cache(maxsize=1)
def trained_models() -> tuple[LabModel, ...]:
    return tuple(load_models(trained_runs()[1]))


def tiny_lm(arch: str, seed: int = 0, **overrides) -> LabModel:
    """An untrained LM on a char tokenizer fitted to TEXT, as the lab would have loaded it."""
    tok = CharTokenizer.fit(TEXT)
    torch.manual_seed(seed)
    cfg = {**TINY_LM[arch], "vocab_size": tok.vocab_size, **overrides}
    model = create_model(arch, **cfg).eval()
    config = {
        "task": "lm",
        "model": {"name": arch, "config": cfg},
        "spec": {"block_size": cfg.get("block_size", 64)},
    }
    return LabModel(arch, Run(Path("."), config, model, tok))


def tiny_image(arch: str, seed: int = 0, **overrides) -> LabModel:
    """An untrained 1 x 28 x 28 classifier with Fashion-MNIST's class names."""
    names = "T-shirt/top,Trouser,Pullover,Dress,Coat,Sandal,Shirt,Sneaker,Bag,Ankle boot".split(",")
    torch.manual_seed(seed)
    model = create_model(arch, **overrides).eval()
    config = {
        "task": "image",
        "model": {"name": arch, "config": overrides},
        "data": {
            "shape": [1, 28, 28],
            "class_names": names,
            "normalization": {"mean": [0.286], "std": [0.353]},
        },
    }
    return LabModel(arch, Run(Path("."), config, model))


def study_dir(tmp: Path) -> Path:
    """A study folder with the golden report.html and results.json."""
    d = tmp / "study"
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy(GOLDEN / "report.html", d / "report.html")
    shutil.copy(GOLDEN / "study_results.json", d / "results.json")
    return d
