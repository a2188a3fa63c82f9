"""The result of ``analyze``: per-layer rows, totals, uncounted ops, reconciliation, and the table.

Units everywhere: parameters (elements), FLOPs (1 multiply-add = 2 FLOPs), bytes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from torch.utils.flop_counter import flop_registry

__all__ = ["CostReport", "LayerRow", "reconcile", "render_table"]

_TOTAL_FIELDS = (
    "flops_forward_dense",
    "flops_forward_pointwise",
    "flops_backward_dense",
    "flops_backward_pointwise",
    "activation_bytes",
)


@dataclass
class LayerRow:
    """One module (summed over its calls). FLOPs and bytes are this module's own: ops run in its
    ``forward`` outside any child module — or, for ``source="formula"``, its whole subtree."""

    name: str
    type: str
    depth: int
    parent: str | None
    calls: int
    output_shape: list[int] | None
    params: int  # counted here first (a tied parameter is counted once, where first seen)
    flops_forward_dense: int
    flops_forward_pointwise: int
    flops_backward_dense: int
    flops_backward_pointwise: int  # always measured
    activation_bytes: int  # always measured (saved-for-backward tensors, unique storages)
    source: str  # "formula" | "measured" | "not called"
    shared_params: int = 0  # parameters of this module already counted in an earlier row (tied)
    measured_forward_dense: int = 0  # op-level count, also for formula rows (cross-check)
    flopcountermode_forward: int = 0  # FlopCounterMode's rules on the same ops
    ops: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # op: calls, ours, FCM
    notes: list[str] = field(default_factory=list)

    @classmethod
    def empty(cls, name: str, type_: str, depth: int) -> LayerRow:
        return cls(name, type_, depth, None, 0, None, 0, 0, 0, 0, 0, 0, "measured")

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["ops"] = {
            k: {"calls": c, "dense_flops": o, "flopcountermode_flops": f}
            for k, (c, o, f) in self.ops.items()
        }
        return d


@dataclass
class CostReport:
    """What ``analyze`` found. ``str(report)`` is the per-layer table (like torchinfo's summary)."""

    model: str
    input_shapes: list[list[int] | None]
    dtype: str
    fake: bool
    backward: bool
    params: int  # unique parameters (tied/shared counted once)
    layers: list[LayerRow]
    uncounted: list[dict[str, Any]]  # ops neither a formula nor a rule covers, with call counts
    reconciliation: dict[str, Any]

    @property
    def flops_forward_dense(self) -> int:
        return sum(r.flops_forward_dense for r in self.layers)

    @property
    def flops_forward_pointwise(self) -> int:
        return sum(r.flops_forward_pointwise for r in self.layers)

    @property
    def flops_backward_dense(self) -> int:
        return sum(r.flops_backward_dense for r in self.layers)

    @property
    def flops_backward_pointwise(self) -> int:
        return sum(r.flops_backward_pointwise for r in self.layers)

    @property
    def activation_bytes(self) -> int:
        return sum(r.activation_bytes for r in self.layers)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shapes": self.input_shapes,
            "dtype": self.dtype,
            "fake_tensors": self.fake,
            "units": {"params": "elements", "flops": "FLOPs (1 MAC = 2 FLOPs)", "bytes": "bytes"},
            "params": self.params,
            **{k: getattr(self, k) for k in _TOTAL_FIELDS},
            "layers": [r.to_json() for r in self.layers],
            "uncounted": self.uncounted,
            "reconciliation": self.reconciliation,
        }

    def table(self, depth: int | None = None) -> str:
        return render_table(self, depth)

    def __str__(self) -> str:
        return render_table(self)

    __repr__ = __str__


def reconcile(rows: list[LayerRow], fcm_total: int) -> dict[str, Any]:
    """Our dense forward FLOPs vs FlopCounterMode's, with every per-module difference explained."""
    ours = sum(r.flops_forward_dense for r in rows)
    items = []
    for r in rows:
        diff = r.flops_forward_dense - r.flopcountermode_forward
        if diff == 0 and r.measured_forward_dense == r.flops_forward_dense:
            continue
        reasons = []
        if r.source == "formula":
            reasons.append(f"{r.type} has an archlab formula: {r.flops_forward_dense:,} FLOPs")
        for op, (calls, o, f) in sorted(r.ops.items()):
            if o == f:
                continue
            why = (
                "FlopCounterMode has no rule for this op, so counts 0"
                if f == 0 and not any(p.__name__ == op for p in flop_registry)
                else "different convention"
            )
            reasons.append(f"aten.{op} x{calls}: op-level {o:,}, FlopCounterMode {f:,} ({why})")
        if diff == 0 and not reasons:
            continue
        items.append(
            {
                "module": r.name,
                "type": r.type,
                "ours": r.flops_forward_dense,
                "flopcountermode": r.flopcountermode_forward,
                "difference": diff,
                "reason": "; ".join(reasons) or "formula and FlopCounterMode agree",
            }
        )
    attributed = sum(r.flopcountermode_forward for r in rows)
    return {
        "ours_forward_dense": ours,
        "flopcountermode_forward": fcm_total,
        "difference": ours - fcm_total,
        "explained": sum(i["difference"] for i in items),
        # FlopCounterMode's own total vs its rules applied to our per-module op stream: equal
        # unless FlopCounterMode saw ops we did not (then the table is missing something).
        "flopcountermode_attributed": attributed,
        "consistent": attributed == fcm_total,
        "items": [i for i in items if i["difference"] != 0],
        "notes": [
            "FlopCounterMode counts only matmul/conv/attention products (2 FLOPs per MAC), like "
            "our dense FLOPs; pointwise FLOPs have no FlopCounterMode counterpart.",
            *[f"{i['module']}: {i['reason']}" for i in items if i["difference"] == 0],
        ],
    }


