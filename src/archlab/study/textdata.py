"""Text for the study's language-model experiments: the best corpus found, else a built-in one.

Lookup order (the report states which one was used):
1. ``$ARCHLAB_DATA/tinyshakespeare/input.txt``;
2. the same files under ``~/.cache/archlab``;
3. the zero-download *pydoc* corpus: the standard library's ``pydoc_data`` topic texts (English
   prose that ships with every Python, so the study runs on a fresh machine offline).

When ``archlab.data`` is installed its ``resolve_corpus`` does the lookup (same order, same files).

Tokenization is character level (Karpathy's char-rnn convention): the experiments are about
architectures, and a char vocabulary keeps models small enough for the quick profile.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch

CANDIDATES = ("tinyshakespeare/input.txt",)


def _pydoc_text() -> str:
    """The stdlib's pydoc topic texts, sorted by key, joined with newlines (as ``archlab.data``)."""
    from pydoc_data import topics  # stdlib, ~0.5 MB of Python documentation prose

    return "\n".join(topics.topics[k] for k in sorted(topics.topics))


def _own_lookup() -> tuple[str, dict[str, Any]]:
    roots = []
    if os.environ.get("ARCHLAB_DATA"):
        roots.append(("$ARCHLAB_DATA", Path(os.environ["ARCHLAB_DATA"])))
    roots.append(("~/.cache/archlab", Path.home() / ".cache" / "archlab"))
    for label, root in roots:
        for rel in CANDIDATES:
            path = root / rel
            if path.is_file():
                text = path.read_text(encoding="utf-8", errors="replace")
                return text, {"source": rel.split("/")[0], "path": f"{label}/{rel}"}
    return _pydoc_text(), {
        "source": "pydoc (built-in fallback)",
        "path": None,
        "note": "no tinyshakespeare under $ARCHLAB_DATA or ~/.cache/archlab",
    }


@functools.lru_cache(maxsize=1)
def load_text() -> tuple[str, dict[str, Any]]:
    """(text, description): Tiny Shakespeare if present locally, else the pydoc corpus. Never
    downloads (the quick profile must run offline)."""
    try:
        from archlab.data.text import resolve_corpus
    except ImportError:  # the data layer is optional for the study
        text, desc = _own_lookup()
    else:
        corpus, notice = resolve_corpus(None, download=False)
        text = corpus.train + corpus.val
        home = str(Path.home())
        desc = {
            "source": corpus.name if notice is None else "pydoc (built-in fallback)",
            "path": [s.replace(home, "~") for s in corpus.sources],
            "note": notice,
        }
    return text, {**desc, "chars": len(text)}


class CharCorpus:
    """Character-level train/validation split (90/10) of a text, as int64 token tensors."""

    def __init__(self, text: str, max_chars: int | None = None) -> None:
        if max_chars is not None:
            text = text[:max_chars]
        self.chars = sorted(set(text))
        self.vocab_size = len(self.chars)
        index = {c: i for i, c in enumerate(self.chars)}
        data = torch.tensor([index[c] for c in text], dtype=torch.long)  # (N,)
        cut = int(0.9 * len(data))
        self.train, self.val = data[:cut], data[cut:]

    def batch(self, split: str, batch: int, length: int, gen: torch.Generator) -> tuple:
        """Random windows: x (B, T) and next-token targets y (B, T)."""
        data = self.train if split == "train" else self.val
        if len(data) <= length + 1:
            raise ValueError(
                f"length: corpus split {split!r} has {len(data)} tokens, need > {length + 1}"
            )
        ix = torch.randint(len(data) - length - 1, (batch,), generator=gen)
        x = torch.stack([data[i : i + length] for i in ix.tolist()])  # (B, T)
        y = torch.stack([data[i + 1 : i + 1 + length] for i in ix.tolist()])  # (B, T)
        return x, y


__all__ = ["CANDIDATES", "CharCorpus", "load_text"]
