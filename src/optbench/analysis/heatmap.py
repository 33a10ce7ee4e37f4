"""Seed-level statistics of the lr x weight-decay heatmaps.

Input everywhere is a runs table as :func:`optbench.records.table.read_runs` returns it:
one row per run with at least the columns ``variant``, ``lr``, ``weight_decay``,
``seed``, ``status`` and ``final_test_error`` (a diverged run already carries its
chance-level error, so it enters every mean like any other run).

Definitions shared by every function below
------------------------------------------
* **Cell**: one (variant, lr, weight_decay). Its **seed mean** is the arithmetic mean
  of ``final_test_error`` over the cell's runs (one run per seed).
* **Ties**: two seed means within ``TIE_TOLERANCE`` (absolute) of the minimum count
  as tied. Within an lr row the tie goes to the *smallest* weight decay; over a whole
  heatmap it goes to the smallest lr, then the smallest weight decay.
* **Seed bootstrap**: seeds are shared across cells (seed s is the same
  initialization and data order in every cell of every variant), so a resample
  draws n seeds with replacement from the n distinct seeds and applies that *same*
  draw to every cell (and, when two variants are compared, to both variants). A
  seed drawn k times gets weight k in every cell's mean; a cell none of whose seeds
  was drawn has no mean in that resample and takes no part in it. Every derived
  quantity (row bests, near-best rows, best cells) is recomputed inside each
  resample, because choosing them is part of the estimate. The interval is the
  percentile interval: the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
  quantiles (numpy's default linear interpolation) of the finite resampled values.
  Resampling uses ``numpy.random.default_rng(seed)``, so a result is reproducible.
  With few seeds this interval is optimistic: n = 3 seeds give only 10 distinct
  resamples; with one seed there is nothing to resample and the interval is NaN.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from optbench.records.table import cell_table

ABS_MARGIN = 0.01  # near-best tolerance: 1 percentage point of test error ...
REL_MARGIN = 0.25  # ... or 25% of the heatmap's best seed mean, whichever is larger
MIN_ROWS = 3  # fewest near-best lr rows a slope is fitted to
N_BOOT = 2000
CONFIDENCE = 0.95
BOOT_SEED = 0
TIE_TOLERANCE = 1e-12
REQUIRED = ("variant", "lr", "weight_decay", "seed", "status", "final_test_error")


# ---------------------------------------------------------------------------
# The seed x lr x weight-decay array of one variant
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Grid:
    lrs: np.ndarray  # (L,) ascending
    wds: np.ndarray  # (W,) ascending
    seeds: np.ndarray  # (S,) ascending
    errors: np.ndarray  # (S, L, W) final test error, 0 where the run is missing
    present: np.ndarray  # (S, L, W) 1.0 where the run exists, else 0.0

    def means(self, weights: np.ndarray) -> np.ndarray:
        """Seed means under per-seed weights ``(B, S)`` -> ``(B, L, W)``; NaN where no weight."""
        num = np.einsum("bs,slw->blw", weights, self.errors)
        den = np.einsum("bs,slw->blw", weights, self.present)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / den, np.nan)

    def cell(self, flat_index: int) -> tuple[float, float]:
        """``(lr, weight_decay)`` of a flat (lr-major) cell index."""
        i, j = np.unravel_index(flat_index, self.errors.shape[1:])
        return float(self.lrs[i]), float(self.wds[j])

    def seed_means(self) -> np.ndarray:
        """The plain seed means, ``(1, L, W)``: every seed weighted once."""
        return self.means(np.ones((1, len(self.seeds))))


def _check(runs: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks columns {missing}")
    dup = runs.duplicated(["variant", "lr", "weight_decay", "seed"])
    if dup.any():
        first = runs.loc[dup, ["variant", "lr", "weight_decay", "seed"]].iloc[0].to_dict()
        raise ValueError(f"more than one run per (variant, lr, weight_decay, seed), e.g. {first}")


def _variant_runs(runs: pd.DataFrame, variant: str) -> pd.DataFrame:
    _check(runs)
    sub = runs[runs["variant"] == variant]
    if sub.empty:
        raise ValueError(f"no runs of variant {variant!r}")
    return sub


def _grid(runs: pd.DataFrame, variant: str, seeds: np.ndarray | None = None) -> _Grid:
    """The variant's runs as a dense array; ``seeds`` (ascending) defaults to the variant's own."""
    sub = _variant_runs(runs, variant)
    lrs = np.sort(sub["lr"].unique().astype(float))
    wds = np.sort(sub["weight_decay"].unique().astype(float))
    if seeds is None:
        seeds = np.sort(sub["seed"].unique())
    errors = np.zeros((len(seeds), len(lrs), len(wds)))
    present = np.zeros_like(errors)
    s = np.searchsorted(seeds, sub["seed"].to_numpy())
    i = np.searchsorted(lrs, sub["lr"].to_numpy(dtype=float))
    j = np.searchsorted(wds, sub["weight_decay"].to_numpy(dtype=float))
    errors[s, i, j] = sub["final_test_error"].to_numpy(dtype=float)
    present[s, i, j] = 1.0
    return _Grid(lrs, wds, np.asarray(seeds), errors, present)


def _seed_weights(n_seeds: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n_seeds)`` multiplicities of a with-replacement draw of n_seeds seeds."""
    draws = np.random.default_rng(seed).integers(0, n_seeds, size=(n_boot, n_seeds))
    return (draws[:, :, None] == np.arange(n_seeds)).sum(axis=1).astype(float)


