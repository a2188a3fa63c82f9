"""Pieces used by more than one architecture, and nothing else.

- :class:`FeedForward` — the position-wise MLP of a Transformer block (GPT and ViT use the same one:
  Linear → GELU → Linear → Dropout; Vaswani et al. 2017 §3.3 with GELU as in GPT-2 and ViT).
- :func:`attention` — ``F.scaled_dot_product_attention`` with one CPU precision rule (below); GPT
  and ViT call it.
- :func:`linear_cross_entropy` — the output projection and the mean cross-entropy fused and
  chunked, for training with a large vocabulary (the RNN LMs use it when given ``targets``).
- :func:`sample_next_token` — temperature / top-k sampling from next-token logits (GPT and the RNN
  language models share it, so both decode the same way).

The attention blocks themselves stay in ``gpt.py`` and ``vit.py``: the causal one carries a KV
cache, the image one can return its attention weights, and each reads more clearly on its own.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from archlab.errors import ArchlabError


class FeedForward(nn.Module):
    """``x -> W2 GELU(W1 x + b1) + b2`` applied at every position; hidden width ``d_ff``."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        self.fc = nn.Linear(d_model, d_ff, bias=bias)
        self.proj = nn.Linear(d_ff, d_model, bias=bias)  # a residual projection (see GPT init)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))  # (..., d_model)


# Largest (Tq x Tk) score matrix per head that the CPU half-precision path materializes (below).
EXPLICIT_MAX_SCORES = 128 * 128


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    attn_mask: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
) -> torch.Tensor:
    """``F.scaled_dot_product_attention`` (q, k, v: (B, nh, T, hs)), with a CPU half-precision rule.

    Why: under bf16 autocast PyTorch's CPU flash-attention kernel is several times *slower* in bf16
    than in fp32 at the head sizes used here (AVX-512 CPU, torch 2.13, (64, 4, 64, 32) forward +
    backward: ~190 ms bf16 vs ~50 ms fp32, single thread). Where bf16 matmuls are fast (AMX,
    AVX512-BF16; measured by :func:`archlab.hardware.attention_path`), short sequences take the
    plain formula instead: two bf16 batched matmuls around an fp32 softmax, forward + backward, 2
    threads: (128, 3, 50, 32) 3.8 ms vs 6.8 ms for the fp32 flash kernel. Where bf16 matmuls are
    slow (AVX2 only: ~100x slower than fp32), half-precision inputs always go to the fp32 fused
    kernel, which is also the fastest fp32 path measured on such a CPU ((32, 4, 64, 32): 11 ms
    vs 17 ms explicit). Longer sequences (> ``EXPLICIT_MAX_SCORES`` scores per head) always take
    the fp32 fused kernel, which never stores the scores. On CUDA nothing changes.
    Semantics are SDPA's: bool mask True = may attend, float mask added; ``is_causal`` is the
    top-left-aligned lower triangle; dropout on the attention weights.
    """
    half = q.dtype in (torch.bfloat16, torch.float16)
    if q.device.type != "cpu" or not half:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=attn_mask, dropout_p=dropout_p, is_causal=is_causal
        )
    from archlab.hardware import attention_path

    tq, tk = q.size(-2), k.size(-2)
    if tq * tk <= EXPLICIT_MAX_SCORES and attention_path(q.dtype, "cpu") == "explicit":
        with torch.autocast("cpu", enabled=False):
            att = (q @ k.transpose(-2, -1)).float() * q.size(-1) ** -0.5  # (B, nh, Tq, Tk) fp32
            if is_causal:
                attn_mask = torch.ones(tq, tk, dtype=torch.bool, device=q.device).tril()
            if attn_mask is not None and attn_mask.dtype == torch.bool:
                att = att.masked_fill(~attn_mask, float("-inf"))
            elif attn_mask is not None:
                att = att + attn_mask
            att = F.dropout(att.softmax(dim=-1), dropout_p)  # fp32 softmax
            return att.to(v.dtype) @ v  # (B, nh, Tq, hs)
    with torch.autocast("cpu", enabled=False):
        y = F.scaled_dot_product_attention(
            q.float(),
            k.float(),
            v.float(),
            attn_mask=attn_mask,
            dropout_p=dropout_p,
            is_causal=is_causal,
        )  # (B, nh, T, hs) fp32
    return y.to(q.dtype)


