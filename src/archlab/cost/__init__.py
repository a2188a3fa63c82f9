"""The exact cost engine (seed Parts 3-5): parameters, FLOPs, activation memory, Big-O."""

from archlab.cost.layers import module_cost
from archlab.cost.types import ConventionDiff, FlopTerm, LayerCost, Term

__all__ = ["ConventionDiff", "FlopTerm", "LayerCost", "Term", "module_cost"]
