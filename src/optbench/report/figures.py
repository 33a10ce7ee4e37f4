"""What every figure shares: the panel size, the colour map of errors and losses, tick labels, the colour of a
cell's text, and writing a figure to its files.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot), so no global figure state is kept;
PNGs are rendered by Agg. Every output path is written atomically and its format follows its suffix (``.png``,
``.pdf``, ...).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from optbench.atomic import atomic_write

PANEL_INCHES = (3.2, 3.0)  # one heatmap panel
CMAP = "viridis_r"  # low error bright, high error (and divergence) dark
DPI = 200
METADATA = {"pdf": {"CreationDate": None}}  # per format: savefig's metadata
# The lr axis of a variant with relative steps (Adafactor's): lr caps rho_t = min(lr, 1/sqrt(t)), the step
# relative to RMS(X), so it is no learning rate.
RELATIVE_STEP_AXIS = "cap on the relative step rho_t"


def save_figure(fig: Figure, out_paths: Sequence[str | os.PathLike]) -> None:
    """Write ``fig`` to every path, each atomically, in the format named by its suffix; the same figure
    gives the same bytes (a PDF's creation date is left out, the only part that would differ)."""
    for path in out_paths:
        fmt = Path(path).suffix.removeprefix(".")
        atomic_write(path, partial(fig.savefig, format=fmt, dpi=DPI, metadata=METADATA.get(fmt)))


def log2_label(value: float) -> str:
    """Tick label: 2^k for exact powers of two, 0 for zero, else the plain number."""
    if value > 0 and math.log2(value).is_integer():
        return f"$2^{{{int(math.log2(value))}}}$"
    return f"{value:g}"


def text_colour(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour ``rgba``."""
    luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
    return "black" if luminance > 0.5 else "white"


def panel_inches(cells: pd.DataFrame, cell: tuple[float, float], margins: tuple[float, float]) -> tuple[float, float]:
    """A heatmap panel's width and height: ``cell`` inches per cell (for its number) of the largest grid of
    ``cells`` (a row per variant, lr and weight decay), beside ``margins`` for the tick labels, axis labels and
    title; at least :data:`PANEL_INCHES`."""
    shape = cells.groupby("variant")[["lr", "weight_decay"]].nunique().max()
    return (
        max(PANEL_INCHES[0], cell[0] * shape["weight_decay"] + margins[0]),
        max(PANEL_INCHES[1], cell[1] * shape["lr"] + margins[1]),
    )
