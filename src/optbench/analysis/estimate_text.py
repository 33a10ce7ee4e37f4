"""An estimate and its confidence interval as text: the one form the report's tables and figures and the
compare rule's reasons share."""

from __future__ import annotations

import math
from collections.abc import Callable

NA = "n/a"


def slope(x: float) -> str:
    """Two decimals, without a minus sign on zero."""
    return f"{x + 0.0:.2f}" if round(x, 2) else "0.00"


def estimate(value: float, low: float, high: float, n_seeds: int, fmt: Callable[[float], str] = slope) -> str:
    """``value [low, high]``, each through ``fmt``: ``-0.95 [-1.10, -0.80]``.

    Without an interval: ``-0.95, CI n/a (1 seed)`` (or ``CI n/a`` with more seeds); n/a without a value.
    """
    if not math.isfinite(value):
        return NA
    if math.isfinite(low) and math.isfinite(high):
        return f"{fmt(value)} [{fmt(low)}, {fmt(high)}]"
    return f"{fmt(value)}, CI {NA}" + (" (1 seed)" if n_seeds < 2 else "")
