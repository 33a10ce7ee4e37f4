"""Where one variant's best cell sits against another's, set against a published claim: the ratio of the
candidate's best learning rate to the baseline's, and of its best weight decay, with seed-bootstrap intervals.

The claim that motivates it is Lion's (Chen et al., 2023, *Symbolic Discovery of Optimization Algorithms*): a
learning rate 3-10x smaller and a weight decay 3-10x larger than AdamW's, so that lr x lambda stays the same.

Best cells are :func:`optbench.analysis.cells.best_cell`'s. Ratios are taken in log2 (the grids are factors
of 2 apart, so a ratio is a whole power of 2); intervals draw seeds jointly for both variants and re-select each
one's best cell in every resample, as :func:`optbench.analysis.improvement.improvement` does.

**Verdict per axis.** *Reproduced*: the whole interval lies inside the claimed range; *not reproduced*: it lies
wholly outside; else *inconclusive*. A best cell on its grid's border on that axis makes the ratio a bound, not
an estimate: inconclusive, saying so; so does a single seed.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from optbench.analysis.bootstrap import BOOT_SEED, CONFIDENCE, N_BOOT, check_ci_args, percentile_ci, seed_weights
from optbench.analysis.cells import Grid, best_cell_index, check_runs, variant_grid, variant_runs

AXES = ("lr", "weight_decay")
COLUMNS = [
    "baseline",
    "candidate",
    "axis",
    "claim_low",
    "claim_high",
    "log2_ratio",
    "log2_ratio_ci_low",
    "log2_ratio_ci_high",
    "n_seeds",
    "on_border",
    "verdict",
    "source",
]


def _best_values(grid: Grid, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Per resample: the best cell's lr and weight decay (NaN where a resample has no mean)."""
    index, error = best_cell_index(grid.means(weights))
    i, j = np.unravel_index(index, grid.errors.shape[1:])
    valid = np.isfinite(error)
    return {"lr": np.where(valid, grid.lrs[i], np.nan), "weight_decay": np.where(valid, grid.wds[j], np.nan)}


def _on_border(grid: Grid) -> dict[str, bool]:
    """Whether the best cell of the plain seed means lies on the grid's first or last lr row or wd column."""
    index, _ = best_cell_index(grid.seed_means())
    i, j = np.unravel_index(index[0], grid.errors.shape[1:])
    return {"lr": i in (0, len(grid.lrs) - 1), "weight_decay": j in (0, len(grid.wds) - 1)}


def verdict(low: float, high: float, claim: tuple[float, float], on_border: bool) -> str:
    """The verdict of an interval ``[low, high]`` of log2 ratios against the claimed ratios ``claim``."""
    if on_border:
        return "inconclusive (a best cell on the grid's border)"
    if not (math.isfinite(low) and math.isfinite(high)):
        return "inconclusive (no interval: one seed)"
    claim_low, claim_high = (math.log2(c) for c in claim)
    if claim_low <= low and high <= claim_high:
        return "reproduced"
    if high < claim_low or low > claim_high:
        return "not reproduced"
    return "inconclusive"


def best_cell_shift(
    runs: pd.DataFrame,
    claim: dict,
    *,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = BOOT_SEED,
) -> pd.DataFrame:
    """One row per axis (:data:`COLUMNS`) for ``claim`` = ``{baseline, candidate, lr: [low, high],
    weight_decay: [low, high], source}``: the claimed range of the candidate's best value over the baseline's, the
    log2 of the measured ratio with its interval, whether a best cell lies on the border, and the verdict."""
    check_ci_args(n_boot, confidence)
    check_runs(runs)
    baseline, candidate = claim["baseline"], claim["candidate"]
    for name in (baseline, candidate):
        variant_runs(runs, name)
    seeds = np.sort(runs.loc[runs["variant"].isin([baseline, candidate]), "seed"].unique())
    grids = variant_grid(runs, baseline, seeds), variant_grid(runs, candidate, seeds)

    def log2_ratios(weights: np.ndarray) -> dict[str, np.ndarray]:
        base, cand = (_best_values(grid, weights) for grid in grids)
        return {axis: np.log2(cand[axis] / base[axis]) for axis in AXES}

    plain = log2_ratios(np.ones((1, len(seeds))))
    boot = log2_ratios(seed_weights(len(seeds), n_boot, seed)) if len(seeds) > 1 else None
    border = [_on_border(grid) for grid in grids]
    rows = []
    for axis in AXES:
        low, high, _ = percentile_ci(boot[axis], confidence) if boot else (math.nan, math.nan, 0)
        on_border = border[0][axis] or border[1][axis]
        rows.append(
            {
                "baseline": baseline,
                "candidate": candidate,
                "axis": axis,
                "claim_low": claim[axis][0],
                "claim_high": claim[axis][1],
                "log2_ratio": float(plain[axis][0]),
                "log2_ratio_ci_low": low,
                "log2_ratio_ci_high": high,
                "n_seeds": len(seeds),
                "on_border": on_border,
                "verdict": verdict(low, high, tuple(claim[axis]), on_border),
                "source": claim["source"],
            }
        )
    return pd.DataFrame(rows, columns=COLUMNS)


def shift_table(runs: pd.DataFrame, claims: list[dict], **options) -> pd.DataFrame:
    """:func:`best_cell_shift` of each claim, stacked."""
    return pd.concat([best_cell_shift(runs, claim, **options) for claim in claims], ignore_index=True)
