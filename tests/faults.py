"""Fault injection for issue 14, shared by ``tests/test_fault_injection.py`` (CI: a few faults)
and ``benchmarks/fault_injection.py`` (the campaign).

A training run or a study runs in a child process forked from this one (the CLI's real code,
torch already imported, one thread) and is SIGKILLed:

* at a random wall time, by the parent; or
* by itself at a chosen *kill point* (the n-th occurrence of it), through test-only patches of
  archlab's functions installed in the child (:func:`install`). The points reach inside a
  checkpoint write: a tensor file half written, a JSON file half written, every file written but
  no ``COMMIT``, ``COMMIT`` written but nothing moved, some files moved, all moved but the temp
  dir not removed; and around it: right after an optimizer step, half a metrics line, a new run
  whose tokenizer is written but no checkpoint yet.

The child appends to a *record* file one line per committed checkpoint (``commit STEP``, written
right after COMMIT is durable) and per resume (``resumed STEP``), so the parent knows which
checkpoint is the last committed one and checks that the next attempt resumes from exactly it.
Nothing here is in the library: the hooks are monkeypatches that live and die with the child.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import random
import shutil
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from archlab.cli import main

POINTS = (
    "step",  # after an optimizer step, before it is logged or saved
    "log",  # half a metrics.jsonl line written
    "tensor-file",  # a safetensors file of the checkpoint half written, in the temp dir
    "json-file",  # optimizer.json or config.json of the checkpoint half written, in the temp dir
    "before-commit",  # every file of the checkpoint written and fsynced, COMMIT not yet
    "after-commit",  # COMMIT durable, no file moved into place yet
    "mid-move",  # some of the checkpoint's files moved into place, not all
    "before-cleanup",  # every file moved, the temp dir not yet removed
    "tokenizer",  # a new language-model run: tokenizer.json written, no checkpoint yet
)
TIMING_KEYS = {"elapsed_s", "eval_s", "tokens_per_s", "images_per_s", "examples_per_s"}
# The n-th occurrence of a point is drawn from 1..REACH[point]: about one or two checkpoints of
# progress per attempt (a checkpoint every 3 steps writes 3 tensor files and 2 JSON files), so a
# run of 24 steps is killed several times before it finishes.
REACH = {"step": 6, "log": 4, "tensor-file": 6, "json-file": 4, "tokenizer": 1}
CKPT_REACH = 2  # the other points happen once per checkpoint


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def install(point: str | None, nth: int, record: Path) -> None:
    """Patch archlab in this (child) process: SIGKILL at the ``nth`` occurrence of ``point``
    (None: never) and record commits and resumes in ``record``."""
    import archlab.data.tokenizers as tokenizers
    import archlab.train.checkpoint as ckpt
    from archlab.models.checkpoint_io import COMMIT, TMP_DIR
    from archlab.train.trainer import Trainer

    seen = {"n": 0}

    def hit(p: str) -> bool:
        if p != point:
            return False
        seen["n"] += 1
        return seen["n"] == nth

    def note(line: str) -> None:
        with open(record, "a") as f:
            f.write(line + "\n")

    real_step, real_log, real_restore = Trainer._train_step, Trainer._log, Trainer.restore

    def train_step(self: Trainer, lr: float) -> Any:
        out = real_step(self, lr)
        if hit("step"):
            _die()
        return out

    def log(self: Trainer, rec: dict) -> None:
        if self.run_dir is not None and hit("log"):
            line = json.dumps(rec) + "\n"
            with open(self.run_dir / "metrics.jsonl", "a") as f:
                f.write(line[: len(line) // 2])
            _die()
        real_log(self, rec)

    def restore(self: Trainer) -> bool:
        resumed = real_restore(self)
        note(f"resumed {self.step if resumed else 0}")
        return resumed

    real_save_file = ckpt.save_file

    def save_file(tensors: dict, filename: str, metadata: Any = None) -> None:
        real_save_file(tensors, filename, metadata=metadata)
        if hit("tensor-file"):
            with open(filename, "r+b") as f:
                f.truncate(os.path.getsize(filename) // 2)
            _die()

    real_json = ckpt.write_json_atomic

    def write_json_atomic(path: Any, obj: Any) -> None:
        path = Path(path)
        in_tmp = path.parent.name == TMP_DIR
        if in_tmp and path.name == COMMIT and hit("before-commit"):
            _die()
        if in_tmp and path.name != COMMIT and hit("json-file"):
            text = json.dumps(obj)
            path.with_name(f".{path.name}.tmp").write_text(text[: len(text) // 2])
            _die()
        real_json(path, obj)
        if in_tmp and path.name == COMMIT:
            note(f"commit {json.loads((path.parent / 'config.json').read_text())['step']}")
            if hit("after-commit"):
                _die()

    real_replace, moved = os.replace, {"n": 0, "at": random.Random(nth).randint(1, 4)}

    def replace(src: Any, dst: Any) -> None:
        real_replace(src, dst)
        into_run = Path(src).parent.name == TMP_DIR and Path(dst).parent.name != TMP_DIR
        if into_run and point == "mid-move":
            moved["n"] += 1
            if moved["n"] == moved["at"] and hit("mid-move"):
                _die()

    real_rmtree = shutil.rmtree

    def rmtree(path: Any, *a: Any, **k: Any) -> None:
        if Path(path).name == TMP_DIR and (Path(path) / COMMIT).exists():
            moved["n"] = 0  # the next checkpoint's moves count afresh
            if hit("before-cleanup"):
                _die()
        real_rmtree(path, *a, **k)

    real_tok_save = tokenizers.Tokenizer.save

    def tok_save(self: Any, path: Any) -> None:
        real_tok_save(self, path)
        if hit("tokenizer"):
            _die()

    Trainer._train_step, Trainer._log, Trainer.restore = train_step, log, restore
    ckpt.save_file, ckpt.write_json_atomic = save_file, write_json_atomic
    os.replace, shutil.rmtree = replace, rmtree
    tokenizers.Tokenizer.save = tok_save


def fork(fn: Callable[[], int], log: Path) -> int:
    """Run ``fn()`` in a forked child (one torch thread, output to ``log``); returns its pid."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into the caller (pytest, the benchmark)
        code = 70
        try:
            with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
                torch.set_num_threads(1)
                try:
                    code = int(fn() or 0)
                except SystemExit as e:
                    code = e.code if isinstance(e.code, int) else 1
                except BaseException:  # noqa: BLE001  (reported through the log and code 70)
                    traceback.print_exc()
        finally:
            os._exit(code)
    return pid


