"""Text corpora, tokenizers and LM batching: exact counts, round trips, coverage of every target."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from archlab.data import (
    IGNORE_INDEX,
    BPETokenizer,
    CharTokenizer,
    WordTokenizer,
    batchify,
    bptt_batches,
    build_tokenizer,
    encode_corpus,
    fit_tokenizer,
    get_batch,
    load_corpus,
    load_tokenizer,
    resolve_corpus,
    sliding_window_eval,
    stream_eval_batches,
)
from archlab.data.tokenizers import WORD_VOCAB_LIMIT
from archlab.errors import ArchlabError

SAMPLE = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ARCHLAB_OFFLINE", "1")  # no test here may touch the network
    monkeypatch.delenv("ARCHLAB_DATA", raising=False)
    monkeypatch.delenv("ARCHLAB_MIRROR", raising=False)


def _pytorch_examples_tokenize(paths: list[Path]) -> tuple[list[list[int]], int]:
    """An independent re-statement of pytorch/examples word_language_model/data.py's Corpus."""
    word2idx: dict[str, int] = {}
    out = []
    for path in paths:
        ids = []
        with open(path, encoding="utf8") as f:
            for line in f:
                for w in line.split() + ["<eos>"]:
                    word2idx.setdefault(w, len(word2idx))
                    ids.append(word2idx[w])
        out.append(ids)
    return out, len(word2idx)


# --- real data (../shared/data) ---------------------------------------------------------------


def test_tinyshakespeare_nanogpt_split(shared_data, monkeypatch):
    monkeypatch.setenv("ARCHLAB_DATA", str(shared_data))
    c = load_corpus("tinyshakespeare")
    assert len(c.train) + len(c.val) == 1_115_394
    assert (len(c.train), len(c.val)) == (1_003_854, 111_540)
    assert c.test == c.val and c.test_is_val
    assert c.sources == (str(shared_data / "tinyshakespeare" / "input.txt"),)
    tok = build_tokenizer("char", c.train)
    assert tok.vocab_size == 65 + 1  # 65 distinct characters (all in train) + <unk>
    assert len(set(c.train + c.val)) == 65
    ids = tok.encode(c.val)
    assert max(ids) < 65 and tok.decode(ids) == c.val  # nothing unseen in val
    # nanoGPT's ids: index in the sorted character set
    assert ids[:20] == [sorted(set(c.train)).index(ch) for ch in c.val[:20]]


def test_wikitext2_matches_pytorch_examples(shared_data, monkeypatch):
    monkeypatch.setenv("ARCHLAB_DATA", str(shared_data))
    c = load_corpus("wikitext2")
    assert c.level == "word"
    tok = fit_tokenizer("word", c)  # train + valid + test, as pytorch/examples
    assert tok.vocab_size == 33_278 and tok.itos[:3] == ["<eos>", "=", "Valkyria"]
    s = encode_corpus(c, tok)
    assert [t.numel() for t in (s.train, s.val, s.test)] == [2_088_628, 217_646, 245_569]
    ref, n = _pytorch_examples_tokenize(
        [shared_data / "wikitext-2" / f for f in ("train.txt", "valid.txt", "test.txt")]
    )
    assert n == 33_278
    assert s.val.tolist() == ref[1] and s.test.tolist() == ref[2]
    assert s.train[:5000].tolist() == ref[0][:5000] and s.train[-5000:].tolist() == ref[0][-5000:]
    # the train split alone already holds the whole vocabulary (no OOV in valid/test)
    assert build_tokenizer("word", c.train).vocab_size == 33_278


# --- corpora from files, folders, the stdlib ------------------------------------------------


