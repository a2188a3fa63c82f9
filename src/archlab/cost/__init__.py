"""The exact cost engine (seed Parts 3-5): parameters, FLOPs, activation memory, Big-O."""

from archlab.cost.layers import module_cost
from archlab.cost.types import ConventionDiff, FlopTerm, LayerCost, Term

__all__ = ["ConventionDiff", "FlopTerm", "LayerCost", "Term", "module_cost"]

# Any-module analysis (issue 2 item 5).
from archlab.cost.analyze import analyze  # noqa: E402
from archlab.cost.report import CostReport, LayerRow  # noqa: E402

__all__ += ["CostReport", "LayerRow", "analyze"]