def _fmt(n: int) -> str:
    return f"{n:,}" if n else "--"


def render_table(rep: CostReport, depth: int | None = None) -> str:
    """The per-layer table; rows deeper than ``depth`` fold into their nearest shown ancestor."""
    by_name = {r.name: r for r in rep.layers}
    shown: dict[str, list[int]] = {}
    sources: dict[str, set[str]] = {}
    order: list[LayerRow] = []
    for r in rep.layers:
        host = r
        while depth is not None and host.depth > depth and host.parent in by_name:
            host = by_name[host.parent]
        vals = [r.params] + [getattr(r, k) for k in _TOTAL_FIELDS]
        if host.name not in shown:
            shown[host.name] = [0] * len(vals)
            sources[host.name] = set()
            order.append(host)
        shown[host.name] = [a + b for a, b in zip(shown[host.name], vals, strict=True)]
        if r.source != "measured" or r.name == host.name or any(vals):
            sources[host.name].add(r.source)
    head = (
        "Layer (type)",
        "Output shape",
        "Params",
        "Fwd dense",
        "Fwd pointw.",
        "Bwd dense",
        "Bwd pointw.",
        "Act. bytes",
        "Source",
    )
    body = []
    for r in order:
        label = ("  " * r.depth + ("└─" if r.depth else "")) + f"{r.name.split('.')[-1]} ({r.type})"
        if r.calls > 1:
            label += f" x{r.calls}"
        shape = str(r.output_shape) if r.output_shape is not None else "--"
        cells = [_fmt(v) for v in shown[r.name]]
        if shown[r.name][0] == 0 and r.shared_params:
            cells[0] = "(tied)"
        src = sources[r.name]
        body.append((label, shape, *cells, src.pop() if len(src) == 1 else "mixed"))
    widths = [max(len(str(x[i])) for x in [head, *body]) for i in range(len(head))]

    def line(cells):
        return "  ".join(
            str(c).ljust(w) if i in (0, 1, 8) else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    rule = "=" * len(line(head))
    rec = rep.reconciliation
    out = [rule, line(head), rule, *map(line, body), rule]
    out += [
        f"Total params: {rep.params:,} (tied/shared counted once)",
        f"Forward FLOPs: dense {rep.flops_forward_dense:,} + pointwise "
        f"{rep.flops_forward_pointwise:,}",
        f"Backward FLOPs: dense {rep.flops_backward_dense:,} + pointwise "
        f"{rep.flops_backward_pointwise:,}" + ("" if rep.backward else " (backward not run)"),
        f"Activation bytes saved for backward: {rep.activation_bytes:,} ({rep.dtype})",
        "Units: FLOPs = 2 x multiply-adds; bytes = bytes. Fwd/Bwd per row = the module's own ops "
        "(formula rows: whole subtree; pointwise backward and bytes always measured). "
        "(tied) = parameters already counted in an earlier row.",
        rule,
        f"FlopCounterMode forward: {rec['flopcountermode_forward']:,} FLOPs; ours (dense): "
        f"{rec['ours_forward_dense']:,}; difference {rec['difference']:,}, explained "
        f"{rec['explained']:,}:",
        *(
            f"  {i['module']} ({i['type']}): {i['difference']:+,} -- {i['reason']}"
            for i in rec["items"]
        ),
    ]
    if not rec["items"]:
        out.append("  (no differences)")
    if rep.uncounted:
        out.append("UNCOUNTED ops (no formula, no rule; their FLOPs are NOT in the totals):")
        out += [f"  {u['op']} x{u['calls']} ({u['phase']}) in {u['module']}" for u in rep.uncounted]
    else:
        out.append("Uncounted ops: none")
    return "\n".join(out)
