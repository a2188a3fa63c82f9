"""The lab's answers as plain data: what ``/api/next-word|generate|classify`` return.

One function per question, over every loaded model of the right kind, each validating its inputs
(an :class:`~archlab.errors.ArchlabError` names the bad one). The page renders the same answers
(:mod:`archlab.lab.views`), so what a notebook gets is what a student sees.
"""

from __future__ import annotations

import math
from typing import Any

from archlab.errors import ArchlabError
from archlab.lab.state import Lab
from archlab.lab.text import check_prompt
from archlab.lab.vision import decode_image, predict
from archlab.train.inference import generate_text, predict_next

__all__ = [
    "MAX_NEW_TOKENS",
    "MAX_TOP_K",
    "check_float",
    "check_int",
    "classifications",
    "generations",
    "next_words",
]

MAX_TOP_K = 1000
MAX_NEW_TOKENS = 1000  # ~1 s for four small models on 2 cores


def check_int(name: str, value: Any, lo: int, hi: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # a JSON 5.0, or a page's number box
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ArchlabError(f"{name} must be an integer in {lo}..{hi:,}, got {value!r}")
    return value


def check_float(name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ArchlabError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and lo <= value <= hi):
        raise ArchlabError(f"{name} must be in {lo:g}..{hi:g}, got {value!r}")
    return float(value)


def next_words(lab: Lab, prompt: Any, top_k: Any = 5) -> dict[str, list[dict[str, Any]]]:
    """``{run_name: [{token, prob}, ...]}``: each language model's top-k next tokens."""
    prompt, k = check_prompt(prompt), check_int("top_k", top_k, 1, MAX_TOP_K)
    return {m.name: predict_next(m.run, prompt, k) for m in lab.of_kind("lm")}


def generations(
    lab: Lab,
    prompt: Any,
    max_new_tokens: Any = 100,
    temperature: Any = 1.0,
    top_k: Any = None,
    seed: Any = None,
) -> dict[str, dict[str, str]]:
    """``{run_name: {text, continuation}}``: prompt + sampled tokens, and the sampled part alone.

    ``temperature`` 0 is greedy; ``top_k`` None samples from the whole vocabulary; the same
    ``seed`` gives the same text (``torch.Generator`` per model, as ``archlab generate``).
    """
    prompt = check_prompt(prompt)
    n = check_int("max_new_tokens", max_new_tokens, 0, MAX_NEW_TOKENS)
    t = check_float("temperature", temperature, 0.0, 100.0)
    k = None if top_k is None else check_int("top_k", top_k, 1, MAX_TOP_K)
    s = None if seed is None else check_int("seed", seed, 0, 2**63 - 1)
    out = {}
    for m in lab.of_kind("lm"):
        text = generate_text(m.run, prompt, n, t, k, s)
        tok = m.run.tokenizer
        head = tok.decode(tok.encode(prompt))  # the prompt as the model's vocabulary spells it
        cont = text[len(head) :] if text.startswith(head) else text
        out[m.name] = {"text": text, "continuation": cont}
    return out


def classifications(
    lab: Lab, data: bytes, dx: Any = 0, dy: Any = 0, top_k: Any = 3, invert: str = "auto"
) -> dict[str, list[dict[str, Any]]]:
    """``{run_name: [{label, prob}, ...]}`` for image file bytes, shifted by (dx, dy) pixels."""
    k = check_int("top_k", top_k, 1, MAX_TOP_K)
    dx, dy = check_int("dx", dx, -1000, 1000), check_int("dy", dy, -1000, 1000)
    out = {}
    for m in lab.of_kind("image"):
        shape = m.run.config["data"]["shape"]
        image = decode_image(data, int(shape[0]), int(shape[-1]), invert)
        out[m.name] = predict(m, image, dx, dy).top(k)
    return out
