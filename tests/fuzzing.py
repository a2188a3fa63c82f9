"""The CLI fuzzing harness of issue 14, shared by ``tests/test_fuzz_cli.py`` (CI) and
``benchmarks/fuzz_cli.py`` (the long campaign).

A *case* is an argv, run through :func:`archlab.cli.main` in this process (no interpreter or torch
start-up per case), perhaps after one file it reads was corrupted. :func:`check` asserts the
properties issue 14 asks for:

1. **Exit 0 or 2, never a traceback.** No exception other than ``SystemExit(0|2)`` escapes
   ``main``; no log record carries a traceback; stderr has no ``Traceback``; exit 2 ends with one
   ``archlab ...: error: ...`` line, exit 0 has none.
2. **Bounded time.** An interval timer interrupts a case after :data:`CASE_SECONDS` (a failure).
3. **Bounded memory.** The case runs under an address-space limit (``RLIMIT_AS``) of the process's
   current size plus :data:`CASE_MEMORY`: an allocation past it fails, and a failure that escapes
   is a traceback (property 1). The limit is the soft one, restored after the case.
4. **Nothing touched.** Every file of the world (runs, study folder, data, images, a user's folder,
   the working directory) is byte-identical afterwards, except what the command is meant to write:
   the run it trains (``train``, exit 0), the study's outputs (``study``, exit 0: results,
   reports, figures and the cache entries of the claims it ran) and an image run's
   ``confusion_<split>.png`` (``eval``, exit 0). A failed ``train`` leaves a new ``--out``
   absent or empty.

Paths in generated argvs are placeholders (``@LM``, ``@NEW``, ...) that :class:`World` resolves,
so a failing case prints as a readable, reproducible command line.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gzip
import hashlib
import io
import json
import logging
import os
import re
import resource
import shutil
import signal
import struct
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st

from archlab.cli import build_parser, main

CASE_SECONDS = 60.0  # wall seconds a case may take (tiny runs take < 2 s; the CI machine is shared)
CASE_MEMORY = 2 << 30  # bytes of address space a case may add to the process (2 GiB)


# ------------------------------------------------------------------------------ values
def _alts(text: str) -> list[str]:
    """``"a|b||c"`` -> ``["a", "b", "", "c"]``: a compact table of spellings."""
    return text.split("|")


# Hostile spellings for each kind of value; "good" values are cheap on purpose (a fuzz case must
# finish in seconds), so a size a user could legitimately ask for is not what is tested here.
# No NUL bytes: a real argv cannot hold one (C strings); files can, and the file fuzz has them.
BAD_INT = _alts(
    "0|-1|-7|1000000000000|9223372036854775808|1e3|1.5|nan|x|| |0x10|+3| 4 |1_0|２|٣|--1|-0"
)
BAD_FLOAT = _alts(
    "nan|inf|-inf|1e308|1e400|-1|0|-0.0|1e-320|x||0x1p3|1,2|Infinity|NaN|٣.٥|1e|.|5e-324"
)
BAD_STR = [
    "a" * 300,
    *_alts("| |-|--|-x|é|../..|/|/proc/x|/dev/null|\n|%s|%(prog)s|{}|💥|none"),
]
JUNK = _alts(
    "--bogus|-x|--|-|extra|--help|-h|--json|--out=|--max-st|--d|-v|--version|%|--no-|--=|☃"
)

# Values by destination (the last part of argparse's dest): (cheap good values, hostile values).
VALUES: dict[str, tuple[list[str], list[str]]] = {
    "max_steps": (_alts("1|2|3"), _alts("0|-1|none|x|1.5|nan|")),
    "max_time": (_alts("0.5|1|none"), _alts("0|-1|nan|inf|1e308|x|-inf|")),
    "batch_size": (_alts("1|2|4|16"), BAD_INT),
    # Steps and micro-batches are time the user asks for (like --max-steps): hostile, not huge.
    "grad_accum": (_alts("1|2"), _alts("0|-1|x|1.5||nan")),
    "block_size": (_alts("1|2|8|16"), BAD_INT),
    "eval_stride": (_alts("1|4|8|16|17"), BAD_INT),
    "vocab_size": (_alts("2|3|30|300"), BAD_INT),
    "threads": (_alts("1|2"), _alts("0|-1|1025|1000000000000|x|")),
    "seeds": (_alts("3|4|20"), _alts("0|1|2|21|-3|1000000000000|x|")),
    "seed": (
        _alts("0|1|7|9223372036854775807|18446744073709551615|-5"),
        [*BAD_INT, "18446744073709551616", "-9223372036854775809", "1" + "0" * 30],
    ),
    "layers": (_alts("1|2"), BAD_INT),
    "heads": (_alts("1|2|3"), BAD_INT),
    "d_model": (_alts("8|12|16"), BAD_INT),
    "d_ff": (_alts("8|32"), BAD_INT),
    "hidden_size": (_alts("8|16"), BAD_INT),
    "max_seq_len": (_alts("8|16|64"), BAD_INT),
    "channels": (_alts("4|4,8|4,,8"), _alts("0|-1||x|4,x|1000000000000|,|4;8")),
    "widths": (_alts("4|4,8"), _alts("0|-1||x|4,x|1000000000000")),
    "blocks": (_alts("1|1,1"), _alts("0|-1||x|1000000000000")),
    "hidden": (_alts("8|8,8|none"), _alts("0|-1||x|1000000000000")),
    "patch_size": (_alts("4|7|14|28"), [*BAD_INT, "3", "5", "29"]),
    "convs_per_stage": (_alts("1|2"), BAD_INT),
    "kernel_size": (_alts("1|3|3x3|2,3"), [*BAD_INT, *_alts("3x|x3|1000000000000x2")]),
    "train_size": (_alts("20|40|64"), [*BAD_INT, "99999"]),
    "val_size": (_alts("10|20"), [*BAD_INT, "99999"]),
    "max_new_tokens": (_alts("0|1|5|40"), _alts("-1|x|nan||1.5")),
    "top_k": (_alts("1|3|5|1000000"), _alts("0|-1|x|nan|")),
    "temperature": (_alts("0|0.5|1|2"), BAD_FLOAT),
    "stride": (_alts("1|4|8|16|17"), BAD_INT),
    "depth": (_alts("0|1|3"), BAD_INT),
    "input_shape": (
        _alts("2x16|2,16|3x12|1x4"),
        _alts("|x|0|-1|2x|x2|1e3|2x0|100000000000x4|10000000000x10000000000|2 x 16|2x16x")
        + ["9" * 40],
    ),
    "input_dtype": (_alts("float32|long|int|bfloat16"), _alts("|x|float128|LONG|object")),
    "only": (_alts("P3|P4|P3,P4|p4| P3 "), _alts("|,|Z9|P3,,P4|P3,Z1|T|all| |P3;P4|p0")),
    "prompt": (_alts("to be|\n|x|zzzz|é") + ["q" * 300], _alts("| |💥")),
    "text": (_alts("to be or|the|é") + ["x" * 300], _alts("| |💥")),
    "betas": (_alts("0.9,0.95|0.5,0.5|0,0"), _alts("1,1|0.9|0.9,0.95,0.99|x,y||,|nan,0.9|-1,0.5")),
    "lr": (_alts("0.001|0.1|1"), BAD_FLOAT),
    "min_lr": (_alts("0|0.0001|none"), BAD_FLOAT),
    "dropout": (_alts("0|0.1|0.5"), [*BAD_FLOAT, "1", "1.5"]),
    "mlp_ratio": (_alts("1|2|0.5"), BAD_FLOAT),
    "forget_bias": (_alts("0|1|-1"), BAD_FLOAT),
    "momentum": (_alts("0|0.9"), [*BAD_FLOAT, "1"]),
    "weight_decay": (_alts("0|0.1|none"), BAD_FLOAT),
    "label_smoothing": (_alts("0|0.1"), [*BAD_FLOAT, "1"]),
    "distill_alpha": (_alts("0|0.5|1"), [*BAD_FLOAT, "1.5"]),
    "distill_tau": (_alts("1|2"), BAD_FLOAT),
    "grad_clip": (_alts("1|0.25|none"), BAD_FLOAT),
    "eps": (_alts("1e-8|1"), BAD_FLOAT),
    "warmup_steps": (_alts("0|1|5"), BAD_INT),
    "eval_interval": (_alts("0|1|2"), BAD_INT),
    "checkpoint_interval": (_alts("1|2|none"), BAD_INT),
    "log_interval": (_alts("1|2"), BAD_INT),
    "attn_window": (_alts("none|1|3"), BAD_INT),
    # archlab lab: a free high port; hosts that need no name lookup (no network in a fuzz case)
    "port": (_alts("48611|48612"), _alts("0|-1|65536|70000|x||1e3")),
    "host": (_alts("127.0.0.1|localhost|::1"), _alts("192.0.2.1|300.1.1.1|::g|,")),
    "train_seconds": (_alts("0.5|1"), BAD_FLOAT),
    "pool": (_alts("max|avg|none|cls|mean"), BAD_STR),
    "positions": (_alts("learned|none|rope|sinusoidal"), BAD_STR),
    "attention": (_alts("sdpa|naive|math"), BAD_STR),
    "padding_mode": (_alts("zeros|circular|reflect"), BAD_STR),
    "tokenizer": (_alts("linear|spt|conv|char|word|bpe"), BAD_STR),
    "target": (
        _alts(
            "mods:lin|mods:Lin|mods:seq|mods:Exit|exits_on_import:x|tests.fixtures_models:mlp"
            "|torch.nn:ReLU|torch.nn:Identity"
        ),
        _alts(
            "|:|mods|mods:|:lin|mods:nothing|nothere:x|mods:lin:x|math:pi|json:loads"
            "|mods:NotAModule|a b:c|../mods:lin|mods:lin.weight|torch.nn:Linear"
        ),
    ),
}
# Path placeholders, resolved by World.resolve: (what the command can use, what it must refuse).
PATHS: dict[str, tuple[list[str], list[str]]] = {
    "lm_run": (
        _alts("@LM|@LSTM"),
        _alts("@IMAGE|@STUDY|@USER|@FILE|@MISSING|@EMPTY|@STARTED||/|."),
    ),
    "image_run": (_alts("@IMAGE|@CNN"), _alts("@LM|@STUDY|@USER|@FILE|@MISSING|@EMPTY||/proc|.")),
    "any_run": (
        _alts("@LM|@LSTM|@IMAGE|@CNN"),
        _alts("@STUDY|@USER|@FILE|@MISSING|@EMPTY|@STARTED||/"),
    ),
    "lm_out": (
        _alts("@NEW|@NEW|@EMPTY|@LMCOPY|@STARTED"),
        _alts("@LM|@IMAGECOPY|@USER|@FILE|@STUDY||/|/proc/x|/dev/null|."),
    ),
    "image_out": (
        _alts("@NEW|@NEW|@EMPTY|@IMAGECOPY"),
        _alts("@IMAGE|@LMCOPY|@STARTED|@USER|@FILE|@STUDY||/|/proc/x|/dev/null|."),
    ),
    "study_out": (
        _alts("@STUDY|@STUDY|@NEW|@EMPTY"),
        _alts("@USER|@LM|@FILE||/proc/x|/dev/null|."),
    ),
    "lm_data": (
        _alts("@CORPUS|@CORPUS|@TEXTDIR|pydoc"),
        _alts("@EMPTYFILE|@BINFILE|@EMPTY|@USER|wikitext2|@MISSING|| |/dev/null|/proc/self/status"),
    ),
    "image_data": (
        _alts("mnist|mnist|cifar10"),
        _alts("fashion-mnist|fashion-mnist-subset|MNIST|@CORPUS|@MISSING||imagenet"),
    ),
    "teacher": (_alts("@IMAGE|@CNN"), _alts("@LM|@MISSING|@FILE|@EMPTY||@USER")),
    "run_dirs": (
        _alts("@LM|@LSTM|@IMAGE|@CNN"),
        _alts("@STUDY|@USER|@FILE|@MISSING|@EMPTY|@STARTED||/"),
    ),
    "study": (_alts("@STUDY|@NEW|@EMPTY"), _alts("@USER|@FILE|@MISSING||/proc/x|/dev/null")),
    "models_dir": (_alts("@LABDIR|@LABDIR|@NEW|@EMPTY"), _alts("@USER|@FILE||/proc/x|/dev/null")),
    "image": (
        _alts("@PNG|@RGBPNG|@JPEG|@GIF"),
        _alts("@CORPUS|@BINFILE|@EMPTYFILE|@MISSING|@EMPTY||/dev/null"),
    ),
}
ARCHS = {  # the first nine are the task's own
    "lm": _alts("gpt|gpt|lstm|gru|rnn|gpt-nano|lstm-char|lstm-wt2|gpt-small-char|cnn|GPT||x|gpt "),
    "image": _alts("mlp|mlp|cnn|vit|resnet|mlp-100|cnn-fmnist|vit-fmnist|preresnet20|gpt||x|MLP"),
}
# Tiny sizes prepended to every training argv (later flags override them): a valid case trains a
# model of a few thousand parameters for two steps.
GUARDS = {
    "gpt": "--layers 1 --heads 2 --d-model 16".split(),
    "rnn": "--layers 1 --d-model 8 --hidden-size 16".split(),
    "mlp": "--hidden 16".split(),
    "cnn": "--channels 4 --convs-per-stage 1".split(),
    "vit": "--d-model 16 --heads 2 --layers 1 --patch-size 7".split(),
    "resnet": "--widths 4 --blocks 1".split(),
}
_QUICK = "--max-steps 2 --no-progress --threads 1".split()
TRAIN_GUARD = {
    "lm": [*_QUICK, *"--block-size 8 --batch-size 4 --data @CORPUS".split()],
    "image": [*_QUICK, *"--batch-size 8 --train-size 40 --val-size 20 --data mnist".split()],
}
STUDY_GUARD = "--only P3 --offline --no-progress --threads 1 --out @STUDY".split()


def _family(task: str, arch: str) -> str:
    """Which GUARDS fit ``arch`` (a task's first family for a name that is not one of its own)."""
    families = ("gpt", "lstm", "gru", "rnn") if task == "lm" else ("mlp", "cnn", "vit", "resnet")
    for fam in families:
        if fam in arch.strip().lower():
            return "rnn" if fam in ("lstm", "gru") else fam
    return families[0]


# ------------------------------------------------------------------------------ the CLI's shape
@dataclasses.dataclass
class Option:
    flags: list[str]  # ["--max-steps"], or ["--bias", "--no-bias"]
    dest: str  # the last part of argparse's dest ("max_steps")
    group: str  # the first part of a generated flag's dest: "model", "spec", "train" (or "")
    takes_value: bool
    choices: list[str] | None
    kind: str  # int | float | str | bool


def leaf_commands() -> dict[tuple[str, ...], argparse.ArgumentParser]:
    """Every leaf command of ``archlab`` (("study",), ("cost", "rnn"), ("train", "lm"), ...)."""
    out: dict[tuple[str, ...], argparse.ArgumentParser] = {}

    def walk(p: argparse.ArgumentParser, path: tuple[str, ...]) -> None:
        subs = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out[path] = p
            return
        for name, child in subs[0].choices.items():
            walk(child, (*path, name))

    walk(build_parser(), ())
    return out


def options_of(p: argparse.ArgumentParser) -> tuple[list[Option], list[Option]]:
    """(optional flags, positionals) of a leaf parser, help and version left out."""
    opts, pos = [], []
    for a in p._actions:
        if isinstance(a, (argparse._HelpAction, argparse._VersionAction)):
            continue
        dest = a.dest.split(".")[-1]
        takes = a.nargs != 0
        kind = "bool" if not takes else {int: "int", float: "float"}.get(a.type, "str")
        group = a.dest.split(".")[0] if "." in a.dest else ""
        choices = [str(c) for c in a.choices or []]
        o = Option(list(a.option_strings), dest, group, takes, choices, kind)
        (opts if a.option_strings else pos).append(o)
    return opts, pos


def _path_key(cmd: tuple[str, ...], dest: str) -> str | None:
    if dest == "out":
        return "study_out" if cmd == ("study",) else f"{cmd[1]}_out"
    if dest == "data":
        return "lm_data" if cmd == ("train", "lm") else "image_data"
    if dest == "run_dir":
        return {"eval": "any_run", "classify": "image_run"}.get(cmd[0], "lm_run")
    if cmd == ("lab",) and dest in ("run_dirs", "study", "models_dir"):
        return dest
    return dest if dest in ("teacher", "image") else None


def _value(cmd: tuple[str, ...], o: Option, hostile: bool) -> st.SearchStrategy[str]:
    """A value for option ``o``: a usable one, or (when ``hostile``) one time in three a bad one."""
    dest = o.dest
    key = _path_key(cmd, dest)
    if key is not None:
        good, bad = PATHS[key]
    elif dest == "arch":
        good, bad = ARCHS[cmd[1]][:9], ARCHS[cmd[1]][9:]
    elif dest == "tokenizer" and cmd == ("train", "lm"):
        good, bad = ["char", "word", "bpe"], BAD_STR
    elif dest in VALUES:
        good, bad = VALUES[dest]
    elif o.choices:
        good, bad = o.choices, [c.upper() for c in o.choices] + ["", "x", " "]
    elif o.kind == "float":
        good, bad = ["0.5", "1", "2"], BAD_FLOAT
    else:  # cost layer sizes (int); generated model flags parse by their field's type
        good, bad = ["1", "2", "4", "16"], BAD_INT + BAD_STR[:8]
    if not hostile:
        return st.sampled_from(good)
    return st.one_of(st.sampled_from(good), st.sampled_from(good), st.sampled_from(bad))


def _flag_tokens(cmd: tuple[str, ...], o: Option, hostile: bool) -> st.SearchStrategy[list[str]]:
    if not o.takes_value:
        return st.sampled_from(o.flags).map(lambda f: [f])
    return st.tuples(st.sampled_from(o.flags), _value(cmd, o, hostile), st.booleans()).map(
        lambda t: [f"{t[0]}={t[1]}"] if t[2] and t[1] and not t[1].startswith("-") else [t[0], t[1]]
    )


def _arch_fields(task: str, arch: str) -> set[str] | None:
    """Model config fields of ``arch`` (None: not a registered ``task`` architecture)."""
    from archlab.models.registry import get_spec

    try:
        spec = get_spec(arch)
    except Exception:  # noqa: BLE001  (an unknown name: any flag goes)
        return None
    if spec.task != task:
        return None
    return {f.name for f in dataclasses.fields(spec.config_cls)}


@st.composite
def argvs(draw: Any, cmd: tuple[str, ...]) -> list[str]:
    """An argv for leaf command ``cmd``: cheap guards, its required parts, then 0-6 of its flags.

    Half the cases are *plausible* (usable values, the chosen architecture's own flags, no junk:
    they reach training, evaluation, the study) and half *hostile* (a third of the values bad, a
    required part sometimes missing, flags of other architectures, junk tokens)."""
    hostile = draw(st.booleans())
    p = leaf_commands()[cmd]
    opts, pos = options_of(p)
    usable = [o for o in opts if o.dest != "compile"]  # torch.compile: minutes, not seconds
    if not hostile:  # the head gives these
        usable = [o for o in usable if o.dest not in ("arch", "out", "resume")]
    head: list[str] = []
    needed = st.integers(0, 9) if hostile else st.just(1)  # a required part, usually given
    if cmd[0] == "train":
        arch = draw(st.sampled_from(ARCHS[cmd[1]] if hostile else ARCHS[cmd[1]][:9]))
        head = [*TRAIN_GUARD[cmd[1]], *GUARDS[_family(cmd[1], arch)]]
        if draw(needed):
            head += ["--arch", arch]
        if draw(needed):
            out = draw(_value(cmd, Option(["--out"], "out", "", True, None, "str"), hostile))
            head += ["--out", out]
            if not hostile and out in ("@LMCOPY", "@IMAGECOPY", "@STARTED"):
                head.append("--resume")
        fields = _arch_fields(cmd[1], arch)
        if not hostile and fields is not None:
            usable = [o for o in usable if o.group != "model" or o.dest in fields]
    elif cmd == ("study",):
        head = list(STUDY_GUARD)
    elif cmd[0] == "cost":
        for o in opts:
            if p._option_string_actions[o.flags[0]].required and draw(needed):
                head += [o.flags[0], draw(_value(cmd, o, hostile))]
    body: list[list[str]] = []
    for o in pos:
        if draw(needed):
            body.append([draw(_value(cmd, o, hostile))])
    for _ in range(draw(st.integers(0, 6))):
        o = draw(st.sampled_from(usable))
        body.append(draw(_flag_tokens(cmd, o, hostile)))
    if hostile:
        for _ in range(draw(st.sampled_from([0, 0, 1, 2]))):
            body.append([draw(st.sampled_from(JUNK))])
    order = draw(st.permutations(range(len(body))))
    return [*cmd, *head, *(t for i in order for t in body[i])]


# ------------------------------------------------------------------------------ the world
def _idx(a: np.ndarray, magic: int) -> bytes:
    head = magic.to_bytes(4, "big") + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    return head + a.astype(np.uint8).tobytes()


def write_idx_dataset(folder: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    """A small Fashion-MNIST/MNIST-shaped IDX dataset (gzipped, as the real files are)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    labels = np.arange(n_train + n_test) % 10
    images = rng.integers(0, 256, (n_train + n_test, 28, 28)).astype(np.uint8)
    images[labels % 2 == 0, :14] //= 4  # a learnable signal
    for split, sl in (("train", slice(0, n_train)), ("t10k", slice(n_train, None))):
        for kind, arr, magic in (
            ("images-idx3", images[sl], 2051),
            ("labels-idx1", labels[sl], 2049),
        ):
            (folder / f"{split}-{kind}-ubyte.gz").write_bytes(
                gzip.compress(_idx(arr, magic), mtime=0)
            )


def write_cifar(folder: Path, n: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        rec = rng.integers(0, 256, (n, 3073)).astype(np.uint8)
        rec[:, 0] = np.arange(n) % 10
        (folder / name).write_bytes(rec.tobytes())
    (folder / "batches.meta.txt").write_text("\n".join(f"class{i}" for i in range(10)) + "\n")


MODS = """from torch import nn
lin = nn.Linear(4, 3)
Lin = nn.Linear
seq = nn.Sequential(nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 2))
NotAModule = 3
class Exit(nn.Module):
    def __init__(self):
        raise SystemExit(5)
"""


def _tree(root: Path) -> dict[str, bytes]:
    """Every file (and empty directory) under ``root`` with its bytes."""
    out: dict[str, bytes] = {}
    if not root.exists():
        return out
    if root.is_file():
        return {"": root.read_bytes()}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_file() and not p.is_symlink():
            out[rel] = p.read_bytes()
        elif p.is_dir() and not any(p.iterdir()):
            out[rel + "/"] = b""
    return out


def digest(root: Path) -> dict[str, str]:
    return {k: hashlib.sha256(v).hexdigest()[:16] for k, v in _tree(root).items()}


class World:
    """The files a fuzz case may meet: tiny runs (GPT, word-level LSTM, MLP, CNN), a study folder
    with cached P3/P4, a data root with tiny IDX and CIFAR files, images, text, a user's folder.

    Built once (a few seconds); each case works on it in place and :meth:`check_untouched` proves
    it unchanged (or restores what a case was meant to write, from the pristine copy).
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data = root / "data"
        self.runs = root / "runs"
        self.scratch = root / "cwd"
        self.pristine = root / "pristine"
        self.n_new = 0
        self._env: dict[str, str | None] = {}
        self._lab: tuple | None = None

    # -- building
    def build(self) -> World:
        r = self.root
        for d in (self.data, self.runs, self.scratch, r / "user", r / "empty", r / "text"):
            d.mkdir(parents=True, exist_ok=True)
        self.enter()
        write_idx_dataset(self.data / "mnist", 120, 40)
        write_cifar(self.data / "cifar-10-batches-bin", 20)
        words = "to be or not that is the question whether tis nobler in mind suffer".split()
        rng = np.random.default_rng(1)
        lines = [" ".join(rng.choice(words, 9)) for _ in range(150)]
        (r / "corpus.txt").write_text("\n".join(lines) + "\n")
        (r / "text" / "a.txt").write_text("\n".join(lines[:60]) + "\n")
        (r / "text" / "b.txt").write_text("\n".join(lines[60:]))
        (r / "empty.txt").write_bytes(b"")
        (r / "blob.bin").write_bytes(bytes(range(256)) * 8)
        (r / "user" / "notes.txt").write_text("the user's own file\n")
        (r / "user" / "model.safetensors").write_bytes(b"not ours")
        (r / "afile").write_text("a file, not a folder\n")
        (self.scratch / "mods.py").write_text(MODS)
        (self.scratch / "exits_on_import.py").write_text("raise SystemExit(3)\n")
        self._images()
        corpus = str(r / "corpus.txt")
        quiet = "--no-progress --threads 1 --batch-size 8 --max-steps 2".split()
        lm, image = ["train", "lm", "--data", corpus], "train image --data mnist --val-size 20"
        for name, argv in {
            "lm": [*lm, "--arch", "gpt", *GUARDS["gpt"], "--block-size", "8"],
            "lstm": [*lm, *"--arch lstm --tokenizer word --optimizer sgd".split(), *GUARDS["rnn"]],
            "image": [*image.split(), "--arch", "mlp", *GUARDS["mlp"]],
            "cnn": [*image.split(), "--arch", "cnn", *GUARDS["cnn"]],
        }.items():
            with contextlib.redirect_stdout(io.StringIO()):
                assert main([*argv, *quiet, "--out", str(self.runs / name)]) == 0, name
        started = self.runs / "started"  # a run that died before its first checkpoint
        started.mkdir()
        (started / "resolved_config.json").write_bytes(
            (self.runs / "lm" / "resolved_config.json").read_bytes()
        )
        with contextlib.redirect_stdout(io.StringIO()):
            study = ["study", "--only", "P3,P4", "--offline", "--no-progress", "--threads", "1"]
            assert main([*study, "--out", str(r / "study")]) == 0
        from archlab.lab.examples import example_images  # the lab's, written once (as a user's)

        example_images(r / "home" / ".cache" / "archlab" / "lab")
        shutil.copytree(r, self.pristine, ignore=shutil.ignore_patterns("pristine"))
        self.baseline = self._digests()
        return self

    def _images(self) -> None:
        from PIL import Image

        d = self.root / "img"
        d.mkdir(exist_ok=True)
        g = np.random.default_rng(2)
        Image.fromarray(g.integers(0, 256, (28, 28)).astype(np.uint8)).save(d / "x.png")
        Image.fromarray(g.integers(0, 256, (40, 30, 3)).astype(np.uint8)).save(d / "rgb.png")
        Image.fromarray(g.integers(0, 256, (64, 64, 3)).astype(np.uint8)).save(d / "x.jpg")
        Image.fromarray(g.integers(0, 256, (16, 16)).astype(np.uint8)).save(d / "x.gif")

    def enter(self) -> None:
        """Point archlab at this world: its data root, offline, a HOME of its own. Log records
        go to each case's handler only (a root handler stops ``main``'s basicConfig)."""
        root = logging.getLogger()
        if not root.handlers:
            root.addHandler(logging.NullHandler())
        for k, v in {
            "ARCHLAB_DATA": str(self.data),
            "ARCHLAB_OFFLINE": "1",
            "HOME": str(self.root / "home"),
        }.items():
            self._env.setdefault(k, os.environ.get(k))
            os.environ[k] = v
        self._stub_lab()

    def _stub_lab(self) -> None:
        """``archlab lab`` runs as far as the server: its flags, the port check, the run
        directories it loads, the study folder and the example images; the web app is neither
        built nor served, and the default models (~90 s of training) are not trained."""
        import archlab.lab.server as server
        from archlab.lab.state import Lab

        if self._lab is not None:
            return
        self._lab = (server.build_app, server.serve, Lab.__dict__["with_defaults"])

        def with_defaults(cls: Any, root: Path, study_dir: Path, *a: Any, **k: Any) -> Any:
            return cls(study_dir=study_dir), None

        server.build_app = lambda lab, examples=(): None
        server.serve = lambda app, host, port, threads=1: None
        Lab.with_defaults = classmethod(with_defaults)

    def leave(self) -> None:
        for k, v in self._env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        self._env.clear()
        if self._lab is not None:
            import archlab.lab.server as server
            from archlab.lab.state import Lab

            server.build_app, server.serve, Lab.with_defaults = self._lab
            self._lab = None

    # -- placeholders
    def resolve(self, token: str) -> str:
        r = self.root

        def new() -> str:
            self.n_new += 1
            return str(r / "new" / f"n{self.n_new}")

        table: dict[str, Callable[[], str]] = {
            "@LM": lambda: str(self.runs / "lm"),
            "@LSTM": lambda: str(self.runs / "lstm"),
            "@IMAGE": lambda: str(self.runs / "image"),
            "@CNN": lambda: str(self.runs / "cnn"),
            "@STARTED": lambda: self._copy("started"),  # --resume may (re)start it
            "@STUDY": lambda: str(r / "study"),
            "@LABDIR": lambda: str(r / "home" / ".cache" / "archlab" / "lab"),  # examples there
            "@USER": lambda: str(r / "user"),
            "@FILE": lambda: str(r / "afile"),
            "@MISSING": lambda: str(r / "missing" / "nothing"),
            "@EMPTY": lambda: str(r / "empty"),
            "@NEW": new,
            "@LMCOPY": lambda: self._copy("lm"),
            "@IMAGECOPY": lambda: self._copy("image"),
            "@CORPUS": lambda: str(r / "corpus.txt"),
            "@TEXTDIR": lambda: str(r / "text"),
            "@EMPTYFILE": lambda: str(r / "empty.txt"),
            "@BINFILE": lambda: str(r / "blob.bin"),
            "@PNG": lambda: str(r / "img" / "x.png"),
            "@RGBPNG": lambda: str(r / "img" / "rgb.png"),
            "@JPEG": lambda: str(r / "img" / "x.jpg"),
            "@GIF": lambda: str(r / "img" / "x.gif"),
        }
        out = token
        for key in sorted(table, key=len, reverse=True):
            if key in out:
                out = out.replace(key, table[key]())
        return out

    def _copy(self, run: str) -> str:
        return str(self.copy(self.runs / run))

    def copy(self, src: Path) -> Path:
        """A fresh copy of ``src`` (file or folder) under ``new/``, removed after the next case."""
        self.n_new += 1
        dest = self.root / "new" / f"c{self.n_new}-{src.name}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest)
        else:
            shutil.copy2(src, dest)
        return dest

    # -- checking
    def _digests(self) -> dict[str, dict[str, str]]:
        tops = ["runs", "study", "data", "img", "user", "empty", "text", "cwd"]
        files = ["corpus.txt", "empty.txt", "blob.bin", "afile"]
        return {t: digest(self.root / t) for t in tops + files}

    def check_untouched(self, argv: list[str], rc: int | None, keep: bool = False) -> list[str]:
        """Problems with the world after a case (empty: none); restores what may be written and
        removes ``new/`` (the case's fresh folders and copies) unless ``keep``."""
        problems: list[str] = []
        now = self._digests()
        out = _last_value(argv, "--out")
        for top, before in self.baseline.items():
            after = now[top]
            if after == before:
                continue
            allowed = _allowed(self.root / top, argv, rc, out, before, after)
            bad = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
            bad = [k for k in bad if not allowed(k)]
            if bad:
                problems.append(f"{top}: changed {bad[:5]}")
            self._restore(top)
        new = self.root / "new"
        if new.exists():
            o = Path(out) if out is not None else None
            if rc != 0 and argv[0] == "train" and o is not None and o.parent == new:
                if o.name.startswith("n") and o.exists() and (not o.is_dir() or any(o.iterdir())):
                    problems.append(
                        f"a failed train left files in its new --out: {sorted(_tree(o))}"
                    )
            if not keep:
                shutil.rmtree(new)
        return problems

    def _restore(self, top: str) -> None:
        src, dst = self.pristine / top, self.root / top
        if dst.is_dir():
            shutil.rmtree(dst)
        elif dst.exists():
            dst.unlink()
        if src.is_dir():
            shutil.copytree(src, dst)
        elif src.exists():
            shutil.copy2(src, dst)


def _last_value(argv: list[str], flag: str) -> str | None:
    val = None
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            val = argv[i + 1]
        elif a.startswith(flag + "="):
            val = a.split("=", 1)[1]
    return val


def _allowed(
    top: Path, argv: list[str], rc: int | None, out: str | None, before: dict, after: dict
) -> Callable[[str], bool]:
    """Which changed paths under ``top`` the command ``argv`` was meant to write."""
    if rc != 0:
        return lambda k: False
    cmd = argv[0]
    if cmd == "lab":  # the example images, beside the default models
        models = _last_value(argv, "--models-dir")
        ex = (Path(models) if models else Path.home() / ".cache/archlab/lab") / "examples"
        return lambda k: (top / k).resolve().is_relative_to(ex.resolve())
    if cmd == "eval" and top.name == "runs":
        return lambda k: re.fullmatch(r"(image|cnn)/confusion_(val|test)\.png", k) is not None
    if cmd == "train" and out is not None:
        o = Path(out).resolve()
        return lambda k: (top / k).resolve().is_relative_to(o) or (top / k) == o
    if cmd == "study":
        o = Path(out if out is not None else "archlab-study")
        if not o.is_absolute():
            o = top / o if top.name == "cwd" else Path("/nonexistent")
        claims = _study_claims(argv)

        def ok(k: str) -> bool:
            p = (top / k).resolve()
            if not p.is_relative_to(o.resolve()):
                return False
            rel = p.relative_to(o.resolve()).as_posix()
            if rel in ("cache", "cache/runs") or rel.startswith("cache/runs/"):
                return True  # the cache's folders, and models trained by the claims it ran
            m = re.fullmatch(r"cache/([A-Z]\d)-[0-9a-f]{16}\.json", rel)
            if m:  # a cache entry: only the claims it ran, and only new or rewritten ones
                return m.group(1) in claims
            return not rel.startswith("cache/")

        return ok
    return lambda k: False


def _study_claims(argv: list[str]) -> set[str]:
    only = _last_value(argv, "--only")
    if only is None:
        return set("T1 T2 T3 R1 R2 R3 C1 C2 C3 C4 V1 V2 V3 V4 P3 P4 P5".split())
    return {c.strip().upper() for c in only.split(",") if c.strip()}


# ------------------------------------------------------------------------------ running a case
class CaseTimeout(BaseException):
    """Raised by the interval timer in a case that ran past CASE_SECONDS."""


@dataclasses.dataclass
class Outcome:
    argv: list[str]
    rc: int | None
    stdout: str
    stderr: str
    escaped: str | None  # the traceback of an exception that escaped main
    logged: list[str]  # tracebacks attached to log records
    seconds: float
    problems: list[str] = dataclasses.field(default_factory=list)
    changed: list[str] = dataclasses.field(default_factory=list)  # under run_case's ``watch``


class _Records(logging.Handler):
    def __init__(self, stream: io.StringIO) -> None:
        super().__init__(logging.INFO)
        self.stream, self.tracebacks = stream, []
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.stack_info:
            self.tracebacks.append(self.format(record))
        self.stream.write(self.format(record).split("\n")[0] + "\n")


def _vmsize() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _on_alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout(f"the case ran past {CASE_SECONDS:.0f} s")


@contextlib.contextmanager
def _limits(seconds: float, memory: int) -> Iterator[None]:
    old_handler = signal.signal(signal.SIGALRM, _on_alarm)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vmsize() + memory
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old_handler)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def run_case(
    world: World,
    argv: list[str],
    *,
    env: dict[str, str] | None = None,
    watch: Path | None = None,
    keep: bool = False,
    seconds: float = CASE_SECONDS,
    memory: int = CASE_MEMORY,
) -> Outcome:
    """Run ``archlab ARGV`` in this process inside ``world`` under the time and memory bounds,
    with ``env`` set for the case; ``Outcome.changed`` lists what changed under ``watch`` (a
    corrupted copy outside the world's baseline); ``keep`` leaves ``new/`` for the caller to
    inspect (``World.check_untouched`` removes it on the next case)."""
    real = [world.resolve(a) for a in argv]
    watched = digest(watch) if watch is not None else {}
    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})
    out, err = io.StringIO(), io.StringIO()
    records = _Records(err)
    root = logging.getLogger()
    root.addHandler(records)
    level = root.level
    root.setLevel(logging.INFO)
    cwd = os.getcwd()
    threads = torch.get_num_threads()
    rc: int | None = None
    escaped = None
    t = time.perf_counter()
    try:
        os.chdir(world.scratch)
        with (
            _limits(seconds, memory),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            try:
                rc = main(real)
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) or e.code is None else 1
                if e.code is not None and not isinstance(e.code, int):
                    err.write(f"{e.code}\n")
                rc = 0 if rc is None else rc
    except BaseException:  # noqa: BLE001  (anything escaping main is what we are looking for)
        escaped = traceback.format_exc()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        os.chdir(cwd)
        root.removeHandler(records)
        root.setLevel(level)
        torch.set_num_threads(threads)
    o = Outcome(
        real,
        rc,
        out.getvalue(),
        err.getvalue(),
        escaped,
        records.tracebacks,
        time.perf_counter() - t,
    )
    if watch is not None:
        now = digest(watch)
        o.changed = sorted(k for k in set(now) | set(watched) if now.get(k) != watched.get(k))
    o.problems = world.check_untouched(real, rc, keep)
    return o