# Logits are computed 1,024 vocabulary rows at a time in fp32: a (252, 200) x (200, 33,278) matmul
# ran at 64 GFLOP/s as one call and at 103 GFLOP/s in 1,024-word blocks (2-core Zen 3, AVX2 MKL;
# the block's (c, 1024) output stays in cache), bit-identical.
_VOCAB_BLOCK = 1024


def _chunked_ce(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    target: torch.Tensor,
    chunk: int,
    ignore_index: int,
    grads: bool,
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None]:
    """Mean CE of ``h @ W^T + b`` against ``target``, one chunk of logits at a time; with
    ``grads`` also d loss / d (h, W, b), computed in the same pass.

    For rows ``c`` of a chunk: z = h_c W^T + b (V wide, fp32), loss_c = logsumexp(z) - z[target],
    and d loss / d z = softmax(z) - onehot(target) (divided by the number of scored rows), so
    dh_c = dz W and dW += dz^T h_c, db += sum(dz). Only one chunk of logits exists at a time: with
    a 33k-word vocabulary the full (N, V) logits, their fp32 copy, log-softmax and its gradient are
    each ~93 MB per batch of 700 tokens, and moving them dominated a training step. Without
    ``grads`` the softmax, the two gradient matmuls and the (V, H) / (N, H) buffers are skipped:
    one matmul per chunk instead of three (an evaluation pass of a word-level LSTM).
    """
    dev = h.device.type
    cd = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
    acc = torch.promote_types(weight.dtype, torch.float32)  # softmax/accumulation dtype
    with torch.autocast(dev, enabled=False):
        hd = h if cd is None else h.to(cd)  # (N, H) matmul dtype: bf16 under autocast
        w = weight if cd is None else weight.to(cd)  # (V, H)
        valid = target != ignore_index  # (N,)
        inv = 1.0 / max(int(valid.sum()), 1)
        total = torch.zeros((), dtype=acc, device=h.device)
        same = hd.dtype == w.dtype == acc  # fp32: the matmuls write into their buffers
        if grads:
            grad_h = torch.empty(h.shape, dtype=acc, device=h.device)  # (N, H)
            # fp32: the first chunk's dW matmul writes it (no zero-fill pass over (V, H))
            grad_w = (torch.empty if same else torch.zeros)(
                weight.shape, dtype=acc, device=h.device
            )
            grad_b = None if bias is None else torch.zeros_like(bias, dtype=acc)
        buf = (
            torch.empty(min(chunk, h.size(0)), w.size(0), dtype=acc, device=h.device)
            if same
            else None
        )
        for a in range(0, h.size(0), chunk):
            hc, t, ok = hd[a : a + chunk], target[a : a + chunk], valid[a : a + chunk]
            if buf is not None:  # fp32: into one reused (c, V) buffer, in vocabulary blocks
                z = buf[: hc.size(0)]  # on the CPU (a cache effect; a GPU takes one call)
                step = _VOCAB_BLOCK if dev == "cpu" else w.size(0)
                for v in range(0, w.size(0), step):
                    blk = slice(v, v + step)
                    torch.mm(hc, w.t()[:, blk], out=z[:, blk])  # (c, block) of the logits
            else:
                z = (hc @ w.t()).to(acc)  # (c, V) logits in fp32
            if bias is not None:
                z += bias.to(acc)
            t0 = t.clamp(min=0)  # ignored rows: any index, masked below
            zt = z.gather(1, t0[:, None]).squeeze(1)  # (c,) the target's logit
            if not grads:
                total += (torch.logsumexp(z, dim=-1) - zt)[ok].sum()
                continue
            # One exp pass serves the loss and the gradient: e = exp(z - max), lse = max + log
            # sum e, softmax = e / sum e (logsumexp and then exp(z - lse) was two passes over the
            # (c, V) block, which at V = 33k is memory traffic, not arithmetic).
            m = z.amax(dim=-1, keepdim=True)  # (c, 1)
            e = z.sub_(m).exp_()  # (c, V) in place
            s = e.sum(dim=-1)  # (c,)
            total += (m.squeeze(1) + s.log() - zt)[ok].sum()  # lse - z[target]
            scale = ok.to(acc) * inv  # d mean-loss / dz rows; 0 for ignored targets
            p = e.mul_((scale / s)[:, None])  # (c, V) softmax / N_scored
            p[torch.arange(p.size(0), device=p.device), t0] -= scale  # - onehot / N_scored
            if grad_b is not None:
                grad_b += p.sum(0)
            if same:  # C = A B and C += A B straight into the buffers (no (V, H) temporary)
                torch.mm(p, w, out=grad_h[a : a + chunk])  # (c, H)
                if a == 0:
                    torch.mm(p.t(), hc, out=grad_w)  # (V, H)
                else:
                    grad_w.addmm_(p.t(), hc)
            else:
                pd = p.to(hd.dtype)  # (c, V) in the autocast dtype
                grad_h[a : a + chunk] = (pd @ w).to(acc)  # (c, H)
                grad_w += (pd.t() @ hc).to(acc)  # (V, H)
    return total * inv, ((grad_h, grad_w, grad_b) if grads else None)


