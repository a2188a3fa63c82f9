"""The claims ledger: one :class:`Claim` per sentence of the seed that can be measured.

A claim bundles the seed sentence it tests (quoted verbatim), its sizes per profile, an experiment
``run(ctx) -> metrics`` (plain JSON data), a verdict rule ``verdict(metrics) -> Verdict`` (a pure
function, written next to the experiment so the rule is as reviewable as the measurement), the
method text rendered from the sizes it ran with, a figure and tables. Claims register themselves
with :func:`register_claim` when their module is imported (see ``archlab.study.claims``).

A :class:`Verdict` is what a teacher can cite:

* ``status``: ``supported``; ``supported within scope`` (true where we measured, and the scope is
  stated: a range, a model family, a precondition); ``contradicted``; or ``inconclusive`` with one
  of :data:`INCONCLUSIVE` as the reason: ``undertrained`` (a model failed its positive control),
  ``out of range`` (the sizes do not reach where the claim bites), ``needs other hardware`` (e.g.
  parallel speed on a 2-core CPU), ``within noise`` (the effect's CI straddles the decision line).
* ``effect``: the one number that decides, with a 95% confidence interval (seed-paired where seeds
  are involved; exact where the quantity is counted).
* ``checks``: ``positive_control`` (pass | fail | n/a) and whatever range or hardware checks the
  rule applies; a failed control can only give ``inconclusive: undertrained``.
* ``literature``: the paper whose result we compare with, what it found, and whether we agree.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from archlab.errors import ArchlabError

if TYPE_CHECKING:
    from archlab.study.context import StudyContext

Status = Literal["supported", "supported within scope", "contradicted", "inconclusive"]
STATUSES: tuple[str, ...] = ("supported", "supported within scope", "contradicted", "inconclusive")
INCONCLUSIVE: tuple[str, ...] = (
    "undertrained",
    "out of range",
    "needs other hardware",
    "within noise",
)
CONTROL = ("pass", "fail", "n/a")
PROFILES = ("tiny", "quick", "standard", "full")
# Seeds per training experiment: the minimum each profile accepts, and its default.
MIN_SEEDS = {"tiny": 2, "quick": 3, "standard": 5, "full": 5}
MAX_SEEDS = 20


@dataclass(frozen=True)
class Effect:
    """The number that decides a verdict: ``value`` with its 95% CI ``[lo, hi]``.

    ``method`` says how the CI was obtained ("paired t over 5 seeds", "exact count", ...);
    ``n`` is the number of paired samples (0 for an exact count).
    """

    name: str
    value: float
    ci95: tuple[float, float]
    unit: str = ""
    method: str = ""
    n: int = 0

    def __post_init__(self) -> None:
        lo, hi = self.ci95
        if any(isinstance(v, float) and math.isnan(v) for v in (self.value, lo, hi)):
            raise ValueError(f"effect {self.name}: value and CI must be numbers, got NaN")
        if not lo <= self.value <= hi:
            raise ValueError(f"effect {self.name}: {self.value} is outside its CI [{lo}, {hi}]")

    def to_json(self) -> dict[str, Any]:
        lo, hi = self.ci95
        return {
            "name": self.name,
            "value": self.value,
            "ci95": [lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None],
            "unit": self.unit,
            "method": self.method,
            "n": self.n,
        }


@dataclass(frozen=True)
class Literature:
    ref: str  # "Khandelwal et al. 2018, Sharp Nearby, Fuzzy Far Away (ACL)"
    expected: str  # what that paper found, in one sentence
    agrees: bool | None  # None when our verdict is inconclusive

    def to_json(self) -> dict[str, Any]:
        return {"ref": self.ref, "expected": self.expected, "agrees": self.agrees}


@dataclass(frozen=True)
class Verdict:
    """A claim's verdict: status, the full sentence, why, and what decided it (module doc)."""

    status: Status
    label: str  # the full sentence a teacher can quote
    reason: str  # the measured facts behind it
    effect: Effect | None = None
    checks: Mapping[str, Any] = field(default_factory=lambda: {"positive_control": "n/a"})
    literature: Literature | None = None
    scope: str = ""  # required for "supported within scope": where it holds, measured
    why_inconclusive: str = ""  # required for "inconclusive": one of INCONCLUSIVE
    # Separate, explained measurements that do not decide the verdict (e.g. wall-time exponents
    # beside an exact operation count).
    findings: tuple[str, ...] = ()
    # The same, from wall-clock measurements: stored under the verdict's "timing" key, which
    # results.json's determinism rule leaves out (the same seeds give the same file apart from it).
    timing_findings: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")
        if (self.status == "supported within scope") != bool(self.scope):
            raise ValueError("scope: required for 'supported within scope' and only for it")
        if (self.status == "inconclusive") != bool(self.why_inconclusive):
            raise ValueError("why_inconclusive: required for 'inconclusive' and only for it")
        if self.why_inconclusive and self.why_inconclusive not in INCONCLUSIVE:
            raise ValueError(f"why_inconclusive must be one of {INCONCLUSIVE}")
        control = self.checks.get("positive_control")
        if control not in CONTROL:
            raise ValueError(f"checks.positive_control must be one of {CONTROL}, got {control!r}")
        if control == "fail" and self.why_inconclusive != "undertrained":
            raise ValueError("a failed positive control can only give 'inconclusive: undertrained'")
        if not self.label or not self.reason:
            raise ValueError("label and reason must be non-empty sentences")

    @property
    def short(self) -> str:
        """``inconclusive: undertrained`` / ``supported within scope`` / ``supported`` ..."""
        if self.status == "inconclusive":
            return f"inconclusive: {self.why_inconclusive}"
        return self.status

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "short": self.short,
            "label": self.label,
            "reason": self.reason,
            "scope": self.scope,
            "inconclusive_reason": self.why_inconclusive,
            "findings": list(self.findings),
            **(
                {"timing": {"findings": list(self.timing_findings)}} if self.timing_findings else {}
            ),
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
    method: Callable[[Mapping[str, Any]], str]  # metrics -> what was run, with its real sizes
    sizes: Mapping[str, Mapping[str, Any]]  # profile -> sizes/budget passed to run via ctx.sizes
    run: Callable[[StudyContext], dict[str, Any]]
    verdict: Callable[[Mapping[str, Any]], Verdict]
    figure: Callable[[Mapping[str, Any]], bytes]
    tables: Callable[[Mapping[str, Any]], list[Table]]
    trains: bool = False  # training involved: seeds, a positive control and an effect CI
    timing_verdict: bool = False  # verdict depends on wall-clock measurements
    requires: tuple[str, ...] = ()  # claims whose metrics run() reads via ctx.result_of
    uses: tuple[str, ...] = ()  # data the claim reads: "text", "images" (for the report)
    # Trained models shared with other claims (e.g. "image pool"): claims that share one train in
    # the same worker process under --jobs, so no two processes write one run directory.
    models: str = ""
    spread: str = "mean ± std over seeds"  # how spreads in the tables are computed
    module: str = field(default="", compare=False)  # set by register_claim

    def __post_init__(self) -> None:
        missing = [p for p in PROFILES if p not in self.sizes]
        if missing:
            raise ValueError(f"sizes: claim {self.id} has no sizes for profile(s) {missing}")


_LEDGER: dict[str, Claim] = {}


def register_claim(claim: Claim, module: str) -> Claim:
    """Add ``claim`` to the ledger (call once at module import with ``__name__``).

    Re-registering from the same module replaces the entry (``importlib.reload``); the same id
    from a different module is a clash."""
    old = _LEDGER.get(claim.id)
    if old is not None and old.module != module:
        raise RuntimeError(f"claim {claim.id!r} registered twice ({old.module} and {module})")
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
    "CONTROL",
    "INCONCLUSIVE",
    "MAX_SEEDS",
    "MIN_SEEDS",
    "PROFILES",
    "STATUSES",
    "Claim",
    "Effect",
    "Literature",
    "Status",
    "Table",
    "Verdict",
    "get_claim",
    "ledger",
    "register_claim",
]
