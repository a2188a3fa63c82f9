"""Tokenizers: character, word and byte-level BPE, each saved as one JSON file.

All share :class:`Tokenizer`: ``encode(str) -> list[int]``, ``decode(list[int]) -> str``,
``vocab_size``, ``token(id) -> str`` (what a prediction prints), ``save(path)``; and
:func:`load_tokenizer` reads any of them back.

* ``char``: the sorted set of characters of the text it is fitted on (the TRAIN split), so ids of
  real characters equal nanoGPT's for Tiny Shakespeare (whose 65 characters all occur in train).
  With ``unk=True`` (default) one extra id, ``vocab_size - 1``, stands for any character not seen in
  training (decoded as U+FFFD "�", so lengths are kept); with ``unk=False`` an unseen character is
  an :class:`ArchlabError`.
* ``word``: pytorch/examples ``data.py`` rules — each ``\\n``-terminated line is ``line.split()``
  followed by ``<eos>`` (a final line without a newline gets no ``<eos>``, so a prompt can end
  mid-sentence). ``decode`` joins words with single spaces and turns ``<eos>`` into ``\\n``, so
  ``decode(encode(s))`` equals ``s`` with every run of spaces/tabs inside a line collapsed to one
  space and leading/trailing blanks of each line removed. ``max_vocab=None`` keeps every word in
  order of first appearance (exactly pytorch/examples' ``Dictionary``: WikiText-2 fitted on
  train+valid+test gives 33,278 ids, ``<eos>`` = 0) plus ``<unk>`` if the text lacks it; a cap keeps
  ``<unk>``, ``<eos>`` and the ``max_vocab - 2`` most frequent words (ties: first appearance);
  unknown words map to ``<unk>``.
* ``bpe``: HF ``tokenizers`` byte-level BPE (GPT-2 style pre-tokenization, no prefix space, no
  special tokens) trained on the train split; saved as the library's own ``tokenizer.json``.
  Byte-level means every string round-trips exactly.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from archlab.errors import ArchlabError

if TYPE_CHECKING:
    from archlab.data.text import Corpus

__all__ = [
    "BPETokenizer",
    "CharTokenizer",
    "Tokenizer",
    "WordTokenizer",
    "build_tokenizer",
    "fit_tokenizer",
    "load_tokenizer",
]

UNK, EOS = "<unk>", "<eos>"
_SAFE_CUT = re.compile(r"\S\n(?=\S)")


class Tokenizer(ABC):
    kind: ClassVar[str]

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: Sequence[int]) -> str: ...

    @abstractmethod
    def token(self, i: int) -> str:
        """The text of one id as a user should see it in a prediction."""

    @abstractmethod
    def to_json(self) -> dict[str, Any]: ...

    def tokens(self, ids: Iterable[int]) -> list[str]:
        return [self.token(int(i)) for i in ids]

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON (atomically: temp file, then rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(json.dumps(self.to_json(), ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)

    def _check_ids(self, ids: Sequence[int]) -> None:
        bad = [i for i in ids if not 0 <= int(i) < self.vocab_size]
        if bad:
            raise ArchlabError(f"token id {bad[0]} out of range for vocab_size {self.vocab_size}")


class CharTokenizer(Tokenizer):
    kind = "char"

    def __init__(self, chars: Sequence[str], unk: bool = True) -> None:
        if len(set(chars)) != len(chars) or any(len(c) != 1 for c in chars):
            raise ValueError("chars: must be distinct single characters")
        self.chars = list(chars)
        self.unk = unk
        self.stoi = {c: i for i, c in enumerate(self.chars)}

    @classmethod
    def fit(cls, text: str, unk: bool = True) -> CharTokenizer:
        if not text:
            raise ArchlabError("cannot fit a char tokenizer on empty text")
        return cls(sorted(set(text)), unk)

    @property
    def vocab_size(self) -> int:
        return len(self.chars) + int(self.unk)

    def encode(self, text: str) -> list[int]:
        if self.unk:
            u = len(self.chars)
            return [self.stoi.get(c, u) for c in text]
        try:
            return [self.stoi[c] for c in text]
        except KeyError as e:
            raise ArchlabError(f"character {e.args[0]!r} is not in the vocabulary") from None

    def decode(self, ids: Sequence[int]) -> str:
        self._check_ids(ids)
        return "".join(self.token(i) for i in ids)

    def token(self, i: int) -> str:
        return self.chars[i] if i < len(self.chars) else "\ufffd"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "chars": self.chars, "unk": self.unk}


class WordTokenizer(Tokenizer):
    kind = "word"

    def __init__(self, itos: Sequence[str]) -> None:
        if UNK not in itos or EOS not in itos:
            raise ValueError(f"itos: must contain {UNK} and {EOS}")
        if len(set(itos)) != len(itos):
            raise ValueError("itos: duplicate words")
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.unk_id, self.eos_id = self.stoi[UNK], self.stoi[EOS]

    @staticmethod
    def words(text: str) -> list[str]:
        """``line.split() + ['<eos>']`` for each newline-terminated line (pytorch/examples)."""
        lines = text.split("\n")
        out: list[str] = []
        for line in lines[:-1]:
            out.extend(line.split())
            out.append(EOS)
        out.extend(lines[-1].split())  # unterminated last line: no <eos>
        return out

    @classmethod
    def fit(cls, texts: Sequence[str], max_vocab: int | None = None) -> WordTokenizer:
        """Vocabulary of ``texts`` (in order); see the module doc for the two modes."""
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update(cls.words(t))  # Counter keeps first-appearance order
        if not counts:
            raise ArchlabError("cannot fit a word tokenizer on empty text")
        if max_vocab is None:
            itos = list(counts)
            for special in (EOS, UNK):
                if special not in counts:
                    itos.append(special)
            return cls(itos)
        if max_vocab < 3:
            raise ValueError(f"max_vocab: must be >= 3 (<unk>, <eos> and a word), got {max_vocab}")
        order = {w: i for i, w in enumerate(counts)}
        ranked = sorted(
            (w for w in counts if w not in (UNK, EOS)), key=lambda w: (-counts[w], order[w])
        )
        return cls([UNK, EOS, *ranked[: max_vocab - 2]])

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        get, u = self.stoi.get, self.unk_id
        return [get(w, u) for w in self.words(text)]

    def decode(self, ids: Sequence[int]) -> str:
        self._check_ids(ids)
        out: list[str] = []
        line: list[str] = []
        for i in ids:
            if i == self.eos_id:
                out.append(" ".join(line) + "\n")
                line = []
            else:
                line.append(self.itos[i])
        return "".join(out) + " ".join(line)

    def token(self, i: int) -> str:
        return self.itos[i]

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "itos": self.itos}


class BPETokenizer(Tokenizer):
    kind = "bpe"

    chunk_chars = 1 << 16  # characters per parallel encode chunk (see encode)

    def __init__(self, hf: Any) -> None:
        self.hf = hf  # tokenizers.Tokenizer

    @classmethod
    def fit(cls, texts: Sequence[str], vocab_size: int = 4096) -> BPETokenizer:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers, trainers

        if vocab_size < 257:
            raise ValueError(f"vocab_size: must be >= 257 (256 bytes + merges), got {vocab_size}")
        if not any(t for t in texts):
            raise ArchlabError("cannot fit a BPE tokenizer on empty text")
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: no <unk>
            show_progress=False,
        )

        def lines() -> Iterable[str]:  # keep the iterator's items small
            for t in texts:
                yield from t.splitlines(keepends=True)

        hf.train_from_iterator(lines(), trainer=trainer)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return int(self.hf.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; long texts are cut into chunks encoded in parallel (same ids).

        Cuts fall only after a newline that sits between two non-space characters: the GPT-2
        pre-tokenizer regex always ends a piece there (the newline is a piece of its own), and BPE
        never merges across pieces, so chunking cannot change the result.
        """
        if len(text) <= self.chunk_chars:
            return list(self.hf.encode(text).ids)
        chunks, pos = [], 0
        while pos < len(text):
            m = _SAFE_CUT.search(text, pos + self.chunk_chars)
            end = m.end() if m else len(text)
            chunks.append(text[pos:end])
            pos = end
        return [i for enc in self.hf.encode_batch(chunks) for i in enc.ids]

    def decode(self, ids: Sequence[int]) -> str:
        self._check_ids(ids)
        return str(self.hf.decode([int(i) for i in ids]))

    def token(self, i: int) -> str:
        return self.decode([i])

    def to_json(self) -> dict[str, Any]:
        return json.loads(self.hf.to_str())