def check(o: Outcome) -> None:
    """Assert the properties of the module docstring on one outcome."""
    where = f"archlab {' '.join(map(repr, o.argv))}"
    assert o.escaped is None, f"{where}: exception escaped main:\n{o.escaped}"
    assert not o.logged, f"{where}: a log record carries a traceback:\n{o.logged[0]}"
    assert "Traceback" not in o.stderr, f"{where}: traceback on stderr:\n{o.stderr}"
    assert o.rc in (0, 2), f"{where}: exit {o.rc}; stderr:\n{o.stderr}"
    errors = [ln for ln in o.stderr.splitlines() if re.match(r"archlab[\w\- ]*: error: ", ln)]
    if o.rc == 2:
        last = o.stderr.strip().splitlines()[-1:] if o.stderr.strip() else []
        assert errors and last == errors[-1:] and len(errors) == 1, (
            f"{where}: exit 2 without exactly one final error line:\n{o.stderr}"
        )
    else:
        assert not errors, f"{where}: exit 0 with an error line:\n{o.stderr}"
    assert not o.problems, f"{where}: files touched: {o.problems}"


# ------------------------------------------------------------------------------ corrupt files
HOSTILE_JSON: list[Any] = [
    None,
    -1,
    0,
    1,
    2**63,
    -(2**63) - 1,
    1e308,
    float("nan"),
    float("inf"),
    "",
    "x",
    "-1",
    [],
    {},
    [1, 2],
    {"a": 1},
    True,
    False,
    "\x00",
    "a" * 10000,
]


