"""The study's data: real text and real images on any machine, described as they are.

Images. Fashion-MNIST (Xiao et al. 2017). The full dataset is used when it is found
(``$ARCHLAB_DATA``, ``~/.cache/archlab``, Debian's ``/usr/share/datasets/fashion-mnist``) or
can be fetched (checksum-verified, progress bar, giving up after :data:`FETCH_TIMEOUT_S` without
a connection; ``--offline`` skips it); otherwise the 12,000/2,000-image subset that ships inside
the package. Both give the *same images* for the quick and standard profiles: the profiles use
the first ``n`` images of ``stratified_order`` over the official splits, which is exactly how the
embedded subset was cut (``tools/build_embedded_data.py``) — so verdicts cannot flip with the
source. The full profile uses all 60,000 / 10,000 images when the full dataset is there.

Every image (28 px) is centred on a :data:`CANVAS` px black canvas (2 px of background each
side), so C3 can shift the object by up to 2 px without cutting any of it; every model of Part 2
trains and tests on the same canvas. No augmentation: the invariance C3 measures comes from the
architectures, not from shifted training images.

Text. Tiny Shakespeare (char level, nanoGPT's 90/10 split): a local copy if there is one, else
the byte-identical embedded copy.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from archlab.errors import ArchlabError

__all__ = ["CANVAS", "FETCH_TIMEOUT_S", "StudyImages", "StudyText", "load_images", "load_text"]

log = logging.getLogger(__name__)
CANVAS = 32  # px: 28 px images with 2 px of background on each side
FETCH_TIMEOUT_S = 5.0
SUBSET = (12_000, 2_000)  # what ships inside the package (train, test)


@dataclass(frozen=True)
class StudyImages:
    """uint8 images on the canvas (N, 1, CANVAS, CANVAS), int64 labels, in stratified order."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    mean: float  # of the training canvases, in pixel/255 units
    std: float
    classes: tuple[str, ...]
    desc: dict[str, Any]

    def train(self, n: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` training images (class-balanced ±1 for every n; all when None)."""
        k = len(self.train_y) if n is None else min(n, len(self.train_y))
        return self.train_x[:k], self.train_y[:k]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() / 255 - self.mean) / self.std


def _canvas(x: torch.Tensor) -> torch.Tensor:
    pad = (CANVAS - x.shape[-1]) // 2
    return F.pad(x, (pad, pad, pad, pad))  # zeros: Fashion-MNIST's background is black


def _full_dataset(offline: bool):
    """The full Fashion-MNIST if present or fetchable, else None (with the reason)."""
    from archlab.data import load_image_dataset
    from archlab.data.paths import get_spec, locate

    spec = get_spec("fashion-mnist")
    if locate(spec) is None:
        if offline:
            return None, "full Fashion-MNIST not found locally and --offline is set"
        from archlab.data.download import _urls, ensure_dataset

        urls = [u for r in spec.remotes for u in _urls(spec, r, None)]
        if not _reachable(urls, FETCH_TIMEOUT_S):
            return None, (
                f"full Fashion-MNIST not found locally and its servers were not reachable within "
                f"{FETCH_TIMEOUT_S:g} s"
            )
        try:
            ensure_dataset("fashion-mnist", timeout=FETCH_TIMEOUT_S, progress=True)
        except ArchlabError as e:
            reason = str(e).split(";")[0]
            return None, f"full Fashion-MNIST not found and could not be fetched ({reason})"
    return load_image_dataset("fashion-mnist", val_size=0, download=False), None


def _reachable(urls: list[str], budget_s: float) -> bool:
    """Whether a TCP connection to any of the ``urls``' hosts opens within ``budget_s`` in all."""
    import socket
    import time
    from urllib.parse import urlsplit

    deadline = time.monotonic() + budget_s
    for host, port in dict.fromkeys(
        (u.hostname, u.port or (443 if u.scheme == "https" else 80)) for u in map(urlsplit, urls)
    ):
        left = deadline - time.monotonic()
        if left <= 0 or host is None:
            return False
        try:
            socket.create_connection((host, port), timeout=left).close()
            return True
        except OSError:
            continue
    return False


@functools.lru_cache(maxsize=4)
def load_images(profile: str, offline: bool = False) -> StudyImages:
    """The study's images for ``profile`` (module doc): quick/standard/tiny use the stratified
    12,000/2,000 images whatever the source; full uses every image of the full dataset."""
    from archlab.data import load_image_dataset
    from archlab.data.images import FASHION_MNIST_CLASSES, stratified_order

    full, why = _full_dataset(offline)
    if full is not None:
        if profile == "full":
            tr, te = stratified_order(full.train_y), stratified_order(full.test_y)
        else:
            tr, te = (
                stratified_order(full.train_y)[: SUBSET[0]],
                stratified_order(full.test_y)[: SUBSET[1]],
            )
        trx, try_, tex, tey = full.train_x[tr], full.train_y[tr], full.test_x[te], full.test_y[te]
        home = str(Path.home())
        files = [s.replace(home, "~") for s in full.sources]
        source = f"Fashion-MNIST, full dataset ({Path(files[0]).parent})"
    else:
        sub = load_image_dataset("fashion-mnist-subset", val_size=0, download=False)
        trx, try_, tex, tey = sub.train_x, sub.train_y, sub.test_x, sub.test_y
        source = "Fashion-MNIST subset embedded in archlab (12,000 train / 2,000 test)"
        files = ["archlab/data/embedded/fashion-mnist-subset/*.xz"]
    trx, tex = _canvas(trx), _canvas(tex)
    v = trx.float() / 255
    mean, std = float(v.mean()), float(v.std())
    desc = {
        "source": source,
        "name": "Fashion-MNIST",
        "files": files,
        "note": why,
        "train": int(len(try_)),
        "test": int(len(tey)),
        "resolution": 28,
        "canvas": CANVAS,
        "selection": "first n of stratified_order over the official train/test splits "
        "(class-balanced; the embedded subset holds exactly these images for n <= 12,000)",
        "normalization": {"mean": round(mean, 6), "std": round(std, 6)},
    }
    return StudyImages(trx, try_, tex, tey, mean, std, FASHION_MNIST_CLASSES, desc)


@dataclass(frozen=True)
class StudyText:
    streams: Any  # archlab.data.TokenStreams (char level)
    desc: dict[str, Any]

    @property
    def vocab(self) -> int:
        return self.streams.tokenizer.vocab_size


@functools.lru_cache(maxsize=1)
def load_text() -> StudyText:
    """Tiny Shakespeare, char tokenizer (as ``archlab train lm --tokenizer char``)."""
    from archlab.data import encode_corpus, fit_tokenizer, resolve_corpus

    corpus, _ = resolve_corpus("tinyshakespeare", download=False)
    streams = encode_corpus(corpus, fit_tokenizer("char", corpus))
    home = str(Path.home())
    embedded = "embedded" in corpus.sources[0]
    desc = {
        "source": "Tiny Shakespeare ("
        + ("the copy embedded in archlab" if embedded else corpus.sources[0].replace(home, "~"))
        + ")",
        "name": "Tiny Shakespeare",
        "files": [s.replace(home, "~") for s in corpus.sources],
        "level": "char",
        "vocab": streams.tokenizer.vocab_size,
        "train_chars": int(streams.train.numel()),
        "val_chars": int(streams.val.numel()),
        "split": corpus.split,
    }
    return StudyText(streams, desc)
