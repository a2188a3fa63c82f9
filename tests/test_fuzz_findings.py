"""What the fuzz suite (tests/test_fuzz_cli.py) found, each kept fixed by a direct oracle: the
exact message and exit code, and what is (not) left on disk."""

from __future__ import annotations

import json
import shutil
import struct
import zlib
from pathlib import Path

import pytest
import torch

from archlab.cli import main
from archlab.errors import ArchlabError

pytestmark = pytest.mark.usefixtures("one_thread")

GPT = ["--arch", "gpt", "--layers", "1", "--heads", "2", "--d-model", "16", "--block-size", "8"]
QUICK = ["--max-steps", "2", "--no-progress", "--threads", "1", "--batch-size", "4"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("text") / "corpus.txt"
    p.write_text("to be or not to be that is the question\n" * 200)
    return p


@pytest.fixture(scope="module")
def run(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "gpt"
    assert main(["train", "lm", *GPT, *QUICK, "--data", str(corpus), "--out", str(out)]) == 0
    return out


def _err(main_cli, *argv: str) -> str:
    r = main_cli(*argv)
    err = r.stderr.strip().splitlines()
    assert r.returncode == 2 and err and "Traceback" not in r.stderr, (r.returncode, err)
    return err[-1]


def test_a_path_too_long_is_one_line(main_cli):
    line = _err(main_cli, "eval", "x" * 300)
    assert line.startswith("archlab eval: error: ") and "File name too long" in line


@pytest.mark.parametrize(
    "flags,words",
    [
        (["--layers", "1000000000000"], ["layers must be <= 1,024"]),
        (["--d-model", "1000000000000", "--heads", "1"], ["d_model must be <= 16,777,216"]),
        (["--d-model", "1000000"], ["parameters: training needs", "GiB", "available"]),
        (["--batch-size", "1000000000000"], ["out of memory", "--batch-size"]),
        (["--tokenizer", "bpe", "--vocab-size", "1000000000000"], ["257..1,048,576"]),
        (["--eval-stride", "9"], ["--eval-stride 9 must not exceed the block size 8"]),
        (["--seed", "1" + "0" * 25], ["seed must be an integer in [-2**63, 2**64)"]),
    ],
)
def test_sizes_past_memory_are_one_line_and_leave_no_run(flags, words, corpus, tmp_path, main_cli):
    """Sizes that cannot fit were a RuntimeError from the allocator, a hang building 10^12
    layers, or an abort inside the BPE trainer (past any handler). Now each is one line, before
    anything is allocated where it can be known, and the new --out is left absent."""
    out = tmp_path / "o"
    line = _err(
        main_cli, "train", "lm", *GPT, *QUICK, "--data", str(corpus), *flags, "--out", str(out)
    )
    assert all(w in line for w in words), line
    assert not out.exists()


def test_a_new_run_that_fails_before_its_first_checkpoint_leaves_out_empty(
    corpus, tmp_path, main_cli
):
    """A tokenizer.json left by a failed start made --out a foreign folder the corrected command
    refused. An empty folder given as --out stays, empty."""
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "new", tmp_path / "empty"):
        bad = ["--max-seq-len", "16"]  # learned positions need max_seq_len == block_size (8)
        _err(main_cli, "train", "lm", *GPT, *QUICK, "--data", str(corpus), *bad, "--out", str(out))
        assert not out.exists() or not any(out.iterdir())
        assert main(["train", "lm", *GPT, *QUICK, "--data", str(corpus), "--out", str(out)]) == 0


def test_a_run_killed_before_its_first_checkpoint_is_resumable(corpus, tmp_path, monkeypatch):
    """A new run directory is marked as ours before the tokenizer is written, so a kill in
    between leaves a run that --resume starts afresh (not a folder holding a tokenizer.json)."""
    import archlab.data as data
    from archlab.models.checkpoint_io import is_run_dir

    out, seen, fit = tmp_path / "o", [], data.fit_tokenizer

    def spy(*a, **k):
        seen.append(is_run_dir(out))
        return fit(*a, **k)

    monkeypatch.setattr(data, "fit_tokenizer", spy)
    assert main(["train", "lm", *GPT, *QUICK, "--data", str(corpus), "--out", str(out)]) == 0
    assert seen == [True]


def test_resume_with_another_arch_keeps_the_runs_own(run, corpus, tmp_path, caplog):
    """--resume --arch lstm on a GPT run was an AttributeError (the LSTM builder got the GPT's
    config); the run's architecture is kept, with the warning."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    argv = ["train", "lm", "--arch", "lstm", *QUICK, "--max-steps", "3", "--data", str(corpus)]
    assert main([*argv, "--resume", "--out", str(copy)]) == 0
    assert "keeping the run's arch='gpt'" in caplog.text
    assert json.loads((copy / "config.json").read_text())["step"] == 3


def test_tokenizer_files_with_non_strings_are_refused(tmp_path):
    from archlab.data import load_tokenizer

    bad = [
        {"kind": "word", "itos": ["a", None, "<unk>", "<eos>"]},
        {"kind": "word", "itos": "<unk><eos>"},
        {"kind": "char", "chars": ["a", 1], "unk": True},
    ]
    for i, d in enumerate(bad):
        (tmp_path / f"{i}.json").write_text(json.dumps(d))
        with pytest.raises(ArchlabError, match="corrupt tokenizer"):
            load_tokenizer(tmp_path / f"{i}.json")


def test_grown_config_is_refused_at_the_size_of_the_file(run, tmp_path):
    """A config.json edited to d_model 4096 would build (and allocate) that model before the
    weights were found not to fit; the header's shapes are checked first, on the meta device."""
    from archlab.models import load

    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    cfg = json.loads((copy / "config.json").read_text())
    for change in ({"d_model": 4096, "heads": 2}, {"layers": 1000}):
        c = json.loads(json.dumps(cfg))
        c["model"]["config"].update(change)
        (copy / "config.json").write_text(json.dumps(c))
        with pytest.raises(ArchlabError, match="does not match the model in config.json"):
            load(copy)


def test_count_params_allocates_nothing():
    from archlab.models import create_model
    from archlab.models.registry import count_params, make_config

    cfg = make_config("gpt", vocab_size=65, layers=2, heads=2, d_model=16)
    model = create_model("gpt", vocab_size=65, layers=2, heads=2, d_model=16)
    want = sum(p.numel() for p in model.parameters())
    assert count_params("gpt", cfg) == want
    big = make_config("gpt", vocab_size=65, layers=2, heads=1, d_model=1 << 20)  # 2^45 bytes
    assert count_params("gpt", big) > 24 * (1 << 40) // 4


def _png_header(w: int, h: int) -> bytes:
    chunk = b"IHDR" + struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(chunk) & 0xFFFFFFFF)
    end = b"\x00\x00\x00\x00IEND\xaeB`\x82"
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + crc + end


