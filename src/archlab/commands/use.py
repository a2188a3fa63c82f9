"""`archlab eval|predict|generate|classify RUN_DIR ...`: use a trained run.

The work is done by :mod:`archlab.train.inference`; these are thin wrappers that print.
"""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="full-pass evaluation of a trained run")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--split", choices=["val", "test"], default="val")
    p.add_argument("--stride", type=int, help="GPT sliding-window stride (default: block size / 2)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_eval)
    p = sub.add_parser("predict", help="top-k next tokens after a text (language-model runs)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("text")
    p.add_argument("--top-k", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_predict)
    p = sub.add_parser("generate", help="sample text from a language-model run")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("--prompt", default="\n")
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=1.0, help="0 = greedy")
    p.add_argument("--top-k", type=int)
    p.add_argument("--seed", type=int)
    p.set_defaults(func=_generate)
    p = sub.add_parser("classify", help="top-k classes of an image file (image runs)")
    p.add_argument("run_dir", metavar="RUN_DIR")
    p.add_argument("image")
    p.add_argument("--top-k", type=int, default=3)
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=_classify)


def _eval(args: argparse.Namespace) -> int:
    from archlab.train.inference import evaluate_run, load_run

    res = evaluate_run(load_run(args.run_dir), args.split, stride=args.stride)
    if args.json:
        print(json.dumps(res))
    elif "perplexity" in res:
        how = (
            f"sliding window {res['window']} tokens, stride {res['stride']}"
            if res["protocol"] == "sliding-window"
            else f"{res['streams']} streams with carried state, BPTT {res['bptt']}"
        )
        print(
            f"{res['corpus']} {args.split}: loss {res['loss']:.4f} nats/token, "
            f"perplexity {res['perplexity']:.2f} over {res['tokens']:,} tokens ({how})"
        )
    else:
        print(
            f"{res['dataset']} {args.split}: accuracy {res['accuracy']:.2%} "
            f"over {res['examples']:,} images"
        )
        for name, acc in res["per_class"].items():
            print(f"  {name:>14}  {acc:.2%}" if acc is not None else f"  {name:>14}  -")
        print(f"confusion matrix: {res['confusion_png']}")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from archlab.train.inference import load_run, predict_next

    top = predict_next(load_run(args.run_dir), args.text, args.top_k)
    print(
        json.dumps({"next": top})
        if args.json
        else "\n".join(f"{t['prob']:8.4f}  {t['token']!r}" for t in top)
    )
    return 0


def _generate(args: argparse.Namespace) -> int:
    from archlab.train.inference import generate_text, load_run

    run = load_run(args.run_dir)
    print(
        generate_text(
            run, args.prompt, args.max_new_tokens, args.temperature, args.top_k, args.seed
        )
    )
    return 0


def _classify(args: argparse.Namespace) -> int:
    from archlab.train.inference import classify_image, load_run

    top = classify_image(load_run(args.run_dir), args.image, args.top_k)
    print(
        json.dumps({"top": top})
        if args.json
        else "\n".join(f"{t['prob']:8.4f}  {t['label']}" for t in top)
    )
    return 0
