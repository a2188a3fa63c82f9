"""Data that ships inside the package, so the study and the lab run on real data offline.

* ``fashion-mnist-subset``: 12,000 train + 2,000 test Fashion-MNIST images (MIT, Zalando SE), the
  first images of ``stratified_order`` over the official splits, stored in that order — so the
  first ``n`` images are class-balanced and equal the full dataset's first ``n`` for n ≤ 12,000.
* ``tinyshakespeare``: char-rnn's ``input.txt``, byte for byte.

``tools/build_embedded_data.py`` rebuilds these files from the originals; ``MANIFEST.json`` holds
the sha256 of every file's decompressed bytes, checked on every read. Licences: ``LICENSES.md``.
"""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from archlab.errors import ArchlabError

__all__ = ["EMBEDDED_DIR", "manifest", "read_embedded", "tinyshakespeare_text"]

EMBEDDED_DIR = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=1)
def manifest() -> dict:
    try:
        return json.loads((EMBEDDED_DIR / "MANIFEST.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ArchlabError(f"the package's embedded data manifest is unreadable ({e})") from None


def read_embedded(dataset: str, filename: str) -> bytes:
    """Decompressed bytes of ``<dataset>/<filename>``, checked against the manifest's sha256."""
    from archlab.data.image_formats import read_compressed

    try:
        want = manifest()[dataset]["files"][filename]["sha256_decompressed"]
    except KeyError:
        raise ArchlabError(f"no embedded file {dataset}/{filename}") from None
    path = EMBEDDED_DIR / dataset / filename
    data = read_compressed(path)
    got = hashlib.sha256(data).hexdigest()
    if got != want:
        raise ArchlabError(
            f"{path}: sha256 {got[:12]}… is not the manifest's {want[:12]}… (a damaged install; "
            "reinstall archlab)"
        )
    return data


def tinyshakespeare_text() -> str:
    """Tiny Shakespeare as ``read_text`` returns it (UTF-8, universal newlines)."""
    text = read_embedded("tinyshakespeare", "input.txt.xz").decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n")