def test_an_image_claiming_huge_size_is_one_line(tmp_path):
    """Pillow raised DecompressionBombError (a traceback) past 179M pixels and would decode
    anything below; the header's size is checked against MAX_IMAGE_PIXELS first."""
    from archlab.data.image_formats import MAX_IMAGE_PIXELS, load_image_file

    # 900M pixels (Pillow's bomb error) and 81M (under Pillow's limit, over ours)
    for side, says in ((30000, "too large"), (9000, "9000x9000 pixels")):
        p = tmp_path / f"{side}.png"
        p.write_bytes(_png_header(side, side))
        assert side * side > MAX_IMAGE_PIXELS
        with pytest.raises(ArchlabError, match=says):
            load_image_file(p, 1, 28)


def test_out_of_memory_anywhere_is_one_line(monkeypatch, main_cli):
    """The CLI's last line of defence: an allocation failure in any command is one line."""
    import archlab.commands.cost as cost

    def boom(**kw):
        raise RuntimeError(
            "DefaultCPUAllocator: can't allocate memory: you tried to allocate 8000000000000 bytes"
        )

    monkeypatch.setitem(cost.LAYERS, "linear", (boom, *cost.LAYERS["linear"][1:]))
    line = _err(main_cli, "cost", "linear", "--in-features", "2", "--out-features", "3")
    assert line == (
        "archlab cost: error: out of memory (an allocation of 7,450.6 GiB failed); use smaller "
        "sizes (--batch-size, --block-size, the model's) or free memory"
    )
    monkeypatch.setitem(cost.LAYERS, "linear", (_raise_other, *cost.LAYERS["linear"][1:]))
    with pytest.raises(RuntimeError, match="a bug"):  # other RuntimeErrors are not hidden
        main(["cost", "linear", "--in-features", "2", "--out-features", "3"])


