"""Using a trained run: evaluate it, predict the next token, generate text, classify an image.

Everything is rebuilt from the run directory alone (config.json, model.safetensors,
tokenizer.json); these are what ``archlab eval|predict|generate|classify`` call.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import ArchlabError
from archlab.models.layers import check_sampling
from archlab.train.checkpoint import load_model, read_run_config
from archlab.train.tasks import classify_batches, evaluate_lm, is_stateful, normalize_images

__all__ = [
    "Run",
    "classify_image",
    "evaluate_run",
    "generate_text",
    "load_run",
    "predict_next",
    "save_confusion_png",
]


@dataclass
class Run:
    """A trained run: its directory, config.json, model (eval mode) and tokenizer (LM runs)."""

    path: Path
    config: dict[str, Any]
    model: nn.Module
    tokenizer: Any = None

    @property
    def task(self) -> str:
        return str(self.config["task"])


def load_run(run_dir: str | os.PathLike, device: str = "cpu") -> Run:
    p = Path(run_dir)
    cfg = read_run_config(p)
    model = load_model(p, device)
    tok = None
    if cfg["task"] == "lm":
        from archlab.data import load_tokenizer

        if not (p / "tokenizer.json").exists():
            raise ArchlabError(f"{p / 'tokenizer.json'} is missing: incomplete run directory")
        tok = load_tokenizer(p / "tokenizer.json")
    return Run(p, cfg, model, tok)


def _require(run: Run, task: str, what: str) -> None:
    if run.task != task:
        kinds = {"lm": "a language-model", "image": "an image"}
        kind = kinds.get(run.task, f"a {run.task!r}")  # "study": a model the study trained
        raise ArchlabError(f"{run.path} is {kind} run; {what} needs {kinds[task]} run")


# ---------------------------------------------------------------------------- evaluation
def evaluate_run(
    run: Run, split: str = "val", *, stride: int | None = None, batch_size: int = 32
) -> dict[str, Any]:
    """Full-pass metrics on ``split``; writes ``confusion_<split>.png`` for image runs."""
    if split not in ("val", "test"):
        raise ArchlabError(f"unknown split {split!r}; use val or test")
    if run.task == "lm":
        return _evaluate_lm_run(run, split, stride, batch_size)
    return _evaluate_image_run(run, split)


def _evaluate_lm_run(run: Run, split: str, stride: int | None, batch_size: int) -> dict[str, Any]:
    from archlab.data import load_corpus

    spec = run.config["spec"]
    corpus = load_corpus(run.config["data"]["corpus"] or "pydoc")
    data = torch.tensor(run.tokenizer.encode(corpus.text(split)), dtype=torch.int64)  # (N,)
    T, stateful = int(spec["block_size"]), is_stateful(run.model)
    if stride is None:
        stride = max(1, T // 2)  # every target after the first window sees >= T/2 + 1 tokens
    if not stateful and not 1 <= stride <= T:
        raise ArchlabError(f"stride must be in 1..{T} (the window), got {stride}")
    res = evaluate_lm(
        run.model, data, block_size=T, stateful=stateful, stride=stride, batch_size=batch_size
    )
    return {**res, "split": split, "corpus": corpus.name}


def _evaluate_image_run(run: Run, split: str) -> dict[str, Any]:
    from archlab.data import load_image_dataset

    spec, data = run.config["spec"], run.config["data"]
    ds = load_image_dataset(spec["data"], val_size=spec["val_size"], train_size=spec["train_size"])
    x, y = ds.split(split)
    norm = data["normalization"]
    logits = classify_batches(run.model, x, norm["mean"], norm["std"])  # (N, K)
    pred = logits.argmax(-1)  # (N,)
    names = list(data["class_names"])
    k = len(names)
    conf = torch.bincount(y * k + pred, minlength=k * k).view(k, k)  # (true, predicted)
    per_class = {
        n: float(conf[i, i] / conf[i].sum()) if conf[i].sum() else None for i, n in enumerate(names)
    }
    png = run.path / f"confusion_{split}.png"
    save_confusion_png(
        conf, names, png, title=f"{run.config['model']['name']} on {ds.name} ({split})"
    )
    return {
        "accuracy": float((pred == y).float().mean()),
        "loss": float(F.cross_entropy(logits, y)),
        "per_class": per_class,
        "examples": int(y.numel()),
        "confusion": conf.tolist(),
        "confusion_png": str(png),
        "split": split,
        "dataset": ds.name,
    }


def save_confusion_png(conf: torch.Tensor, names: list[str], path: Path, title: str = "") -> None:
    """Row-normalized confusion matrix (rows: true class) as a PNG, written atomically.

    Drawn on a ``matplotlib.figure.Figure`` with its own Agg canvas: no pyplot, and the global
    backend (a notebook's inline one, say) is never touched.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rates = (conf.double() / conf.sum(1, keepdim=True).clamp_min(1)).numpy()
    fig = Figure(figsize=(1.0 + 0.6 * len(names), 1.0 + 0.55 * len(names)))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(len(names)):
        for j in range(len(names)):
            color = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, int(conf[i, j]), ha="center", va="center", fontsize=7, color=color)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.replace(tmp, path)
    except OSError as e:
        raise ArchlabError(f"cannot write {path}: {e.strerror or e}") from None


