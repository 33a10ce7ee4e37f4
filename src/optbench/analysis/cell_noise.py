"""The noise of one run's heatmap, estimated from the heatmap itself: how much a cell's error scatters about
its neighbours'. For a reference of one seed, where no seed standard deviation exists, this is the noise
that :mod:`optbench.analysis.compare` judges a fresh run's differences against.

Estimator: the second differences of the seed-mean error along each row and each column of the grid,
``e[i-1] - 2 e[i] + e[i+1]``, over every three neighbouring cells in which no run diverged, and
``sigma = 1.4826 * median(|d|) / sqrt(6)``.

* Second differences cancel the landscape's local level and slope, which first differences would count
  as noise (the error falls by points from one lr to the next across most of a grid); what remains of the
  landscape is its curvature.
* For independent cell noise of standard deviation sigma a second difference has variance ``6 sigma^2``;
  1.4826 x the median absolute value is the standard deviation of a normal variable, and the median
  ignores the few large differences at a ridge or at the edge of the diverged region.
* Cells with a diverged run sit at chance, without noise: triples holding one are left out, so that a
  large diverged region does not pull the estimate toward 0.
* Measured on the 3-seed ``reproduce`` reference, each seed's grid alone (19 variants x 3 seeds): 0.54 to
  3.8 times the variant's seed noise floor, median 1.36, a quarter of them below 1.07: it runs high, the
  landscape's curvature adding to it. A tolerance made from it errs toward agreeing (comparing one seed of
  reproduce with another, every variant agrees), yet a run several noise widths worse still fails. Residuals
  of a quadratic fit over each 3 x 3 window, which also cancel the curvature, scattered more (0.54 to 6.4).

Fewer than :data:`MIN_DIFFERENCES` such triples (a grid smaller than 3 x 3, or one mostly diverged)
estimate nothing: :func:`cell_to_cell_noise` then gives NaN and says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

MIN_DIFFERENCES = 6  # a 3 x 3 grid: three rows and three columns of three cells
NORMAL_MAD = 1.4826  # standard deviation / median absolute deviation of a normal variable
SECOND_DIFFERENCE_VARIANCE = 6  # var(a - 2b + c) / var(a) for independent a, b, c


@dataclass(frozen=True)
class CellNoise:
    """:func:`cell_to_cell_noise`'s estimate: ``sigma`` (a fraction, NaN when none), from ``n_differences``
    second differences; ``reason`` says why there is none."""

    sigma: float
    n_differences: int
    reason: str = ""


def cell_to_cell_noise(cells: pd.DataFrame) -> CellNoise:
    """The noise of one variant's heatmap (the module's docstring). ``cells``: its rows of
    :func:`optbench.analysis.cells.cell_statistics` (``lr``, ``weight_decay``, ``mean_test_error``,
    ``n_diverged``)."""
    quiet = cells["mean_test_error"].where(cells["n_diverged"].eq(0))
    grid = cells.assign(error=quiet).pivot(index="lr", columns="weight_decay", values="error")
    errors = grid.sort_index().sort_index(axis=1).to_numpy(dtype=float)
    differences = np.concatenate([np.diff(errors, n=2, axis=axis).ravel() for axis in (0, 1)])
    differences = differences[np.isfinite(differences)]
    if len(differences) < MIN_DIFFERENCES:
        shape = f"{errors.shape[0]} x {errors.shape[1]}"
        return CellNoise(
            math.nan,
            len(differences),
            f"its {shape} grid has {len(differences)} runs of three neighbouring cells without a diverged run, "
            f"{MIN_DIFFERENCES} needed to estimate the cell-to-cell noise",
        )
    sigma = NORMAL_MAD * float(np.median(np.abs(differences))) / math.sqrt(SECOND_DIFFERENCE_VARIANCE)
    return CellNoise(sigma, len(differences))
