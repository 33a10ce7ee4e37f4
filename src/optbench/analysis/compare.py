"""The compare rule: a fresh run's runs table against the reference's, the same results within the seed noise?

Per variant of the reference it compares, from :func:`optbench.analysis.heatmap.variant_statistics` of each:

* the best cell: where it lies, and its seed-mean test error;
* the claim statistic: the slope of log2 best weight decay on log2 lr, with its seed-bootstrap CI;
* every cell of the heatmap: the difference of the seed means (:func:`cell_differences`).

Differences are signed as ``improvements.md`` signs them (:func:`optbench.analysis.improvement.difference_pp`),
the reference as the baseline and the fresh run as the candidate: reference minus fresh, in percentage points,
positive where the fresh run's error is the lower.

Verdict rule. The noise sigma of a variant is, with two seeds or more in the reference, its noise floor
(:func:`optbench.analysis.heatmap.noise_floor`: the median over its cells of the standard deviation over
seeds). A reference of one seed has no seed standard deviation: sigma is then its heatmap's cell-to-cell
noise (:func:`optbench.analysis.cell_noise.cell_to_cell_noise`, which runs high); where the grid is too small
for that, the variant is *inconclusive*, with the reason, rather than judged against a guess. The tolerance
is ``Z`` standard deviations of the difference of two seed means,
``Z * sigma * sqrt(1 / n_fresh + 1 / n_reference)`` with n the seeds of each. A variant agrees when

1. the fresh run has every cell of the reference's heatmap;
2. its best cell's error differs from the reference's by at most the tolerance;
3. the median over the cells of the absolute difference is at most the tolerance (a shift of the whole
   heatmap, which the best cell alone could miss);
4. where the reference's slope has a CI (two seeds or more), the fresh slope's CI (or the slope itself,
   when it has none) overlaps it. With one seed in the reference, or too few near-best lr rows for a
   slope in the fresh run, the slope is reported, not checked.

It disagrees when any of these fails (an inconclusive variant can still miss cells: that disagrees).
The run agrees when every variant of the reference does; it disagrees when one does, else it is
inconclusive when one is; the comparison lists each variant that does not agree, and why. Variants
that only the fresh run has are named, and not compared. :mod:`optbench.report.compare` writes the
comparison (``snakemake compare``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from optbench.analysis.cell_noise import cell_to_cell_noise
from optbench.analysis.cells import CELL_COLUMNS, cell_statistics
from optbench.analysis.estimate_text import NA, estimate
from optbench.analysis.heatmap import variant_statistics
from optbench.analysis.improvement import difference_pp

Z = 2.0

COLUMNS = [
    "variant",
    "verdict",
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
    def verdict(self) -> str:
        """``identical``; else ``disagrees`` where a variant does, else ``inconclusive`` where a variant is,
        else ``agrees``."""
        if self.identical:
            return "identical"
        return next((v for v in ("disagrees", "inconclusive") if v in set(self.table["verdict"])), "agrees")

    @property
    def identical(self) -> bool:
        """Whether the two runs hold the same cells with the same mean final test error in each."""
        return bool(len(self.cells)) and bool(self.cells["difference_pp"].eq(0).all()) and not self.only_fresh

    def problems(self) -> list[str]:
        """One line per variant that does not agree: its name and every reason (or why it is inconclusive)."""
        return [f"{r.variant}: {r.reasons}" for r in self.table.itertuples(index=False) if r.verdict != "agrees"]


def cell_differences(fresh: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """One row per (variant, lr, weight_decay) cell of either run: the seed means ``reference_error`` and
    ``fresh_error`` (NaN where the run lacks the cell) and ``difference_pp``, reference minus fresh (positive:
    the fresh run is better)."""
    means = [cell_statistics(runs).set_index(CELL_COLUMNS)["mean_test_error"] for runs in (reference, fresh)]
    cells = pd.concat(means, axis=1, keys=["reference_error", "fresh_error"]).reset_index()
    return cells.assign(difference_pp=difference_pp(cells["reference_error"], cells["fresh_error"]))


def _noise(reference: pd.Series, cells: pd.DataFrame) -> tuple[float, str]:
    """The variant's seed noise sigma, and where it comes from, or NaN and why there is none (module docstring).
    ``cells``: the reference's cell statistics of the variant."""
    seeds = int(reference["n_seeds"])
    if seeds >= 2 and math.isfinite(reference["noise_floor"]):
        return float(reference["noise_floor"]), f"the reference's noise floor ({seeds} seeds)"
    seeds_text = "one seed" if seeds == 1 else f"{seeds} seeds but no noise floor"
    noise = cell_to_cell_noise(cells)
    if not math.isfinite(noise.sigma):
        return math.nan, f"the reference has {seeds_text}, and {noise.reason}"
    # the cells are means of `seeds` runs: a single run scatters sqrt(seeds) times more
    source = f"the reference's cell-to-cell noise ({seeds_text}; {noise.n_differences} second differences)"
    return noise.sigma * math.sqrt(seeds), source


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
    """A slope as a reason quotes it, in the tables' form (:func:`estimate`):
    ``-0.95 [-1.10, -0.80]``, ``-0.95, CI n/a (1 seed)``, or ``n/a (<why>)``."""
    if not math.isfinite(row["slope"]):
        return f"{NA} ({row['slope_reason']})"
    return estimate(row["slope"], row["slope_ci_low"], row["slope_ci_high"], row["n_seeds"])


