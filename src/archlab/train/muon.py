"""Muon on a model's hidden matrices, AdamW on everything else, as one optimizer.

Muon (Jordan et al. 2024, https://kellerjordan.github.io/posts/muon/) replaces a hidden weight
matrix's momentum update by its nearest semi-orthogonal matrix (all singular values ~1), found
by a quintic Newton-Schulz iteration; embeddings, the output head, biases and norm gains keep
AdamW. The update is scaled by 0.2 * sqrt(max(rows, cols)) so that its RMS matches AdamW's
(Liu et al. 2025, "Muon is Scalable for LLM Training", sec. 2.2): one lr and one weight decay
serve both kinds of parameter.

Why not ``torch.optim.Muon``: it runs the iteration in bf16, whose matmuls are ~100x slower
than fp32 on CPUs without native bf16 (AVX2 only); here the caller picks the iteration's dtype
from the measured capability (the run's resolved precision). It also takes 2-D parameters only,
so a model needs a second optimizer beside it; one optimizer keeps one state_dict for the
checkpoint. The AdamW groups run torch's own (fused where it can) ``adamw`` kernel.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.optim.adamw import adamw

from archlab.train.optim import param_groups

__all__ = ["Muon", "muon_param_groups", "orthogonalize"]

# The quintic's coefficients, chosen to maximize the slope at 0 (Jordan et al. 2024): five
# steps take every singular value of a normalized matrix into ~[0.7, 1.2], not exactly to 1,
# which the post measured not to hurt training.
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(
    g: torch.Tensor, steps: int = 5, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """~U V^T of G = U S V^T by ``steps`` quintic Newton-Schulz iterations, in ``dtype``."""
    a, b, c = NS_COEFFICIENTS
    x = g.to(dtype)
    tall = x.size(0) > x.size(1)
    if tall:  # iterate on the wide side: the Gram matrix is min(rows, cols) square
        x = x.mT
    x = x / x.norm().clamp(min=1e-7)  # Frobenius >= spectral norm: singular values <= 1
    m, n = x.shape  # m <= n
    # The Gram form's cost below the direct one's: 4m^2 n + 8m^3 s < (4m^2 n + 2m^3) s
    if dtype in (torch.float32, torch.float64) and 3 * steps * m < 2 * (steps - 1) * n:
        x = _gram_iteration(x, steps)
    else:
        for _ in range(steps):
            gram = x @ x.mT
            x = a * x + torch.addmm(gram, gram, gram, beta=b, alpha=c) @ x
    return x.mT if tall else x


def _gram_iteration(x: torch.Tensor, steps: int) -> torch.Tensor:
    """The same iteration on the (m, m) side only, for a wide x (m < 8n/15 at five steps).

    Every iterate is X_k = P_k X_0 with P_k a polynomial in G = X_0 X_0^T, so it is symmetric
    and commutes with G: X_k X_k^T = P_k G P_k, and P_{k+1} = a P_k + (b S + c S^2) P_k with
    S = P_k G P_k. Cost 4 m^2 n + 8 m^3 * steps against (4 m^2 n + 2 m^3) * steps: for the cnn's
    (128, 1152) kernel 160 vs 398 MFLOP. The rewrite is Gram Newton-Schulz (Amsel, Chen, Dao et
    al. 2026, https://tridao.me/blog/2026/gram-newton-schulz/), who found it unstable in half
    precision (spurious negative eigenvalues of G, fixed there by restarts); here it runs in
    fp32/fp64 only, five steps, and is tested against the direct iteration.
    """
    a, b, c = NS_COEFFICIENTS
    g = x @ x.mT  # (m, m)
    p = torch.eye(x.size(0), dtype=x.dtype, device=x.device)
    for _ in range(steps):
        s = p @ g @ p  # X_k X_k^T
        p = torch.addmm(p, torch.addmm(s, s, s, beta=b, alpha=c), p, beta=a)
    return p @ x


def _weight_layers(model: nn.Module) -> list[nn.Module]:
    """Linear maps and dense (groups=1) convolutions, in registration order."""
    convs = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.Linear) or (isinstance(m, convs) and m.groups == 1)
    ]


def muon_param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """param_groups (decay rule) with the hidden matrices split into a group of their own.

    Hidden: the decayed weights of nn.Linear and dense nn.Conv layers, except the first and the
    last of them in registration order (the input and output maps: a ViT's patch projection and
    head, a CNN's first conv and head), which Muon's authors leave to AdamW. A conv kernel
    (out, in, *k) is the matrix (out, in * prod(k)) that maps a receptive field to a pixel, as in
    the CIFAR-10 speedruns Muon was first tuned on (Jordan et al. 2024). Depthwise and grouped
    kernels, recurrent matrices and embedding tables stay with AdamW.
    """
    layers = _weight_layers(model)
    io = {id(layers[0].weight), id(layers[-1].weight)} if layers else set()
    hidden_ids = {id(m.weight) for m in layers} - io
    decay, *others = param_groups(model, weight_decay)  # decay group first, then no-decay
    hidden = [p for p in decay["params"] if id(p) in hidden_ids]
    rest = [p for p in decay["params"] if id(p) not in hidden_ids]
    groups = [{**decay, "params": hidden, "muon": True}] if hidden else []
    if rest:
        groups.append({**decay, "params": rest, "muon": False})
    groups += [{**g, "muon": False} for g in others]
    return groups


class Muon(torch.optim.Optimizer):
    """Groups with ``muon=True`` get Muon (momentum, Nesterov, orthogonalized update); the rest
    get AdamW with ``betas`` and ``eps``. Weight decay is decoupled in both (lr * wd)."""

    def __init__(
        self,
        params: Any,
        *,
        lr: float,
        betas: tuple[float, float] = (0.9, 0.95),
        eps: float = 1e-8,
        momentum: float = 0.95,
        nesterov: bool = True,
        ns_steps: int = 5,
        ns_dtype: torch.dtype = torch.float32,
    ) -> None:
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=0.0,
            momentum=momentum,
            nesterov=nesterov,
            ns_steps=ns_steps,
            muon=False,
        )
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype
        for g in self.param_groups:
            if g["muon"] and any(p.ndim < 2 for p in g["params"]):
                raise ValueError("Muon groups hold matrices or conv kernels (>= 2-D) only")

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for g in self.param_groups:
            params = [p for p in g["params"] if p.grad is not None]
            if params:
                (self._muon_step if g["muon"] else self._adamw_step)(g, params)
        return loss

    def _muon_step(self, g: dict[str, Any], params: list[torch.Tensor]) -> None:
        lr, wd, mom = g["lr"], g["weight_decay"], g["momentum"]
        for p in params:
            st = self.state[p]
            if "momentum_buffer" not in st:
                st["momentum_buffer"] = torch.zeros_like(p)
            buf = st["momentum_buffer"]
            buf.lerp_(p.grad, 1 - mom)
            update = p.grad.lerp(buf, mom) if g["nesterov"] else buf
            matrix = update.reshape(len(update), -1)  # a conv kernel: (out, in * prod(k))
            o = orthogonalize(matrix, g["ns_steps"], self.ns_dtype).view(p.shape)
            p.mul_(1 - lr * wd)
            p.add_(o.to(p.dtype), alpha=-lr * 0.2 * math.sqrt(max(matrix.shape)))

    def _adamw_step(self, g: dict[str, Any], params: list[torch.Tensor]) -> None:
        fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
        exp_avgs, exp_avg_sqs, steps = [], [], []
        for p in params:
            st = self.state[p]
            if "step" not in st:
                st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            exp_avgs.append(st["exp_avg"])
            exp_avg_sqs.append(st["exp_avg_sq"])
            steps.append(st["step"])
        beta1, beta2 = g["betas"]
        adamw(
            params,
            [p.grad for p in params],
            exp_avgs,
            exp_avg_sqs,
            [],
            steps,
            fused=fused or None,
            amsgrad=False,
            beta1=beta1,
            beta2=beta2,
            lr=g["lr"],
            weight_decay=g["weight_decay"],
            eps=g["eps"],
            maximize=False,
        )