def _percentile_ci(values: np.ndarray, confidence: float) -> tuple[float, float, int]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan"), 0
    low, high = np.quantile(finite, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high), int(finite.size)


def _check_ci_args(n_boot: int, confidence: float) -> None:
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def mean_ci(
    values: np.ndarray, n_boot: int = N_BOOT, confidence: float = CONFIDENCE, seed: int = BOOT_SEED
) -> tuple[float, float, float]:
    """The mean of one value per seed and its seed-bootstrap percentile interval: ``(mean, low, high)``;
    the interval is NaN with fewer than two seeds."""
    _check_ci_args(n_boot, confidence)
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return float(values.mean()) if values.size else float("nan"), float("nan"), float("nan")
    weights = _seed_weights(values.size, n_boot, seed)
    low, high, _ = _percentile_ci(weights @ values / values.size, confidence)
    return float(values.mean()), low, high


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


def _slopes(x: np.ndarray, y: np.ndarray, mask: np.ndarray, min_rows: int) -> np.ndarray:
    """Least-squares slope of y on x over ``mask`` per resample; NaN with fewer than min_rows rows."""
    m = mask.astype(float)
    n = m.sum(axis=-1)
    y = np.where(mask, y, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        xm = (m * x).sum(axis=-1) / n
        ym = (m * y).sum(axis=-1) / n
        dx = x - xm[..., None]
        sxy = (m * dx * (y - ym[..., None])).sum(axis=-1)
        sxx = (m * dx**2).sum(axis=-1)
        return np.where((n >= min_rows) & (sxx > 0), sxy / sxx, np.nan)


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
    _check(runs)
    frames = []
    for variant in sorted(runs["variant"].unique()):
        grid = _grid(runs, variant)
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

    Interval: the seed-bootstrap percentile interval (module docstring) of the same
    statistic, recomputing seed means, row bests, E and the near-best rows in every
    resample; resamples with fewer than ``min_rows`` near-best rows give no slope
    and are left out (``n_boot_valid`` counts the rest). NaN for a single seed.
    """
    _check_ci_args(n_boot, confidence)
    grid = _grid(runs, variant)
    n_seeds, nan = len(grid.seeds), float("nan")
    if (grid.lrs <= 0).any() or (grid.wds <= 0).any():
        reason = "an lr or weight decay of 0 has no log2"
        return SlopeEstimate(variant, nan, nan, nan, 0, 0, n_seeds, 0, 0, reason)
    x, log2_wds = np.log2(grid.lrs), np.log2(grid.wds)

    def slopes(weights):
        index, errors = _row_best(grid.means(weights))
        near = _near_best(errors, abs_margin, rel_margin)
        y = np.where(index >= 0, log2_wds[np.maximum(index, 0)], np.nan)
        return _slopes(x, y, near, min_rows), near, index

    point, near, index = slopes(np.ones((1, len(grid.seeds))))
    n_rows = int(near[0].sum())
    at_edge = int((near[0] & ((index[0] == 0) | (index[0] == len(grid.wds) - 1))).sum())
    if not np.isfinite(point[0]):
        reason = f"only {n_rows} near-best lr rows, at least {min_rows} needed"
        return SlopeEstimate(variant, nan, nan, nan, n_rows, at_edge, n_seeds, 0, 0, reason)
    if n_seeds < 2:
        reason = "one seed: no bootstrap over seeds, no interval"
        return SlopeEstimate(variant, float(point[0]), nan, nan, n_rows, at_edge, n_seeds, 0, 0, reason)
    boot, _, _ = slopes(_seed_weights(n_seeds, n_boot, seed))
    low, high, valid = _percentile_ci(boot, confidence)
    reason = "" if valid else f"no resample had {min_rows} near-best lr rows"
    return SlopeEstimate(variant, float(point[0]), low, high, n_rows, at_edge, n_seeds, n_boot, valid, reason)


# ---------------------------------------------------------------------------
# Noise floor
# ---------------------------------------------------------------------------


def noise_floor(runs: pd.DataFrame, include_all_diverged: bool = False) -> pd.Series:
    """Per variant: the median, over the heatmap's cells, of the per-cell seed standard
    deviation of final test error (ddof=1; ``std_test_error`` of :func:`optbench.records.table.cell_table`).

    Cells with fewer than two seeds have no standard deviation and are left out. Cells
    where every seed diverged (all at chance, standard deviation 0 by construction) are
    left out too unless ``include_all_diverged``; otherwise a heatmap with a large
    diverged region would report a floor near 0. NaN for a variant with no such cell.
    Indexed by variant, named ``noise_floor``.
    """
    _check(runs)
    cells = cell_table(runs)
    if not include_all_diverged:
        cells = cells[cells["n_diverged"] < cells["n_seeds"]]
    floors = cells.groupby("variant")["std_test_error"].median()  # median skips NaN
    return floors.reindex(sorted(runs["variant"].unique())).rename("noise_floor").rename_axis("variant")


# ---------------------------------------------------------------------------
# Improvement of one variant over another at each one's best cell
# ---------------------------------------------------------------------------


def _best_cell(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per resample: flat index (lr-major) of the best cell and its seed mean; ties to smallest lr, then wd."""
    flat = means.reshape(means.shape[0], -1)
    filled = np.where(np.isnan(flat), np.inf, flat)
    best = filled.min(axis=1)
    index = (filled <= best[:, None] + TIE_TOLERANCE).argmax(axis=1)
    return index, np.where(np.isfinite(best), best, np.nan)


@dataclass(frozen=True)
class Improvement:
    """``candidate`` against ``baseline`` at each one's best cell; see :func:`improvement`."""

    baseline: str
    candidate: str
    baseline_error: float  # seed mean at the baseline's best cell
    baseline_lr: float
    baseline_weight_decay: float
    candidate_error: float
    candidate_lr: float
    candidate_weight_decay: float
    relative: float  # 1 - candidate_error / baseline_error
    relative_ci_low: float
    relative_ci_high: float
    difference_pp: float  # 100 * (baseline_error - candidate_error), percentage points
    difference_pp_ci_low: float
    difference_pp_ci_high: float
    n_seeds: int  # distinct seeds of the two variants together
    n_boot: int
    n_boot_valid: int
    reason: str  # empty when the intervals are finite; else why not


def improvement(
    runs: pd.DataFrame,
    baseline: str,
    candidate: str,
    *,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = BOOT_SEED,
) -> Improvement:
    """How much lower ``candidate``'s best error is than ``baseline``'s (e.g. AdamW vs Adam-L2).

    Each variant's *best cell* is the cell of its heatmap with the lowest seed-mean final
    test error (ties to the smallest lr, then the smallest weight decay); e_A and e_B
    are those seed means of ``baseline`` and ``candidate``. Statistics: the relative
    improvement ``1 - e_B / e_A`` (0.15 = the candidate's best error is 15% lower) and
    the absolute difference ``100 * (e_A - e_B)`` in percentage points (positive = the
    candidate is better).

    Intervals: seed-bootstrap percentile intervals (module docstring), drawing from the
    union of both variants' seeds with one draw shared by both (seed s is the same
    initialization and data order in both), and re-selecting each variant's best cell
    in every resample, since choosing it is part of the estimate (this is what keeps
    the winner's-curse bias out of the interval). NaN with a single seed.
    """
    _check_ci_args(n_boot, confidence)
    _check(runs)
    for name in (baseline, candidate):
        _variant_runs(runs, name)
    seeds = np.sort(runs.loc[runs["variant"].isin([baseline, candidate]), "seed"].unique())
    grid_a, grid_b = _grid(runs, baseline, seeds), _grid(runs, candidate, seeds)

    def stats(weights):
        index_a, err_a = _best_cell(grid_a.means(weights))
        index_b, err_b = _best_cell(grid_b.means(weights))
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1 - err_b / err_a, 100 * (err_a - err_b), (index_a, err_a), (index_b, err_b)

    relative, difference, (index_a, err_a), (index_b, err_b) = stats(np.ones((1, len(seeds))))
    best_a, best_b = (float(err_a[0]), *grid_a.cell(index_a[0])), (float(err_b[0]), *grid_b.cell(index_b[0]))
    ci_rel = ci_diff = (float("nan"),) * 2
    drawn = valid = 0
    if len(seeds) < 2:
        reason = "one seed: no bootstrap over seeds, no interval"
    else:
        drawn = n_boot
        boot_rel, boot_diff, _, _ = stats(_seed_weights(len(seeds), n_boot, seed))
        *ci_rel, valid = _percentile_ci(boot_rel, confidence)
        *ci_diff, _ = _percentile_ci(boot_diff, confidence)
        reason = "" if valid else "no resample had runs of both variants"
    estimates = (float(relative[0]), *ci_rel, float(difference[0]), *ci_diff)
    return Improvement(baseline, candidate, *best_a, *best_b, *estimates, len(seeds), drawn, valid, reason)


def improvement_table(runs: pd.DataFrame, pairs: Iterable[tuple[str, str]], **options) -> pd.DataFrame:
    """One row per ``(baseline, candidate)`` pair (e.g. Adam-L2 and AdamW of one schedule): the
    fields of :class:`Improvement` as columns. ``options`` go to :func:`improvement`."""
    rows = [asdict(improvement(runs, a, b, **options)) for a, b in pairs]
    return pd.DataFrame(rows, columns=list(Improvement.__dataclass_fields__))


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


def best_cell(runs: pd.DataFrame, variant: str) -> tuple[float, float, float]:
    """The variant's best cell, ``(lr, weight_decay, seed-mean test error)``: the lowest seed mean
    of its heatmap, ties to the smallest lr, then the smallest weight decay."""
    grid = _grid(runs, variant)
    index, error = _best_cell(grid.seed_means())
    return *grid.cell(index[0]), float(error[0])


def variant_statistics(runs: pd.DataFrame, **options) -> pd.DataFrame:
    """The summary table (``tables/summary.csv``): one row per variant (sorted by name), columns
    ``VARIANT_COLUMNS``:

    * ``n_runs``, ``n_diverged``: runs of the variant, and those that diverged.
    * ``n_seeds``: distinct seeds of the variant.
    * ``best_test_error``, ``best_lr``, ``best_weight_decay``: :func:`best_cell`;
      ``best_on_border``: it lies on the grid's edge (smallest or largest lr or weight decay).
    * ``slope``, ``slope_ci_low``, ``slope_ci_high``, ``slope_rows``,
      ``slope_rows_at_edge``, ``slope_reason``: :func:`best_lambda_slope`, given ``options``.
    * ``noise_floor``: :func:`noise_floor`, the median per-cell seed standard deviation.
    """
    _check(runs)
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