class _LinearCrossEntropy(torch.autograd.Function):
    """:func:`_chunked_ce` with its gradients computed in forward and scaled in backward."""

    @staticmethod
    def forward(ctx, h, weight, bias, target, chunk, ignore_index):  # type: ignore[override]
        loss, grads = _chunked_ce(h, weight, bias, target, chunk, ignore_index, grads=True)
        grad_h, grad_w, grad_b = grads  # type: ignore[misc]
        ctx.save_for_backward(grad_h.to(h.dtype), grad_w.to(weight.dtype), grad_b)
        return loss

    @staticmethod
    def backward(ctx, g):  # type: ignore[override]
        grad_h, grad_w, grad_b = ctx.saved_tensors
        return grad_h * g, grad_w * g, None if grad_b is None else grad_b * g, None, None, None


def linear_cross_entropy(
    h: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    target: torch.Tensor,
    chunk_elems: int = 1 << 23,
    ignore_index: int = -100,
) -> torch.Tensor:
    """``F.cross_entropy(F.linear(h, weight, bias), target)`` (mean over non-ignored targets)
    without materializing the (N, V) logits: rows go through in chunks of ~``chunk_elems`` logits
    (8 Mi fp32 = 32 MiB: at V = 33k, 252 rows; larger chunks keep the inner dimension of the
    (V, H) gradient matmul long). With the one-exp pass below, fwd + bwd of the lstm-wt2 loss
    (700 x 200 -> 33,278) took 243 vs 292 ms in fp32 and 133 vs 163 ms in bf16 against the
    two-pass, 4 Mi version (medians of 5, interleaved, 2-core Zen 4). h (N, H), weight (V, H),
    target (N,). Under CPU/CUDA autocast the two matmuls run in the autocast dtype and the
    softmax in fp32, as autocast would do. Same value and gradients as the unfused expression
    (tested). When no gradient can flow (``torch.no_grad()``, or no input requires grad) only the
    loss is computed.
    """
    chunk = max(1, chunk_elems // weight.size(0))
    needs = [t is not None and t.requires_grad for t in (h, weight, bias)]
    if not (torch.is_grad_enabled() and any(needs)):
        return _chunked_ce(h, weight, bias, target, chunk, ignore_index, grads=False)[0]
    return _LinearCrossEntropy.apply(h, weight, bias, target, chunk, ignore_index)


def check_sampling(temperature: float, top_k: int | None) -> None:
    """``temperature`` finite and >= 0 (nan would reach torch.multinomial as nan probabilities),
    ``top_k`` None or >= 1; ArchlabError naming the bad one."""
    if not (math.isfinite(temperature) and temperature >= 0):
        raise ArchlabError(f"temperature must be a finite number >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ArchlabError(f"top_k must be >= 1, got {top_k}")


def sample_next_token(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token id per row from ``logits`` (B, V); returns (B, 1) long.

    ``temperature == 0`` means greedy (argmax). ``top_k`` keeps the k most likely tokens and
    renormalizes (as nanoGPT's ``generate``); ``generator`` makes the draw reproducible.
    """
    check_sampling(temperature, top_k)
    logits = logits.float()  # sample in fp32 even under bf16 autocast
    if temperature == 0:
        return logits.argmax(dim=-1, keepdim=True)  # (B, 1)
    logits = logits / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator)  # (B, 1)


__all__ = [
    "FeedForward",
    "attention",
    "check_sampling",
    "linear_cross_entropy",
    "sample_next_token",
]