def build_tokenizer(
    kind: str,
    train_text: str,
    *,
    vocab_size: int = 4096,
    max_vocab: int | None = None,
    extra_texts: Sequence[str] = (),
    unk: bool = True,
) -> Tokenizer:
    """Fit a ``char`` | ``word`` | ``bpe`` tokenizer on the train text.

    ``vocab_size`` is for BPE, ``max_vocab`` caps the word vocabulary, ``unk`` is the char
    tokenizer's unseen-character id. ``extra_texts`` are added to the word vocabulary after the
    train text (pass WikiText-2's valid and test text to build pytorch/examples' 33,278 ids).
    """
    if kind == "char":
        return CharTokenizer.fit(train_text, unk=unk)
    if kind == "word":
        return WordTokenizer.fit([train_text, *extra_texts], max_vocab=max_vocab)
    if kind == "bpe":
        return BPETokenizer.fit([train_text], vocab_size=vocab_size)
    raise ArchlabError(f"unknown tokenizer {kind!r}; use char, word or bpe")


def fit_tokenizer(
    kind: str,
    corpus: Corpus,
    *,
    vocab_size: int = 4096,
    max_vocab: int | None = None,
    unk: bool = True,
) -> Tokenizer:
    """Fit a tokenizer on ``corpus.train`` with the corpus's conventions.

    For ``wikitext2`` + ``word`` without a cap, the vocabulary is built over train, valid and test
    in that order, exactly as pytorch/examples does (33,278 ids; train alone gives the same set).
    Everything else is fitted on the train split only.
    """
    extra = (corpus.val, corpus.test) if corpus.name == "wikitext2" and kind == "word" else ()
    return build_tokenizer(
        kind,
        corpus.train,
        vocab_size=vocab_size,
        max_vocab=max_vocab,
        extra_texts=extra if max_vocab is None else (),
        unk=unk,
    )


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer written by :meth:`Tokenizer.save` (or an HF byte-level ``tokenizer.json``)."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
        d = json.loads(raw)
    except (OSError, ValueError) as e:
        raise ArchlabError(f"cannot read tokenizer {path}: {e}") from None
    try:
        if d.get("kind") == "char":
            return CharTokenizer(d["chars"], bool(d["unk"]))
        if d.get("kind") == "word":
            return WordTokenizer(d["itos"])
        if isinstance(d.get("model"), dict) and d["model"].get("type") == "BPE":
            from tokenizers import Tokenizer as HFTokenizer

            return BPETokenizer(HFTokenizer.from_str(raw))
    except (KeyError, TypeError, ValueError, Exception) as e:
        raise ArchlabError(f"corrupt tokenizer file {path}: {e}".split("\n")[0]) from None
    raise ArchlabError(f"{path} is not an archlab tokenizer (no 'kind' char/word, not a BPE)")
