"""A fresh run against the committed reference of its preset: the same results, within the seed noise?

``snakemake compare`` (``workflow/rules/compare.smk``) runs :func:`write_comparison` on the fresh run,
``results/<preset>/tables/runs.csv``, and the reference, ``results/reference/<preset>/tables/runs.csv``.
Per variant of the reference it compares, from :func:`optbench.analysis.heatmap.variant_statistics` of each:

* the best cell: where it lies, and its seed-mean test error (fresh minus reference, percentage points);
* the claim statistic: the slope of log2 best weight decay on log2 lr, with its seed-bootstrap CI;
* every cell of the heatmap: the difference of the seed means, drawn as a heatmap.

Verdict rule. The noise sigma of a variant is the reference's noise floor
(:func:`optbench.analysis.heatmap.noise_floor`: the median over its cells of the standard deviation over seeds).
A reference of one seed cannot measure it: sigma is then unknown, and the rule uses
:data:`FALLBACK_NOISE` instead, and says so. The tolerance is ``Z`` standard deviations of the difference
of two seed means, ``Z * sigma * sqrt(1 / n_fresh + 1 / n_reference)`` with n the seeds of each. A variant
agrees when

1. the fresh run has every cell of the reference's heatmap;
2. its best cell's error differs from the reference's by at most the tolerance;
3. the median over the cells of the absolute difference is at most the tolerance (a shift of the whole
   heatmap, which the best cell alone could miss);
4. where the reference's slope has a CI (two seeds or more), the fresh slope's CI (or the slope itself,
   when it has none) overlaps it. With one seed in the reference, or too few near-best lr rows for a
   slope in the fresh run, the slope is reported, not checked.

The run agrees when every variant of the reference does; the comparison lists what does not. Variants
that only the fresh run has are named, and not compared.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from optbench.analysis.heatmap import CONFIDENCE, variant_statistics
from optbench.atomic import atomic_write_text
from optbench.experiment.preset import Experiment
from optbench.records.table import CELL_COLUMNS, cell_table, read_runs, write_table
from optbench.report import text as fmt
from optbench.report.heatmaps import PANEL_INCHES, log2_label, save_figure, text_colour
from optbench.report.memory import markdown_table

# The seed standard deviation assumed for a reference of one seed: the largest noise floor of the
# 3-seed reproduce reference (AdamW with the fixed schedule, 2.4 pp; results/reference/reproduce).
FALLBACK_NOISE = 0.024
Z = 2.0
DIFFERENCE_CMAP = "RdBu_r"  # red: the fresh run is worse than the reference, blue: better
PANEL_COLUMNS = 4
SCALE_TOLERANCES = 3  # the colour scale of the difference heatmaps ends at 3 times the largest tolerance
CI = f"[{100 * CONFIDENCE:g}% CI]"
COLUMNS = [
    "variant",
    "agrees",
    "reasons",
    "reference_seeds",
    "fresh_seeds",
    "noise",
    "noise_source",
    "tolerance_pp",
    "reference_best_error",
    "reference_best_lr",
    "reference_best_weight_decay",
    "fresh_best_error",
    "fresh_best_lr",
    "fresh_best_weight_decay",
    "best_difference_pp",
    "reference_slope",
    "reference_slope_ci_low",
    "reference_slope_ci_high",
    "fresh_slope",
    "fresh_slope_ci_low",
    "fresh_slope_ci_high",
    "slope_check",
    "cells",
    "cells_missing",
    "median_abs_difference_pp",
    "max_abs_difference_pp",
    "cells_beyond_tolerance",
]


@dataclass(frozen=True)
class Comparison:
    """:func:`compare_runs`' result: ``table`` has a row per variant of the reference (columns ``COLUMNS``),
    ``cells`` a row per cell of either run (:func:`cell_differences`); ``only_fresh`` names the variants
    the reference lacks."""

    table: pd.DataFrame
    cells: pd.DataFrame
    only_fresh: list[str] = field(default_factory=list)

    @property
    def agrees(self) -> bool:
        return bool(self.table["agrees"].all())

    def problems(self) -> list[str]:
        """One line per variant that does not agree: its name and every reason."""
        return [f"{r.variant}: {r.reasons}" for r in self.table.itertuples(index=False) if not r.agrees]


def cell_differences(fresh: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, lr, weight_decay) cell of either run: the seed means ``reference_error`` and
    ``fresh_error`` (NaN where the run lacks the cell) and ``difference_pp``, fresh minus reference."""
    means = [cell_table(runs).set_index(CELL_COLUMNS)["mean_test_error"] for runs in (reference, fresh)]
    cells = pd.concat(means, axis=1, keys=["reference_error", "fresh_error"]).reset_index()
    return cells.assign(difference_pp=100 * (cells["fresh_error"] - cells["reference_error"]))


