"""Training recipes: what a benchmark measured, as the defaults a user gets by typing less.

A :class:`Recipe` is the full recipe behind one benchmark row: the model preset, the data protocol
(tokenizer, context, augmentation, validation split, evaluation) and every optimizer setting,
plus the budget the row was measured at. ``archlab train lm --arch gpt --data tinyshakespeare``
picks the ``gpt-nano`` recipe (the architecture on a dataset a recipe was tuned for), ``--arch
gpt-nano`` names it directly, and any flag the user types overrides the recipe's value.
:func:`resolve_run` layers the three sources and says where each value came from
(``default`` < ``recipe`` < ``flag``); ``archlab train`` stores that in ``resolved_config.json``.

Where each number comes from: ``benchmarks/README.md`` and the benchmark scripts, which run
exactly the README's commands (so the recipe, not a script, is what was measured).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from archlab.errors import ArchlabError

__all__ = ["RECIPES", "Recipe", "Resolved", "find_recipe", "resolve_run"]


@dataclass(frozen=True)
class Recipe:
    name: str  # also the name of its model preset
    task: str  # "lm" | "image"
    datasets: tuple[str, ...]  # the data it was tuned on: the base arch picks it there
    spec: Mapping[str, Any] = field(default_factory=dict)  # run-spec fields (LM/ImageRunSpec)
    model: Mapping[str, Any] = field(default_factory=dict)  # model fields beyond the preset's
    train: Mapping[str, Any] = field(default_factory=dict)  # TrainConfig fields
    # The budget of the benchmark row, used when the user gives neither --max-steps nor
    # --max-time: {"max_time": s} or {"epochs": n} (resolved to steps once the data is known).
    budget: Mapping[str, Any] = field(default_factory=dict)
    measured: str = ""  # the benchmark and its result, for `archlab train --help` and the docs


RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        # nanoGPT's CPU shape (4 x 4 x 128, block 64); benchmarks/lm_shakespeare.py. Batch 12
        # (nanoGPT's own) at 3e-3: in the same 80 s on a 2-core Zen 3 (AVX2, fp32), full-pass val
        # loss 1.855 (1,248 steps) vs 1.881 at batch 16 / 4e-3 and 1.935 at batch 32 / 6e-3: at
        # this size a token is worth more in a small batch, and the steps cost little more.
        Recipe(
            "gpt-nano",
            "lm",
            ("tinyshakespeare",),
            spec={"tokenizer": "char", "block_size": 64, "eval_stride": 32},
            train={
                "batch_size": 12,
                "lr": 3e-3,
                "warmup_steps": 50,
                "betas": (0.9, 0.99),
                "weight_decay": 0.1,
                "grad_clip": 1.0,
                "schedule": "cosine",
            },
            budget={"max_time": 80.0},
            measured="lm_shakespeare.py: full-pass val loss <= 1.89 in half of nanoGPT's time",
        ),
        # 2 x 220 LSTM, forget bias 1, matched to gpt-nano's parameters; benchmarks/lm_budget.py.
        Recipe(
            "lstm-char",
            "lm",
            ("tinyshakespeare",),
            spec={"tokenizer": "char", "block_size": 64},
            train={
                "batch_size": 32,
                "lr": 2e-3,
                "warmup_steps": 50,
                "betas": (0.9, 0.99),
                "weight_decay": 0.1,
                "grad_clip": 1.0,
            },
            budget={"max_time": 120.0},
            measured="lm_budget.py: 120 s beside gpt-nano at matched parameters",
        ),
        # pytorch/examples' word_language_model LSTM, one epoch of heavy-ball SGD;
        # benchmarks/lm_wikitext.py (the recipe sweep: sweep_wt2.py).
        Recipe(
            "lstm-wt2",
            "lm",
            ("wikitext2",),
            spec={"tokenizer": "word", "block_size": 35},
            model={"tie_weights": True, "dropout": 0.0},
            train={
                "batch_size": 20,
                "optimizer": "sgd",
                "lr": 5.0,
                "momentum": 0.9,
                "min_lr": 0.1,
                "schedule": "linear",
                "grad_clip": 0.25,
            },
            budget={"epochs": 1},
            measured="lm_wikitext.py: valid perplexity <= 180 after one epoch",
        ),
        # cnn-fmnist: conv-BN-ReLU x2 per stage, 16-32-64-128; benchmarks/image_fmnist.py.
        # Trials of 120 s each (test accuracy): on a 2-core Zen 3 (AVX2, fp32) the earlier
        # 32-64-128 stack at batch 64 / 3e-3 reached 90.88% (603 img/s, 1.3 epochs); this one at
        # batch 128 / 8e-3 cosine to 0, 92.75% (1,466 img/s); on a Zen 4 (bf16) 92.74% vs 93.60%.
        # No augmentation: at 2-8 epochs crops cost more than they regularize (-1.5 points).
        # Muon on the seven hidden conv kernels at twice the lr: at the Zen 3's step budget
        # (1,374 AdamW steps in 120 s; Muon given 1,250), fp32, four seeds: 93.30% mean vs 92.95%.
        # On the Zen 3 itself (2026-12-08): 92.99%, then 93.20% with the Gram-form iteration.
        Recipe(
            "cnn-fmnist",
            "image",
            ("fashion-mnist", "fashion-mnist-subset"),
            spec={"augment": False},
            train={
                "optimizer": "muon",
                "batch_size": 128,
                "lr": 1.6e-2,
                "min_lr": 0.0,
                "warmup_steps": 200,
                "weight_decay": 0.05,
                "label_smoothing": 0.1,
            },
            budget={"max_time": 120.0},
            measured="image_fmnist.py: >= 93.0% Fashion-MNIST test accuracy in 120 s",
        ),
        # The pure ViT (patch embedding, no conv stem); benchmarks/image_fmnist.py. Muon on the
        # blocks' matrices: 2,000 seeded steps on a Zen 4 reached 89.04% test vs AdamW's 82.65%
        # at the same lr (the 600 s AdamW run of the time: 89.30%), 2% slower a step. 600 s:
        # Zen 4 (bf16) 91.46%; Zen 3 (fp32, 4.2 epochs) 88.87%, AdamW there 83.82%.
        Recipe(
            "vit-fmnist",
            "image",
            ("fashion-mnist", "fashion-mnist-subset"),
            spec={"augment": True},
            train={
                "optimizer": "muon",
                "batch_size": 128,
                "lr": 2e-3,
                "warmup_steps": 200,
                "weight_decay": 0.05,
                "label_smoothing": 0.1,
            },
            budget={"max_time": 600.0},
            measured="image_fmnist.py: Fashion-MNIST test accuracy in 600 s (target 91.0%)",
        ),
        # 784-100-10; the Fashion-MNIST benchmark table's MLP reference.
        Recipe(
            "mlp-100",
            "image",
            ("fashion-mnist", "fashion-mnist-subset"),
            spec={"augment": False},
            train={"batch_size": 128, "lr": 2e-3, "warmup_steps": 50, "weight_decay": 0.05},
            budget={"max_time": 30.0},
            measured="image_fmnist.py: reference point (~88-89% in 30 s)",
        ),
    )
}


def find_recipe(arch: str, data: str | None, task: str) -> Recipe | None:
    """The recipe for ``--arch arch --data data``: the preset named ``arch``, else the recipe whose
    preset builds on architecture ``arch`` and was tuned on ``data``; None when there is none."""
    from archlab.models import get_spec

    if arch in RECIPES:
        r = RECIPES[arch]
        if r.task != task:
            raise ArchlabError(f"{arch!r} is a {r.task} recipe, not a {task} one")
        return r
    for r in RECIPES.values():
        if r.task == task and get_spec(r.name).base == arch and data in r.datasets:
            return r
    return None


@dataclass
class Resolved:
    """The layered values of one run, with each value's origin."""

    arch: str  # the model name to build (the recipe's preset when a recipe applies)
    recipe: str | None
    spec: dict[str, Any]
    model: dict[str, Any]
    train: dict[str, Any]
    budget: dict[str, Any]  # the recipe budget still to resolve ({"epochs": n}), if any
    origins: dict[str, str]  # "train.lr" -> "flag" | "recipe" | "default"