def test_local_file_and_folder(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("x" * 90 + "y" * 10, encoding="utf-8")
    c = load_corpus(f)
    assert (c.train, c.val, c.test) == ("x" * 90, "y" * 10, "y" * 10)
    d = tmp_path / "books"
    d.mkdir()
    (d / "b.txt").write_text("second\n" * 10)
    (d / "a.txt").write_text("first" * 10)  # no trailing newline: one is added
    (d / "skip.md").write_text("not a txt")
    c = load_corpus(d)
    text = "first" * 10 + "\n" + "second\n" * 10
    assert c.train + c.val == text and len(c.train) == int(0.9 * len(text))
    assert [Path(p).name for p in c.sources] == ["a.txt", "b.txt"]


@pytest.mark.parametrize(
    "content, match",
    [(b"", "empty"), (b"  \n\n", "empty"), (b"\xff\xfe bad", "not UTF-8"), (b"a\n", "too little")],
)
def test_bad_text_is_one_line_error(tmp_path, content, match):
    f = tmp_path / "t.txt"
    f.write_bytes(content)
    with pytest.raises(ArchlabError, match=match) as e:
        load_corpus(f)
    assert "\n" not in str(e.value)


def test_missing_corpus_errors(tmp_path):
    with pytest.raises(ArchlabError, match="no corpus"):
        load_corpus(tmp_path / "nope.txt")
    with pytest.raises(ArchlabError, match="without \\*.txt"):
        load_corpus(tmp_path)
    with pytest.raises(ArchlabError, match="downloads are off") as e:
        load_corpus("wikitext2")
    assert "train.txt, valid.txt, test.txt" in str(e.value) and "\n" not in str(e.value)


def test_canonical_file_checksum_enforced(tmp_path, monkeypatch):
    (tmp_path / "tinyshakespeare").mkdir()
    (tmp_path / "tinyshakespeare" / "input.txt").write_text("not shakespeare\n" * 100)
    monkeypatch.setenv("ARCHLAB_DATA", str(tmp_path))
    with pytest.raises(ArchlabError, match="sha256"):
        load_corpus("tinyshakespeare")


def test_tinyshakespeare_ships_with_the_package():
    """Offline with nothing local, Tiny Shakespeare is the embedded copy: the canonical bytes
    (sha256 checked), split as nanoGPT's prepare.py."""
    got, notice = resolve_corpus(None)
    assert got.name == "tinyshakespeare" and notice is None and "embedded" in got.sources[0]
    assert (len(got.train), len(got.val)) == (1_003_854, 111_540)
    assert got.train.startswith("First Citizen:\nBefore we proceed any further")
    assert resolve_corpus("tinyshakespeare")[0].train == got.train


def test_pydoc_fallback():
    from pydoc_data import topics

    c = load_corpus("pydoc")
    full = "\n".join(topics.topics[k] for k in sorted(topics.topics))
    assert c.train + c.val == full and len(c.train) == int(0.9 * len(full))
    got, notice = resolve_corpus("wikitext2")  # offline, nothing local
    assert got.name == "pydoc" and "wikitext" in notice and "\n" not in notice
    with pytest.raises(ArchlabError):
        resolve_corpus("wikitext2", allow_fallback=False)
    with pytest.raises(ArchlabError, match="no corpus"):  # a path typo never falls back
        resolve_corpus("./my_typo.txt")


# --- tokenizers ---------------------------------------------------------------------------


def test_char_tokenizer_unk_and_roundtrip(tmp_path):
    tok = CharTokenizer.fit("hello world")
    assert tok.chars == sorted(set("hello world")) and tok.vocab_size == 9
    assert tok.decode(tok.encode("hello")) == "hello"
    unk = tok.vocab_size - 1
    assert tok.encode("héllo")[1] == unk and tok.decode(tok.encode("hé")) == "h\ufffd"
    strict = CharTokenizer.fit("hello", unk=False)
    with pytest.raises(ArchlabError, match="not in the vocabulary"):
        strict.encode("hi")
    with pytest.raises(ArchlabError, match="out of range"):
        strict.decode([99])
    tok.save(tmp_path / "t.json")
    back = load_tokenizer(tmp_path / "t.json")
    assert isinstance(back, CharTokenizer) and back.encode("hé wo") == tok.encode("hé wo")


def test_word_tokenizer_rules(tmp_path):
    text = "the cat  sat\n\tthe dog\n\nend"
    words = WordTokenizer.words(text)
    assert words == ["the", "cat", "sat", "<eos>", "the", "dog", "<eos>", "<eos>", "end"]
    tok = WordTokenizer.fit([text])  # first-appearance order, <unk> appended
    assert tok.itos == ["the", "cat", "sat", "<eos>", "dog", "end", "<unk>"]
    normalized = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    assert tok.decode(tok.encode(text)) == normalized
    assert tok.encode("the zebra") == [0, tok.unk_id]
    assert tok.tokens(tok.encode("cat sat\n")) == ["cat", "sat", "<eos>"]
    capped = WordTokenizer.fit(["a a a b b c d\n"], max_vocab=4)
    assert capped.itos == ["<unk>", "<eos>", "a", "b"]
    assert capped.decode(capped.encode("a c b")) == "a <unk> b"
    capped.save(tmp_path / "w.json")
    assert load_tokenizer(tmp_path / "w.json").itos == capped.itos
    with pytest.raises(ValueError, match="max_vocab"):
        WordTokenizer.fit(["a"], max_vocab=2)


def test_word_tokenizer_equals_pytorch_examples_on_a_file(tmp_path):
    files = []
    for name, body in (("train", "a b\n\n c  a\n"), ("valid", "d a\n"), ("test", "e\r\nb\n")):
        (tmp_path / f"{name}.txt").write_bytes(body.encode())
        files.append(tmp_path / f"{name}.txt")
    (tmp_path / "w").mkdir()
    for p in files:
        (tmp_path / "w" / p.name).write_bytes(p.read_bytes())
    ref, n = _pytorch_examples_tokenize(files)
    from archlab.data.text import read_text

    texts = [read_text(p) for p in files]
    tok = WordTokenizer.fit(texts)
    assert tok.vocab_size == n + 1  # + <unk>, absent from this text
    assert [tok.encode(t) for t in texts] == ref


def test_bpe_roundtrip_save_load(tmp_path):
    train = (SAMPLE * 20) + "naïve café — 東京 🙂\n"
    tok = BPETokenizer.fit([train], vocab_size=300)
    assert 256 < tok.vocab_size <= 300
    for s in (SAMPLE, "unseen: ζ∑ 🚀 \t tabs\r\n", "", "   leading spaces"):
        assert tok.decode(tok.encode(s)) == s
    assert len(tok.encode(SAMPLE)) < len(SAMPLE.encode())  # merges were learned
    tok.save(tmp_path / "tokenizer.json")
    assert json.loads((tmp_path / "tokenizer.json").read_text())["model"]["type"] == "BPE"
    back = load_tokenizer(tmp_path / "tokenizer.json")
    assert back.encode(SAMPLE) == tok.encode(SAMPLE)
    assert "".join(tok.tokens(tok.encode("hear me"))) == "hear me"
    again = BPETokenizer.fit([train], vocab_size=300)  # deterministic training
    assert again.encode(SAMPLE) == tok.encode(SAMPLE)


def test_bpe_chunked_encode_equals_whole(shared_data):
    text = (shared_data / "tinyshakespeare" / "input.txt").read_text()[:200_000]
    text += "\n  indented\n\n\nthree blank\t\nx's\n'tis\n"
    tok = BPETokenizer.fit([text[:100_000]], vocab_size=1000)
    whole = tok.encode(text)  # one chunk
    tok.chunk_chars = 97  # hundreds of chunks, cut only at safe newlines
    assert tok.encode(text) == whole


# Texts where cuts are hard: one line, no spaces (the 64-character grid), tabs and blank lines,
# runs of spaces, Unicode spaces that Python and the HF regex engine disagree on (U+001C) or
# agree on (U+00A0), apostrophes (GPT-2's contractions).
_HARD = st.text(alphabet="ab1. \n\t\xa0\x1c'é", max_size=600)


@pytest.fixture(scope="module")
def bpe_tok():
    return BPETokenizer.fit([("ab ba 'ab 11 a.b \t\n" * 40) + "b" * 300], vocab_size=280)


@settings(max_examples=150, deadline=None)
@given(text=_HARD, run=st.integers(0, 300), chunk=st.integers(1, 90))
def test_bpe_chunked_encode_equals_whole_on_hard_text(bpe_tok, text, run, chunk):
    """Chunked encoding (cuts at newlines, before spaces, and on the 64-character grid inside
    long runs) gives exactly the ids of the whole text, for any text."""
    text = text + "a" * run + text[::-1]
    bpe_tok.chunk_chars = 1 << 30
    whole = bpe_tok.encode(text)
    bpe_tok.chunk_chars = chunk
    try:
        assert bpe_tok.encode(text) == whole
    finally:
        bpe_tok.chunk_chars = BPETokenizer.chunk_chars


def test_bpe_long_runs_are_cut_every_64_characters(bpe_tok):
    pieces = [p for p, _ in bpe_tok.hf.pre_tokenizer.pre_tokenize_str("x" * 150 + " y")]
    assert [len(p) for p in pieces] == [64, 64, 22, 2]  # then " y" (as "Ġy")


_BOUNDED = """
import random, string, sys, time
from archlab.data.tokenizers import build_tokenizer
kind, shape = sys.argv[1], sys.argv[2]
r = random.Random(0)
if shape == "words":  # one line of distinct random words: the worst case for a vocabulary
    words = ("".join(r.choices(string.ascii_lowercase, k=r.randint(1, 12))) for _ in range(10**6))
    text = " ".join(words)[:1_000_000]
else:  # one line, no whitespace at all
    text = "".join(r.choices(string.ascii_letters, k=1_000_000))
def status(key):  # kB, from /proc/self/status
    line = next(x for x in open("/proc/self/status") if x.startswith(key + ":"))
    return int(line.split()[1]) * 1024
open("/proc/self/clear_refs", "w").write("5")  # peak RSS := current RSS (Linux)
base = status("VmRSS")
t = time.perf_counter()
kw = {"vocab_size": 300} if kind == "bpe" else {"max_vocab": 1000}
tok = build_tokenizer(kind, text, **kw)
ids = tok.encode(text)
print((status("VmHWM") - base) / len(text), time.perf_counter() - t, len(ids))
"""


@pytest.mark.parametrize("kind,shape", [("bpe", "words"), ("bpe", "blob"), ("word", "words")])
def test_tokenizer_fit_and_encode_memory_is_bounded(kind, shape):
    """A 1 MB single-line corpus: fitting + encoding add under 200 MB of peak RSS (~150 MB
    measured, mostly the HF library's fixed cost) and finish in bounded time. Before: BPE on one
    line took 316 MB (the library's per-character working memory for the whole line, growing
    with the file), and a line without spaces did not finish in 100 s (one 1M-character "word")."""
    import subprocess
    import sys

    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {"PYTHONPATH": src, "RAYON_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"}
    out = subprocess.run(
        [sys.executable, "-c", _BOUNDED, kind, shape],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    per_char, seconds, n_ids = out.stdout.split()
    assert float(per_char) < 200, (per_char, seconds)
    assert int(n_ids) > 0


def test_uncapped_word_vocabulary_is_bounded():
    """Without max_vocab a word vocabulary may hold WORD_VOCAB_LIMIT words: more would build an
    embedding and output layer of several GB (a 20 MB file of distinct words: 1.5M of them)."""
    text = " ".join(f"w{i}" for i in range(WORD_VOCAB_LIMIT + 1))
    with pytest.raises(ArchlabError, match="--vocab-size") as e:
        WordTokenizer.fit([text])
    assert "\n" not in str(e.value)
    assert WordTokenizer.fit([text], max_vocab=100).vocab_size == 100
    ok = " ".join(f"w{i}" for i in range(WORD_VOCAB_LIMIT - 2))  # + <eos>, <unk>
    assert WordTokenizer.fit([ok]).vocab_size == WORD_VOCAB_LIMIT


def test_tokenizer_bad_files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "other.json").write_text('{"kind": "sentencepiece"}')
    for name in ("bad.json", "other.json", "missing.json"):
        with pytest.raises(ArchlabError) as e:
            load_tokenizer(tmp_path / name)
        assert "\n" not in str(e.value)
    with pytest.raises(ArchlabError, match="unknown tokenizer"):
        build_tokenizer("unigram", "abc")


# --- batching -----------------------------------------------------------------------------


def test_get_batch_windows():
    data = torch.arange(100)
    g = torch.Generator().manual_seed(0)
    x, y = get_batch(data, 8, 16, g)
    assert x.shape == y.shape == (8, 16)
    assert torch.equal(y, x + 1) and torch.equal(x[:, 1:], x[:, :-1] + 1)  # contiguous windows
    assert int(y.max()) <= 99
    g2 = torch.Generator().manual_seed(0)
    assert torch.equal(get_batch(data, 8, 16, g2)[0], x)  # seeded
    starts = torch.cat([get_batch(data, 64, 16, g)[0][:, 0] for _ in range(50)])
    assert int(starts.min()) == 0 and int(starts.max()) == 100 - 16 - 1  # every start reachable
    with pytest.raises(ArchlabError, match="block size"):
        get_batch(data, 1, 100, g)
    with pytest.raises(ArchlabError, match="block-size must be >= 1"):
        get_batch(data, 1, 0, g)


def test_batchify_and_bptt_match_pytorch_examples_layout():
    data = torch.arange(103)
    src = batchify(data, 4)  # (L, B) with L = 103 // 4 = 25, tail of 3 dropped
    assert src.shape == (25, 4)
    assert torch.equal(src[:, 2], torch.arange(50, 75))  # column b = tokens [b*L, (b+1)*L)
    chunks = list(bptt_batches(src, 7))
    assert [x.shape[1] for x, _ in chunks] == [7, 7, 7, 3]  # 24 steps in all, as data.py
    x0, y0 = chunks[0]
    assert x0.shape == (4, 7) and torch.equal(x0[1], torch.arange(25, 32))
    assert torch.equal(y0, x0 + 1)
    assert torch.equal(torch.cat([x for x, _ in chunks], 1), src[:-1].t())


@pytest.mark.parametrize("n, b, bptt", [(101, 4, 7), (10, 3, 50), (2, 1, 1), (64, 8, 8)])
def test_stream_eval_scores_every_target_once(n, b, bptt):
    data = torch.arange(n) + 1000  # value = position + 1000
    seen = []
    for x, y in stream_eval_batches(data, b, bptt):
        assert x.shape[0] == b and x.shape == y.shape
        m = y != IGNORE_INDEX
        assert torch.equal(y[m], x[m] + 1)  # target follows its input
        seen.append(y[m])
    assert torch.equal(torch.sort(torch.cat(seen)).values, data[1:])


@pytest.mark.parametrize(
    "n, window, stride, bs", [(200, 16, 8, 3), (200, 16, 16, 4), (50, 16, 1, 64), (10, 32, 8, 2)]
)
def test_sliding_window_scores_every_target_once_with_context(n, window, stride, bs):
    data = torch.arange(n)  # value = position
    scored = []
    for x, y in sliding_window_eval(data, window, stride, bs):
        t = min(window, n - 1)
        assert x.shape[1] == t and x.shape[0] <= bs
        assert torch.equal(y, torch.where(y == IGNORE_INDEX, y, x + 1))
        rows, cols = (y != IGNORE_INDEX).nonzero(as_tuple=True)
        for r, c in zip(rows.tolist(), cols.tolist(), strict=True):
            target = int(y[r, c])
            context = c + 1  # tokens x[r, 0..c] precede the target in this window
            assert int(x[r, 0]) == target - context  # the window is contiguous text
            assert context >= min(target, window - stride + 1)  # the documented guarantee
        scored.append(y[y != IGNORE_INDEX])
    assert torch.equal(torch.sort(torch.cat(scored)).values, torch.arange(1, n))


def test_encode_corpus_shares_val_as_test(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text(SAMPLE * 5)
    c = load_corpus(f)
    s = encode_corpus(c, build_tokenizer("char", c.train))
    assert s.test is s.val and s.train.dtype == torch.int64
    assert s.train.numel() == len(c.train)
    x, y = s.get_batch("train", 2, 8, torch.Generator().manual_seed(1))
    assert x.shape == (2, 8)