def _reasons(row: dict, reference: pd.Series, fresh: pd.Series) -> list[str]:
    """Why the variant does not agree (rules 1 to 4 of the module docstring; 2 and 3 only with a tolerance),
    from its ``row`` of numbers."""
    tolerance, missing = row["tolerance_pp"], row["cells_missing"]
    reasons = []
    if missing:
        reasons.append(f"{missing} of the reference's {missing + row['cells']} cells missing in the fresh run")
    if math.isfinite(tolerance) and not abs(row["best_difference_pp"]) <= tolerance:
        better = "lower" if row["best_difference_pp"] > 0 else "higher"
        reasons.append(
            f"best test error {abs(row['best_difference_pp']):.1f} pp {better} than the reference's, beyond the "
            f"tolerance of {tolerance:.1f} pp"
        )
    if math.isfinite(tolerance) and not row["median_abs_difference_pp"] <= tolerance:
        reasons.append(
            f"median cell difference {row['median_abs_difference_pp']:.1f} pp, beyond the tolerance of "
            f"{tolerance:.1f} pp"
        )
    if row["slope_check"] == "differs":
        reasons.append(f"slope {_slope_text(fresh)}, the reference's {_slope_text(reference)}")
    return reasons


def _verdict(reasons: list[str], noise: float, source: str) -> tuple[str, str]:
    """The variant's verdict and its reasons as one text."""
    if reasons:
        return "disagrees", "; ".join(reasons)
    if not math.isfinite(noise):
        return "inconclusive", f"inconclusive: {source}"
    return "agrees", ""


def _variant_row(
    variant: str, reference: pd.Series, fresh: pd.Series | None, cells: pd.DataFrame, reference_cells: pd.DataFrame
) -> dict:
    """One row of the comparison table (``COLUMNS``), with its verdict and the reasons it does not agree."""
    noise, source = _noise(reference, reference_cells)
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
        return {**row, "verdict": "disagrees", "reasons": "not in the fresh run"}
    tolerance = 100 * Z * noise * math.sqrt(1 / fresh["n_seeds"] + 1 / reference["n_seeds"])
    shared = cells.dropna(subset=["reference_error", "fresh_error"])
    differences = shared["difference_pp"].abs()
    row |= {
        "fresh_seeds": int(fresh["n_seeds"]),
        "tolerance_pp": tolerance,
        "fresh_best_error": fresh["best_test_error"],
        "fresh_best_lr": fresh["best_lr"],
        "fresh_best_weight_decay": fresh["best_weight_decay"],
        "best_difference_pp": difference_pp(reference["best_test_error"], fresh["best_test_error"]),
        "fresh_slope": fresh["slope"],
        "fresh_slope_ci_low": fresh["slope_ci_low"],
        "fresh_slope_ci_high": fresh["slope_ci_high"],
        "slope_check": slope_check(reference, fresh),
        "cells": len(shared),
        "cells_missing": int((cells["reference_error"].notna() & cells["fresh_error"].isna()).sum()),
        "median_abs_difference_pp": float(differences.median()) if len(differences) else math.nan,
        "max_abs_difference_pp": float(differences.max()) if len(differences) else math.nan,
        "cells_beyond_tolerance": int((differences > tolerance).sum()),
    }
    verdict, reasons = _verdict(_reasons(row, reference, fresh), noise, source)
    return {**row, "verdict": verdict, "reasons": reasons}


def compare_runs(fresh: pd.DataFrame, reference: pd.DataFrame, **options) -> Comparison:
    """The fresh run's runs table against the reference's (module docstring); ``options`` go to
    :func:`optbench.analysis.heatmap.variant_statistics`, for both."""
    stats = [variant_statistics(runs, **options).set_index("variant", drop=False) for runs in (fresh, reference)]
    fresh_stats, reference_stats = stats
    cells = cell_differences(fresh, reference)
    reference_cells = cell_statistics(reference)
    rows = [
        _variant_row(
            variant,
            reference_stats.loc[variant],
            fresh_stats.loc[variant] if variant in fresh_stats.index else None,
            cells[cells["variant"].eq(variant)],
            reference_cells[reference_cells["variant"].eq(variant)],
        )
        for variant in reference_stats.index
    ]
    only_fresh = sorted(set(fresh_stats.index) - set(reference_stats.index))
    return Comparison(pd.DataFrame(rows, columns=COLUMNS), cells, only_fresh)