def wait(pid: int, kill_after: float | None = None) -> int:
    """Exit code of child ``pid`` (-9: SIGKILLed); SIGKILL it after ``kill_after`` seconds."""
    if kill_after is not None:
        deadline = time.perf_counter() + kill_after
        while time.perf_counter() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                return os.waitstatus_to_exitcode(status)
            time.sleep(0.002)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def cli(argv: list[str], point: str | None = None, nth: int = 1, record: Path | None = None):
    """A child body: ``archlab ARGV`` with the kill point installed."""

    def body() -> int:
        if record is not None:
            install(point, nth, record)
        with contextlib.redirect_stdout(io.StringIO()):
            return main(argv)

    return body


# ------------------------------------------------------------------------------ training runs
@dataclass
class Config:
    """One training run of the campaign: what ``archlab train`` is given (tiny, 1 thread)."""

    name: str
    argv: list[str]
    steps: int = 24

    def full(self, out: Path) -> list[str]:
        every = ["--checkpoint-interval", "3", "--log-interval", "2", "--eval-interval", "6"]
        quiet = ["--no-progress", "--threads", "1", "--max-steps", str(self.steps)]
        return [*self.argv, *every, *quiet, "--out", str(out)]


def configs(corpus: Path) -> list[Config]:
    """Language model and image classifier, AdamW and SGD: GPT (dropout, gradient accumulation),
    a word-level LSTM (its hidden state is checkpointed), a CNN (channels_last on the CPU) and
    an MLP. Image runs read MNIST-shaped IDX files from ``$ARCHLAB_DATA``."""
    lm = ["train", "lm", "--data", str(corpus), "--block-size", "8", "--batch-size", "4"]
    img = ["train", "image", "--data", "mnist", "--val-size", "20", "--batch-size", "8"]
    flags = {
        "gpt-adamw": "--arch gpt --layers 1 --heads 2 --d-model 16 --dropout 0.1 --grad-accum 2",
        "lstm-sgd": "--arch lstm --layers 1 --d-model 8 --hidden-size 16 --tokenizer word "
        "--optimizer sgd --lr 1 --momentum 0.9",
        "cnn-sgd": "--arch cnn --channels 4 --convs-per-stage 1 --optimizer sgd --lr 0.05 "
        "--momentum 0.9",
        "mlp-adamw": "--arch mlp --hidden 16",
    }
    return [
        Config(n, [*(lm if n.startswith(("gpt", "lstm")) else img), *f.split()])
        for n, f in flags.items()
    ]


