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
  Byte-level means every string round-trips exactly. A run of more than ``BPE_PIECE`` (64)
  non-space characters (a URL, a hash, a file without spaces) is cut every 64 characters before
  the GPT-2 split, so no pre-tokenized piece is longer than 64 characters.

Bounds (what grows with the user's text; checked by tests/test_data_text.py under a capped RSS):

* ``word``: fitting is one pass, memory O(distinct words + the longest line's words); encoding is
  O(tokens). Without ``max_vocab`` the vocabulary may hold at most ``WORD_VOCAB_LIMIT`` (50,000)
  words — more is an :class:`ArchlabError` asking for a cap — because the model's embedding and
  output layer grow with it (a 20 MB file of distinct words would give a 1.5M-word vocabulary and
  a model of several GB). WikiText-2's 33,278 fit.
* ``bpe``: ``vocab_size`` is at most ``BPE_MAX_VOCAB`` (1 Mi). The text reaches the HF library in
  chunks of ~``BPETokenizer.chunk_chars`` (64 Ki) characters, cut only where the pre-tokenizer
  itself splits (see :func:`_bpe_chunks`), so the library's per-character working memory (~250
  bytes per character) is bounded by a few chunks, not the file. Fitting learns the merges from at
  most ``BPE_FIT_CHARS`` (8 Mi) characters (every k-th chunk of a longer text, spread over it): its
  memory, O(distinct pieces of <= 64 characters), is then bounded whatever the input — measured
  here at 50-90 bytes per character in the worst case (all words distinct), under 0.8 GB at the
  cap — and so is its time. Encoding is linear: O(tokens) memory (a Python list, ~36 bytes per
  token). (Before: one 20 MB line took 94 s and 4.4 GB, a 4 MB file without spaces did not finish
  in 8 minutes.)
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
WORD_VOCAB_LIMIT = 50_000
BPE_PIECE = 64
BPE_FIT_CHARS = 1 << 23  # BPE merges are learned from at most this many characters (8 Mi)
# The trainer sizes its tables by vocab_size up front (a 10^12 request aborts the process inside
# the Rust library, past any Python handler); GPT-4's vocabulary is ~100k.
BPE_MAX_VOCAB = 1 << 20
# Whitespace as the HF library's regex engine (Oniguruma, Unicode White_Space) sees it, written
# out so Python and Oniguruma agree exactly (Python's \s also counts U+001C..U+001F).
_WS = "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
_LONG_RUN = f"[^{_WS}]{{{BPE_PIECE}}}"  # the Split pattern of the pre-tokenizer (HF syntax)
# Where the GPT-2 pre-tokenizer always ends a piece: after a newline that sits between two
# non-space characters (the newline is a piece of its own), and before a space that is followed
# by a non-space (the space starts the next piece, " word"). Python's \S is narrower than
# Oniguruma's, so a Python \S is a non-space for both.
_SAFE_CUT = re.compile(r"\S\n(?=\S)|(?= \S)")
_LAST_WS = re.compile(f"[{_WS}][^{_WS}]*\\Z")
_NON_WS = re.compile(f"[^{_WS}]+")


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
        single = all(isinstance(c, str) and len(c) == 1 for c in chars)
        if not single or len(set(chars)) != len(chars):
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
        if not isinstance(itos, (list, tuple)) or not all(isinstance(w, str) and w for w in itos):
            raise ValueError("itos: must be a list of words (non-empty strings)")
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
        return [w for ws in WordTokenizer._word_lists(text) for w in ws]

    @staticmethod
    def _word_lists(text: str) -> Iterable[list[str]]:
        """The words of each line, ``<eos>`` after each newline-terminated one."""
        start = 0
        while (end := text.find("\n", start)) >= 0:
            yield [*text[start:end].split(), EOS]
            start = end + 1
        yield text[start:].split()  # unterminated last line: no <eos>

    @classmethod
    def fit(cls, texts: Sequence[str], max_vocab: int | None = None) -> WordTokenizer:
        """Vocabulary of ``texts`` (in order); see the module doc for the two modes."""
        counts: Counter[str] = Counter()
        for t in texts:
            for w in cls._word_lists(t):  # one line at a time: no list of every word
                counts.update(w)  # Counter keeps first-appearance order
        if not counts:
            raise ArchlabError("cannot fit a word tokenizer on empty text")
        if max_vocab is None:
            n = len(counts) + sum(s not in counts for s in (EOS, UNK))
            if n > WORD_VOCAB_LIMIT:
                raise ArchlabError(
                    f"the text has {n:,} distinct words, more than an uncapped word vocabulary "
                    f"may hold ({WORD_VOCAB_LIMIT:,}: the model's embedding and output layer grow "
                    "with it); cap it with --vocab-size N (max_vocab: the N - 2 most frequent "
                    "words) or use --tokenizer bpe"
                )
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
        return [get(w, u) for ws in self._word_lists(text) for w in ws]

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

    chunk_chars = 1 << 16  # characters per chunk handed to the HF library (see _bpe_chunks)

    def __init__(self, hf: Any) -> None:
        self.hf = hf  # tokenizers.Tokenizer
        # Files written before BPE_PIECE existed have no Split step: long runs cannot be cut.
        pre = json.loads(hf.to_str()).get("pre_tokenizer") or {}
        first = (pre.get("pretokenizers") or [{}])[0] if pre.get("type") == "Sequence" else {}
        self.piece = BPE_PIECE if first.get("pattern") == {"Regex": _LONG_RUN} else None

    @classmethod
    def fit(cls, texts: Sequence[str], vocab_size: int = 4096) -> BPETokenizer:
        from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
        from tokenizers import Tokenizer as HFTokenizer

        if not 257 <= vocab_size <= BPE_MAX_VOCAB:
            raise ValueError(
                f"vocab_size: must be in 257..{BPE_MAX_VOCAB:,} (256 bytes + merges), got "
                f"{vocab_size}"
            )
        if not any(t for t in texts):
            raise ArchlabError("cannot fit a BPE tokenizer on empty text")
        hf = HFTokenizer(models.BPE())
        hf.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(_LONG_RUN), "isolated"),  # runs > 64 chars: cut
                pre_tokenizers.ByteLevel(add_prefix_space=False),
            ]
        )
        hf.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: no <unk>
            show_progress=False,
        )

        total = sum(len(t) for t in texts)
        stride = -(-total // BPE_FIT_CHARS)  # > 1: every stride-th chunk, spread over the text

        def chunks() -> Iterable[str]:  # small items: the library's memory follows the item
            i = 0
            for t in texts:
                for c in _bpe_chunks(t, cls.chunk_chars, BPE_PIECE):
                    if i % stride == 0:
                        yield c
                    i += 1

        hf.train_from_iterator(chunks(), trainer=trainer)
        return cls(hf)

    @property
    def vocab_size(self) -> int:
        return int(self.hf.get_vocab_size())

    def encode(self, text: str) -> list[int]:
        """Ids of ``text``; long texts are cut into chunks encoded in parallel (same ids: the cuts
        fall where the pre-tokenizer ends a piece anyway, and BPE never merges across pieces)."""
        if len(text) <= self.chunk_chars:
            return list(self.hf.encode(text).ids)
        ids: list[int] = []
        batch: list[str] = []
        for chunk in _bpe_chunks(text, self.chunk_chars, self.piece):
            batch.append(chunk)
            if len(batch) == 4:  # a few chunks in flight: parallel, and memory stays bounded
                ids += [i for enc in self.hf.encode_batch(batch) for i in enc.ids]
                batch = []
        return ids + [i for enc in self.hf.encode_batch(batch) for i in enc.ids]

    def decode(self, ids: Sequence[int]) -> str:
        self._check_ids(ids)
        return str(self.hf.decode([int(i) for i in ids]))

    def token(self, i: int) -> str:
        return self.decode([i])

    def to_json(self) -> dict[str, Any]:
        return json.loads(self.hf.to_str())


def _bpe_chunks(text: str, size: int, piece: int | None) -> Iterable[str]:
    """``text`` in consecutive chunks of about ``size`` characters, cut only where the BPE
    pre-tokenizer ends a piece whatever surrounds the cut, so encoding chunk by chunk gives the ids
    of the whole text:

    1. after a newline between two non-space characters, or before a space followed by a
       non-space (see ``_SAFE_CUT``), searched in ``[start + size, start + 2 size)``;
    2. else, inside a run of non-space characters, at a multiple of ``piece`` from the run's start
       (the Split step cuts runs exactly there; only for tokenizers that have it);
    3. else at the next cut of kind 1 anywhere, or the end: a text with no space, no newline cut
       and no long run stays whole (it is then short words separated by tabs or blank lines).
    """
    pos, n = 0, len(text)
    while n - pos > size:
        target = pos + size
        m = _SAFE_CUT.search(text, target, target + size)
        cut = m.end() if m else None
        if cut is None and piece is not None:
            cut = _grid_cut(text, pos, target, piece)
        if cut is None:
            m = _SAFE_CUT.search(text, target + size)
            cut = m.end() if m else n
        yield text[pos:cut]
        pos = cut
    if pos < n or n == 0:
        yield text[pos:]


def _grid_cut(text: str, pos: int, target: int, piece: int) -> int | None:
    """The first multiple of ``piece`` from the start of the non-space run holding ``target``
    that lies strictly inside the run, or None. A run that began before ``pos`` is measured from
    ``pos``: a chunk starts at a run's start or on its grid."""
    if _NON_WS.match(text, target) is None:
        return None  # target is whitespace
    m = _LAST_WS.search(text, pos, target)
    start = m.start() + 1 if m else pos
    cut = start + max(1, -(-(target - start) // piece)) * piece  # past target, past the start
    run = _NON_WS.match(text, target)
    return cut if run is not None and cut < run.end() else None


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
    """Read a tokenizer written by :meth:`Tokenizer.save` (or an HF byte-level tokenizer.json)."""
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
        d = json.loads(raw)
    except (OSError, ValueError) as e:
        raise ArchlabError(f"cannot read tokenizer {path}: {e}") from None
    except RecursionError:
        raise ArchlabError(f"cannot read tokenizer {path}: JSON nested too deep") from None
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
