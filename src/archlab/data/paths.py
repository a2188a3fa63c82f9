"""Where archlab looks for data, and what each named dataset consists of.

Search order for a dataset folder ``<root>/<folder>/``:

1. ``$ARCHLAB_DATA`` (if set),
2. ``~/.cache/archlab``,
3. dataset-specific system folders that hold the files directly (Fashion-MNIST:
   ``/usr/share/datasets/fashion-mnist``, the Debian package ``dataset-fashion-mnist``).

A folder counts as found only when *every* required file is there (IDX files may be gzipped or not).
Downloads go to the first *writable* root: ``$ARCHLAB_DATA`` if it is set, is a directory and is
writable (by its permission bits, even for root), else ``~/.cache/archlab`` (created on demand).
So ``ARCHLAB_DATA=../shared/data`` (read-only) still reads from there but would cache new
downloads under ``~/.cache/archlab``.

Checksums (see ``shared/data/SOURCES.md`` for provenance):

* ``sha256`` / ``md5``: of the bytes as downloaded (md5 only where the publisher gives nothing else:
  CIFAR-10's archive, MNIST's .gz files as listed by torchvision for the ossci mirror),
* ``content_sha256``: of the gzip-*decompressed* file (Fashion-MNIST: .gz bytes differ by mirror,
  the decompressed IDX files do not). Local files are re-checked against ``sha256`` (plain
  files) and ``content_sha256`` when loaded; archive/.gz-byte hashes are checked only at download.

What that verifies per dataset: Tiny Shakespeare and WikiText-2 — sha256 of each file, at download
and at every load. Fashion-MNIST — sha256 of the decompressed IDX files, at download and load.
MNIST — the md5 of the ossci mirror's .gz files at download (torchvision's published list); no
decompressed checksum is published, so a local MNIST is checked only structurally at load (IDX
magic, sizes, 28×28, labels 0..9). CIFAR-10 — the published md5 of ``cifar-10-binary.tar.gz`` at
download; locally, record size (3073 bytes), labels 0..9 and 10 class names.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "RemoteFile",
    "candidate_dirs",
    "data_roots",
    "describe_sources",
    "download_root",
    "find_file",
    "get_spec",
    "locate",
]


@dataclass(frozen=True)
class RemoteFile:
    """One file to fetch: ``filename`` inside the dataset folder, tried from each URL in turn."""

    filename: str
    urls: tuple[str, ...]
    sha256: str | None = None  # of the downloaded bytes
    md5: str | None = None  # of the downloaded bytes (only where that is all that is published)
    content_sha256: str | None = None  # of the gzip-decompressed bytes
    extract: tuple[str, ...] = ()  # a .tar.gz: members to extract (paths inside the archive)


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: its folder under a data root, required files and where to fetch them."""

    name: str
    folder: str
    files: tuple[str, ...]  # required, relative to the dataset folder
    remotes: tuple[RemoteFile, ...]
    system_dirs: tuple[str, ...] = ()  # folders that hold ``files`` directly
    gz_optional: bool = False  # ``x.gz`` may also be present uncompressed as ``x``

    def sha256_of(self, filename: str) -> str | None:
        """Known sha256 of a local file's *content* (decompressed for .gz), or None."""
        base = filename[:-3] if filename.endswith(".gz") else filename
        for r in self.remotes:
            rbase = r.filename[:-3] if r.filename.endswith(".gz") else r.filename
            if rbase == base:
                return r.content_sha256 if r.filename.endswith(".gz") else r.sha256
        return None


_CHARRNN = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/"
_PTEX = (
    "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/"
)
_FMNIST = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
# MNIST: the mirror torchvision uses first (yann.lecun.com now often refuses downloads).
_MNIST = ("https://ossci-datasets.s3.amazonaws.com/mnist/",)
_CIFAR = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"

_IDX = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)
_FMNIST_SHA = (  # decompressed IDX content, from shared/data/SOURCES.md
    "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
)
_MNIST_MD5 = (  # of the .gz bytes, as listed by torchvision.datasets.MNIST.resources
    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "d53e105ee54ea40749a09fcbcd1e9432",
    "9fb629c4189551a2d022fa330f9573f3",
    "ec29112dd5afa0611ce80d1b7f02629c",
)
_CIFAR_BIN = tuple(f"data_batch_{i}.bin" for i in range(1, 6)) + ("test_batch.bin",)
_CIFAR_FILES = tuple(f"cifar-10-batches-bin/{f}" for f in (*_CIFAR_BIN, "batches.meta.txt"))

