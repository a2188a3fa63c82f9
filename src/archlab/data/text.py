"""Text corpora with fixed, documented splits.

Named corpora (folders found/downloaded by :mod:`archlab.data.download`):

* ``tinyshakespeare`` — ``<root>/tinyshakespeare/input.txt`` (1,115,394 characters), else the
  byte-identical copy that ships inside the package (:mod:`archlab.data.embedded`). Split as
  nanoGPT's ``data/shakespeare_char/prepare.py``: train = the first ``int(0.9 * n)`` characters
  (1,003,854), val = the remaining 111,540. There is no separate test set: ``test`` is the same
  text as ``val`` (so numbers compare with nanoGPT's val loss).
* ``wikitext2`` — ``<root>/wikitext-2/{train,valid,test}.txt``, the tokenized WikiText-2 files of
  pytorch/examples ``word_language_model``; word level (see :class:`~archlab.data.tokenizers.
  WordTokenizer`: whitespace split, ``<eos>`` per line → 2,088,628 / 217,646 / 245,569 tokens).
* ``pydoc`` — the zero-download fallback: the values of the standard library's
  ``pydoc_data.topics.topics`` dict, sorted by key, joined with ``"\\n"`` (~465k characters of
  Python documentation; every CPython install has it). Split 90/10 by characters like any local
  text; test = val.
* a path: a UTF-8 text file, or a folder whose ``*.txt`` files (sorted by name, each made to end in
  a newline) are concatenated. Split 90/10 by characters (first 90% train, last 10% val; test =
  val), deterministic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from archlab.data.download import ensure_dataset
from archlab.data.paths import get_spec, locate
from archlab.errors import ArchlabError

__all__ = [
    "CORPORA",
    "Corpus",
    "load_corpus",
    "pydoc_text",
    "read_text",
    "resolve_corpus",
    "split_90_10",
]

CORPORA = ("tinyshakespeare", "wikitext2", "pydoc")


@dataclass(frozen=True)
class Corpus:
    """A text corpus split into train/val/test strings.

    ``level`` is the natural tokenization ("char" for prose, "word" for pre-tokenized WikiText);
    ``sources`` lists the files read (or the stdlib module); ``split`` states the split rule.
    """

    name: str
    train: str
    val: str
    test: str
    level: Literal["char", "word"]
    split: str
    sources: tuple[str, ...] = field(default=())

    def text(self, split: str) -> str:
        if split not in ("train", "val", "test"):
            raise ArchlabError(f"unknown split {split!r}; use train, val or test")
        return {"train": self.train, "val": self.val, "test": self.test}[split]

    @property
    def test_is_val(self) -> bool:
        return self.test is self.val or self.test == self.val


def read_text(path: Path, expect_sha256: str | None = None) -> str:
    """Read a UTF-8 file (universal newlines, as ``open`` does); a one-line ArchlabError if not."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ArchlabError(f"cannot read {path}: {e.strerror or e}") from None
    if expect_sha256 is not None:
        got = hashlib.sha256(data).hexdigest()
        if got != expect_sha256:
            raise ArchlabError(
                f"{path} has sha256 {got[:12]}…, expected {expect_sha256[:12]}… (not the canonical "
                "file); delete it to re-download, or pass its path to use it as a custom corpus"
            )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ArchlabError(f"{path} is not UTF-8 text (byte {e.start})") from None
    # Same newline handling as open(path) in text mode, which pytorch/examples' data.py uses.
    return text.replace("\r\n", "\n").replace("\r", "\n")


def split_90_10(text: str) -> tuple[str, str]:
    """nanoGPT's rule: train = text[: int(0.9 * n)], val = the rest (by characters)."""
    n = int(0.9 * len(text))
    return text[:n], text[n:]


def _from_text(name: str, text: str, sources: tuple[str, ...]) -> Corpus:
    if not text.strip():
        raise ArchlabError(f"{name}: the text is empty")
    train, val = split_90_10(text)
    if not val.strip() or not train.strip():
        raise ArchlabError(f"{name}: too little text to split 90/10 ({len(text)} characters)")
    rule = "first 90% of characters = train, last 10% = val; test is the same text as val"
    return Corpus(name, train, val, val, "char", rule, sources)


