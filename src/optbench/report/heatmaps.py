"""Figures in the style of Loshchilov & Hutter (2019): lr x weight-decay heatmaps and learning curves.

Built and written as :mod:`optbench.report.figures` says, from a runs table (``runs.csv``) in memory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.legend_handler import HandlerPatch
from matplotlib.lines import Line2D
from matplotlib.patches import Circle, Rectangle
from matplotlib.ticker import MaxNLocator

from optbench.analysis.cells import best_cell, cell_statistics
from optbench.analysis.curves import best_cell_curve
from optbench.analysis.estimate_text import estimate
from optbench.analysis.heatmap import ABS_MARGIN, REL_MARGIN, best_lambda_slope, row_bests
from optbench.report.figures import CMAP, RELATIVE_STEP_AXIS, log2_label, panel_inches, save_figure, text_colour
from optbench.spec.decay_modes import axis_label

ROW_BEST_COLOUR = "red"  # the per-row best weight decay, over viridis: its circles, their line, the best cell
ROW_BEST = {"fill": False, "edgecolor": ROW_BEST_COLOUR, "linewidth": 1.2}
ROW_LINE = {"color": ROW_BEST_COLOUR, "linewidth": 1.0, "alpha": 0.7}
BEST_CELL = {"fill": False, "edgecolor": ROW_BEST_COLOUR, "linewidth": 1.8}
# A panel's size (optbench.report.figures.panel_inches): its margins (tick labels, axis label, title) and each
# cell's share, wide and tall enough for a cell's number in CELL_FONT points ("91.1") however many cells it has.
PANEL_MARGINS = (1.0, 1.2)
CELL_INCHES = (0.34, 0.22)
CELL_FONT = 7


def _by_shade(cmap: str, shades: int) -> list:
    """The colours of a qualitative map of hue groups, ``shades`` shades each: every group's darkest first."""
    colours = colormaps[cmap].colors
    return [colours[i] for shade in range(shades) for i in range(shade, len(colours), shades)]


# One colour per learning curve, none repeated up to 60 variants: tab10's, tab20b's and tab20c's (darkest shades
# first), then the light shades of tab10's hues (tab20); and a line style per ten variants, so that curves of
# like colours differ in style too.
CURVE_COLOURS = (
    *colormaps["tab10"].colors,
    *_by_shade("tab20b", 4),
    *_by_shade("tab20c", 4),
    *_by_shade("tab20", 2)[10:],
)
CURVE_STYLES = ("-", "--", ":", "-.")


def _check_variants(runs: pd.DataFrame, variants: list[str]) -> None:
    if not variants:
        raise ValueError("no variant to plot")
    unknown = sorted(set(variants) - set(runs["variant"]))
    if unknown:
        raise ValueError(f"unknown variant(s) {unknown}; runs hold {sorted(runs['variant'].unique())}")


def _all_diverged(cells: pd.DataFrame) -> pd.Series:
    return cells["n_diverged"].eq(cells["n_seeds"])


def _colour_norm(cells: pd.DataFrame) -> Normalize:
    """Test-error (%) scale over the cells that did not fully diverge; the rest show beyond its top."""
    converged = cells.loc[~_all_diverged(cells), "mean_test_error"]
    values = 100 * (converged if len(converged) else cells["mean_test_error"])
    return Normalize(vmin=values.min(), vmax=values.max())


def _draw_row_bests(ax, cells: pd.DataFrame, bests: pd.DataFrame, best: tuple[float, float], grid: pd.DataFrame):
    """Each lr row's best weight decay (:func:`optbench.analysis.heatmap.row_bests`), a circle per row joined by a
    line: solid for the rows the slope is fitted to, dashed for the others; rows where every cell diverged
    are left out. The heatmap's ``best`` cell, ``(lr, weight_decay)``, gets a square."""
    diverged_rows = cells.assign(diverged=_all_diverged(cells)).groupby("lr")["diverged"].all()
    bests = bests[~bests["lr"].map(diverged_rows) & bests["best_weight_decay"].notna()]
    xs = [grid.columns.get_loc(wd) for wd in bests["best_weight_decay"]]
    ys = [grid.index.get_loc(lr) for lr in bests["lr"]]
    ax.plot(xs, ys, **ROW_LINE)
    for x, y, near in zip(xs, ys, bests["near_best"]):
        ax.add_patch(Circle((x, y), 0.45, **ROW_BEST, ls="-" if near else "--"))
    x, y = grid.columns.get_loc(best[1]), grid.index.get_loc(best[0])
    ax.add_patch(Rectangle((x - 0.5, y - 0.5), 1, 1, **BEST_CELL))