DATASETS: dict[str, DatasetSpec] = {
    "tinyshakespeare": DatasetSpec(
        "tinyshakespeare",
        "tinyshakespeare",
        ("input.txt",),
        (
            RemoteFile(
                "input.txt",
                (_CHARRNN + "input.txt",),
                sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
            ),
        ),
    ),
    "wikitext2": DatasetSpec(
        "wikitext2",
        "wikitext-2",
        ("train.txt", "valid.txt", "test.txt"),
        tuple(
            RemoteFile(f, (_PTEX + f,), sha256=s)
            for f, s in (
                ("train.txt", "9e9fa1ad55b1c2c95b08e37dd8e653f638fac2c6de904b79e813611eefbc985f"),
                ("valid.txt", "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"),
                ("test.txt", "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"),
            )
        ),
    ),
    "fashion-mnist": DatasetSpec(
        "fashion-mnist",
        "fashion-mnist",
        _IDX,
        tuple(
            RemoteFile(f, tuple(u + f for u in _FMNIST), content_sha256=s)
            for f, s in zip(_IDX, _FMNIST_SHA, strict=True)
        ),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        gz_optional=True,
    ),
    "mnist": DatasetSpec(
        "mnist",
        "mnist",
        _IDX,
        tuple(
            RemoteFile(f, tuple(u + f for u in _MNIST), md5=m)
            for f, m in zip(_IDX, _MNIST_MD5, strict=True)
        ),
        gz_optional=True,
    ),
    "cifar10": DatasetSpec(
        "cifar10",
        "cifar10",
        _CIFAR_FILES,
        (
            RemoteFile(
                "cifar-10-binary.tar.gz",
                (_CIFAR,),
                md5="c32a1d4ab5d03f1284b67883e8d87530",
                extract=_CIFAR_FILES,
            ),
        ),
    ),
}


def get_spec(name: str) -> DatasetSpec:
    from archlab.errors import ArchlabError

    try:
        return DATASETS[name]
    except KeyError:
        raise ArchlabError(
            f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}"
        ) from None


def data_roots() -> list[Path]:
    """The data roots in search order: ``$ARCHLAB_DATA`` (if set), then ``~/.cache/archlab``."""
    roots: list[Path] = []
    env = os.environ.get("ARCHLAB_DATA")
    if env:
        roots.append(Path(env).expanduser())
    roots.append(Path.home() / ".cache" / "archlab")
    return roots


def download_root() -> Path:
    """Where downloads go: ``$ARCHLAB_DATA`` if it is a writable directory, else the user cache."""
    env = os.environ.get("ARCHLAB_DATA")
    if env:
        p = Path(env).expanduser()
        # Permission bits are honoured even for root (who passes os.access): a folder marked
        # read-only, like a shared data checkout, is never written to.
        writable = p.is_dir() and p.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
        if writable and os.access(p, os.W_OK | os.X_OK):
            return p
    return Path.home() / ".cache" / "archlab"


def find_file(folder: Path, filename: str, gz_optional: bool = False) -> Path | None:
    """``folder/filename`` if it exists, else (for ``x.gz`` with ``gz_optional``) ``folder/x``."""
    p = folder / filename
    if p.is_file():
        return p
    if gz_optional and filename.endswith(".gz"):
        q = folder / filename[:-3]
        if q.is_file():
            return q
    return None


def candidate_dirs(spec: DatasetSpec) -> list[Path]:
    """Every folder searched for ``spec``, in order."""
    return [r / spec.folder for r in data_roots()] + [Path(d) for d in spec.system_dirs]


def locate(spec: DatasetSpec) -> Path | None:
    """The first searched folder that holds every required file of ``spec``, or None."""
    for d in candidate_dirs(spec):
        if all(find_file(d, f, spec.gz_optional) for f in spec.files):
            return d
    return None


def describe_sources() -> dict[str, dict[str, object]]:
    """Where each dataset would be read from right now (nothing is loaded or downloaded).

    ``{name: {"status": "found" | "missing" | "builtin", "folder": str | None, "files": [...],
    "searched": [...]}}`` — for reports that must say which data a result came from.
    """
    out: dict[str, dict[str, object]] = {}
    for name, spec in DATASETS.items():
        folder = locate(spec)
        files = [str(find_file(folder, f, spec.gz_optional)) for f in spec.files] if folder else []
        out[name] = {
            "status": "found" if folder else "missing",
            "folder": str(folder) if folder else None,
            "files": files,
            "searched": [str(d) for d in candidate_dirs(spec)],
        }
    out["pydoc"] = {"status": "builtin", "folder": None, "files": ["stdlib pydoc_data.topics"]}
    from archlab.data.embedded import EMBEDDED_DIR

    sub = EMBEDDED_DIR / "fashion-mnist-subset"
    out["fashion-mnist-subset"] = {"status": "builtin", "folder": str(sub), "files": []}
    return out
