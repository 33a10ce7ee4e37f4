"""Run ids: the name of a run's record, ``<variant>-lr<lr>-wd<weight decay>-s<seed>``.

Within a preset they are unique by construction: variant names are the keys of a mapping, seeds are
unique (the config schema), and :func:`check_distinct` rejects a grid axis with two values that print
alike (equal to :data:`DIGITS` significant digits) when the config is loaded. The id parses back from
the right without ambiguity (numbers printed with ``g`` hold neither ``-wd`` nor ``-s``), so distinct
(variant, cell, seed) give distinct ids.
"""

from __future__ import annotations

from collections.abc import Iterable

DIGITS = 6  # significant digits of lr and weight decay in a run id


def _number(value: float) -> str:
    return f"{value:.{DIGITS}g}"


def default_run_id(variant: str, lr: float, weight_decay: float, seed: int) -> str:
    return f"{variant}-lr{_number(lr)}-wd{_number(weight_decay)}-s{seed}"


def check_distinct(values: Iterable[float]) -> None:
    """ValueError (``values: ...``) naming two values of a grid axis that would give their runs one run id."""
    seen: dict[str, float] = {}
    for value in values:
        key = _number(value)
        if key in seen:
            raise ValueError(
                f"values: {seen[key]!r} and {value!r} are equal to {DIGITS} significant digits, so their runs "
                f"would share one run id (and one record); make every value of the axis differ"
            )
        seen[key] = value