def _noise(reference: pd.Series) -> tuple[float, str]:
    """The variant's seed noise sigma, and where it comes from (module docstring)."""
    if reference["n_seeds"] >= 2 and math.isfinite(reference["noise_floor"]):
        return float(reference["noise_floor"]), f"the reference's noise floor ({reference['n_seeds']} seeds)"
    return FALLBACK_NOISE, "unknown (one seed in the reference): FALLBACK_NOISE"


def _interval(row: pd.Series) -> tuple[float, float]:
    """A slope's CI, or the slope itself as a point where it has none."""
    low, high = row["slope_ci_low"], row["slope_ci_high"]
    return (low, high) if math.isfinite(low) and math.isfinite(high) else (row["slope"], row["slope"])


def slope_check(reference: pd.Series, fresh: pd.Series) -> str:
    """``agrees`` or ``differs`` (rule 4 of the module docstring), or ``not checked: <why>``."""
    if not (math.isfinite(reference["slope_ci_low"]) and math.isfinite(reference["slope_ci_high"])):
        return f"not checked: {reference['slope_reason'] or 'no interval'} in the reference"
    if not math.isfinite(fresh["slope"]):  # too few near-best rows: as some of the reference's resamples may have
        return f"not checked: {fresh['slope_reason']} in the fresh run"
    (ref_low, ref_high), (low, high) = _interval(reference), _interval(fresh)
    return "agrees" if low <= ref_high and ref_low <= high else "differs"


def _slope_text(row: pd.Series) -> str:
    text = fmt.estimate(row["slope"], row["slope_ci_low"], row["slope_ci_high"], row["n_seeds"])
    return text if math.isfinite(row["slope"]) else f"{text} ({row['slope_reason']})"


def _variant_row(variant: str, reference: pd.Series, fresh: pd.Series | None, cells: pd.DataFrame) -> dict:
    """One row of the comparison table (``COLUMNS``), with the reasons it does not agree."""
    noise, source = _noise(reference)
    row = {
        "variant": variant,
        "reference_seeds": int(reference["n_seeds"]),
        "noise": noise,
        "noise_source": source,
        "reference_best_error": reference["best_test_error"],
        "reference_best_lr": reference["best_lr"],
        "reference_best_weight_decay": reference["best_weight_decay"],
        "reference_slope": reference["slope"],
        "reference_slope_ci_low": reference["slope_ci_low"],
        "reference_slope_ci_high": reference["slope_ci_high"],
    }
    if fresh is None:
        return {**row, "agrees": False, "reasons": "not in the fresh run"}
    tolerance = 100 * Z * noise * math.sqrt(1 / fresh["n_seeds"] + 1 / reference["n_seeds"])
    shared = cells.dropna(subset=["reference_error", "fresh_error"])
    missing = int((cells["reference_error"].notna() & cells["fresh_error"].isna()).sum())
    differences = shared["difference_pp"].abs()
    best_difference = 100 * (fresh["best_test_error"] - reference["best_test_error"])
    median = float(differences.median()) if len(differences) else math.nan
    check = slope_check(reference, fresh)
    reasons = []
    if missing:
        reasons.append(f"{missing} of the reference's {missing + len(shared)} cells missing in the fresh run")
    if not abs(best_difference) <= tolerance:
        reasons.append(f"best test error {best_difference:+.1f} pp, beyond the tolerance of {tolerance:.1f} pp")
    if not median <= tolerance:
        reasons.append(f"median cell difference {median:.1f} pp, beyond the tolerance of {tolerance:.1f} pp")
    if check == "differs":
        reasons.append(f"slope {_slope_text(fresh)}, the reference's {_slope_text(reference)}")
    return {
        **row,
        "agrees": not reasons,
        "reasons": "; ".join(reasons),
        "fresh_seeds": int(fresh["n_seeds"]),
        "tolerance_pp": tolerance,
        "fresh_best_error": fresh["best_test_error"],
        "fresh_best_lr": fresh["best_lr"],
        "fresh_best_weight_decay": fresh["best_weight_decay"],
        "best_difference_pp": best_difference,
        "fresh_slope": fresh["slope"],
        "fresh_slope_ci_low": fresh["slope_ci_low"],
        "fresh_slope_ci_high": fresh["slope_ci_high"],
        "slope_check": check,
        "cells": len(shared),
        "cells_missing": missing,
        "median_abs_difference_pp": median,
        "max_abs_difference_pp": float(differences.max()) if len(differences) else math.nan,
        "cells_beyond_tolerance": int((differences > tolerance).sum()),
    }