def _legend_patch(legend, orig_handle, xdescent, ydescent, width, height, fontsize):
    """A legend's key for a heatmap's mark: a circle or a square, as drawn on the panels, not a wide box (the
    legend copies the mark's colours and dashes onto it, not the name of its line style)."""
    centre, style = (width / 2 - xdescent, height / 2 - ydescent), orig_handle.get_linestyle()
    if isinstance(orig_handle, Circle):
        return Circle(centre, 0.6 * height, linestyle=style)
    return Rectangle((centre[0] - 0.6 * height, centre[1] - 0.6 * height), 1.2 * height, 1.2 * height, linestyle=style)


def _row_best_legend(fig: Figure) -> None:
    """The legend of what :func:`_draw_row_bests` draws, below the panels."""
    near = f"within max({100 * ABS_MARGIN:g} pp, {100 * REL_MARGIN:g}%) of the heatmap's best"
    marks = [
        Circle((0, 0), **ROW_BEST, ls="-", label=f"an lr row's best weight decay, {near}: the slope's fit"),
        Circle((0, 0), **ROW_BEST, ls="--", label="an lr row's best weight decay, further from it: not fitted"),
        Line2D([], [], **ROW_LINE, label="the rows' best weight decays, joined"),
        Rectangle((0, 0), 1, 1, **BEST_CELL, label="the heatmap's best cell (lowest seed-mean error)"),
    ]
    handler = HandlerPatch(patch_func=_legend_patch)
    fig.legend(
        handles=marks,
        loc="outside lower center",
        ncols=2,
        fontsize=8,
        frameon=False,
        handlelength=2.5,
        handleheight=1.5,
        handler_map={Circle: handler, Rectangle: handler},
    )


def _draw_heatmap(ax, cells: pd.DataFrame, bests: pd.DataFrame, best, norm: Normalize, cmap, labels) -> None:
    """One panel: test error (%) per (lr, weight decay) cell, the seed mean written in each cell, and the
    per-row best weight decay drawn over it. A cell where every seed diverged takes the worst colour and
    reads "div". ``labels``: the x and y axes'."""
    xlabel, ylabel = labels
    all_diverged = _all_diverged(cells)
    shown = (100 * cells["mean_test_error"]).mask(all_diverged, norm.vmax)
    grid = cells.assign(shown=shown).pivot(index="lr", columns="weight_decay", values="shown")
    ax.imshow(grid.to_numpy(), cmap=cmap, norm=norm, origin="lower", aspect="auto")

    for key, cell in cells.iterrows():
        i, j = grid.index.get_loc(cell["lr"]), grid.columns.get_loc(cell["weight_decay"])
        text = "div" if all_diverged[key] else f"{100 * cell['mean_test_error']:.1f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=CELL_FONT, color=text_colour(cmap(norm(shown[key]))))
    _draw_row_bests(ax, cells, bests, best, grid)

    ax.set_xticks(range(grid.shape[1]), [log2_label(v) for v in grid.columns], fontsize=7, rotation=90)
    ax.set_yticks(range(grid.shape[0]), [log2_label(v) for v in grid.index], fontsize=7)
    ax.set(xlabel=xlabel, ylabel=ylabel)


def _slope_label(runs: pd.DataFrame, variant: str) -> str:
    """``slope -0.98 [-1.20, -0.80]`` (:func:`optbench.analysis.heatmap.best_lambda_slope`); why not, when n/a."""
    est = best_lambda_slope(runs, variant)
    text = estimate(est.slope, est.ci_low, est.ci_high, est.n_seeds)
    return f"slope {text}" + (f" ({est.reason})" if not math.isfinite(est.slope) else "")


def _relative_steps(runs: pd.DataFrame) -> bool:
    """Whether the runs take relative steps (the switch ``relative_step``), so that their lr caps rho_t."""
    return bool(runs.get("optimizer.relative_step", pd.Series(dtype=object)).eq(True).any())


def _axis_labels(runs: pd.DataFrame, variant: str) -> tuple[str, str]:
    """The labels of a variant's axes, from its runs: weight decay (:func:`optbench.spec.decay_modes.axis_label`),
    and what the grid's lr sets: a learning rate, but a cap on the relative step where the variant takes relative
    steps, and an external class's keyword (``Adafactor's lr``), whose meaning the class gives."""
    mine = runs[runs["variant"].eq(variant)]
    decay = axis_label(mine["optimizer.weight_decay_mode"].iloc[0], mine["normalized_weight_decay"].any())
    external = mine.get("optimizer.class", pd.Series(dtype=object)).dropna()
    if _relative_steps(mine):
        return decay, RELATIVE_STEP_AXIS
    if len(external):
        return decay, f"{external.iloc[0].rsplit('.', 1)[-1]}'s {mine['optimizer.axes.lr'].iloc[0]}"
    return decay, "learning rate"


