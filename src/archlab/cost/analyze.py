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

import bisect
import importlib
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.modules import module as nn_module
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map
from torch.utils.flop_counter import FlopCounterMode, flop_registry

from archlab.cost.opcount import count_op, op_name
from archlab.cost.report import CostReport, LayerRow, reconcile
from archlab.errors import ArchlabError

__all__ = ["analyze"]

log = logging.getLogger(__name__)

OUTSIDE = "(outside modules)"
# Fused kernels whose meta implementation returns an empty workspace tensor.
_WORKSPACE_OPS = {torch.ops.aten.mkldnn_rnn_layer.default}
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


@dataclass
class _Acc:
    """Counts of one row while the pass runs."""

    fwd_dense: int = 0
    fwd_pw: int = 0
    bwd_dense: int = 0
    bwd_pw: int = 0
    act_bytes: int = 0
    fcm: int = 0  # what FlopCounterMode's rules give for the same forward ops
    ops: dict[str, list[int]] = field(default_factory=dict)  # op -> [calls, dense, fcm] (fwd)
    uncounted: Counter = field(default_factory=Counter)  # (op, phase) -> calls
    notes: set[str] = field(default_factory=set)

    def add(self, o: _Acc) -> None:
        self.fwd_dense += o.fwd_dense
        self.fwd_pw += o.fwd_pw
        self.bwd_dense += o.bwd_dense
        self.bwd_pw += o.bwd_pw
        self.act_bytes += o.act_bytes
        self.fcm += o.fcm
        for k, (c, d, f) in o.ops.items():
            r = self.ops.setdefault(k, [0, 0, 0])
            r[0], r[1], r[2] = r[0] + c, r[1] + d, r[2] + f
        self.uncounted.update(o.uncounted)
        self.notes |= o.notes


@dataclass
class _Frame:
    key: str
    accs: dict[str, _Acc]  # this call and its descendants, merged into the parent on exit


@dataclass
class _RowInfo:
    module: nn.Module
    depth: int
    parent: str | None
    calls: int = 0
    output_shape: list[int] | None = None
    formulas: list[Any] = field(default_factory=list)
    formula_input_grad: list[bool] = field(default_factory=list)  # per formula call
    formula_errors: set[str] = field(default_factory=set)