def pydoc_text() -> str:
    """The stdlib's pydoc topic texts, sorted by key, joined with newlines."""
    from pydoc_data import topics  # stdlib; imported lazily (≈0.5 MB of strings)

    return "\n".join(topics.topics[k] for k in sorted(topics.topics))


def _load_path(path: Path) -> Corpus:
    if path.is_dir():
        files = sorted(p for p in path.glob("*.txt") if p.is_file())
        if not files:
            raise ArchlabError(f"{path} is a folder without *.txt files")
        parts = [read_text(p) for p in files]
        text = "".join(t if t.endswith("\n") or not t else t + "\n" for t in parts)
        return _from_text(path.name, text, tuple(str(p) for p in files))
    if not path.exists():
        raise ArchlabError(
            f"no corpus {str(path)!r}: not a file or folder, and not one of {', '.join(CORPORA)}"
        )
    return _from_text(path.stem, read_text(path), (str(path),))


def load_corpus(name_or_path: str | Path, *, download: bool = True) -> Corpus:
    """Load a named corpus (``tinyshakespeare``, ``wikitext2``, ``pydoc``) or a local file/folder.

    Named corpora are searched in the data roots and downloaded (checksum-verified) if missing and
    ``download`` is True; their files are checked against the known sha256 on every load.
    """
    name = str(name_or_path)
    if not name.strip():  # Path("") is the current directory: never read that by accident
        raise ArchlabError(
            "empty corpus name or path; give tinyshakespeare, wikitext2, pydoc or a path"
        )
    if name == "pydoc" and not Path(name).exists():
        return _from_text("pydoc", pydoc_text(), ("stdlib pydoc_data.topics",))
    if name == "tinyshakespeare" and not Path(name).exists() and locate(get_spec(name)) is None:
        from archlab.data.embedded import EMBEDDED_DIR, tinyshakespeare_text

        train, val = split_90_10(tinyshakespeare_text())  # the canonical bytes: no download
        rule = "nanoGPT: first 90% of characters = train, last 10% = val; test = val"
        src = (f"archlab embedded copy ({EMBEDDED_DIR / 'tinyshakespeare' / 'input.txt.xz'})",)
        return Corpus(name, train, val, val, "char", rule, src)
    if name in ("tinyshakespeare", "wikitext2") and not Path(name).exists():
        spec = get_spec(name)
        folder = ensure_dataset(name, download=download)
        texts = {
            f: read_text(folder / f, spec.sha256_of(f)) for f in spec.files
        }  # sha256 from SOURCES.md
        srcs = tuple(str(folder / f) for f in spec.files)
        if name == "tinyshakespeare":
            train, val = split_90_10(texts["input.txt"])
            rule = "nanoGPT: first 90% of characters = train, last 10% = val; test = val"
            return Corpus(name, train, val, val, "char", rule, srcs)
        rule = "the published train.txt / valid.txt / test.txt files"
        return Corpus(
            name, texts["train.txt"], texts["valid.txt"], texts["test.txt"], "word", rule, srcs
        )
    return _load_path(Path(name).expanduser())


def resolve_corpus(
    name_or_path: str | Path | None, *, allow_fallback: bool = True, download: bool = True
) -> tuple[Corpus, str | None]:
    """Load a corpus, falling back to ``pydoc`` when a *named* corpus cannot be had.

    Returns ``(corpus, notice)``; ``notice`` is None unless the fallback was used, in which case it
    is one line for the caller to log. ``None`` means Tiny Shakespeare (a local copy, else the
    embedded one: always available offline). A path that does not exist is always an
    error (a typo must not silently train on something else).
    """
    if name_or_path is None:
        try:
            return load_corpus("tinyshakespeare", download=False), None
        except ArchlabError as e:
            if not allow_fallback:
                raise
            why = str(e).split(";")[0]
            return load_corpus("pydoc"), f"using the built-in 'pydoc' corpus ({why})"
    name = str(name_or_path)
    if allow_fallback and name in CORPORA and not Path(name).exists():
        try:
            return load_corpus(name, download=download), None
        except ArchlabError as e:
            if name == "pydoc":
                raise
            return load_corpus("pydoc"), f"using the built-in 'pydoc' corpus instead: {e}"
    return load_corpus(name, download=download), None