def compare_runs(fresh: pd.DataFrame, reference: pd.DataFrame, **options) -> Comparison:
    """The fresh run's runs table against the reference's (module docstring); ``options`` go to
    :func:`optbench.analysis.heatmap.variant_statistics`, for both."""
    stats = [variant_statistics(runs, **options).set_index("variant", drop=False) for runs in (fresh, reference)]
    fresh_stats, reference_stats = stats
    cells = cell_differences(fresh, reference)
    rows = [
        _variant_row(
            variant,
            reference_stats.loc[variant],
            fresh_stats.loc[variant] if variant in fresh_stats.index else None,
            cells[cells["variant"].eq(variant)],
        )
        for variant in reference_stats.index
    ]
    only_fresh = sorted(set(fresh_stats.index) - set(reference_stats.index))
    return Comparison(pd.DataFrame(rows, columns=COLUMNS), cells, only_fresh)


def _best_text(error: float, lr: float, weight_decay: float) -> str:
    if not math.isfinite(error):
        return fmt.NA
    return f"{fmt.percent(error)} at lr {fmt.power_of_two(lr)}, wd {fmt.power_of_two(weight_decay)}"


def _number(value: float, spec: str) -> str:
    """``value`` through the format ``spec``; n/a when it is missing."""
    return format(value, spec) if isinstance(value, (int, float)) and math.isfinite(value) else fmt.NA


def comparison_markdown(comparison: Comparison, fresh: str, reference: str, labels: dict[str, str]) -> str:
    """The comparison for humans: the verdict and what does not agree, the rule, a row per variant."""
    table = comparison.table
    if comparison.agrees:
        verdict = f"**Verdict: the fresh run agrees with the reference** ({len(table)} variants)."
    else:
        lines = "\n".join(f"- {line}" for line in comparison.problems())
        verdict = f"**Verdict: the fresh run does not agree with the reference**, in:\n\n{lines}"
    notes = [f"Fresh run: `{fresh}`. Reference: `{reference}`.", verdict]
    if comparison.only_fresh:
        notes.append(f"Not in the reference, not compared: {', '.join(comparison.only_fresh)}.")
    unknown = table["noise_source"].str.startswith("unknown").sum()
    if unknown:
        notes.append(
            f"Seed noise: unknown for {unknown} variant(s), whose reference has one seed; their tolerance uses "
            f"a noise of {100 * FALLBACK_NOISE:.1f} pp (optbench.report.compare.FALLBACK_NOISE, the largest noise "
            "floor "
            "of the 3-seed reproduce reference), and their slopes are reported, not checked."
        )
    notes.append(
        f"Rule (optbench.report.compare): tolerance = {Z:g} x noise x sqrt(1/seeds_fresh + 1/seeds_reference), "
        "the noise "
        "being the reference's noise floor (median over cells of the seed standard deviation). A variant agrees "
        "when the fresh run has every cell of the reference, its best cell's error and the median absolute "
        "cell difference are within the tolerance, and its slope's CI overlaps the reference's (where the "
        "reference has one). Differences are fresh minus reference: positive is worse. "
        "Per-cell differences: `difference.png`."
    )
    rows = [
        {
            "variant": labels.get(r.variant, r.variant),
            "agrees": "yes" if r.agrees else "**no**",
            "best, reference": _best_text(r.reference_best_error, r.reference_best_lr, r.reference_best_weight_decay),
            "best, fresh": _best_text(r.fresh_best_error, r.fresh_best_lr, r.fresh_best_weight_decay),
            "difference (pp)": _number(r.best_difference_pp, "+.1f"),
            "tolerance (pp)": _number(r.tolerance_pp, ".1f"),
            "median cell difference (pp)": _number(r.median_abs_difference_pp, ".1f"),
            "cells beyond tolerance": f"{_number(r.cells_beyond_tolerance, '.0f')} of {_number(r.cells, '.0f')}",
            f"slope, reference {CI}": fmt.estimate(
                r.reference_slope, r.reference_slope_ci_low, r.reference_slope_ci_high, r.reference_seeds
            ),
            f"slope, fresh {CI}": fmt.estimate(
                r.fresh_slope, r.fresh_slope_ci_low, r.fresh_slope_ci_high, r.fresh_seeds
            ),
            "slope": r.slope_check if isinstance(r.slope_check, str) else fmt.NA,
            "noise (pp)": f"{100 * r.noise:.1f}" + ("" if r.reference_seeds >= 2 else " (fallback)"),
        }
        for r in table.itertuples(index=False)
    ]
    frame = pd.DataFrame(rows)
    left = ("variant", "agrees", "best, reference", "best, fresh", "slope")
    text = markdown_table(frame, {column: None if column in left else str for column in frame})
    return "# The fresh run against the reference\n\n" + "\n\n".join(notes) + "\n\n" + text


