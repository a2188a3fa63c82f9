"""AdamW parameter groups: which parameters get weight decay, and why."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["param_groups"]


_NO_DECAY_MODULES = (
    nn.Embedding,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay weight matrices/kernels; not biases, norm gains, embeddings, positions.

    Why: decoupled weight decay (Loshchilov & Hutter 2019) is a prior that pulls weights toward 0.
    For a bias or a norm gain 0 is not a neutral value (a LayerNorm gain of 1 is), and these few
    parameters cannot overfit by themselves; for an embedding (and positional tables) each row only
    gets gradient when its token occurs, while decay shrinks every row at every step, so rare tokens
    would be pulled to zero (minGPT's reasoning). Tied output weights are the embedding, so they
    are not decayed either. Models may list extra names via ``no_weight_decay()`` (timm's hook).
    """
    extra = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay, seen = [], [], set()
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{mname}.{pname}" if mname else pname
            skip = (
                isinstance(module, _NO_DECAY_MODULES)
                or p.ndim < 2
                or pname.endswith("bias")
                or full in extra
                or pname in extra
            )
            (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
