"""Attribution of ops, backward ops and saved tensors to module calls, for ``analyze``.

``ModuleCallTracker`` is a ``TorchDispatchMode`` plus three callbacks (global forward pre/post hooks
and a ``saved_tensors_hooks`` pack hook) that ``analyze`` installs for one pass and removes:

* forward ops go to the innermost module call on a stack kept by the hooks;
* a module type with a formula (``module_cost`` not None) absorbs its subtree into one row;
* backward ops go to the module whose forward created the autograd node the engine is running:
  nodes are numbered in creation order (``torch._C._autograd._get_sequence_nr``), and the hooks
  record where each module call's range of numbers begins and ends;
* saved tensors are counted once per storage, parameters excluded.
"""

from __future__ import annotations

import bisect
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import flop_registry

from archlab.cost.opcount import count_op, op_name

__all__ = ["OUTSIDE", "ModuleCallTracker", "RowInfo", "RowCounts"]

log = logging.getLogger(__name__)

OUTSIDE = "(outside modules)"
# Fused kernels whose meta implementation returns an empty workspace tensor.
_WORKSPACE_OPS = {torch.ops.aten.mkldnn_rnn_layer.default}


@dataclass
class RowCounts:
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

    def add(self, o: RowCounts) -> None:
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
class Frame:
    key: str
    accs: dict[str, RowCounts]  # this call and its descendants, merged into the parent on exit


@dataclass
class RowInfo:
    module: nn.Module
    depth: int
    parent: str | None
    calls: int = 0
    output_shape: list[int] | None = None
    formulas: list[Any] = field(default_factory=list)
    formula_input_grad: list[bool] = field(default_factory=list)  # per formula call
    formula_errors: set[str] = field(default_factory=set)


class ModuleCallTracker(TorchDispatchMode):
    """Counts ops, attributes them to module calls, and records saved-tensor bytes."""

    def __init__(self, root: nn.Module, module_cost: Callable[..., Any] | None, fake: bool) -> None:
        super().__init__()
        self.fake = fake
        self.names = {id(m): n for n, m in root.named_modules(remove_duplicate=False)}
        self.module_cost = module_cost
        self.stack: list[Frame] = []
        self.done: dict[str, RowCounts] = {}  # forward results, after the root call returns
        self.info: dict[str, RowInfo] = {}  # in first-call order
        self.absorbed: dict[str, str] = {}  # child -> formula module that covers it
        self.bounds: list[int] = []  # autograd sequence numbers where the owning call changes
        self.bound_keys: list[str | None] = []
        self.phase = "forward"
        self.seen_storages: set[int] = set()
        self.param_storages: set[int] = set()
        self.keep_alive: list[Any] = []

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
            self.info[key] = RowInfo(mod, len(self.stack), parent)
        self.info[key].calls += 1
        self.stack.append(Frame(key, {key: RowCounts()}))
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
            merged = RowCounts()
            for k, acc in frame.accs.items():
                merged.add(acc)
                if k != frame.key:
                    self.absorbed[k] = frame.key
            merged.uncounted.clear()  # ops inside a formula module are covered by the formula
            frame.accs = {frame.key: merged}
            info.formulas.append(cost)
        target = self.stack[-1].accs if self.stack else self.done
        for k, acc in frame.accs.items():
            target.setdefault(k, RowCounts()).add(acc)
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
            if node is None:  # engine work outside any node (rare): reported, not dropped
                key = OUTSIDE
            else:
                i = bisect.bisect_right(self.bounds, node._sequence_nr()) - 1
                key = self.bound_keys[i] if i >= 0 else None
                if key is None:
                    return out  # a node of the harness (the loss), not of the model
                key = self.owner(key)
            acc = self.done.setdefault(key, RowCounts())
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
                self.keep_alive.append(t.untyped_storage())  # so no later storage reuses the id
                frame = self.stack[-1]
                frame.accs[frame.key].act_bytes += t.untyped_storage().nbytes()
        return t
