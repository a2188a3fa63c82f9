"""What the next-word tab shows about one prompt: per-token loss, attention, gradient saliency.

Top-k and sampling are :func:`archlab.train.inference.predict_next` / ``generate_text``, the
functions ``archlab predict|generate`` call; this module adds the three views of *why*:

- **per-token loss** of the prompt, ``-log p(x_t | x_<t)`` in nats (the first token has none:
  nothing predicts it);
- **attention of the last position** (GPT): per layer and head, softmax(q_T kᵀ / √d_head) over the
  window's keys (Vaswani et al. 2017 eq. 1), rebuilt from each block's own ``qkv`` projection on
  the input that block received, so no model file changes (tested against the block's output);
- **gradient saliency** of the last prediction: ``‖∂ log p(ŷ | x) / ∂ e_t‖₂`` for each past
  token's embedding ``e_t``, ŷ the top-1 next token (Simonyan et al. 2014's input-gradient map,
  on embeddings as in Li et al. 2016, "Visualizing and Understanding Neural Models in NLP"). For
  a tanh RNN it decays with distance much faster than for an LSTM/GRU or a GPT: claims T1 and R3
  on the user's own text.

A GPT sees at most ``block_size`` tokens (the window ``predict_next`` crops to), so every view of
a GPT covers that window; a recurrent model reads the whole prompt.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from archlab.errors import ArchlabError
from archlab.lab.models import LabModel

__all__ = [
    "MAX_PROMPT_CHARS",
    "PromptTooLong",
    "TokenView",
    "check_prompt",
    "context_ids",
    "last_attention",
    "saliency",
    "token_losses",
]

# Longest prompt the lab takes: ~2 pages of text; a 4,000-step BPTT backward stays well under a
# second on 2 cores. Longer is refused (HTTP 413), not cut silently.
MAX_PROMPT_CHARS = 4000


class PromptTooLong(ArchlabError):
    """A prompt over :data:`MAX_PROMPT_CHARS` (the API answers 413)."""


def check_prompt(prompt: object) -> str:
    if not isinstance(prompt, str):
        raise ArchlabError(f"prompt must be a string, got {type(prompt).__name__}")
    if not prompt:
        raise ArchlabError("the prompt is empty; type at least one character")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise PromptTooLong(
            f"the prompt has {len(prompt):,} characters; the lab takes at most {MAX_PROMPT_CHARS:,}"
        )
    return prompt


@dataclass(frozen=True)
class TokenView:
    """The tokens a model saw and one number per token (None where there is none)."""

    tokens: list[str]
    values: list[float | None]
    unit: str  # "nats", "weight", "grad norm"
    note: str = ""


def context_ids(m: LabModel, prompt: str) -> torch.Tensor:
    """Token ids (1, T) of the prompt as the model sees it: a GPT's last ``block_size`` only."""
    ids = m.run.tokenizer.encode(check_prompt(prompt))
    if not ids:
        raise ArchlabError("the prompt is empty after tokenization; give at least one token")
    if m.family == "gpt":
        ids = ids[-int(m.run.config["spec"]["block_size"]) :]  # as predict_next crops
    return torch.tensor([ids], dtype=torch.int64)  # (1, T)


def _window_note(m: LabModel, prompt: str, idx: torch.Tensor) -> str:
    total = len(m.run.tokenizer.encode(prompt))
    if total > idx.size(1):
        return f"the GPT sees the last {idx.size(1)} of {total} tokens (its context window)"
    return ""


@torch.no_grad()
def token_losses(m: LabModel, prompt: str) -> TokenView:
    """``-log p(x_t | x_<t)`` per token in nats; the first token's is None."""
    idx = context_ids(m, prompt)  # (1, T)
    logp = F.log_softmax(m.run.model(idx)[0].float(), dim=-1)  # (T, V)
    nll = -logp[:-1].gather(1, idx[0, 1:, None])[:, 0]  # (T-1,) loss of token t+1 given <= t
    return TokenView(
        m.run.tokenizer.tokens(idx[0].tolist()),
        [None, *nll.tolist()],
        "nats",
        _window_note(m, prompt, idx),
    )


@torch.no_grad()
def last_attention(m: LabModel, prompt: str) -> tuple[list[str], torch.Tensor]:
    """The GPT's attention weights of the last position: (tokens, weights (layers, heads, T)).

    Each block's attention input (after its LayerNorm) is captured with a forward pre-hook; the
    weights are then softmax(q_T k_jᵀ / √hs) for j = 0..T-1 — the last query is causal-masked
    nowhere, so this is the row of the T×T matrix both attention kernels compute.
    """
    if m.family != "gpt":
        raise ArchlabError(f"{m.name} is not a GPT; attention weights are shown for GPT runs")
    model = m.run.model
    idx = context_ids(m, prompt)  # (1, T)
    inputs: list[torch.Tensor] = []
    hooks = [
        b.attn.register_forward_pre_hook(lambda _mod, args: inputs.append(args[0]))
        for b in model.blocks
    ]
    try:
        model(idx)
    finally:
        for h in hooks:
            h.remove()
    rows = []
    for block, x in zip(model.blocks, inputs, strict=True):
        B, T, C = x.shape
        nh = block.attn.heads
        q, k, _ = block.attn.qkv(x.float()).split(C, dim=2)  # each (1, T, C)
        q = q[:, -1].view(B, nh, 1, C // nh)  # (1, nh, 1, hs): the last position's query
        k = k.view(B, T, nh, C // nh).transpose(1, 2)  # (1, nh, T, hs)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(C // nh)  # (1, nh, 1, T)
        rows.append(F.softmax(scores, dim=-1)[0, :, 0])  # (nh, T)
    return m.run.tokenizer.tokens(idx[0].tolist()), torch.stack(rows)  # (L, nh, T)


def saliency(m: LabModel, prompt: str) -> tuple[str, TokenView]:
    """(the top-1 next token ŷ, ‖∂ log p(ŷ) / ∂ e_t‖₂ per prompt token t).

    Gradients are taken with ``torch.autograd.grad`` with respect to the embeddings only, so the
    model's parameters collect no ``.grad`` (the lab serves requests from several threads).
    """
    if m.kind != "lm":
        raise ArchlabError(f"{m.name} is not a language model")
    model = m.run.model
    idx = context_ids(m, prompt)  # (1, T)
    with torch.enable_grad():
        emb = model.embed(idx).detach().requires_grad_(True)  # (1, T, E)
        logits = model(inputs_embeds=emb)[0, -1]  # (V,) the last prediction
        target = int(logits.argmax())
        logp = F.log_softmax(logits, dim=-1)[target]
        (grad,) = torch.autograd.grad(logp, emb)  # (1, T, E)
    norms = grad[0].norm(dim=-1)  # (T,)
    view = TokenView(
        m.run.tokenizer.tokens(idx[0].tolist()),
        norms.tolist(),
        "grad norm",
        _window_note(m, prompt, idx),
    )
    return m.run.tokenizer.token(target), view