def _raise_other(**kw):
    raise RuntimeError("a bug")


def test_meta_device_is_left_alone():
    assert torch.empty(1).device.type == "cpu"  # count_params' device context did not leak


@pytest.mark.parametrize(
    "argv,flag",
    [
        (["--models-dir", ""], "--models-dir"),
        (["--study", ""], "--study"),
        ([""], "RUN_DIR"),
        (["--train-seconds", "nan"], "--train-seconds"),
        (["--train-seconds", "0"], "--train-seconds"),
    ],
)
def test_lab_refuses_an_empty_path_and_a_bad_budget(argv, flag, main_cli, tmp_path, monkeypatch):
    """``archlab lab --models-dir ''`` wrote its example images into the current folder (an empty
    path is ``.``); a NaN budget failed later, in the training thread, as a traceback."""
    monkeypatch.chdir(tmp_path)
    line = _err(main_cli, "lab", *argv)
    assert line.startswith("archlab lab: error: ") and flag in line, line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("task", [None, 3, "x"])
def test_a_run_config_with_a_bad_task_is_one_line(task, run, tmp_path, main_cli):
    """config.json with ``"task": null`` made ``predict`` raise KeyError('None')."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    cfg = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**cfg, "task": task}))
    before = (copy / "config.json").read_bytes()
    line = _err(main_cli, "predict", str(copy), "to be")
    assert line.startswith("archlab predict: error: ") and str(copy) in line, line
    assert (copy / "config.json").read_bytes() == before


@pytest.mark.parametrize(
    "field,value",
    [
        ("checks", None),
        ("verdict", []),
        ("method", 3),
        ("seeds", None),
        ("metrics.torch_tensors", None),  # P3's tables raised AttributeError on it
    ],
)
def test_a_cache_entry_whose_fields_do_not_follow_from_its_metrics_is_recomputed(
    field, value, tmp_path, capsys, caplog
):
    """A P3 cache entry with ``"checks": null`` passed the cache check and crashed the report
    renderer (a jinja2 UndefinedError). Every field but the metrics and timings follows from the
    claim and the options: one that does not is damage, recomputed with a notice."""
    out = tmp_path / "study"
    argv = ["study", "--only", "P3", "--offline", "--no-progress", "--threads", "1"]
    argv += ["--out", str(out)]
    capsys.readouterr()
    assert main(argv) == 0
    entry = next((out / "cache").glob("P3-*.json"))
    good = entry.read_bytes()
    results = json.loads((out / "results.json").read_text())
    doc = json.loads(good)
    *parents, name = field.split(".")
    parent = doc[parents[0]] if parents else doc
    parent[name] = value
    entry.write_text(json.dumps(doc))
    with caplog.at_level("WARNING"):
        assert main(argv) == 0
    fresh = json.loads(entry.read_bytes())
    assert fresh["timing"]["from_cache"] is False  # recomputed: the same entry, timing aside
    assert {**fresh, "timing": None, "digest": None} == {
        **json.loads(good),
        "timing": None,
        "digest": None,
    }
    notices = [r.message for r in caplog.records if "damaged" in r.message]
    assert notices and ("digest" in notices[0] or field in notices[0]), notices
    again = json.loads((out / "results.json").read_text())
    assert again["claims"][0]["checks"] == results["claims"][0]["checks"]


def test_json_nested_too_deep_is_one_line(run, tmp_path, main_cli):
    """A config.json of 100,000 nested lists raised RecursionError inside json.load."""
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    (copy / "config.json").write_text("[" * 100000 + "]" * 100000)
    line = _err(main_cli, "eval", str(copy))
    assert "config.json is corrupt" in line and "nested too deep" in line, line
    (copy / "tokenizer.json").write_text('{"a":' * 100000 + "1" + "}" * 100000)
    shutil.copy(run / "config.json", copy / "config.json")
    line = _err(main_cli, "predict", str(copy), "to be")
    assert "tokenizer" in line and "nested too deep" in line, line
