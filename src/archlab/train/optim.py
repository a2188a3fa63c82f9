"""AdamW parameter groups: which parameters get weight decay, and why."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["param_groups"]

# Modules whose >= 2-D weights are linear maps (matrices, conv kernels, recurrent matrices).
_LINEAR_MAPS = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.RNNBase, nn.MultiheadAttention)


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay the weights of linear maps only (minGPT's rule).

    Decayed: >= 2-D weights of Linear, Conv, RNN/LSTM/GRU, Bilinear, MultiheadAttention.
    Not decayed: biases, norm gains/shifts (LayerNorm, BatchNorm, ...), embeddings (token and
    positional tables), and any parameter registered directly on a custom module (a ViT's
    class token and position table). Why: decoupled weight decay (Loshchilov & Hutter 2019) is a
    prior pulling weights toward 0, which regularizes a linear map's gain. For a bias or a norm
    gain 0 is not a neutral value (a gain of 1 is) and these few numbers cannot overfit alone;
    an embedding row only gets gradient when its token occurs while decay shrinks every row at
    every step, so rare tokens (and rarely-useful positions) would be pulled to zero. Tied output
    weights are the embedding, so they are not decayed either. A model may exclude more names
    through ``no_weight_decay()`` (timm's hook).
    """
    extra = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    # Embedding tables, wherever else they are used (a tied output layer is one of them).
    tables = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    decay, no_decay, seen = [], [], set()
    for mname, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{mname}.{pname}" if mname else pname
            linear_weight = (
                isinstance(module, _LINEAR_MAPS) and p.ndim >= 2 and not pname.startswith("bias")
            )
            if id(p) in tables or full in extra or pname in extra:
                linear_weight = False
            (decay if linear_weight else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
