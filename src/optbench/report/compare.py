"""A fresh run against the committed reference of its preset, written out: ``compare.md``, ``compare.csv`` and
the difference heatmaps.

``snakemake compare`` (``workflow/rules/compare.smk``) runs :func:`write_comparison` on the fresh run,
``results/<preset>/tables/runs.csv``, and the reference, ``results/reference/<preset>/tables/runs.csv``. The
comparison and its verdict rule are :mod:`optbench.analysis.compare`'s; this module writes them for humans
(:func:`comparison_markdown`, :func:`difference_figure`) and prints the verdict (:func:`verdict_line`).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from optbench.analysis.compare import Comparison, Z, compare_runs
from optbench.analysis.estimate_text import NA, estimate
from optbench.atomic import atomic_write_csv, atomic_write_text
from optbench.experiment.preset import Experiment
from optbench.records.table import read_runs
from optbench.records.table_checks import check_table
from optbench.report import text as fmt
from optbench.report.figures import log2_label, panel_inches, save_figure, text_colour
from optbench.report.text import CI, markdown_table

DIFFERENCE_CMAP = "RdBu"  # differences are reference - fresh: red (negative) the fresh run is worse, blue better
DIFFERENCE_HEADER = "difference (pp), reference - fresh: + = fresh better"  # improvements.md's sign
PANEL_COLUMNS = 4
SCALE_TOLERANCES = 3  # the colour scale of the difference heatmaps ends at 3 times the largest tolerance
MIN_SCALE_PP = 0.1  # and reaches at least this far, where every difference is 0 and no tolerance is known
TITLE_COLOURS = {"agrees": "black", "inconclusive": "dimgrey", "disagrees": "red"}
# two short lines: one long line outgrew a one-row figure's height and was cut
COLOURBAR_LABEL = "reference - fresh error (pp)\n+ = the fresh run is better"
# a cell's number ("+10.5" at 5 pt, about 0.2 in) with room on either side, so that neighbours do not touch;
# around the cells, the tick labels, axis labels and the two-line title
CELL_INCHES, PANEL_MARGIN_INCHES = (0.3, 0.22), (1.0, 1.6)


def _best_text(error: float, lr: float, weight_decay: float) -> str:
    if not math.isfinite(error):
        return NA
    return f"{fmt.percent(error)} at lr {fmt.power_of_two(lr)}, wd {fmt.power_of_two(weight_decay)}"


def _number(value: float, spec: str) -> str:
    """``value`` through the format ``spec``; n/a when it is missing."""
    return format(value, spec) if isinstance(value, (int, float)) and math.isfinite(value) else NA


def _verdict_text(comparison: Comparison) -> str:
    """The verdict as ``compare.md`` opens with it, with each variant that does not agree, and why."""
    n = len(comparison.table)
    lines = "\n".join(f"- {line}" for line in comparison.problems())
    return {
        "identical": f"**Verdict: the fresh run is identical to the reference**: every cell's mean final test error is "
        f"equal ({n} variants).",
        "agrees": f"**Verdict: the fresh run agrees with the reference** ({n} variants).",
        "disagrees": f"**Verdict: the fresh run does not agree with the reference**, in:\n\n{lines}",
        "inconclusive": f"**Verdict: inconclusive**: no variant disagrees, but some cannot be judged:\n\n{lines}",
    }[comparison.verdict]


def comparison_markdown(
    comparison: Comparison, fresh: str, reference: str, labels: dict[str, str], not_run: list[str] = ()
) -> str:
    """The comparison for humans: the verdict and what does not agree, the rule, a row per variant; ``not_run``,
    the reference's variants this run's preset does not run (``--config variants=a,b``), left out."""
    table = comparison.table
    # the verdict first: the report shows compare.md from its title to "Fresh run:" (workflow/report/compare.rst)
    notes = [_verdict_text(comparison), f"Fresh run: `{fresh}`. Reference: `{reference}`."]
    if comparison.only_fresh:
        notes.append(f"Not in the reference, not compared: {', '.join(comparison.only_fresh)}.")
    if not_run:
        notes.append(f"Not run by this run's preset (--config variants=...), not compared: {', '.join(not_run)}.")
    one_seed = int(table["reference_seeds"].eq(1).sum())
    if one_seed:
        notes.append(
            f"Seed noise: the reference has one seed for {one_seed} variant(s). Their noise is the cell-to-cell "
            "noise of the reference's heatmap (optbench.analysis.cell_noise: the spread of the second differences "
            "between neighbouring cells, which runs above the seed noise), or, where its grid is too small "
            "for that, they are inconclusive; their slopes are reported, not checked."
        )
    notes.append(
        f"Rule (optbench.analysis.compare): tolerance = {Z:g} x noise x sqrt(1/seeds_fresh + 1/seeds_reference), "
        "the noise being the reference's noise floor (median over cells of the seed standard deviation), or with "
        "one seed its cell-to-cell noise. A variant agrees when the fresh run has every cell of the reference, its "
        "best cell's error and the median absolute cell difference are within the tolerance, and its slope's CI "
        "overlaps the reference's (where the reference has one). Differences are reference minus fresh, as "
        "`improvements.md`'s are baseline minus candidate: positive where the fresh run's error is the lower. "
        "Per-cell differences: `difference.png`."
    )
    rows = [
        {
            "variant": labels.get(r.variant, r.variant),
            "verdict": f"**{r.verdict}**" if r.verdict == "disagrees" else r.verdict,
            "best, reference": _best_text(r.reference_best_error, r.reference_best_lr, r.reference_best_weight_decay),
            "best, fresh": _best_text(r.fresh_best_error, r.fresh_best_lr, r.fresh_best_weight_decay),
            DIFFERENCE_HEADER: _number(r.best_difference_pp, "+.1f"),
            "tolerance (pp)": _number(r.tolerance_pp, ".1f"),
            "median cell difference (pp)": _number(r.median_abs_difference_pp, ".1f"),
            "cells beyond tolerance": f"{_number(r.cells_beyond_tolerance, '.0f')} of {_number(r.cells, '.0f')}",
            f"slope, reference {CI}": estimate(
                r.reference_slope, r.reference_slope_ci_low, r.reference_slope_ci_high, r.reference_seeds
            ),
            f"slope, fresh {CI}": estimate(r.fresh_slope, r.fresh_slope_ci_low, r.fresh_slope_ci_high, r.fresh_seeds),
            "slope": r.slope_check if isinstance(r.slope_check, str) else NA,
            "noise (pp)": _number(100 * r.noise, ".1f") + ("" if r.reference_seeds >= 2 else " (cell-to-cell)"),
        }
        for r in table.itertuples(index=False)
    ]
    frame = pd.DataFrame(rows)
    left = ("variant", "verdict", "best, reference", "best, fresh", "slope")
    text = markdown_table(frame, {column: None if column in left else str for column in frame})
    return "# The fresh run against the reference\n\n" + "\n\n".join(notes) + "\n\n" + text


def difference_figure(comparison: Comparison, out_paths, labels: dict[str, str]) -> Figure:
    """Per variant of both runs, a heatmap of the per-cell difference (reference minus fresh, pp) on one
    symmetric colour scale; cells beyond the variant's tolerance are outlined, cells only one run has
    are grey. Writes every path of ``out_paths``."""
    table = comparison.table[comparison.table["fresh_seeds"].notna()]
    cells = comparison.cells
    ncols = max(1, min(PANEL_COLUMNS, len(table)))
    nrows = max(1, math.ceil(len(table) / ncols))
    width, height = panel_inches(cells, CELL_INCHES, PANEL_MARGIN_INCHES)
    fig = Figure(figsize=(width * ncols + 1.0, height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(table) :]:
        ax.set_axis_off()
    if table.empty:
        axes[0, 0].text(0.5, 0.5, "no variant in both runs", ha="center", va="center")
        save_figure(fig, out_paths)
        return fig
    # symmetric, from the largest tolerance (cells within theirs stay pale) to SCALE_TOLERANCES times it
    largest = float(np.nanmax(cells["difference_pp"].abs().to_numpy(), initial=0.0))
    tolerance = table["tolerance_pp"].max()  # NaN where every variant is inconclusive
    limit = min(max(largest, tolerance), SCALE_TOLERANCES * tolerance) if math.isfinite(tolerance) else largest
    limit = max(limit, MIN_SCALE_PP)
    norm, cmap = Normalize(-limit, limit), colormaps[DIFFERENCE_CMAP].with_extremes(bad="0.85")
    for ax, row in zip(axes.flat, table.itertuples(index=False)):
        _draw_difference(ax, cells[cells["variant"].eq(row.variant)], row.tolerance_pp, norm, cmap)
        ax.set_title(
            f"{labels.get(row.variant, row.variant)}\nbest {row.best_difference_pp:+.1f}, median |diff| "
            f"{row.median_abs_difference_pp:.1f}, tolerance {_number(row.tolerance_pp, '.1f')} (pp)",
            fontsize=7,
            color=TITLE_COLOURS[row.verdict],
        )
    extend = "both" if largest > limit else "neither"
    label = COLOURBAR_LABEL
    fig.colorbar(ScalarMappable(norm, cmap), ax=axes.ravel().tolist(), label=label, shrink=0.9, extend=extend)
    fig.suptitle("The fresh run against the reference: per-cell difference of seed-mean test error")
    save_figure(fig, out_paths)
    return fig


def _draw_difference(ax, cells: pd.DataFrame, tolerance: float, norm: Normalize, cmap) -> None:
    """One panel of :func:`difference_figure`: lr on y, weight decay on x, the difference written in each cell."""
    grid = cells.pivot(index="lr", columns="weight_decay", values="difference_pp").sort_index().sort_index(axis=1)
    ax.imshow(grid.to_numpy(), cmap=cmap, norm=norm, origin="lower", aspect="auto")
    fontsize = 5 if grid.shape[1] > 8 else 7
    for (i, j), value in np.ndenumerate(grid.to_numpy()):
        if not math.isfinite(value):
            ax.text(j, i, "n/a", ha="center", va="center", fontsize=fontsize)
            continue
        ax.text(
            j, i, f"{value:+.1f}", ha="center", va="center", fontsize=fontsize, color=text_colour(cmap(norm(value)))
        )
        if abs(value) > tolerance:
            ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5))
    ax.set_xticks(range(grid.shape[1]), [log2_label(v) for v in grid.columns], fontsize=7, rotation=90)
    ax.set_yticks(range(grid.shape[0]), [log2_label(v) for v in grid.index], fontsize=7)
    ax.set(xlabel="weight decay", ylabel="learning rate")


def verdict_line(comparison: Comparison, out_dir: str | os.PathLike) -> str:
    """The one line the command prints: the verdict and where the details are."""
    n, where = len(comparison.table), Path(out_dir) / "compare.md"
    verdict, table = comparison.verdict, comparison.table
    if verdict == "identical":
        return f"compare: the fresh run is identical to the reference ({n} variants, every cell equal); see {where}"
    if verdict == "agrees":
        return f"compare: the fresh run agrees with the reference ({n} variants); see {where}"
    if verdict == "disagrees":
        disagree = int(table["verdict"].eq("disagrees").sum())
        return f"compare: the fresh run does not agree with the reference in {disagree} of {n} variants; see {where}"
    inconclusive = table[table["verdict"].eq("inconclusive")]
    why = inconclusive["reasons"].iloc[0].removeprefix("inconclusive: ")
    others = f" (and {len(inconclusive) - 1} more variants)" if len(inconclusive) > 1 else ""
    return f"compare: inconclusive: {inconclusive['variant'].iloc[0]}: {why}{others}; see {where}"


def read_checked(path: str | os.PathLike, role: str) -> pd.DataFrame:
    """The runs table at ``path``, each row checked as aggregation checks a record
    (:func:`optbench.records.table_checks.check_table`): a reference is trusted no more than a fresh run.
    ValueError naming ``role`` (the fresh run or the reference), the path, and the bad row."""
    name = f"{role} {path}"
    try:
        runs = read_runs(path)
    except ValueError as error:
        raise ValueError(f"{name}: {error}") from None
    check_table(runs, name)
    return runs


def write_comparison(
    fresh_csv: str | os.PathLike, reference_csv: str | os.PathLike, experiment: Experiment, out_dir: str | os.PathLike
) -> Comparison:
    """:func:`compare_runs` of two ``runs.csv`` of one preset, each checked first (:func:`read_checked`; ValueError
    naming a bad table, or both presets where they differ), written
    to ``out_dir``: ``compare.csv`` (the table), ``compare.md`` (the verdict and the table for humans) and
    ``difference.png``/``.pdf``."""
    fresh, reference = read_checked(fresh_csv, "the fresh run"), read_checked(reference_csv, "the reference")
    presets = [sorted(set(runs["preset"])) for runs in (fresh, reference)]
    if presets[0] != presets[1]:
        raise ValueError(
            f"{reference_csv}: runs of preset {', '.join(presets[1])}, but {fresh_csv} holds runs of preset "
            f"{', '.join(presets[0])}: compare two runs of one preset"
        )
    # a run of some variants only (--config variants=a,b): the reference's others are not judged, but named
    not_run = sorted(set(reference["variant"]) - set(experiment.variants))
    comparison = compare_runs(fresh, reference[~reference["variant"].isin(not_run)])
    labels = {name: row["label"] for name, row in experiment.variants.items()}
    out = Path(out_dir)
    atomic_write_csv(out / "compare.csv", comparison.table)
    markdown = comparison_markdown(comparison, str(fresh_csv), str(reference_csv), labels, not_run)
    atomic_write_text(out / "compare.md", markdown)
    difference_figure(comparison, [out / "difference.png", out / "difference.pdf"], labels)
    return comparison