def on_disk(run: Path) -> int:
    """The step of the last committed checkpoint in ``run``, read by the protocol's rule and not
    by archlab's reader: a complete ``COMMIT`` in the temp dir means its ``config.json``, else the
    run's own (0: none)."""
    tmp = run / ".checkpoint.tmp"
    for cfg in ([tmp / "config.json"] if (tmp / "COMMIT").exists() else []) + [run / "config.json"]:
        try:
            if cfg.parent == tmp:
                json.loads((tmp / "COMMIT").read_text())["files"]  # complete, or it never happened
            return int(json.loads(cfg.read_text())["step"])
        except (OSError, ValueError, KeyError):
            continue
    return 0


def records(path: Path) -> list[tuple[str, int]]:
    if not path.exists():
        return []
    return [(w, int(n)) for w, n in (line.split() for line in path.read_text().splitlines())]


def tensors(run: Path) -> dict[str, dict[str, torch.Tensor]]:
    return {f: load_file(run / f) for f in ("model.safetensors", "optimizer.safetensors")}


def metrics(run: Path) -> list[dict[str, Any]]:
    """metrics.jsonl without its wall-clock fields."""
    recs = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in recs]


def identical(a: Path, b: Path) -> list[str]:
    """What differs between two finished runs (empty: weights, optimizer state and metrics are
    bit-identical)."""
    diff = []
    ta, tb = tensors(a), tensors(b)
    for f in ta:
        if ta[f].keys() != tb[f].keys() or not all(torch.equal(ta[f][k], tb[f][k]) for k in ta[f]):
            diff.append(f)
    if metrics(a) != metrics(b):
        diff.append("metrics.jsonl")
    ca, cb = (json.loads((r / "config.json").read_text()) for r in (a, b))
    if (ca["step"], ca["log_window"]) != (cb["step"], cb["log_window"]):
        diff.append("config.json")
    return diff


