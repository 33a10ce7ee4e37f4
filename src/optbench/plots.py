"""Figures in the style of Loshchilov & Hutter (2019): lr x weight-decay heatmaps and learning curves.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot), so no
global figure state is kept; PNGs are rendered by Agg. Every output path is
written atomically and its format follows its suffix (``.png``, ``.pdf``, ...).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Circle
from matplotlib.ticker import MaxNLocator

from optbench.aggregate import atomic_write, cell_table, history, top_cells

PANEL_INCHES = (3.2, 3.0)
CMAP = "viridis_r"  # low error bright, high error (and divergence) dark
DPI = 200


def save_figure(fig: Figure, out_paths: Sequence[str | os.PathLike]) -> None:
    """Write ``fig`` to every path, each atomically, in the format named by its suffix."""
    for path in out_paths:
        atomic_write(path, partial(fig.savefig, format=Path(path).suffix.removeprefix("."), dpi=DPI))


def _check_variants(runs: pd.DataFrame, variants: list[str]) -> None:
    if not variants:
        raise ValueError("no variant to plot")
    unknown = sorted(set(variants) - set(runs["variant"]))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; runs hold {sorted(runs['variant'].unique())}")


def log2_label(value: float) -> str:
    """Tick label: 2^k for exact powers of two, 0 for zero, else the plain number."""
    if value > 0 and math.log2(value).is_integer():
        return f"$2^{{{int(math.log2(value))}}}$"
    return f"{value:g}"


def _text_colour(rgba) -> str:
    luminance = 0.299 * rgba[0] + 0.587 * rgba[1] + 0.114 * rgba[2]
    return "black" if luminance > 0.5 else "white"


def _all_diverged(cells: pd.DataFrame) -> pd.Series:
    return cells["n_diverged"].eq(cells["n_seeds"])


def _colour_norm(cells: pd.DataFrame) -> Normalize:
    """Test-error (%) scale over the cells that did not fully diverge; the rest show beyond its top."""
    converged = cells.loc[~_all_diverged(cells), "mean_test_error"]
    values = 100 * (converged if len(converged) else cells["mean_test_error"])
    return Normalize(vmin=values.min(), vmax=values.max())


def _draw_heatmap(ax, cells: pd.DataFrame, norm: Normalize, cmap, title: str, xlabel: str) -> None:
    """One panel: test error (%) per (lr, weight decay) cell, top-10 circled, values written.

    A cell where every seed diverged is drawn in the worst colour and reads "div".
    """
    all_diverged = _all_diverged(cells)
    shown = (100 * cells["mean_test_error"]).mask(all_diverged, norm.vmax)
    grid = cells.assign(shown=shown).pivot(index="lr", columns="weight_decay", values="shown")
    ax.imshow(grid.to_numpy(), cmap=cmap, norm=norm, origin="lower", aspect="auto")

    top = top_cells(cells).index
    fontsize = 5.5 if grid.shape[1] > 8 else 7
    for key, cell in cells.iterrows():
        i, j = grid.index.get_loc(cell["lr"]), grid.columns.get_loc(cell["weight_decay"])
        colour = _text_colour(cmap(norm(shown[key])))
        text = "div" if all_diverged[key] else f"{100 * cell['mean_test_error']:.1f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=fontsize, color=colour)
        if key in top:
            ax.add_patch(Circle((j, i), 0.45, fill=False, edgecolor=colour, linewidth=1.0))

    ax.set_xticks(range(grid.shape[1]), [log2_label(v) for v in grid.columns], fontsize=7, rotation=90)
    ax.set_yticks(range(grid.shape[0]), [log2_label(v) for v in grid.index], fontsize=7)
    ax.set(xlabel=xlabel, ylabel="learning rate")
    ax.set_title(title, fontsize=9)


def _decay_label(runs: pd.DataFrame, variant: str) -> str:
    normalized = runs.loc[runs["variant"].eq(variant), "normalized_weight_decay"].any()
    return "normalized weight decay" if normalized else "weight decay"


def heatmap_figure(
    runs: pd.DataFrame,
    panels: list[list[str | None]],
    out_paths: Sequence[str | os.PathLike],
    title: str | None = None,
    labels: dict[str, str] | None = None,
) -> Figure:
    """Grid of lr x weight-decay heatmaps (rows x cols of variants; None leaves a panel empty).

    All panels share one colour scale (test error in %, one colorbar); cells
    where every seed diverged take the worst colour and read "div". Writes every
    path in ``out_paths`` and returns the figure.
    """
    names = [v for row in panels for v in row]
    variants = [v for v in names if v is not None]
    if len({len(row) for row in panels}) != 1:
        raise ValueError(f"panels must be a non-empty list of equal-length rows, got {panels}")
    _check_variants(runs, variants)
    labels = labels or {}

    cells = cell_table(runs)
    cells = cells[cells["variant"].isin(variants)]
    norm = _colour_norm(cells)
    cmap = colormaps[CMAP].with_extremes(bad="0.85")  # bad: a cell missing from the grid

    nrows, ncols = len(panels), len(panels[0])
    fig = Figure(figsize=(PANEL_INCHES[0] * ncols + 0.8, PANEL_INCHES[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    drawn = []
    for ax, variant in zip(axes.flat, names):
        if variant is None:
            ax.set_axis_off()
            continue
        variant_cells = cells[cells["variant"].eq(variant)]
        _draw_heatmap(ax, variant_cells, norm, cmap, labels.get(variant, variant), _decay_label(runs, variant))
        drawn.append(ax)
    extend = "max" if cells["mean_test_error"].max() * 100 > norm.vmax else "neither"
    fig.colorbar(ScalarMappable(norm, cmap), ax=drawn, label="test error (%)", shrink=0.9, extend=extend)
    if title:
        fig.suptitle(title)
    save_figure(fig, out_paths)
    return fig


def _best_cell_curve(runs: pd.DataFrame, cells: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    """The best cell of one variant and its learning curve, averaged over seeds per epoch."""
    best = top_cells(cells, k=1).iloc[0]
    in_cell = runs[runs["lr"].eq(best["lr"]) & runs["weight_decay"].eq(best["weight_decay"])]
    curve = history(in_cell).groupby("epoch")[["test_error", "train_loss"]].mean()
    return best, curve


def learning_curves_figure(
    runs: pd.DataFrame,
    variants: list[str],
    out_paths: Sequence[str | os.PathLike],
    labels: dict[str, str] | None = None,
) -> Figure:
    """Test error and train loss vs epoch of each variant's best cell (mean over its seeds)."""
    _check_variants(runs, variants)
    labels = labels or {}
    cells = cell_table(runs)

    fig = Figure(figsize=(9, 3.6), layout="constrained")
    error_ax, loss_ax = fig.subplots(1, 2)
    for variant in variants:
        best, curve = _best_cell_curve(runs[runs["variant"].eq(variant)], cells[cells["variant"].eq(variant)])
        label = f"{labels.get(variant, variant)} (lr {log2_label(best['lr'])}, wd {log2_label(best['weight_decay'])})"
        error_ax.plot(curve.index, 100 * curve["test_error"], label=label)
        loss_ax.plot(curve.index, curve["train_loss"], label=label)
    error_ax.set(xlabel="epoch", ylabel="test error (%)", title="test error")
    loss_ax.set(xlabel="epoch", ylabel="train loss", title="train loss", yscale="log")
    for ax in (error_ax, loss_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    error_ax.legend(fontsize=7)
    save_figure(fig, out_paths)
    return fig