class _Analyzer(TorchDispatchMode):
    """Counts ops, attributes them to module calls, and records saved-tensor bytes."""

    def __init__(self, root: nn.Module, module_cost: Callable[..., Any] | None, fake: bool) -> None:
        super().__init__()
        self.fake = fake
        self.names = {id(m): n for n, m in root.named_modules(remove_duplicate=False)}
        self.module_cost = module_cost
        self.stack: list[_Frame] = []
        self.done: dict[str, _Acc] = {}  # forward results, after the root call returns
        self.info: dict[str, _RowInfo] = {}  # in first-call order
        self.absorbed: dict[str, str] = {}  # child -> formula module that covers it
        self.bounds: list[int] = []  # autograd sequence numbers where the owning call changes
        self.bound_keys: list[str | None] = []
        self.phase = "forward"
        self.seen_storages: set[int] = set()
        self.param_storages: set[int] = set()

    # --- module tracking (global hooks; they ignore modules outside `root`) ---------------------
    def _mark(self, key: str | None) -> None:
        self.bounds.append(torch._C._autograd._get_sequence_nr())
        self.bound_keys.append(key)

    def pre_hook(self, mod: nn.Module, args: Any) -> None:
        name = self.names.get(id(mod))
        if name is None or self.phase != "forward":
            return
        key = name or type(mod).__name__
        if key not in self.info:
            parent = self.stack[-1].key if self.stack else None
            self.info[key] = _RowInfo(mod, len(self.stack), parent)
        self.info[key].calls += 1
        self.stack.append(_Frame(key, {key: _Acc()}))
        self._mark(key)

    def post_hook(self, mod: nn.Module, args: Any, *rest: Any) -> None:
        # (kwargs, output) normally; torch passes (output,) alone when forward raised
        kwargs, output = (rest[0], rest[1]) if len(rest) == 2 else ({}, rest[-1])
        if self.names.get(id(mod)) is None or self.phase != "forward" or not self.stack:
            return
        frame = self.stack.pop()
        info = self.info[frame.key]
        first = next((t for t in tree_flatten(output)[0] if isinstance(t, torch.Tensor)), None)
        if info.output_shape is None and first is not None:
            info.output_shape = list(first.shape)
        cost = None
        if self.module_cost is not None:
            try:
                cost = self.module_cost(mod, tuple(args), output, kwargs)
            except Exception as e:  # a formula bug must not hide the measurement: fall back
                log.warning("no formula for %s: module_cost raised %r", frame.key, e)
                info.formula_errors.add(f"formula failed ({type(e).__name__}: {e}); measured")
        if cost is not None:  # the formula covers the whole subtree: collapse it into one row
            # The formula's backward assumes the input needs a gradient (a layer inside a
            # network). Where no input does (a first layer), autograd skips that product.
            needs = any(
                t.requires_grad for t in tree_flatten(args)[0] if isinstance(t, torch.Tensor)
            )
            info.formula_input_grad.append(needs)
            merged = _Acc()
            for k, acc in frame.accs.items():
                merged.add(acc)
                if k != frame.key:
                    self.absorbed[k] = frame.key
            merged.uncounted.clear()  # ops inside a formula module are covered by the formula
            frame.accs = {frame.key: merged}
            info.formulas.append(cost)
        target = self.stack[-1].accs if self.stack else self.done
        for k, acc in frame.accs.items():
            target.setdefault(k, _Acc()).add(acc)
        self._mark(self.stack[-1].key if self.stack else None)

    def owner(self, key: str) -> str:
        while key in self.absorbed:
            key = self.absorbed[key]
        return key

    # --- op counting ------------------------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.phase == "forward":
            if not self.stack:
                return out  # the harness (loss), not the model
            key = self.stack[-1].key
            acc = self.stack[-1].accs[key]
        else:
            node = torch._C._current_autograd_node()
            key = None
            if node is not None:
                i = bisect.bisect_right(self.bounds, node._sequence_nr()) - 1
                key = self.bound_keys[i] if i >= 0 else None
            key = self.owner(key) if key is not None else OUTSIDE
            acc = self.done.setdefault(key, _Acc())
        c = count_op(func, args, kwargs, out)
        if self.fake and func in _WORKSPACE_OPS:
            acc.notes.add(
                f"aten.{op_name(func)}: its workspace (saved for backward) is empty under "
                "fake tensors, so activation bytes exclude it"
            )
        if c.status == "uncounted":
            acc.uncounted[(f"aten.{op_name(func)}", self.phase)] += 1
        elif self.phase == "forward":
            acc.fwd_dense += c.dense
            acc.fwd_pw += c.pointwise
            fcm = 0
            rule = flop_registry.get(func._overloadpacket)
            if rule is not None:
                fcm = int(rule(*args, **kwargs, out_val=out))
            acc.fcm += fcm
            if c.dense or fcm:
                r = acc.ops.setdefault(op_name(func), [0, 0, 0])
                r[0], r[1], r[2] = r[0] + 1, r[1] + c.dense, r[2] + fcm
        else:
            acc.bwd_dense += c.dense
            acc.bwd_pw += c.pointwise
        return out

    def pack(self, t: torch.Tensor) -> torch.Tensor:
        if self.phase == "forward" and self.stack:
            sid = t.untyped_storage()._cdata
            if sid not in self.seen_storages and sid not in self.param_storages:
                self.seen_storages.add(sid)
                frame = self.stack[-1]
                frame.accs[frame.key].act_bytes += t.untyped_storage().nbytes()
        return t


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

    ``example_inputs`` is a tensor or a tuple of positional arguments. ``dtype`` casts floating
    parameters and inputs (for activation bytes at another precision). ``backward`` runs one
    backward pass of ``loss_fn(output)`` (default: the sum of every floating output). ``fake=False``
    runs real arithmetic (needed only for models with data-dependent control flow).
    """
    if not isinstance(module, nn.Module):
        raise ArchlabError(f"analyze needs an nn.Module, got {type(module).__name__}")
    inputs = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    an = _Analyzer(module, _module_cost_fn(), fake)
    mode = torch._subclasses.fake_tensor.FakeTensorMode() if fake else None
    to = mode.from_tensor if mode is not None else (lambda t: t.detach().clone())

    def conv_input(t):
        if not isinstance(t, torch.Tensor):
            return t
        # detached (no .grad carried over), then a leaf that needs grad iff the original did
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


def _build_report(module, an: _Analyzer, fcm_total, inputs, dtype, fake, backward) -> CostReport:
    counted: set[int] = set()
    rows: list[LayerRow] = []
    for key, info in an.info.items():
        if key in an.absorbed:
            continue
        acc = an.done.get(key, _Acc())
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


def _apply_formula(row: LayerRow, info: _RowInfo, backward: bool) -> None:
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
