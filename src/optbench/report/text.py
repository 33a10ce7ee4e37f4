"""Numbers for humans, shared by the Markdown tables and the figures' labels, and the Markdown tables themselves."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping

import pandas as pd

from optbench.analysis.bootstrap import CONFIDENCE
from optbench.analysis.estimate_text import NA

CI = f"[{100 * CONFIDENCE:g}% CI]"  # a column header's note: its intervals are seed-bootstrap CIs
BYTE_UNITS = ("B", "KiB", "MiB", "GiB")


def percent(x: float) -> str:
    """A fraction as a percentage with one decimal: ``0.1234`` -> ``12.3%``; n/a when missing."""
    return NA if not math.isfinite(x) else f"{100 * x:.1f}%"


def power_of_two(value: float) -> str:
    """``2^-5`` for exact powers of two, else the plain number (``0``, ``0.001``)."""
    if value > 0 and math.log2(value).is_integer():
        return f"2^{int(math.log2(value))}"
    return f"{value:g}"


def format_bytes(n: int) -> str:
    """Bytes in the largest binary unit that keeps the number at least 1: ``1.50 KiB``."""
    unit = 0
    while n >= 1024 ** (unit + 1) and unit < len(BYTE_UNITS) - 1:
        unit += 1
    return f"{n} B" if unit == 0 else f"{n / 1024**unit:.2f} {BYTE_UNITS[unit]}"


def markdown_table(table: pd.DataFrame, formatters: Mapping[str, Callable | None] | None = None) -> str:
    """A GitHub Markdown table. A column with a formatter is shown through it and right-aligned, one
    without (None or absent; every column without ``formatters``) through ``str`` and left-aligned; a
    missing value is left empty."""
    formatters = {column: (formatters or {}).get(column) for column in table.columns}
    cells = table.apply(lambda column: column.map(formatters[column.name] or str, na_action="ignore")).fillna("")
    rule = ["---:" if formatter else "---" for formatter in formatters.values()]
    rows = [list(table.columns), rule, *cells.itertuples(index=False)]
    return "".join(f"| {' | '.join(row)} |\n" for row in rows)
