"""`archlab train lm|image`: flags -> LMRunSpec/ImageRunSpec + TrainConfig -> archlab.train.runs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os

from archlab.errors import ArchlabError

_TRAIN_FLAGS = {  # flag -> (TrainConfig field, type, help)
    "--max-steps": ("max_steps", int, "optimizer steps (also the cosine length)"),
    "--max-time": ("max_time", float, "wall-clock budget in SECONDS (lr decays by time too)"),
    "--batch-size": (
        "batch_size",
        int,
        "global micro-batch (sequences or images), split over ranks",
    ),
    "--grad-accum": ("grad_accum", int, "micro-batches per optimizer step"),
    "--lr": ("lr", float, "peak learning rate"),
    "--min-lr": ("min_lr", float, "final learning rate (default lr/10)"),
    "--optimizer": ("optimizer", str, "adamw (default) or sgd"),
    "--momentum": ("momentum", float, "SGD momentum (default 0: plain SGD)"),
    "--weight-decay": (
        "weight_decay",
        float,
        "weight decay on matrices (default 0.1 for AdamW, decoupled; 0 for SGD)",
    ),
    "--schedule": ("schedule", str, "lr decay after warmup: cosine, linear or constant"),
    "--warmup": ("warmup_steps", int, "linear warmup steps"),
    "--grad-clip": ("grad_clip", float, "max gradient L2 norm"),
    "--precision": ("precision", str, "fp32 or bf16 (autocast)"),
    "--eval-interval": (
        "eval_interval",
        int,
        "steps between full-pass evaluations (0: at the end)",
    ),
    "--checkpoint-interval": ("checkpoint_interval", int, "steps between checkpoints"),
    "--log-interval": ("log_interval", int, "steps between metric lines"),
    "--seed": ("seed", int, "seed of initial weights, data order, dropout"),
    "--device": ("device", str, "auto, cpu or cuda"),
}
_MODEL_FLAGS = {  # flag -> (model config field, type)
    "--layers": ("layers", int),
    "--heads": ("heads", int),
    "--d-model": ("d_model", int),
    "--d-ff": ("d_ff", int),
    "--dropout": ("dropout", float),
    "--patch-size": ("patch_size", int),
    "--mlp-ratio": ("mlp_ratio", float),
    "--pool": ("pool", str),
    "--patch-tokenizer": ("tokenizer", str),
    "--lsa": ("lsa", bool),
    "--channels": ("channels", lambda s: tuple(int(c) for c in s.split(","))),
}
_LM_MODEL = ("--layers", "--heads", "--d-model", "--d-ff", "--dropout")
_IMAGE_MODEL = (
    "--layers",
    "--heads",
    "--d-model",
    "--dropout",
    "--patch-size",
    "--mlp-ratio",
    "--pool",
    "--patch-tokenizer",
    "--lsa",
    "--channels",
)


def _common(p: argparse.ArgumentParser, model_flags: tuple[str, ...], arch_help: str) -> None:
    p.add_argument("--arch", required=True, help=arch_help)
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="new or empty run directory")
    p.add_argument(
        "--resume", action="store_true", help="continue the run in RUN_DIR (or start it if new)"
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the training forward")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    for flag in model_flags:
        field, typ = _MODEL_FLAGS[flag]
        if typ is bool:  # --lsa / --no-lsa; absent keeps the arch's or preset's default
            p.add_argument(
                flag, action=argparse.BooleanOptionalAction, help=f"model config field {field}"
            )
        else:
            p.add_argument(flag, type=typ, help=f"model config field {field}")
    for flag, (_, typ, help_) in _TRAIN_FLAGS.items():
        choices = {
            "--precision": ["fp32", "bf16"],
            "--device": ["auto", "cpu", "cuda"],
            "--optimizer": ["adamw", "sgd"],
            "--schedule": ["cosine", "linear", "constant"],
        }.get(flag)
        p.add_argument(flag, type=typ, help=help_, choices=choices)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a language model or an image classifier")
    tsub = p.add_subparsers(dest="what", metavar="{lm,image}")
    tsub.required = True
    lm = tsub.add_parser("lm", help="next-token language model (rnn, lstm, gru, gpt)")
    _common(lm, _LM_MODEL, "rnn, lstm, gru, gpt, or a preset (gpt-nano, lstm-wt2, lstm-char)")
    lm.add_argument(
        "--data", help="corpus name (tinyshakespeare, wikitext2, pydoc) or text file/folder"
    )
    lm.add_argument("--tokenizer", choices=["char", "word", "bpe"], default="char")
    lm.add_argument("--vocab-size", type=int, help="BPE vocabulary size / word vocabulary cap")
    lm.add_argument("--block-size", type=int, default=64, help="GPT context = RNN BPTT length")
    lm.add_argument("--eval-stride", type=int, help="GPT eval window stride (default: block size)")
    lm.add_argument(
        "--tie-weights",
        action=argparse.BooleanOptionalAction,
        help="decoder shares the embedding (Press & Wolf 2017; default: the arch's or preset's)",
    )
    lm.add_argument(
        "--forget-bias", type=float, help="lstm: forget-gate bias at init (Gers et al. 2000)"
    )
    lm.set_defaults(func=_train)
    im = tsub.add_parser("image", help="image classifier (cnn, resnet, vit, mlp)")
    _common(im, _IMAGE_MODEL, "cnn, resnet, vit, mlp, or a preset (cnn-fmnist, vit-fmnist, ...)")
    im.add_argument("--data", default="fashion-mnist", help="fashion-mnist, mnist, cifar10, digits")
    im.add_argument("--train-size", type=int, help="deterministic stratified subset of N images")
    im.add_argument(
        "--val-size",
        type=int,
        help="images held out of train for val (default: min(5000, 10%% of train))",
    )
    im.add_argument("--label-smoothing", type=float, help="label smoothing in [0, 1)")
    im.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True)
    im.add_argument(
        "--teacher",
        metavar="RUN_DIR",
        help="distil from this trained image run (same data and val split; DeiT / Hinton 2015)",
    )
    im.add_argument(
        "--distill", choices=["hard", "soft"], default="hard", help="distillation loss (hard: DeiT)"
    )
    im.add_argument(
        "--distill-alpha", type=float, default=0.5, help="weight of the teacher's term, in [0, 1]"
    )
    im.add_argument("--distill-tau", type=float, default=1.0, help="soft distillation temperature")
    im.set_defaults(func=_train)


def _train(args: argparse.Namespace) -> int:
    from archlab.train.distributed import shutdown_distributed
    from archlab.train.runs import ImageRunSpec, LMRunSpec, train_image, train_lm
    from archlab.train.trainer import TrainConfig

    def given(flags, table) -> dict:  # only what the user typed; the rest keeps its default
        return {
            table[f][0]: v
            for f in flags
            if (v := getattr(args, f[2:].replace("-", "_"), None)) is not None
        }

    train = given(_TRAIN_FLAGS, _TRAIN_FLAGS)
    if getattr(args, "label_smoothing", None) is not None:
        train["label_smoothing"] = args.label_smoothing
    ok = False
    try:
        config = TrainConfig(**train, compile=args.compile, progress=not args.no_progress)
        if args.what == "lm":
            model = given(_LM_MODEL, _MODEL_FLAGS)
            for name in ("tie_weights", "forget_bias"):
                if getattr(args, name) is not None:
                    model[name] = getattr(args, name)
            spec = LMRunSpec(
                args.arch,
                args.data,
                args.tokenizer,
                args.vocab_size,
                args.block_size,
                model,
                args.eval_stride,
            )
            result = train_lm(spec, config, args.out, resume=args.resume)
        else:
            model = given(_IMAGE_MODEL, _MODEL_FLAGS)
            if "channels" in model and args.arch.startswith(("resnet", "mlp", "preresnet")):
                model["widths" if args.arch.startswith(("resnet", "preresnet")) else "hidden"] = (
                    model.pop("channels")
                )
            spec = ImageRunSpec(
                args.arch,
                args.data,
                args.train_size,
                args.val_size,
                args.augment,
                model,
                teacher=args.teacher,
                distill=args.distill,
                distill_alpha=args.distill_alpha,
                distill_tau=args.distill_tau,
            )
            result = train_image(spec, config, args.out, resume=args.resume)
        ok = True
    except ArchlabError:
        raise
    except ValueError as e:  # a config dataclass naming the bad field
        raise ArchlabError(str(e)) from None
    finally:
        shutdown_distributed(sync=ok)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    summary = {k: v for k, v in dataclasses.asdict(result).items() if k != "history"}
    if args.json:
        print(json.dumps({"run_dir": args.out, **summary}))
        return 0
    ev = result.eval
    val = f"val loss {ev['loss']:.4f}" if "loss" in ev else "no eval"
    if "perplexity" in ev:
        val += f" (perplexity {ev['perplexity']:.2f})"
    if "accuracy" in ev:
        val += f", accuracy {ev['accuracy']:.2%}"
    train = f"train loss {result.train_loss:.4f}, " if result.train_loss is not None else ""
    print(
        f"step {result.step}: {train}{val}; {result.units_per_s:,.0f} {result.unit}/s, "
        f"{result.elapsed_s:.1f} s; run saved in {args.out}"
    )
    return 0
