"""Any-module cost analysis: ``analyze(module, example_inputs) -> CostReport``.

How it counts (one forward + one backward pass, shapes only):

1. The module runs through ``torch.func.functional_call`` with *copies* of its parameters and
   buffers — fake tensors by default (``FakeTensorMode``: shapes, no arithmetic), so a
   GPT-2-small-sized model is analysed in about a second and the user's module is never written to.
2. Global forward pre/post hooks (removed afterwards; nothing is registered on the module) keep a
   stack of the module calls. Module types with a formula in ``archlab.cost.layers.module_cost``
   use it (``source="formula"``) and absorb their children; every other op is counted by a
   ``TorchDispatchMode`` with the rules in :mod:`archlab.cost.opcount` (``source="measured"``).
3. Backward ops are attributed to modules through autograd sequence numbers: each node created
   during a module's forward carries a number inside that module's range, and the engine reports
   the node it is running (``torch._C._current_autograd_node``).
4. Activation bytes are the bytes of tensors autograd saves for backward
   (``saved_tensors_hooks``), deduplicated by storage, parameters excluded, always measured.
5. FlopCounterMode runs on the same forward; every per-module difference is listed with a reason.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.modules import module as nn_module
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import FlopCounterMode

from archlab.cost.report import CostReport, LayerRow, reconcile
from archlab.cost.tracker import OUTSIDE, ModuleCallTracker, RowCounts, RowInfo
from archlab.errors import ArchlabError

__all__ = ["analyze"]


_DATA_DEPENDENT = (
    torch._subclasses.fake_tensor.DataDependentOutputException,
    torch._subclasses.fake_tensor.DynamicOutputShapeException,
)


def _module_cost_fn() -> Callable[..., Any] | None:
    """``archlab.cost.layers.module_cost`` if that module exists (the formulas are optional)."""
    try:
        return importlib.import_module("archlab.cost.layers").module_cost
    except (ImportError, AttributeError):
        return None


def _copy_state(module: nn.Module, to: Callable[[torch.Tensor], torch.Tensor], dtype) -> dict:
    """Detached copies (fake or real) of parameters and buffers; tied parameters appear once."""
    state = {}
    for name, p in module.named_parameters():
        t = to(p.detach())
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        state[name] = t.detach().requires_grad_(p.requires_grad)
    for name, b in module.named_buffers():
        t = to(b)
        state[name] = t.to(dtype) if dtype is not None and t.is_floating_point() else t
    return state


def analyze(
    module: nn.Module,
    example_inputs: Any,
    *,
    dtype: torch.dtype | None = None,
    backward: bool = True,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    fake: bool = True,
) -> CostReport:
    """Count params, FLOPs (dense/pointwise, forward/backward) and activation bytes of ``module``.

    ``example_inputs`` is a tensor or a tuple of positional arguments; with ``fake`` (the default)
    inputs may be meta tensors (shapes only: any size, no memory). ``dtype`` casts floating
    parameters and inputs (for activation bytes at another precision). ``backward`` runs one
    backward pass of ``loss_fn(output)`` (default: the sum of every floating output); the loss is
    not the model, so its own forward and backward ops are not counted. ``fake=False``
    runs real arithmetic (needed only for models with data-dependent control flow).
    """
    if not isinstance(module, nn.Module):
        raise ArchlabError(f"analyze needs an nn.Module, got {type(module).__name__}")
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    an = ModuleCallTracker(module, _module_cost_fn(), fake)
    mode = (
        torch._subclasses.fake_tensor.FakeTensorMode(allow_non_fake_inputs=True) if fake else None
    )
    to = mode.from_tensor if mode is not None else (lambda t: t.detach().clone())

    device = next((p.device for p in module.parameters()), torch.device("cpu"))

    def conv_input(t):
        if not isinstance(t, torch.Tensor):
            return t
        if t.is_meta:  # a shape-only input (archlab cost model): a fake tensor, never memory
            if mode is None:
                raise ArchlabError("meta (shape-only) inputs need fake=True: they hold no values")
            with mode:
                c = torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=device)
        else:  # detached (no .grad carried over), then a leaf that needs grad iff the original did
            c = to(t.detach())
        if dtype is not None and c.is_floating_point():
            c = c.to(dtype)
        return c.requires_grad_(t.requires_grad) if c.is_floating_point() else c

    handles = [
        nn_module.register_module_forward_pre_hook(an.pre_hook),
        nn_module.register_module_forward_hook(an.post_hook, with_kwargs=True, always_call=True),
    ]
    fcm = FlopCounterMode(display=False)
    # FakeTensorMode logs a traceback before re-raising a shape error; we report it as one line.
    fake_log = logging.getLogger("torch._subclasses.fake_tensor")
    fake_log_level = fake_log.level
    fake_log.setLevel(logging.CRITICAL)
    try:
        # Copies are made outside the fake mode (it rejects real tensors inside).
        state = _copy_state(module, to, dtype)
        an.param_storages = {v.untyped_storage()._cdata for v in state.values() if v.requires_grad}
        args = tree_map(conv_input, inputs)
        with mode if mode is not None else _null():
            with (
                torch.enable_grad(),
                torch.autograd.graph.saved_tensors_hooks(an.pack, lambda t: t),
            ):
                with fcm, an:
                    out = functional_call(module, state, args)
                floats = [
                    t
                    for t in tree_flatten(out)[0]
                    if isinstance(t, torch.Tensor) and t.requires_grad
                ]
                if backward and floats:
                    loss = loss_fn(out) if loss_fn else sum(t.float().sum() for t in floats)
                    an.phase = "backward"
                    with an:
                        loss.backward()
    except ArchlabError:
        raise
    except _DATA_DEPENDENT as e:
        raise ArchlabError(
            f"the model reads tensor values ({type(e).__name__}), which fake tensors cannot do; "
            "call analyze(..., fake=False)"
        ) from e
    except Exception as e:
        shapes = [list(t.shape) for t in inputs if isinstance(t, torch.Tensor)]
        raise ArchlabError(
            f"the model failed on inputs of shape {shapes}: {type(e).__name__}: {e}"
        ) from e
    finally:
        for h in handles:
            h.remove()
        fake_log.setLevel(fake_log_level)
    return _build_report(module, an, fcm.get_total_flops(), inputs, dtype, fake, backward)


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def _build_report(
    module, an: ModuleCallTracker, fcm_total, inputs, dtype, fake, backward
) -> CostReport:
    counted: set[int] = set()
    rows: list[LayerRow] = []
    for key, info in an.info.items():
        if key in an.absorbed:
            continue
        acc = an.done.get(key, RowCounts())
        formula = bool(info.formulas)
        params = shared = 0
        for p in info.module.parameters(recurse=formula):
            if id(p) not in counted:
                counted.add(id(p))
                params += p.numel()
            else:
                shared += p.numel()
        row = LayerRow(
            name=key,
            type=type(info.module).__name__,
            depth=info.depth,
            parent=info.parent,
            calls=info.calls,
            output_shape=info.output_shape,
            params=params,
            shared_params=shared,
            flops_forward_dense=acc.fwd_dense,
            flops_forward_pointwise=acc.fwd_pw,
            flops_backward_dense=acc.bwd_dense,
            flops_backward_pointwise=acc.bwd_pw,
            activation_bytes=acc.act_bytes,
            source="formula" if formula else "measured",
            measured_forward_dense=acc.fwd_dense,
            flopcountermode_forward=acc.fcm,
            ops={k: tuple(v) for k, v in acc.ops.items()},
            notes=sorted(acc.notes | info.formula_errors),
        )
        if formula:
            _apply_formula(row, info, backward)
        rows.append(row)
    for name, m in module.named_modules():  # parameters of modules that never ran still count
        own = [p for p in m.parameters(recurse=False) if id(p) not in counted]
        if own:
            counted.update(id(p) for p in own)
            rows.append(
                LayerRow.empty(name or type(m).__name__, type(m).__name__, name.count(".") + 1)
            )
            rows[-1].params = sum(p.numel() for p in own)
            rows[-1].source = "not called"
    extra = an.done.get(OUTSIDE)
    if extra is not None and (extra.bwd_dense or extra.bwd_pw or extra.uncounted):
        row = LayerRow.empty(OUTSIDE, "autograd", 0)
        row.flops_backward_dense, row.flops_backward_pointwise = extra.bwd_dense, extra.bwd_pw
        rows.append(row)
    uncounted = [
        {"op": op, "phase": phase, "module": key, "calls": n}
        for key, acc in an.done.items()
        if key not in an.absorbed
        for (op, phase), n in sorted(acc.uncounted.items())
    ]
    return CostReport(
        model=type(module).__name__,
        input_shapes=[list(t.shape) if isinstance(t, torch.Tensor) else None for t in inputs],
        dtype=str(dtype or next((p.dtype for p in module.parameters()), torch.float32)),
        fake=fake,
        backward=backward,
        params=sum(p.numel() for p in module.parameters()),
        layers=rows,
        uncounted=uncounted,
        reconciliation=reconcile(rows, fcm_total),
    )


def _apply_formula(row: LayerRow, info: RowInfo, backward: bool) -> None:
    """Replace measured FLOPs with the formula's (summed over calls); keep measured where absent."""
    formulas = info.formulas
    for attr in ("flops_forward_dense", "flops_forward_pointwise", "flops_backward_dense"):
        if attr == "flops_backward_dense":
            if not backward:
                continue
            formula_bwd = sum(getattr(f, attr) or 0 for f in formulas)
            if not all(info.formula_input_grad) and formula_bwd != row.flops_backward_dense:
                row.notes.append(
                    f"backward dense: measured (autograd skips the input gradient here, no input "
                    f"needs one); the formula, which assumes it, gives {formula_bwd:,}"
                )
                continue
            if formula_bwd != row.flops_backward_dense:
                row.notes.append(
                    f"op-level measurement gives {row.flops_backward_dense:,} dense backward FLOPs"
                )
        values = [getattr(f, attr, None) for f in formulas]
        if all(v is not None for v in values):
            setattr(row, attr, int(sum(values)))
        else:
            row.notes.append(f"{attr}: the formula gives none; measured value kept")
    if row.measured_forward_dense != row.flops_forward_dense:
        row.notes.append(
            f"op-level measurement gives {row.measured_forward_dense:,} dense forward FLOPs"
        )
