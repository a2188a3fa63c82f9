"""Effect sizes with 95% confidence intervals, and the rule that reads them.

Training experiments give one number per seed; two models trained with the same seed share their
data order and evaluation images, so differences are taken *per seed* (paired) and the interval
is Student's t over the paired differences (Student 1908; with n seeds, n - 1 degrees of
freedom). Timing repeats are treated the same way. An exact count has a zero-width interval.

:func:`side` is the one decision rule every verdict uses: an effect is above a line only when its
whole CI is, below only when its whole CI is, and otherwise ``within noise``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from archlab.study.claim import Effect

__all__ = ["exact", "mean_effect", "paired", "side", "t_interval"]


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): the Student-t interval of the mean; infinite for fewer than two values,
    zero-width when all values are equal."""
    from scipy import stats

    a = np.asarray(values, dtype=float)
    if a.size == 0:
        raise ValueError("t_interval: no values")
    m = float(a.mean())
    if a.size < 2:
        return m, -math.inf, math.inf
    se = float(a.std(ddof=1)) / math.sqrt(a.size)
    if se == 0.0:
        return m, m, m
    h = float(stats.t.ppf(0.5 + level / 2, a.size - 1)) * se
    return m, m - h, m + h


def mean_effect(values: Sequence[float], name: str, unit: str = "", what: str = "seeds") -> Effect:
    """The mean of ``values`` (one per seed or repeat) with its t interval."""
    m, lo, hi = t_interval(values)
    return Effect(name, m, (lo, hi), unit, f"Student t over {len(values)} {what}", len(values))


def paired(
    a: Sequence[float], b: Sequence[float], name: str, unit: str = "", what: str = "seeds"
) -> Effect:
    """Mean of the paired differences ``a[i] - b[i]`` with its t interval."""
    if len(a) != len(b):
        raise ValueError(f"paired: {len(a)} vs {len(b)} values")
    d = [float(x) - float(y) for x, y in zip(a, b, strict=True)]
    m, lo, hi = t_interval(d)
    return Effect(name, m, (lo, hi), unit, f"paired Student t over {len(d)} {what}", len(d))


def exact(value: float, name: str, unit: str = "", method: str = "exact count") -> Effect:
    v = float(value)
    return Effect(name, v, (v, v), unit, method, 0)


def side(effect: Effect, line: float = 0.0) -> int:
    """+1 when the whole CI is above ``line``, -1 when it is below, 0 when it straddles it."""
    lo, hi = effect.ci95
    if lo > line:
        return 1
    if hi < line:
        return -1
    return 0
