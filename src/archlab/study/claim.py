"""The claims ledger: one :class:`Claim` per sentence of the seed that can be measured.

A claim bundles the seed sentence it tests (quoted verbatim), its sizes per profile, an experiment
``run(ctx) -> metrics`` (plain JSON data), a verdict rule ``verdict(metrics) -> Verdict`` (a pure
function, written next to the experiment so the rule is as reviewable as the measurement), a figure
``figure(metrics) -> PNG bytes`` and ``tables(metrics)`` for the report. Claims register themselves
with :func:`register_claim` when their module is imported (see ``archlab.study.claims``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from archlab.errors import ArchlabError

if TYPE_CHECKING:
    from archlab.study.context import StudyContext

Status = Literal["supported", "not supported", "conditional"]
PROFILES = ("tiny", "quick", "full")


@dataclass(frozen=True)
class Verdict:
    """``supported`` / ``not supported`` / ``conditional: <condition, measured>``, with the reason."""

    status: Status
    reason: str
    condition: str = ""

    def __post_init__(self) -> None:
        if self.status not in ("supported", "not supported", "conditional"):
            raise ValueError(
                f"status must be supported/not supported/conditional, got {self.status!r}"
            )
        if (self.status == "conditional") != bool(self.condition):
            raise ValueError("condition: required for 'conditional' and only for it")

    @property
    def label(self) -> str:
        return f"conditional: {self.condition}" if self.status == "conditional" else self.status

    def to_json(self) -> dict[str, str]:
        return {
            "status": self.status,
            "condition": self.condition,
            "reason": self.reason,
            "label": self.label,
        }


@dataclass(frozen=True)
class Table:
    """A table of numbers for the report: ``rows`` are lists aligned with ``columns``."""

    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass(frozen=True)
class Claim:
    id: str  # "T1", "R3", "C2" ...
    part: int  # the seed's Part (1..5)
    title: str  # short, e.g. "Long-range dependencies"
    subject: str  # whose claim: "Transformer", "RNN", "CNN", ...
    seed_quote: str  # the sentence(s) tested, verbatim from the seed
    method: str  # one paragraph: what is run and measured (student-readable)
    sizes: Mapping[str, Mapping[str, Any]]  # profile -> sizes/budget passed to run via ctx.sizes
    run: Callable[[StudyContext], dict[str, Any]]
    verdict: Callable[[Mapping[str, Any]], Verdict]
    figure: Callable[[Mapping[str, Any]], bytes]
    tables: Callable[[Mapping[str, Any]], list[Table]]
    trains: bool = False  # training involved -> the rigor bar asks for >= 3 seeds
    timing_verdict: bool = False  # verdict depends on wall-clock measurements
    requires: tuple[str, ...] = ()  # claims whose metrics run() reads via ctx.result_of
    spread: str = "mean ± std over seeds"  # how spreads in the tables are computed
    module: str = field(default="", compare=False)  # set by register_claim

    def __post_init__(self) -> None:
        missing = [p for p in PROFILES if p not in self.sizes]
        if missing:
            raise ValueError(f"sizes: claim {self.id} has no sizes for profile(s) {missing}")


_LEDGER: dict[str, Claim] = {}


def register_claim(claim: Claim, module: str) -> Claim:
    """Add ``claim`` to the ledger (call once at module import with ``__name__``)."""
    if claim.id in _LEDGER:
        raise RuntimeError(f"claim {claim.id!r} registered twice")
    claim = Claim(**{**claim.__dict__, "module": module})
    _LEDGER[claim.id] = claim
    return claim


def ledger() -> list[Claim]:
    """All registered claims in ledger order (Part, then registration order)."""
    import archlab.study.claims  # noqa: F401  (imports every claim module)

    return sorted(_LEDGER.values(), key=lambda c: c.part)


def get_claim(claim_id: str) -> Claim:
    claims = {c.id: c for c in ledger()}
    try:
        return claims[claim_id]
    except KeyError:
        raise ArchlabError(f"unknown claim {claim_id!r}; valid: {', '.join(claims)}") from None


__all__ = [
    "PROFILES",
    "Claim",
    "Status",
    "Table",
    "Verdict",
    "get_claim",
    "ledger",
    "register_claim",
]
