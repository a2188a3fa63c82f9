"""``archlab study``: the answer sheet's claims as experiments with measured verdicts.

Public surface::

    from archlab.study import Claim, Verdict, Table, register_claim   # write a claim
    from archlab.study import StudyOptions, run_study, strip_timing   # run the ledger

See ``archlab.study.claims`` for how a claim module plugs in.
"""

from archlab.study.claim import Claim, Table, Verdict, get_claim, ledger, register_claim
from archlab.study.context import StudyContext
from archlab.study.runner import StudyOptions, run_study, strip_timing

__all__ = [
    "Claim",
    "StudyContext",
    "StudyOptions",
    "Table",
    "Verdict",
    "get_claim",
    "ledger",
    "register_claim",
    "run_study",
    "strip_timing",
]
