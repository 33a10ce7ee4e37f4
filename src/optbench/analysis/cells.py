"""The cells of a runs table: the seed x lr x weight-decay array of one variant, its best cell, and slopes.

Input is a runs table (``runs.csv``, one row per run) with at least the columns of :data:`REQUIRED`; a
diverged run already carries its chance-level error, so it enters every mean like any other run.

* **Cell**: one (variant, lr, weight_decay) (:data:`CELL_COLUMNS`). Its **seed mean** is the arithmetic mean
  of ``final_test_error`` over the cell's runs (one run per seed).
* **Ties**: two seed means within :data:`TIE_TOLERANCE` (absolute) of the minimum count as tied. Within an lr
  row the tie goes to the *smallest* weight decay; over a whole heatmap it goes to the smallest lr, then the
  smallest weight decay (:func:`best_cell`).

The seed weights that :meth:`Grid.means` takes are :func:`optbench.analysis.bootstrap.seed_weights`'.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

CELL_COLUMNS = ["variant", "lr", "weight_decay"]
REQUIRED = ("variant", "lr", "weight_decay", "seed", "status", "final_test_error")
TIE_TOLERANCE = 1e-12


@dataclass(frozen=True)
class Grid:
    """One variant's runs as dense arrays (:func:`variant_grid`)."""

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

    def best(self) -> tuple[float, float, float]:
        """``(lr, weight_decay, seed mean)`` of the best cell (:func:`best_cell_index` of the plain seed means)."""
        index, error = best_cell_index(self.seed_means())
        return *self.cell(index[0]), float(error[0])


def check_runs(runs: pd.DataFrame) -> None:
    """ValueError unless ``runs`` has the :data:`REQUIRED` columns and at most one run per cell and seed."""
    missing = [c for c in REQUIRED if c not in runs.columns]
    if missing:
        raise ValueError(f"runs table lacks columns {missing}")
    dup = runs.duplicated(["variant", "lr", "weight_decay", "seed"])
    if dup.any():
        first = runs.loc[dup, ["variant", "lr", "weight_decay", "seed"]].iloc[0].to_dict()
        raise ValueError(f"more than one run per (variant, lr, weight_decay, seed), e.g. {first}")


def variant_runs(runs: pd.DataFrame, variant: str) -> pd.DataFrame:
    """The runs of ``variant`` (:func:`check_runs` first); ValueError if it has none."""
    check_runs(runs)
    sub = runs[runs["variant"] == variant]
    if sub.empty:
        raise ValueError(f"no runs of variant {variant!r}")
    return sub


def variant_grid(runs: pd.DataFrame, variant: str, seeds: np.ndarray | None = None) -> Grid:
    """The variant's runs as a dense array; ``seeds`` (ascending) defaults to the variant's own."""
    sub = variant_runs(runs, variant)
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
    return Grid(lrs, wds, np.asarray(seeds), errors, present)


def best_cell_index(means: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per resample of ``means`` ``(B, L, W)``: the flat index (lr-major) of the best cell and its seed mean;
    ties to the smallest lr, then weight decay. A resample without any mean gets index 0 and error NaN."""
    flat = means.reshape(means.shape[0], -1)
    filled = np.where(np.isnan(flat), np.inf, flat)
    best = filled.min(axis=1)
    index = (filled <= best[:, None] + TIE_TOLERANCE).argmax(axis=1)
    return index, np.where(np.isfinite(best), best, np.nan)


def best_cell(runs: pd.DataFrame, variant: str) -> tuple[float, float, float]:
    """The variant's best cell, ``(lr, weight_decay, seed-mean test error)``: the lowest seed mean
    of its heatmap, ties to the smallest lr, then the smallest weight decay."""
    return variant_grid(runs, variant).best()


def least_squares_slopes(x: np.ndarray, y: np.ndarray, mask: np.ndarray, min_rows: int) -> np.ndarray:
    """Least-squares slope of y on x over ``mask`` per resample (last axis: the points); NaN with fewer than
    ``min_rows`` points or where x does not vary."""
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


def cell_statistics(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per cell (:data:`CELL_COLUMNS`), the value a heatmap cell shows: ``mean_test_error``
    and ``std_test_error`` (ddof=1, NaN with one seed) of the final test error over seeds,
    ``n_seeds`` and ``n_diverged``."""
    return (
        runs.assign(diverged=runs["status"].eq("diverged"))
        .groupby(CELL_COLUMNS, as_index=False)
        .agg(
            mean_test_error=("final_test_error", "mean"),
            std_test_error=("final_test_error", "std"),
            n_seeds=("seed", "size"),
            n_diverged=("diverged", "sum"),
        )
    )