# ---------------------------------------------------------------------------- language models
def _encode_prompt(run: Run, text: str) -> torch.Tensor:
    ids = run.tokenizer.encode(text)
    if not ids:
        raise ArchlabError("the prompt is empty after tokenization; give at least one token")
    return torch.tensor([ids], dtype=torch.int64)  # (1, T)


@torch.no_grad()
def predict_next(run: Run, text: str, top_k: int = 5) -> list[dict[str, Any]]:
    """The ``top_k`` most likely next tokens after ``text`` with their probabilities."""
    _require(run, "lm", "predict")
    if top_k < 1:
        raise ArchlabError(f"top-k must be >= 1, got {top_k}")
    idx = _encode_prompt(run, text)
    if not is_stateful(run.model):
        idx = idx[:, -int(run.config["spec"]["block_size"]) :]  # the GPT's context window
    logits = run.model(idx)  # (1, T, V); an RNN reads the whole prompt from a zero state
    probs = F.softmax(logits[0, -1].float(), dim=-1)  # (V,)
    p, i = torch.topk(probs, min(top_k, probs.numel()))
    return [
        {"token": run.tokenizer.token(int(j)), "prob": float(q)} for q, j in zip(p, i, strict=True)
    ]


@torch.no_grad()
def generate_text(
    run: Run,
    prompt: str,
    max_new_tokens: int = 200,
    temperature: float = 1.0,
    top_k: int | None = None,
    seed: int | None = None,
) -> str:
    """Prompt + ``max_new_tokens`` sampled tokens, decoded (the model's own ``generate``)."""
    _require(run, "lm", "generate")
    if max_new_tokens < 0:
        raise ArchlabError(f"max-new-tokens must be >= 0, got {max_new_tokens}")
    check_sampling(temperature, top_k)  # before the first token, not inside the model's loop
    if seed is not None and not -(2**63) <= seed < 2**64:  # what torch.Generator takes
        raise ArchlabError(f"seed must be in [-2**63, 2**64), got {seed}")
    idx = _encode_prompt(run, prompt or "\n")
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    out = run.model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k, generator=g)
    return run.tokenizer.decode(out[0].tolist())


# ---------------------------------------------------------------------------- images
@torch.no_grad()
def classify_image(run: Run, path: str | os.PathLike, top_k: int = 3) -> list[dict[str, Any]]:
    """The ``top_k`` most likely classes of the image at ``path`` with their probabilities."""
    _require(run, "image", "classify")
    if top_k < 1:
        raise ArchlabError(f"top-k must be >= 1, got {top_k}")
    data = run.config["data"]
    c, size = int(data["shape"][0]), int(data["shape"][-1])
    from archlab.data import load_image_file

    x = torch.tensor(load_image_file(Path(path), c, size))[None]  # (1, C, H, W) uint8
    norm = data["normalization"]
    device = next(run.model.parameters()).device
    logits = run.model(normalize_images(x.to(device), norm["mean"], norm["std"]))  # (1, K)
    probs = F.softmax(logits[0].float(), dim=-1)  # (K,)
    p, i = torch.topk(probs, min(top_k, probs.numel()))
    names = data["class_names"]
    return [{"label": names[int(j)], "prob": float(q)} for q, j in zip(p, i, strict=True)]
