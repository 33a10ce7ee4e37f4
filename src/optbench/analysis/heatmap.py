"""Seed-level statistics of the lr x weight-decay heatmaps: each lr row's best weight decay, the slope of
log2(best lambda) on log2(lr), the noise floor, and the summary table of one row per variant.

Input everywhere is a runs table (``runs.csv``, one row per run) with at least the columns
:data:`optbench.analysis.cells.REQUIRED`. Cells, seed means and ties are defined in
:mod:`optbench.analysis.cells`; every interval is a seed-bootstrap percentile interval
(:mod:`optbench.analysis.bootstrap`), recomputing row bests, near-best rows and best cells inside each
resample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from optbench.analysis.bootstrap import BOOT_SEED, CONFIDENCE, N_BOOT, check_ci_args, percentile_ci, seed_weights
from optbench.analysis.cells import (
    TIE_TOLERANCE,
    best_cell,
    cell_statistics,
    check_runs,
    least_squares_slopes,
    variant_grid,
)

ABS_MARGIN = 0.01  # near-best tolerance: 1 percentage point of test error ...
REL_MARGIN = 0.25  # ... or 25% of the heatmap's best seed mean, whichever is larger
MIN_ROWS = 3  # fewest near-best lr rows a slope is fitted to


# ---------------------------------------------------------------------------
# Per-row best weight decay and the slope of log2(best lambda) on log2(lr)
# ---------------------------------------------------------------------------


def _row_best(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per (resample, lr row): index of the best weight decay and its seed mean.

    ``means`` is ``(B, L, W)``; rows without any mean get index -1 and error NaN.
    """
    filled = np.where(np.isnan(means), np.inf, means)
    row_min = filled.min(axis=2)
    tied = filled <= row_min[..., None] + TIE_TOLERANCE
    index = np.where(np.isfinite(row_min), tied.argmax(axis=2), -1)  # first tied = smallest wd
    return index, np.where(np.isfinite(row_min), row_min, np.nan)


def _near_best(row_errors: np.ndarray, abs_margin: float, rel_margin: float) -> np.ndarray:
    """Rows whose best seed mean is within max(abs_margin, rel_margin * best) of the heatmap's best."""
    with np.errstate(invalid="ignore"):
        overall = np.nanmin(np.where(np.isnan(row_errors), np.inf, row_errors), axis=-1, keepdims=True)
        threshold = overall + np.maximum(abs_margin, rel_margin * overall)
        return row_errors <= threshold  # NaN rows compare False


def _log2(values: np.ndarray) -> np.ndarray:
    """log2, with -inf for 0 (e.g. a weight-decay axis that includes no decay)."""
    with np.errstate(divide="ignore"):
        return np.log2(values)