def _json_paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _json_paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:8]):
            out += _json_paths(v, (*prefix, i))
    return out


def _set(obj: Any, path: tuple, value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = obj
    for k in path[:-1]:
        parent = parent[k]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


@st.composite
def corrupt_json(draw: Any, original: bytes) -> bytes:
    """A structural change of a JSON document: one value replaced (hostile), a key dropped or
    added, deep nesting, or a byte-level change (below)."""
    try:
        doc = json.loads(original)
    except ValueError:
        return draw(corrupt_bytes(original))
    how = draw(st.sampled_from(["replace", "replace", "delete", "add", "deep", "bytes", "dupkey"]))
    if how == "bytes":
        return draw(corrupt_bytes(original))
    if how == "deep":
        n = draw(st.sampled_from([100, 5000, 100000]))
        return (
            ("[" * n + "]" * n).encode() if draw(st.booleans()) else b'{"a":' * n + b"1" + b"}" * n
        )
    if how == "dupkey":
        return original.rstrip().rstrip(b"}") + b', "format": "x", "step": -1}'
    paths = _json_paths(doc)
    path = draw(st.sampled_from(paths))
    if how == "delete" and path:
        doc = _set(doc, path, None, delete=True)
    elif how == "add":
        where = path if isinstance(_get(doc, path), dict) else ()
        target = _get(doc, where)
        if isinstance(target, dict):
            target[draw(st.sampled_from(["x", "step", "format", "", "model"]))] = draw(
                st.sampled_from(HOSTILE_JSON)
            )
        else:
            doc = draw(st.sampled_from(HOSTILE_JSON))
    else:
        doc = _set(doc, path, draw(st.sampled_from(HOSTILE_JSON)))
    return json.dumps(doc).encode()


def _get(obj: Any, path: tuple) -> Any:
    for k in path:
        obj = obj[k]
    return obj


@st.composite
def corrupt_bytes(draw: Any, original: bytes) -> bytes:
    """A byte-level change: truncation, flipped bytes, garbage, emptiness, a spliced copy."""
    n = len(original)
    how = draw(
        st.sampled_from(
            ["truncate", "flip", "flip", "garbage", "empty", "append", "zero", "splice", "nul"]
        )
    )
    if how == "truncate" and n:
        return original[: draw(st.integers(0, n - 1))]
    if how == "flip" and n:
        b = bytearray(original)
        for _ in range(draw(st.integers(1, 8))):
            i = draw(st.integers(0, n - 1))
            b[i] ^= draw(st.integers(1, 255))
        return bytes(b)
    if how == "garbage":
        return draw(st.binary(min_size=0, max_size=200))
    if how == "append":
        return original + draw(st.binary(min_size=1, max_size=64))
    if how == "zero" and n:
        i = draw(st.integers(0, n - 1))
        return original[:i] + b"\x00" * min(64, n - i) + original[i + 64 :]
    if how == "splice" and n > 2:
        i, j = sorted(draw(st.tuples(st.integers(0, n), st.integers(0, n))))
        return original[:i] + original[j:] + original[i:j]
    if how == "nul":
        return b"\x00" * max(1, min(n, 4096))
    return b""


@st.composite
def corrupt_safetensors(draw: Any, original: bytes) -> bytes:
    """A safetensors file with its header changed (length prefix, dtype, shape, offsets, step
    metadata) or its bytes damaged."""
    (hlen,) = struct.unpack("<Q", original[:8])
    try:
        header = json.loads(original[8 : 8 + hlen])
    except ValueError:
        return draw(corrupt_bytes(original))
    body = original[8 + hlen :]
    how = draw(
        st.sampled_from(
            ["len", "dtype", "shape", "offsets", "meta", "json", "bytes", "drop", "body"]
        )
    )
    names = [k for k in header if k != "__metadata__"]
    if how == "len":
        new_len = draw(st.sampled_from([0, 1, hlen - 1, hlen + 1, 2**31, 2**63, 2**64 - 1]))
        return struct.pack("<Q", new_len) + original[8:]
    if how in ("dtype", "shape", "offsets", "drop") and names:
        k = draw(st.sampled_from(names))
        if how == "dtype":
            header[k]["dtype"] = draw(st.sampled_from(["F64", "F16", "I8", "BOOL", "X", "", 3]))
        elif how == "shape":
            header[k]["shape"] = draw(
                st.sampled_from([[], [0], [-1], [2**40, 2**40], [1] * 64, [3, 3], "x", [2**62]])
            )
        elif how == "offsets":
            a, b = header[k]["data_offsets"]
            header[k]["data_offsets"] = draw(
                st.sampled_from([[b, a], [0, 2**62], [a, b + 4], [-1, b], [a], "x"])
            )
        else:
            del header[k]
    elif how == "meta":
        header["__metadata__"] = draw(
            st.sampled_from([{"archlab_step": "0"}, {}, None, [], {"archlab_step": "-1"}, {"x": 1}])
        )
    elif how == "json":
        return draw(
            st.sampled_from(
                [
                    b"",
                    b"\x00" * 8,
                    struct.pack("<Q", 4) + b"null",
                    struct.pack("<Q", 2) + b"[]",
                    struct.pack("<Q", 3) + b"{x}",
                ]
            )
        )
    elif how == "body":
        return original[: 8 + hlen] + draw(corrupt_bytes(body))
    else:
        return draw(corrupt_bytes(original))
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


@st.composite
def corrupt_image(draw: Any, original: bytes) -> bytes:
    """A damaged image file, or a valid header that claims a huge or empty picture."""
    from PIL import Image

    how = draw(st.sampled_from(["bytes", "bytes", "huge", "empty", "mode"]))
    if how == "bytes":
        return draw(corrupt_bytes(original))
    buf = io.BytesIO()
    if how == "huge":  # a PNG header claiming 30,000 x 30,000 pixels, little data
        w = h = draw(st.sampled_from([30000, 65535, 12000]))
        ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
        chunk = b"IHDR" + ihdr
        return (
            b"\x89PNG\r\n\x1a\n"
            + struct.pack(">I", 13)
            + chunk
            + struct.pack(">I", _crc(chunk))
            + b"\x00\x00\x00\x00IEND\xaeB`\x82"
        )
    if how == "empty":
        Image.new("L", (1, 1)).save(buf, "PNG")
        return buf.getvalue()
    mode = draw(st.sampled_from(["1", "I;16", "F", "RGBA", "CMYK", "P", "LA", "I"]))
    fmt = "TIFF" if mode in ("F", "CMYK", "I") else "PNG"
    Image.new(mode, (5, 9)).save(buf, fmt)
    return buf.getvalue()


def _crc(b: bytes) -> int:
    import zlib

    return zlib.crc32(b) & 0xFFFFFFFF


# Which files each fuzzed reader command meets, and how they are damaged.
RUN_FILES = {
    "model.safetensors": corrupt_safetensors,
    "optimizer.safetensors": corrupt_safetensors,
    "state.safetensors": corrupt_safetensors,
    "optimizer.json": corrupt_json,
    "config.json": corrupt_json,
    "resolved_config.json": corrupt_json,
    "metrics.jsonl": corrupt_bytes,
    "tokenizer.json": corrupt_json,
}


def corrupt_with(kind: Callable, original: bytes) -> st.SearchStrategy[bytes]:
    return kind(original)


@st.composite
def corrupt_idx(draw: Any, original: bytes) -> bytes:
    """A damaged IDX file: the gzip bytes, or the content (magic, dimension count, sizes, a
    label out of range, truncation, extra bytes) compressed again, or left uncompressed."""
    raw = gzip.decompress(original)
    how = draw(st.sampled_from(["gz", "magic", "ndim", "dims", "label", "cut", "extend", "plain"]))
    if how == "gz":
        return draw(corrupt_bytes(original))
    b = bytearray(raw)
    if how == "magic":
        b[draw(st.integers(0, 3))] = draw(st.integers(0, 255))
    elif how == "ndim":
        b[3] = draw(st.sampled_from([0, 1, 2, 4, 255]))
    elif how == "dims":
        i = draw(st.integers(0, b[3] - 1))
        size = draw(st.sampled_from([0, 1, 27, 29, 2**31, 2**32 - 1]))
        b[4 + 4 * i : 8 + 4 * i] = size.to_bytes(4, "big")
    elif how == "label":
        b[draw(st.integers(8, len(b) - 1))] = draw(st.integers(10, 255))
    elif how == "cut":
        b = b[: draw(st.integers(0, len(b) - 1))]
    elif how == "extend":
        b += draw(st.binary(min_size=1, max_size=100))
    if how == "plain":
        return bytes(b)
    return gzip.compress(bytes(b), mtime=0)