def heatmap_figure(
    runs: pd.DataFrame,
    panels: list[list[str | None]],
    out_paths: Sequence[str | os.PathLike],
    title: str | None = None,
    labels: dict[str, str] | None = None,
) -> Figure:
    """Grid of lr x weight-decay heatmaps (rows x cols of variants; None leaves a panel empty).

    All panels share one colour scale (seed-mean test error in %, one colorbar) and write the
    seed mean in each cell; cells where every seed diverged take the worst colour and read
    "div". Each panel draws its per-row best weight decay (circles joined by a line, solid
    where the row enters the slope fit, a square on the heatmap's best cell) and titles the
    slope of log2 best weight decay on log2 lr with its seed-bootstrap CI
    (:mod:`optbench.analysis.heatmap`). Writes every path in ``out_paths`` and returns the figure.
    """
    names = [v for row in panels for v in row]
    variants = [v for v in names if v is not None]
    if len({len(row) for row in panels}) != 1:
        raise ValueError(f"panels must be a non-empty list of equal-length rows, got {panels}")
    _check_variants(runs, variants)
    labels = labels or {}

    cells = cell_statistics(runs)
    cells = cells[cells["variant"].isin(variants)]
    norm = _colour_norm(cells)
    cmap = colormaps[CMAP].with_extremes(bad="0.85")  # bad: a cell missing from the grid

    nrows, ncols = len(panels), len(panels[0])
    width, height = panel_inches(cells, CELL_INCHES, PANEL_MARGINS)
    fig = Figure(figsize=(width * ncols + 0.8, height * nrows + 0.6), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    drawn = []
    for ax, variant in zip(axes.flat, names):
        if variant is None:
            ax.set_axis_off()
            continue
        variant_runs = runs[runs["variant"].eq(variant)]
        bests, best = row_bests(variant_runs), best_cell(variant_runs, variant)[:2]
        _draw_heatmap(ax, cells[cells["variant"].eq(variant)], bests, best, norm, cmap, _axis_labels(runs, variant))
        ax.set_title(f"{labels.get(variant, variant)}\n{_slope_label(variant_runs, variant)}", fontsize=8)
        drawn.append(ax)
    extend = "max" if cells["mean_test_error"].max() * 100 > norm.vmax else "neither"
    fig.colorbar(ScalarMappable(norm, cmap), ax=drawn, label="test error (%)", shrink=0.9, extend=extend)
    _row_best_legend(fig)
    if title:
        fig.suptitle(title)
    save_figure(fig, out_paths)
    return fig


def line_style(i: int) -> dict:
    """Colour and line style of the i-th variant (:data:`CURVE_COLOURS`, :data:`CURVE_STYLES`)."""
    return {"color": CURVE_COLOURS[i % len(CURVE_COLOURS)], "linestyle": CURVE_STYLES[(i // 10) % len(CURVE_STYLES)]}


def learning_curves_figure(
    runs: pd.DataFrame,
    variants: list[str],
    out_paths: Sequence[str | os.PathLike],
    labels: dict[str, str] | None = None,
) -> Figure:
    """Test error and train loss vs epoch at each variant's best cell (:func:`optbench.analysis.cells.best_cell`):
    the mean over the cell's seeds as a line, the range over its seeds (min to max) as a band. The legend
    sits right of the axes."""
    _check_variants(runs, variants)
    labels = labels or {}

    fig = Figure(figsize=(11, 4), layout="constrained")
    error_ax, loss_ax = fig.subplots(1, 2)
    for i, variant in enumerate(variants):
        lr, wd, curve = best_cell_curve(runs, variant)
        style = line_style(i)
        lr_name = "relative-step cap" if _relative_steps(runs[runs["variant"].eq(variant)]) else "lr"
        label = f"{labels.get(variant, variant)} ({lr_name} {log2_label(lr)}, wd {log2_label(wd)})"
        for ax, column, scale in ((error_ax, "test_error", 100), (loss_ax, "train_loss", 1)):
            ax.plot(curve.index, scale * curve[(column, "mean")], label=label, linewidth=1.2, **style)
            ax.fill_between(
                curve.index,
                scale * curve[(column, "min")],
                scale * curve[(column, "max")],
                color=style["color"],
                alpha=0.15,
                linewidth=0,
            )
    error_ax.set(xlabel="epoch", ylabel="test error (%)", title="test error")
    loss_ax.set(xlabel="epoch", ylabel="train loss", title="train loss", yscale="log")
    for ax in (error_ax, loss_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    n_seeds = runs[runs["variant"].isin(variants)].groupby("variant")["seed"].nunique()
    if n_seeds.max() < 2:
        line = "line: one seed (no band)"
    else:
        seeds = f"{n_seeds.min()}" if n_seeds.min() == n_seeds.max() else f"{n_seeds.min()} to {n_seeds.max()}"
        line = f"line: mean over {seeds} seeds, band: min to max"
    handles, texts = error_ax.get_legend_handles_labels()
    fig.legend(
        handles,
        texts,
        loc="outside right upper",
        fontsize=6,
        title=f"best cell of each variant\n{line}",
        title_fontsize=7,
        ncols=1 if len(variants) <= 24 else 2,
    )
    save_figure(fig, out_paths)
    return fig
