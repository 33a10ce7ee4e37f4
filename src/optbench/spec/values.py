"""What a config or run-spec value is: the type tests every check of a number shares.

YAML and JSON's ``true`` and ``false`` load as Python's ``True`` and ``False``, which are ``int``s, so
``isinstance(value, int)`` alone lets ``epochs: true`` through as 1. These tests do not.
"""

from __future__ import annotations

import math
from typing import Any


def is_integer(value: Any) -> bool:
    """True for an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """True for an ``int`` or ``float`` that is not a ``bool`` (NaN and infinities included)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """True for a number (:func:`is_number`) that is neither NaN nor infinite."""
    return is_number(value) and math.isfinite(value)
