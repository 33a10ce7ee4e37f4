"""One variant against another at each one's best cell: how much lower the candidate's best test error is.

Input is a runs table as :mod:`optbench.analysis.cells` describes it; best cells are
:func:`optbench.analysis.cells.best_cell`'s and intervals seed-bootstrap percentile intervals
(:mod:`optbench.analysis.bootstrap`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from optbench.analysis.bootstrap import BOOT_SEED, CONFIDENCE, N_BOOT, check_ci_args, percentile_ci, seed_weights
from optbench.analysis.cells import best_cell_index, check_runs, variant_grid, variant_runs


def difference_pp(baseline_error, candidate_error):
    """Two test errors' difference as every table here signs it (``improvements.md``, ``compare.md``):
    ``100 * (baseline - candidate)`` in percentage points, positive when the candidate's error is the lower.
    Floats or arrays."""
    return 100 * (baseline_error - candidate_error)


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
    difference_pp: float  # difference_pp(baseline_error, candidate_error): positive = the candidate is better
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

    Intervals: seed-bootstrap percentile intervals (:mod:`optbench.analysis.bootstrap`), drawing from the
    union of both variants' seeds with one draw shared by both (seed s is the same
    initialization and data order in both), and re-selecting each variant's best cell
    in every resample, since choosing it is part of the estimate (this is what keeps
    the winner's-curse bias out of the interval). NaN with a single seed.
    """
    check_ci_args(n_boot, confidence)
    check_runs(runs)
    for name in (baseline, candidate):
        variant_runs(runs, name)
    seeds = np.sort(runs.loc[runs["variant"].isin([baseline, candidate]), "seed"].unique())
    grid_a, grid_b = variant_grid(runs, baseline, seeds), variant_grid(runs, candidate, seeds)

    def stats(weights):
        index_a, err_a = best_cell_index(grid_a.means(weights))
        index_b, err_b = best_cell_index(grid_b.means(weights))
        with np.errstate(invalid="ignore", divide="ignore"):
            return 1 - err_b / err_a, difference_pp(err_a, err_b), (index_a, err_a), (index_b, err_b)

    relative, difference, (index_a, err_a), (index_b, err_b) = stats(np.ones((1, len(seeds))))
    best_a, best_b = (float(err_a[0]), *grid_a.cell(index_a[0])), (float(err_b[0]), *grid_b.cell(index_b[0]))
    ci_rel = ci_diff = (float("nan"),) * 2
    drawn = valid = 0
    if len(seeds) < 2:
        reason = "one seed: no bootstrap over seeds, no interval"
    else:
        drawn = n_boot
        boot_rel, boot_diff, _, _ = stats(seed_weights(len(seeds), n_boot, seed))
        *ci_rel, valid = percentile_ci(boot_rel, confidence)
        *ci_diff, _ = percentile_ci(boot_diff, confidence)
        reason = "" if valid else "no resample had runs of both variants"
    estimates = (float(relative[0]), *ci_rel, float(difference[0]), *ci_diff)
    return Improvement(baseline, candidate, *best_a, *best_b, *estimates, len(seeds), drawn, valid, reason)


def improvement_table(runs: pd.DataFrame, pairs: Iterable[tuple[str, str]], **options) -> pd.DataFrame:
    """One row per ``(baseline, candidate)`` pair (e.g. Adam-L2 and AdamW of one schedule): the
    fields of :class:`Improvement` as columns. ``options`` go to :func:`improvement`."""
    rows = [asdict(improvement(runs, a, b, **options)) for a, b in pairs]
    return pd.DataFrame(rows, columns=list(Improvement.__dataclass_fields__))