def difference_figure(comparison: Comparison, out_paths, labels: dict[str, str]) -> Figure:
    """Per variant of both runs, a heatmap of the per-cell difference (fresh minus reference, pp) on one
    symmetric colour scale; cells beyond the variant's tolerance are outlined, cells only one run has
    are grey. Writes every path of ``out_paths``."""
    table = comparison.table[comparison.table["fresh_seeds"].notna()]
    cells = comparison.cells
    ncols = max(1, min(PANEL_COLUMNS, len(table)))
    nrows = max(1, math.ceil(len(table) / ncols))
    fig = Figure(figsize=(PANEL_INCHES[0] * ncols + 0.8, PANEL_INCHES[1] * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.flat[len(table) :]:
        ax.set_axis_off()
    if table.empty:
        axes[0, 0].text(0.5, 0.5, "no variant in both runs", ha="center", va="center")
        save_figure(fig, out_paths)
        return fig
    # symmetric, from the largest tolerance (cells within theirs stay pale) to SCALE_TOLERANCES times it
    largest = float(np.nanmax(cells["difference_pp"].abs().to_numpy(), initial=0.0))
    tolerance = table["tolerance_pp"].max()
    limit = min(max(largest, tolerance), SCALE_TOLERANCES * tolerance)
    norm, cmap = Normalize(-limit, limit), colormaps[DIFFERENCE_CMAP].with_extremes(bad="0.85")
    for ax, row in zip(axes.flat, table.itertuples(index=False)):
        _draw_difference(ax, cells[cells["variant"].eq(row.variant)], row.tolerance_pp, norm, cmap)
        ax.set_title(
            f"{labels.get(row.variant, row.variant)}\nbest {row.best_difference_pp:+.1f} pp, median |diff| "
            f"{row.median_abs_difference_pp:.1f} pp, tolerance {row.tolerance_pp:.1f} pp",
            fontsize=7,
            color="black" if row.agrees else "red",
        )
    extend = "both" if largest > limit else "neither"
    label = "fresh - reference test error (pp)"
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
    if comparison.agrees:
        return f"compare: the fresh run agrees with the reference ({n} variants); see {where}"
    disagree = len(comparison.problems())
    return f"compare: the fresh run does not agree with the reference in {disagree} of {n} variants; see {where}"


def write_comparison(
    fresh_csv: str | os.PathLike, reference_csv: str | os.PathLike, experiment: Experiment, out_dir: str | os.PathLike
) -> Comparison:
    """:func:`compare_runs` of two ``runs.csv``, written to ``out_dir``: ``compare.csv`` (the table),
    ``compare.md`` (the verdict and the table for humans) and ``difference.png``/``.pdf``."""
    comparison = compare_runs(read_runs(fresh_csv), read_runs(reference_csv))
    labels = {name: row["label"] for name, row in experiment.variants.items()}
    out = Path(out_dir)
    write_table(comparison.table, out / "compare.csv")
    atomic_write_text(out / "compare.md", comparison_markdown(comparison, str(fresh_csv), str(reference_csv), labels))
    difference_figure(comparison, [out / "difference.png", out / "difference.pdf"], labels)
    return comparison
