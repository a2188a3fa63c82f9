"""Recipes as presets, and a CLI generated from the config dataclasses (issue 13, items 1-2).

Oracles: the layering rule (default < recipe < flag) with each value's recorded origin, the
budget rule (a budget flag replaces the recipe's budget; no hidden step cap), every TrainConfig
field reachable as a flag, and flags that would be silently ignored are refused.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from archlab.cli import build_parser
from archlab.train.config import TrainConfig
from archlab.train.recipes import RECIPES, find_recipe, resolve_run


def _corpus(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("abcdefghij klmnop " * 300)
    return p


def test_every_recipe_is_complete_and_valid():
    from archlab.data import CORPORA, IMAGE_DATASETS
    from archlab.models import get_spec, make_config
    from archlab.train.runs import ImageRunSpec, LMRunSpec

    assert {"gpt-nano", "lstm-char", "lstm-wt2", "cnn-fmnist", "vit-fmnist", "mlp-100"} <= set(
        RECIPES
    )
    for r in RECIPES.values():
        assert get_spec(r.name).task == r.task and get_spec(r.name).base  # a preset of an arch
        make_config(r.name, **r.model)  # model overrides are fields of the preset
        cfg = TrainConfig(**{**r.train, "max_steps": None, "max_time": 1.0})
        for k in ("batch_size", "lr", "optimizer"):
            assert k in r.train or getattr(cfg, k) is not None
        spec_cls = LMRunSpec if r.task == "lm" else ImageRunSpec
        spec_cls(arch=r.name, **r.spec)
        assert set(r.datasets) <= set(CORPORA if r.task == "lm" else IMAGE_DATASETS)
        assert r.budget and set(r.budget) <= {"max_time", "epochs"}
        assert r.measured


def test_the_architecture_on_its_dataset_picks_the_recipe():
    assert find_recipe("gpt", "tinyshakespeare", "lm").name == "gpt-nano"
    assert find_recipe("lstm", "wikitext2", "lm").name == "lstm-wt2"
    assert find_recipe("lstm", "tinyshakespeare", "lm").name == "lstm-char"
    assert find_recipe("cnn", "fashion-mnist", "image").name == "cnn-fmnist"
    assert find_recipe("vit", "fashion-mnist-subset", "image").name == "vit-fmnist"
    assert find_recipe("mlp", "fashion-mnist", "image").name == "mlp-100"
    assert find_recipe("gpt", "my_text.txt", "lm") is None
    assert find_recipe("gru", "tinyshakespeare", "lm") is None
    assert find_recipe("gpt-nano", "my_text.txt", "lm").name == "gpt-nano"  # named directly


def test_layering_and_origins():
    res = resolve_run(
        "lm", "gpt", "tinyshakespeare", {"train": {"lr": 1e-3}}, {"train": {"lr": 5e-4, "seed": 1}}
    )
    assert res.arch == res.recipe == "gpt-nano"
    assert res.train["lr"] == 1e-3 and res.origins["train.lr"] == "flag"
    assert res.train["batch_size"] == 12 and res.origins["train.batch_size"] == "recipe"
    assert res.origins["train.seed"] == "default"
    # the recipe's budget is a wall-clock budget with no step cap
    assert res.train["max_time"] == RECIPES["gpt-nano"].budget["max_time"]
    assert res.train["max_steps"] is None
    # a budget flag replaces the recipe's budget entirely
    only_time = resolve_run("lm", "gpt", "tinyshakespeare", {"train": {"max_time": 5.0}}, {})
    assert only_time.train["max_time"] == 5.0 and only_time.train["max_steps"] is None
    only_steps = resolve_run("lm", "gpt", "tinyshakespeare", {"train": {"max_steps": 7}}, {})
    assert only_steps.train["max_steps"] == 7 and only_steps.train["max_time"] is None
    assert resolve_run("lm", "lstm", "wikitext2", {}, {}).budget == {"epochs": 1}


def test_every_train_config_field_is_a_flag():
    """The CLI mirrors TrainConfig: every field has a flag (label smoothing only where it means
    something), with the field's help text."""
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices["train"]
    tasks = sub._subparsers._group_actions[0].choices
    for task in ("lm", "image"):
        dests = {a.dest: a for a in tasks[task]._actions}
        for f in dataclasses.fields(TrainConfig):
            if task not in f.metadata.get("tasks", (task,)):
                assert f"train.{f.name}" not in dests
                continue
            assert f"train.{f.name}" in dests, (task, f.name)
            assert f.metadata["help"] in dests[f"train.{f.name}"].help


def test_cli_flags_reach_the_run_and_are_recorded(cli, tmp_path):
    run = tmp_path / "run"
    r = cli(
        "train",
        "lm",
        "--arch",
        "gpt",
        "--data",
        str(_corpus(tmp_path)),
        "--layers",
        "1",
        "--heads",
        "2",
        "--d-model",
        "8",
        "--block-size",
        "8",
        "--max-steps",
        "3",
        "--betas",
        "0.8,0.9",
        "--grad-clip",
        "none",
        "--eps",
        "1e-6",
        "--no-progress",
        "--out",
        str(run),
    )
    assert r.returncode == 0, r.stderr
    rc = json.loads((run / "resolved_config.json").read_text())
    assert rc["train"]["betas"] == [0.8, 0.9] and rc["train"]["grad_clip"] is None
    assert rc["train"]["eps"] == 1e-6 and rc["train"]["max_time"] is None
    assert rc["recipe"] is None and rc["origins"]["train.betas"] == "flag"


def test_gpt_small_char_keeps_its_block_size(cli, tmp_path):
    run = tmp_path / "run"
    text = tmp_path / "t.txt"
    text.write_text("abcdefghij klmnop " * 2000)
    r = cli(
        "train",
        "lm",
        "--arch",
        "gpt-small-char",
        "--data",
        str(text),
        "--layers",
        "1",
        "--heads",
        "2",
        "--d-model",
        "8",
        "--max-steps",
        "1",
        "--no-progress",
        "--out",
        str(run),
    )
    assert r.returncode == 0, r.stderr
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["model"]["config"]["block_size"] == 256 and cfg["spec"]["block_size"] == 256


@pytest.mark.parametrize(
    "extra, needle",
    [
        (["--tokenizer", "char", "--vocab-size", "50"], "--vocab-size"),
        (["--arch", "lstm", "--eval-stride", "4"], "--eval-stride"),
    ],
)
def test_flags_that_would_be_ignored_are_refused(extra, needle, cli, tmp_path):
    args = [
        "train",
        "lm",
        "--arch",
        "gpt",
        "--data",
        str(_corpus(tmp_path)),
        "--max-steps",
        "1",
        "--out",
        str(tmp_path / "run"),
        *extra,
    ]
    r = cli(*args)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_distill_flags_without_a_teacher_are_refused(cli, tmp_path):
    r = cli(
        "train",
        "image",
        "--arch",
        "mlp",
        "--data",
        "fashion-mnist-subset",
        "--distill-alpha",
        "0.3",
        "--out",
        str(tmp_path / "run"),
    )
    assert r.returncode == 2 and "--teacher" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "run").exists()