def resolve_run(
    task: str,
    arch: str,
    data: str | None,
    flags: Mapping[str, Mapping[str, Any]],
    defaults: Mapping[str, Mapping[str, Any]],
) -> Resolved:
    """Layer ``defaults`` < the recipe for (arch, data) < ``flags``.

    ``flags`` and ``defaults`` map "spec" / "model" / "train" to field values; ``flags`` holds
    only what the user typed. A budget flag (max_steps or max_time) replaces the recipe's budget
    entirely: ``--max-time`` alone means no step cap, ``--max-steps`` alone no time limit.
    """
    recipe = find_recipe(arch, data, task)
    out: dict[str, dict[str, Any]] = {"spec": {}, "model": {}, "train": {}}
    origins: dict[str, str] = {}
    for part in out:
        for k, v in defaults.get(part, {}).items():
            out[part][k], origins[f"{part}.{k}"] = v, "default"
        if recipe is not None:
            for k, v in getattr(recipe, part).items():
                out[part][k], origins[f"{part}.{k}"] = v, "recipe"
        for k, v in flags.get(part, {}).items():
            out[part][k], origins[f"{part}.{k}"] = v, "flag"
    budget: dict[str, Any] = {}
    typed = {k for k in ("max_steps", "max_time") if k in flags.get("train", {})}
    if typed:
        for k in {"max_steps", "max_time"} - typed:  # the other budget is off, not hidden
            out["train"][k], origins[f"train.{k}"] = None, "flag"
    elif recipe is not None and recipe.budget:
        budget = dict(recipe.budget)
        if "max_time" in budget:
            out["train"]["max_time"], origins["train.max_time"] = budget.pop("max_time"), "recipe"
            out["train"]["max_steps"], origins["train.max_steps"] = None, "recipe"
    name = recipe.name if recipe is not None else arch
    return Resolved(
        name,
        recipe.name if recipe else None,
        out["spec"],
        out["model"],
        out["train"],
        budget,
        origins,
    )


def recipe_table() -> list[dict[str, Any]]:
    """Every recipe as plain data (the README's and ``--help``'s listing)."""
    return [dataclasses.asdict(r) for r in RECIPES.values()]