@dataclass
class Campaign:
    """Kill one run again and again until it finishes; check each resume and the end."""

    config: Config
    out: Path
    record: Path
    rng: random.Random
    log: Path
    kills: list[str] = field(default_factory=list)  # the faults that really killed the child
    problems: list[str] = field(default_factory=list)
    attempts: int = 0

    def attempt(self, point: str | None, seconds: float | None = None) -> int:
        """One child: resume (or start) the run, killed at ``point`` (its n-th occurrence drawn
        at random), or by the parent after ``seconds``; checks the resume step. Exit code."""
        argv = [*self.config.full(self.out), "--resume"]
        self.attempts += 1
        before = records(self.record)
        noted = max([n for w, n in before if w == "commit"], default=0)
        committed = on_disk(self.out)
        if committed < noted:
            self.problems.append(f"the checkpoint of step {noted} was lost ({committed} left)")
        nth = self.rng.randint(1, REACH.get(point or "", CKPT_REACH))
        pid = fork(cli(argv, point, nth, self.record), self.log)
        code = wait(pid, seconds)
        new = records(self.record)[len(before) :]
        resumed = [n for w, n in new if w == "resumed"]
        if resumed and resumed[0] != committed:
            self.problems.append(f"resumed at {resumed[0]}, last commit {committed} ({point})")
        if committed and not resumed and any(w == "commit" for w, _ in new):
            self.problems.append(f"trained afresh over the checkpoint of step {committed}")
        if code == -signal.SIGKILL:
            self.kills.append(point or f"time {seconds:.2f}s")
        elif code != 0:
            self.problems.append(f"{point}: exit {code}; see {self.log}")
        return code

    def finish(self, plan: list[str | float], most: int = 60) -> bool:
        """The faults of ``plan`` in turn (a kill point's name, or seconds for a kill by the
        parent), each on a resume of the run, then resumes without a fault until the run ends
        (exit 0). True if it ended; the checks go to ``problems``."""
        for fault in plan:
            if isinstance(fault, str):
                code = self.attempt(fault)
            else:
                code = self.attempt(None, seconds=fault)
            if code == 0:
                return True
        for _ in range(most):
            if self.attempt(None) == 0:
                return True
        self.problems.append(f"did not finish in {most} more attempts")
        return False


def reference(config: Config, out: Path, log: Path) -> float:
    """The uninterrupted run into ``out`` (a forked child, as the attempts); its wall seconds."""
    warm()
    t = time.perf_counter()
    code = wait(fork(cli([*config.full(out), "--resume"]), log))
    if code != 0:
        raise RuntimeError(f"the reference run {config.name} failed ({code}); see {log}")
    return time.perf_counter() - t


# ------------------------------------------------------------------------------ the study
def study(out: Path, only: str) -> Callable[[], int]:
    """A child body: what ``archlab study --only ONLY --out OUT`` runs (the command's own
    function), at the tiny profile the tests use (seconds, not minutes), one thread, one
    process (``--jobs 1``), offline."""

    def body() -> int:
        import argparse

        from archlab.commands.study import run

        ns = argparse.Namespace(
            profile="tiny",
            only=only,
            out=out,
            seeds=None,
            no_cache=False,
            device="cpu",
            threads=1,
            jobs=1,  # one process: the kill points are in this child, not in workers
            offline=True,
            no_progress=True,
        )
        logging.basicConfig(level=logging.INFO, stream=sys.stderr, force=True)  # the notices
        with contextlib.redirect_stdout(io.StringIO()):
            return run(ns)

    return body


def warm() -> None:
    """Import the CLI's training code in this (parent) process: each forked child starts at
    once instead of importing it again."""
    import archlab.data.images  # noqa: F401
    import archlab.data.text  # noqa: F401
    import archlab.train.runs  # noqa: F401
    from archlab.cli import build_parser

    build_parser()


def warm_study() -> None:
    """Import the study's code in this (parent) process, so each forked study starts at once."""
    import archlab.commands.study  # noqa: F401
    import archlab.study.report  # noqa: F401
    from archlab.study.claim import ledger

    ledger()


def study_results(out: Path) -> Any:
    """results.json without its timing fields (archlab.study.runner.strip_timing)."""
    from archlab.study.runner import strip_timing

    return strip_timing(json.loads((out / "results.json").read_text()))


def cache_entries(out: Path) -> dict[str, bytes]:
    """The study's cache entries in ``out`` that are whole (they parse as an entry)."""
    whole = {}
    for p in sorted((out / "cache").glob("*.json")):
        try:
            entry = json.loads(p.read_bytes())
            if isinstance(entry, dict) and {"id", "key", "metrics"} <= set(entry):
                whole[p.name] = p.read_bytes()
        except ValueError:
            continue
    return whole


def finished_models(out: Path) -> dict[str, bytes]:
    """model.safetensors of each model the study finished training (config.json at its last
    step, as the study's loader decides)."""
    done = {}
    for run in sorted((out / "cache" / "runs").glob("*")):
        try:
            cfg = json.loads((run / "config.json").read_text())
            if cfg["step"] == cfg["train"]["max_steps"]:
                done[run.name] = (run / "model.safetensors").read_bytes()
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return done