def row_bests(runs: pd.DataFrame, abs_margin: float = ABS_MARGIN, rel_margin: float = REL_MARGIN) -> pd.DataFrame:
    """The best weight decay of every lr row of every variant's heatmap, from the seed means.

    One row per (variant, lr), lr ascending, with columns:

    * ``best_weight_decay``: the weight decay whose seed-mean final test error is the
      lowest in that lr row (ties to the smallest weight decay); ``log2_lr`` and
      ``log2_best_weight_decay`` are their base-2 logarithms.
    * ``best_test_error``: that lowest seed mean.
    * ``at_edge``: the best weight decay is the smallest or largest of the grid, so the
      true optimum may lie outside it.
    * ``near_best``: the row enters the slope fit, i.e. ``best_test_error <= E +
      max(abs_margin, rel_margin * E)`` with E the lowest seed mean of the whole heatmap.

    Meant both for the slope and for drawing the per-row best lambda on a heatmap.
    """
    check_runs(runs)
    frames = []
    for variant in sorted(runs["variant"].unique()):
        grid = variant_grid(runs, variant)
        index, errors = _row_best(grid.seed_means())
        index, errors = index[0], errors[0]
        best_wd = np.where(index >= 0, grid.wds[np.maximum(index, 0)], np.nan)
        frames.append(
            pd.DataFrame(
                {
                    "variant": variant,
                    "lr": grid.lrs,
                    "best_weight_decay": best_wd,
                    "log2_lr": _log2(grid.lrs),
                    "log2_best_weight_decay": _log2(best_wd),
                    "best_test_error": errors,
                    "at_edge": (index == 0) | (index == len(grid.wds) - 1),
                    "near_best": _near_best(errors, abs_margin, rel_margin),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class SlopeEstimate:
    """The slope of log2(best weight decay) on log2(lr) of one variant; see :func:`best_lambda_slope`."""

    variant: str
    slope: float
    ci_low: float
    ci_high: float
    n_rows: int  # near-best lr rows the point estimate is fitted to
    n_rows_at_edge: int  # of those, rows whose best weight decay is on the grid's edge
    n_seeds: int
    n_boot: int  # resamples drawn (0 when no bootstrap was possible)
    n_boot_valid: int  # resamples with at least min_rows near-best rows (a finite slope)
    reason: str  # empty when slope and CI are both finite; else why not


def best_lambda_slope(
    runs: pd.DataFrame,
    variant: str,
    *,
    abs_margin: float = ABS_MARGIN,
    rel_margin: float = REL_MARGIN,
    min_rows: int = MIN_ROWS,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = BOOT_SEED,
) -> SlopeEstimate:
    """How the best weight decay moves with the learning rate in one variant's heatmap.

    Statistic: the ordinary least-squares slope of ``log2(best weight decay)`` on
    ``log2(lr)`` over the *near-best* lr rows, where for each lr row the best weight
    decay is the one with the lowest seed-mean final test error (ties to the smallest
    weight decay) and a row is near-best when its best seed mean is at most
    ``E + max(abs_margin, rel_margin * E)``, E being the lowest seed mean of the whole
    heatmap (see :func:`row_bests`). Rows far worse than the optimum (e.g. large lrs
    where every cell diverged to chance) are thereby left out. About -1 means a
    diagonal (the best L2 factor scales as 1/lr, Adam with L2: lambda' = lambda /
    alpha); about 0 means a separable optimum (AdamW). Best weight decays are grid
    values, so the slope is that of a step function, and rows whose best is on the
    grid's edge (counted in ``n_rows_at_edge``) pull it towards 0.

    NaN, with ``reason`` saying so, when fewer than ``min_rows`` rows are near-best or
    an lr or weight decay is 0.

    Interval: the seed-bootstrap percentile interval (:mod:`optbench.analysis.bootstrap`) of the same
    statistic, recomputing seed means, row bests, E and the near-best rows in every
    resample; resamples with fewer than ``min_rows`` near-best rows give no slope
    and are left out (``n_boot_valid`` counts the rest). NaN for a single seed.
    """
    check_ci_args(n_boot, confidence)
    grid = variant_grid(runs, variant)
    n_seeds, nan = len(grid.seeds), float("nan")
    if (grid.lrs <= 0).any() or (grid.wds <= 0).any():
        reason = "an lr or weight decay of 0 has no log2"
        return SlopeEstimate(variant, nan, nan, nan, 0, 0, n_seeds, 0, 0, reason)
    x, log2_wds = np.log2(grid.lrs), np.log2(grid.wds)

    def slopes(weights):
        index, errors = _row_best(grid.means(weights))
        near = _near_best(errors, abs_margin, rel_margin)
        y = np.where(index >= 0, log2_wds[np.maximum(index, 0)], np.nan)
        return least_squares_slopes(x, y, near, min_rows), near, index

    point, near, index = slopes(np.ones((1, len(grid.seeds))))
    n_rows = int(near[0].sum())
    at_edge = int((near[0] & ((index[0] == 0) | (index[0] == len(grid.wds) - 1))).sum())
    if not np.isfinite(point[0]):
        reason = f"only {n_rows} near-best lr rows, at least {min_rows} needed"
        return SlopeEstimate(variant, nan, nan, nan, n_rows, at_edge, n_seeds, 0, 0, reason)
    if n_seeds < 2:
        reason = "one seed: no bootstrap over seeds, no interval"
        return SlopeEstimate(variant, float(point[0]), nan, nan, n_rows, at_edge, n_seeds, 0, 0, reason)
    boot, _, _ = slopes(seed_weights(n_seeds, n_boot, seed))
    low, high, valid = percentile_ci(boot, confidence)
    reason = "" if valid else f"no resample had {min_rows} near-best lr rows"
    return SlopeEstimate(variant, float(point[0]), low, high, n_rows, at_edge, n_seeds, n_boot, valid, reason)


# ---------------------------------------------------------------------------
# Noise floor
# ---------------------------------------------------------------------------


def noise_floor(runs: pd.DataFrame, include_all_diverged: bool = False) -> pd.Series:
    """Per variant: the median, over the heatmap's cells, of the per-cell seed standard
    deviation of final test error (ddof=1; ``std_test_error`` of :func:`optbench.analysis.cells.cell_statistics`).

    Cells with fewer than two seeds have no standard deviation and are left out. Cells
    where every seed diverged (all at chance, standard deviation 0 by construction) are
    left out too unless ``include_all_diverged``; otherwise a heatmap with a large
    diverged region would report a floor near 0. NaN for a variant with no such cell.
    Indexed by variant, named ``noise_floor``.
    """
    check_runs(runs)
    cells = cell_statistics(runs)
    if not include_all_diverged:
        cells = cells[cells["n_diverged"] < cells["n_seeds"]]
    floors = cells.groupby("variant")["std_test_error"].median()  # median skips NaN
    return floors.reindex(sorted(runs["variant"].unique())).rename("noise_floor").rename_axis("variant")


# ---------------------------------------------------------------------------
# One row per variant: the summary table
# ---------------------------------------------------------------------------

VARIANT_COLUMNS = [
    "variant",
    "n_runs",
    "n_diverged",
    "n_seeds",
    "best_test_error",
    "best_lr",
    "best_weight_decay",
    "best_on_border",
    "slope",
    "slope_ci_low",
    "slope_ci_high",
    "slope_rows",
    "slope_rows_at_edge",
    "noise_floor",
    "slope_reason",
]


def variant_statistics(runs: pd.DataFrame, **options) -> pd.DataFrame:
    """The summary table (``tables/summary.csv``): one row per variant (sorted by name), columns
    ``VARIANT_COLUMNS``:

    * ``n_runs``, ``n_diverged``: runs of the variant, and those that diverged.
    * ``n_seeds``: distinct seeds of the variant.
    * ``best_test_error``, ``best_lr``, ``best_weight_decay``: :func:`optbench.analysis.cells.best_cell`;
      ``best_on_border``: it lies on the grid's edge (smallest or largest lr or weight decay).
    * ``slope``, ``slope_ci_low``, ``slope_ci_high``, ``slope_rows``,
      ``slope_rows_at_edge``, ``slope_reason``: :func:`best_lambda_slope`, given ``options``.
    * ``noise_floor``: :func:`noise_floor`, the median per-cell seed standard deviation.
    """
    check_runs(runs)
    floors = noise_floor(runs)
    rows = []
    for variant, sub in runs.groupby("variant", sort=True):
        lr, wd, error = best_cell(sub, variant)
        est = best_lambda_slope(sub, variant, **options)
        rows.append(
            {
                "variant": variant,
                "n_runs": len(sub),
                "n_diverged": int(sub["status"].eq("diverged").sum()),
                "n_seeds": est.n_seeds,
                "best_test_error": error,
                "best_lr": lr,
                "best_weight_decay": wd,
                "best_on_border": lr in (sub["lr"].min(), sub["lr"].max())
                or wd in (sub["weight_decay"].min(), sub["weight_decay"].max()),
                "slope": est.slope,
                "slope_ci_low": est.ci_low,
                "slope_ci_high": est.ci_high,
                "slope_rows": est.n_rows,
                "slope_rows_at_edge": est.n_rows_at_edge,
                "noise_floor": floors[variant],
                "slope_reason": est.reason,
            }
        )
    return pd.DataFrame(rows, columns=VARIANT_COLUMNS)
