"""Issue 14's property-based fuzz suite: every subcommand's argv, and corrupt versions of every
file kind archlab reads, through the real ``archlab.cli.main`` (in this process).

Each case must end with exit 0 or 2 and no traceback, within the time and memory bounds, and
leave every file it was not meant to write byte-identical (the properties are spelled out, and
checked, in ``tests/fuzzing.py``). Hypothesis is derandomized and keeps no database, so CI runs
the same cases every time; ``benchmarks/fuzz_cli.py`` runs the long campaign with other seeds.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzing import (
    JUNK,
    RUN_FILES,
    World,
    argvs,
    check,
    corrupt_bytes,
    corrupt_idx,
    corrupt_image,
    corrupt_json,
    leaf_commands,
    run_case,
)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

EXAMPLES = 100  # per command (issue 14: >= 100 in CI)


def fuzz(n: int = EXAMPLES) -> settings:
    return settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    w = World(tmp_path_factory.mktemp("fuzz")).build()
    yield w
    w.leave()


def _commands() -> dict[str, list[tuple[str, ...]]]:
    groups: dict[str, list[tuple[str, ...]]] = {}
    for cmd in leaf_commands():
        groups.setdefault(" ".join(cmd[:2]) if cmd[0] == "train" else cmd[0], []).append(cmd)
    return groups


COMMANDS = _commands()
# Top-level words (bare "study" is left out: it is the whole quick study, minutes by design).
TOP = [*sorted({c[0] for cmds in COMMANDS.values() for c in cmds} - {"study"}), "lm", "image"]


def test_every_subcommand_is_fuzzed():
    """The groups below are what ``archlab --help`` lists (a new command joins the fuzz)."""
    assert set(COMMANDS) == {
        "study",
        "cost",
        "train lm",
        "train image",
        "eval",
        "predict",
        "generate",
        "classify",
        "lab",
    }
    from archlab.commands.cost import LAYERS

    assert {c[1] for c in COMMANDS["cost"]} == {*LAYERS, "model"}  # every layer + `cost model`


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_argv(world, command):
    @fuzz()
    @given(st.sampled_from(COMMANDS[command]).flatmap(argvs))
    def case(argv):
        check(run_case(world, argv))

    case()


def test_top_level_argv(world):
    @fuzz()
    @given(st.lists(st.sampled_from(TOP + JUNK), max_size=4))  # JUNK has -v, --version, --help
    def case(argv):
        check(run_case(world, argv))

    case()


# ------------------------------------------------------------------------------ corrupt files
READERS = {  # what reads a run, with the run's placeholder replaced by the corrupted copy
    "lm": [
        ["eval", "RUN"],
        ["predict", "RUN", "to be"],
        ["generate", "RUN", "--max-new-tokens", "5"],
    ],
    "image": [["eval", "RUN", "--split", "test"], ["classify", "RUN", "@PNG"]],
}
RESUME = {
    "lm": ["train", "lm", "--arch", "gpt", "--data", "@CORPUS", "--max-steps", "3"],
    "image": ["train", "image", "--arch", "mlp", "--data", "mnist", "--max-steps", "3"],
}
RUNS = {"lm": "lm", "lstm": "lm", "image": "image", "cnn": "image"}


def test_corrupt_run_files(world):
    """A run with one file damaged (checkpoint tensors, optimizer state, config, resolved config,
    metrics, tokenizer): readers exit 0 or 2 and never change it; ``--resume`` refuses it
    untouched, or (a damage that does not matter, such as a metrics line) continues it."""

    @fuzz(60)
    @given(st.sampled_from(sorted(RUNS)), st.sampled_from(sorted(RUN_FILES)), st.data())
    def case(run, name, data):
        copy = world.copy(world.runs / run)
        path = copy / name
        if not path.exists():  # image runs have no tokenizer
            path = copy / "config.json"
        path.write_bytes(data.draw(RUN_FILES[path.name](path.read_bytes()), label="bytes"))
        task = RUNS[run]
        resume = [*RESUME[task], "--no-progress", "--threads", "1", "--resume", "--out", "RUN"]
        argv = data.draw(st.sampled_from([*READERS[task], resume]), label="argv")
        argv = [str(copy) if a == "RUN" else a for a in argv]
        o = run_case(world, argv, watch=copy)
        check(o)
        writes = argv[0] == "train" and o.rc == 0
        allowed = [c for c in o.changed if argv[0] == "eval" and c.startswith("confusion_")]
        assert writes or o.changed == allowed, (argv, name, o.changed)

    case()


def test_corrupt_data_files(world):
    """IDX (MNIST layout), CIFAR-10 binary batches and their class names, and text corpora, each
    damaged in a copy of the data: training on them (and evaluating a run that reads them) is
    exit 0 or 2 and never a traceback; the data are never changed."""
    data_root = world.data

    @fuzz(50)
    @given(st.sampled_from(["idx", "cifar", "cifar-meta", "text"]), st.data())
    def case(kind, data):
        root = world.copy(data_root)
        env = {"ARCHLAB_DATA": str(root)}
        tiny = ["--max-steps", "1", "--no-progress", "--threads", "1", "--batch-size", "4"]
        if kind == "idx":
            files = sorted(p.name for p in (root / "mnist").iterdir())
            path = root / "mnist" / data.draw(st.sampled_from(files))
            path.write_bytes(data.draw(corrupt_idx(path.read_bytes())))
            argv = data.draw(
                st.sampled_from(
                    [
                        ["train", "image", "--arch", "mlp", "--data", "mnist", "--out", "@NEW"],
                        ["eval", "@IMAGE"],
                    ]
                )
            )
        elif kind.startswith("cifar"):
            folder = root / "cifar-10-batches-bin"
            name = "batches.meta.txt" if kind == "cifar-meta" else "data_batch_2.bin"
            path = folder / name
            path.write_bytes(data.draw(corrupt_bytes(path.read_bytes())))
            argv = ["train", "image", "--arch", "mlp", "--data", "cifar10", "--out", "@NEW"]
        else:
            path = world.copy(world.root / "corpus.txt")
            path.write_bytes(data.draw(corrupt_bytes(path.read_bytes())))
            tok = data.draw(st.sampled_from(["char", "word", "bpe"]))
            argv = ["train", "lm", "--arch", "gpt", "--layers", "1", "--d-model", "8"]
            argv += ["--heads", "2", "--block-size", "4", "--tokenizer", tok, "--data", str(path)]
            argv += ["--out", "@NEW"]
        watch = root if kind != "text" else path
        o = run_case(world, [*argv, *tiny] if argv[0] == "train" else argv, env=env, watch=watch)
        check(o)
        assert not o.changed, o.changed

    case()


def test_corrupt_images(world):
    """``classify`` of a damaged image, one whose header claims 30,000² pixels or more, or one in
    an unusual mode (1-bit, 16-bit, float, CMYK, palette): exit 0 or 2, bounded, file intact."""
    originals = {p.name: p.read_bytes() for p in (world.root / "img").iterdir()}

    @fuzz(50)
    @given(st.sampled_from(sorted(originals)), st.sampled_from(["@IMAGE", "@CNN"]), st.data())
    def case(name, run, data):
        path = world.copy(world.root / "img" / name)
        path.write_bytes(data.draw(corrupt_image(originals[name])))
        o = run_case(world, ["classify", run, str(path), "--top-k", "2"], watch=path)
        check(o)
        assert not o.changed

    case()


def test_corrupt_study_folder(world):
    """A study folder with a damaged cache entry, results.json, marker or report: ``study``
    recomputes what it needs with a notice (exit 0), rewrites its outputs whole, and leaves the
    entries of claims it did not run byte-identical."""
    study = world.root / "study"
    names = sorted(str(p.relative_to(study)) for p in study.rglob("*") if p.is_file())
    names = [n for n in names if not n.startswith("figures/")]

    @fuzz(30)
    @given(st.sampled_from(names), st.sampled_from(["P3", "P4", "P3,P4"]), st.data())
    def case(name, only, data):
        copy = world.copy(study)
        path = copy / name
        kind = corrupt_json if name.endswith(".json") else corrupt_bytes
        path.write_bytes(data.draw(kind(path.read_bytes())))
        others = {
            p.name: p.read_bytes()
            for p in (copy / "cache").glob("*.json")
            if p.name.split("-")[0] not in only.split(",")
        }
        argv = ["study", "--only", only, "--offline", "--no-progress", "--threads", "1"]
        o = run_case(world, [*argv, "--out", str(copy)], keep=True)
        check(o)
        assert o.rc == 0, o.stderr
        results = json.loads((copy / "results.json").read_text())
        ran = {c["id"] for c in results["claims"]}
        assert set(only.split(",")) <= ran
        for cid in only.split(","):
            entry = next(copy.glob(f"cache/{cid}-*.json"))
            assert json.loads(entry.read_text())["id"] == cid
        for p_name, content in others.items():
            assert (copy / "cache" / p_name).read_bytes() == content, p_name
        if name.startswith("cache/") and name.split("/")[1][:2] in only and "damaged" in o.stderr:
            assert "recomputing" in o.stderr

    case()


def test_world_is_as_built(world):
    """The fuzz restored everything it was allowed to write: the world equals its pristine copy
    (a guard on the harness itself)."""
    assert world._digests() == world.baseline