@dataclass
class StudyCampaign:
    """Kill ``archlab study`` at random times until it finishes; each rerun must reuse what was
    whole, and the end must equal the uninterrupted study (results.json, timing aside)."""

    out: Path
    only: str
    expected: Any  # study_results() of the uninterrupted study
    duration: float  # its wall seconds
    rng: random.Random
    log: Path
    kills: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    broken: int = 0  # files damaged by damage_and_rerun

    def attempt(self, seconds: float | None) -> int:
        """One run of the study (killed after ``seconds``); checks that the entries and trained
        models that were whole before it are reused byte-identical."""
        entries, models = cache_entries(self.out), finished_models(self.out)
        code = wait(fork(study(self.out, self.only), self.log), seconds)
        now_entries, now_models = cache_entries(self.out), finished_models(self.out)
        for name, content in entries.items():
            if now_entries.get(name) != content:
                self.problems.append(f"the whole cache entry {name} was recomputed or lost")
        for name, content in models.items():
            if now_models.get(name) != content:
                self.problems.append(f"the finished model {name} was trained again or lost")
        if code == -signal.SIGKILL:
            self.kills.append(f"time {seconds:.2f}s")
        elif code != 0:
            self.problems.append(f"study exit {code}; see {self.log}")
        return code

    def finish(self, kills: int) -> None:
        """``kills`` attempts killed at random times (uniform over the uninterrupted study's
        duration), then one to the end; its results must equal the uninterrupted study's."""
        for _ in range(kills):
            if self.attempt(self.rng.uniform(0.05, 1.0) * self.duration) == 0:
                break
        else:
            if self.attempt(None) != 0:
                return
        self.compare("after the kills")

    def compare(self, when: str) -> None:
        if study_results(self.out) != self.expected:
            self.problems.append(f"results.json {when} differs from the uninterrupted study's")
        from_cache = {
            c["id"]: c["timing"]["from_cache"]
            for c in json.loads((self.out / "results.json").read_text())["claims"]
        }
        self.from_cache = from_cache

    def damage_and_rerun(self) -> list[str]:
        """Break every cache entry (one cut in half, the others overwritten with garbage, JSON
        of the wrong shape or nothing) and one finished model (its weights cut): the rerun
        recomputes each entry with a notice, trains the broken model again with a notice, loads
        the other models untouched, and gives the same results. Returns the notices."""
        entries = sorted(cache_entries(self.out))
        garbage = [b"", b"[1, 2]", b"\x00garbage{", b'{"id": "P3"}', b"null"]
        for i, name in enumerate(entries):
            path = self.out / "cache" / name
            data = path.read_bytes()
            path.write_bytes(data[: len(data) // 2] if i == 0 else self.rng.choice(garbage))
        models = finished_models(self.out)
        broken = self.rng.choice(sorted(models)) if models else None
        if broken is not None:
            weights = self.out / "cache" / "runs" / broken / "model.safetensors"
            weights.write_bytes(weights.read_bytes()[:100])
        self.broken = len(entries) + (broken is not None)
        start = self.log.stat().st_size if self.log.exists() else 0
        code = wait(fork(study(self.out, self.only), self.log))
        text = self.log.read_text(errors="replace")[start:]
        if code != 0:
            self.problems.append(f"the rerun after damage exited {code}; see {self.log}")
            return []
        notices = [ln for ln in text.splitlines() if "damaged" in ln]
        for name in entries:
            if not any(name in ln and "recomputing" in ln for ln in notices):
                self.problems.append(f"no notice for the damaged cache entry {name}")
        if broken is not None and not any(broken in ln for ln in notices):
            self.problems.append(f"no notice for the damaged model {broken}")
        after = finished_models(self.out)
        for name, content in models.items():
            if name != broken and after.get(name) != content:
                self.problems.append(f"the intact model {name} was trained again")
        self.compare("after the damage")
        return notices
