"""`archlab train lm|image`: flags generated from the run specs, the model configs and TrainConfig;
recipe defaults layered under what the user typed (archlab.train.recipes); then archlab.train.runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import typing

from archlab.commands.flags import add_dataclass_flags, given_fields, parse_value
from archlab.errors import ArchlabError

# Model config fields the data decides (never flags): vocabulary, context (--block-size is the run
# spec's), image shape and classes.
_DATA_FIELDS = {"vocab_size", "block_size", "image_size", "in_channels", "num_classes"}
_MODEL_FLAG = {"tokenizer": "--patch-tokenizer"}  # ViT's field; --tokenizer is the LM's text one
_DISTILL = ("distill", "distill_alpha", "distill_tau")


def _model_fields(task: str) -> dict[str, tuple[typing.Any, list[str]]]:
    """{field: (type, [architectures that have it])} over every registered ``task`` model."""
    from archlab.models import list_models
    from archlab.models.registry import get_spec

    out: dict[str, tuple[typing.Any, list[str]]] = {}
    for name in list_models(task):
        spec = get_spec(name)
        if spec.base:  # presets share their architecture's fields
            continue
        hints = typing.get_type_hints(spec.config_cls)
        for f in dataclasses.fields(spec.config_cls):
            if f.name not in _DATA_FIELDS:
                out.setdefault(f.name, (hints[f.name], []))[1].append(name)
    return out


def _add_model_flags(g: argparse._ArgumentGroup, task: str) -> list[str]:
    from archlab.commands.flags import _unwrap

    fields = _model_fields(task)
    for name, (tp, archs) in sorted(fields.items()):
        flag = _flag(name)
        help_ = f"model config field {name} ({', '.join(archs)})"
        if _unwrap(tp)[0] is bool:
            g.add_argument(
                flag,
                dest=f"model.{name}",
                default=None,
                action=argparse.BooleanOptionalAction,
                help=help_,
            )
        else:
            g.add_argument(
                flag,
                dest=f"model.{name}",
                default=None,
                metavar="VALUE",
                type=lambda s, tp=tp: parse_value(s, tp),
                help=help_,
            )
    return list(fields)


def _recipes_epilog(task: str) -> str:
    from archlab.train.recipes import RECIPES

    lines = ["recipes (--arch NAME, or the architecture on the data it was tuned on):"]
    for r in RECIPES.values():
        if r.task == task:
            budget = ", ".join(f"{k} {v}" for k, v in r.budget.items())
            lines.append(f"  {r.name}: {', '.join(r.datasets)}; budget {budget}. {r.measured}")
    return "\n".join(lines)


def _subcommand(tsub, task: str) -> None:
    from archlab.train.config import TrainConfig
    from archlab.train.runs import ImageRunSpec, LMRunSpec

    spec_cls = LMRunSpec if task == "lm" else ImageRunSpec
    what = "next-token language model" if task == "lm" else "image classifier"
    p = tsub.add_parser(
        task,
        help=f"{what} ({'rnn, lstm, gru, gpt' if task == 'lm' else 'cnn, resnet, vit, mlp'})",
        epilog=_recipes_epilog(task),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    arch_help = dataclasses.fields(spec_cls)[0].metadata["help"]
    p.add_argument("--arch", required=True, help=arch_help)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="new or empty run directory")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in RUN_DIR (or start it if new)"
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    spec_flags = add_dataclass_flags(
        p.add_argument_group("data"), spec_cls, skip={"arch", "model"}, dest_prefix="spec."
    )
    model_fields = _add_model_flags(
        p.add_argument_group("model (fields of the chosen architecture's config)"), task
    )
    train_flags = add_dataclass_flags(
        p.add_argument_group("training (archlab.train.TrainConfig)"),
        TrainConfig,
        task=task,
        dest_prefix="train.",
    )
    p.set_defaults(
        func=_train, _spec=list(spec_flags), _model=model_fields, _trainf=list(train_flags)
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a language model or an image classifier")
    tsub = p.add_subparsers(dest="what", metavar="{lm,image}")
    tsub.required = True
    _subcommand(tsub, "lm")
    _subcommand(tsub, "image")


def _train(args: argparse.Namespace) -> int:
    from archlab.train.distributed import shutdown_distributed
    from archlab.train.recipes import resolve_run
    from archlab.train.runs import ImageRunSpec, LMRunSpec, train_image, train_lm
    from archlab.train.trainer import TrainConfig

    task = args.what
    spec_cls = LMRunSpec if task == "lm" else ImageRunSpec
    flags = {
        "spec": given_fields(args, args._spec, "spec."),
        "model": given_fields(args, args._model, "model."),
        "train": given_fields(args, args._trainf, "train."),
    }
    if task == "image" and "teacher" not in flags["spec"]:
        extra = [f"--{k.replace('_', '-')}" for k in _DISTILL if k in flags["spec"]]
        if extra:
            raise ArchlabError(f"{', '.join(extra)} needs --teacher RUN_DIR (nothing to distil)")
    data = flags["spec"].get("data", spec_cls.__dataclass_fields__["data"].default)
    ok = False
    try:
        res = resolve_run(task, args.arch, data, flags, _defaults(spec_cls, args.arch))
        _check_model_flags(args.arch, res.arch, flags["model"])
        spec = spec_cls(arch=res.arch, model=res.model, **res.spec)
        config = TrainConfig(**res.train)
        provenance = {"recipe": res.recipe, "origins": res.origins}
        run = train_lm if task == "lm" else train_image
        result = run(
            spec,
            config,
            args.out,
            resume=args.resume,
            provenance=provenance,
            epochs=res.budget.get("epochs"),
        )
        ok = True
    except ArchlabError:
        raise
    except ValueError as e:  # a config dataclass naming the bad field
        raise ArchlabError(str(e)) from None
    except OSError as e:  # the run directory or the data cannot be written/read (disk full, ...)
        where = f"{e.filename}: " if e.filename else ""
        raise ArchlabError(f"{where}{e.strerror or e}") from None
    finally:
        shutdown_distributed(sync=ok)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    summary = {k: v for k, v in dataclasses.asdict(result).items() if k != "history"}
    if args.json:
        print(json.dumps({"run_dir": args.out, "recipe": res.recipe, **summary}))
        return 0
    ev = result.eval
    val = f"val loss {ev['loss']:.4f}" if "loss" in ev else "no eval"
    if "perplexity" in ev:
        val += f" (perplexity {ev['perplexity']:.2f})"
    if "accuracy" in ev:
        val += f", accuracy {ev['accuracy']:.2%}"
    train = f"train loss {result.train_loss:.4f}, " if result.train_loss is not None else ""
    recipe = f" (recipe {res.recipe})" if res.recipe else ""
    print(
        f"step {result.step}: {train}{val}; {result.units_per_s:,.0f} {result.unit}/s, "
        f"{result.elapsed_s:.1f} s; run saved in {args.out}{recipe}"
    )
    return 0


def _flag(name: str) -> str:
    return _MODEL_FLAG.get(name, "--" + name.replace("_", "-"))


def _check_model_flags(typed: str, arch: str, given: dict[str, typing.Any]) -> None:
    """Model flags are the union over architectures; one the chosen one lacks is one line that
    lists the flags it has (``--channels`` is the CNN's; a ResNet has ``--widths``/``--blocks``)."""
    from archlab.models.registry import get_spec

    spec = get_spec(arch)
    fields = {f.name for f in dataclasses.fields(spec.config_cls)} - _DATA_FIELDS
    bad = sorted(set(given) - fields)
    if bad:
        base = spec.base or arch
        name = typed if typed == base else f"{typed} (architecture {base})"
        raise ArchlabError(
            f"{', '.join(map(_flag, bad))}: not a model flag of --arch {name}; its model flags: "
            f"{', '.join(sorted(map(_flag, fields)))}"
        )


def _defaults(spec_cls: type, arch: str) -> dict[str, dict[str, typing.Any]]:
    """Every value before recipe and flags, for the origins record: the dataclass defaults."""
    from archlab.train.config import TrainConfig

    def plain(cls: type, skip: set[str]) -> dict[str, typing.Any]:
        out = {}
        for f in dataclasses.fields(cls):
            if f.name not in skip and f.default is not dataclasses.MISSING:
                out[f.name] = f.default
        return out

    return {"spec": plain(spec_cls, {"arch", "model"}), "train": plain(TrainConfig, set())}
