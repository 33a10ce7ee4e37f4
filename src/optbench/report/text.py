"""Numbers for humans, shared by the Markdown tables and the figures' labels."""

from __future__ import annotations

import math
from collections.abc import Callable

NA = "n/a"


def percent(x: float) -> str:
    """A fraction as a percentage with one decimal: ``0.1234`` -> ``12.3%``; n/a when missing."""
    return NA if not math.isfinite(x) else f"{100 * x:.1f}%"


def power_of_two(value: float) -> str:
    """``2^-5`` for exact powers of two, else the plain number (``0``, ``0.001``)."""
    if value > 0 and math.log2(value).is_integer():
        return f"2^{int(math.log2(value))}"
    return f"{value:g}"


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
