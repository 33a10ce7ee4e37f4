r"""Normalized weight decay across budgets and training-set sizes, and warm restarts' anytime performance.

Loshchilov & Hutter (Appendix B.1) set the raw decay from a normalized one,

.. math::
    \lambda = \lambda_{norm} \sqrt{\frac{b}{B T}},

with ``b`` the batch size, ``B`` the number of training points and ``T`` the epochs of the run
(of the restart cycle under warm restarts), so that one :math:`\lambda_{norm}` is best whatever
the budget and the data set size. If that holds, the best raw :math:`\log_2 \lambda` falls with
slope -1/2 in :math:`\log_2 T` (at fixed ``B``) and in :math:`\log_2 B` (at fixed ``T``), and the
best :math:`\log_2 \lambda_{norm}` has slope 0 (:data:`PREDICTED_SLOPE`).

Input is a runs table (:func:`optbench.records.table.read_runs`) holding one heatmap per value of a
swept setting (:mod:`optbench.experiment.sweeps`), the value in a column of its own. Every definition of
:mod:`optbench.analysis.cells` and :mod:`optbench.analysis.bootstrap` applies: seed means, ties, best cells
and the seed bootstrap, one draw of seeds shared by every heatmap and variant of a statistic, every best
cell chosen again in every resample.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from optbench.analysis.bootstrap import BOOT_SEED, CONFIDENCE, N_BOOT, check_ci_args, percentile_ci, seed_weights
from optbench.analysis.cells import best_cell_index, least_squares_slopes, variant_grid

MIN_VALUES = 2  # fewest heatmaps with a best cell that a slope is fitted to

#: The slope of the best log2 weight decay on log2 T or log2 B that the formula predicts,
#: by ``normalized_weight_decay``.
PREDICTED_SLOPE = {False: -0.5, True: 0.0}


def heatmaps_by(runs: pd.DataFrame, column: str) -> dict[int, str]:
    """Value of ``column`` -> the variant holding that value's heatmap, values ascending.

    Raises:
        ValueError: ``column`` is absent, or a value has runs of more than one variant.
    """
    if column not in runs.columns:
        raise ValueError(f"{column}: no such column in the runs table; run records carry the swept setting there")
    variants = runs.groupby(column)["variant"].unique()
    mixed = variants[variants.map(len) > 1]
    if len(mixed):
        raise ValueError(f"{column} = {mixed.index[0]}: runs of several variants {sorted(mixed.iloc[0])}")
    return {int(value): names[0] for value, names in variants.items()}


@dataclass(frozen=True)
class DecayFit:
    """The slope of the best log2 weight decay on log2 of a swept setting; see :func:`best_decay_fit`."""

    slope: float
    ci_low: float
    ci_high: float
    intercept: float  # of the point estimate's line: log2 best weight decay at a setting of 1
    predicted: float  # PREDICTED_SLOPE of the heatmaps' weight-decay axis
    n_values: int
    n_seeds: int
    n_boot: int  # resamples drawn (0 when no bootstrap was possible)
    n_boot_valid: int  # resamples with a finite slope
    reason: str  # empty when slope and CI are both finite; else why not


def best_decay_fit(
    runs: pd.DataFrame,
    column: str,
    *,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = BOOT_SEED,
) -> tuple[pd.DataFrame, DecayFit]:
    r"""The best weight decay of each heatmap, one per value ``v`` of ``column``, and its slope on ``log2 v``.

    ``runs`` holds one heatmap per value (:func:`heatmaps_by`), all on the same kind of weight-decay
    axis (raw or normalized). For each heatmap the best weight decay :math:`\lambda^*_v` is that of its
    best cell (lowest seed mean, :func:`optbench.analysis.cells.best_cell`). Statistic: the ordinary
    least-squares slope of :math:`\log_2 \lambda^*_v` on :math:`\log_2 v`. The formula
    :math:`\lambda = \lambda_{norm} \sqrt{b / (B T)}` predicts -0.5 for raw decay and 0 for
    :math:`\lambda_{norm}` when ``v`` is ``T`` or ``B``. Best weight decays are grid values, so the
    slope is that of a step function.

    Intervals: seed-bootstrap percentile intervals (:mod:`optbench.analysis.bootstrap`) of each
    :math:`\log_2 \lambda^*_v` and of the slope, one draw of seeds for every heatmap.

    Returns:
        A table with one row per value, ascending (``value``, ``heatmap``: its variant, ``best_lr``,
        ``best_weight_decay``, ``log2_best_weight_decay`` with ``ci_low`` and ``ci_high``,
        ``best_test_error``, ``on_border``: the best weight decay is the axis' smallest or largest,
        ``n_seeds``),
        and the :class:`DecayFit`.
    """
    check_ci_args(n_boot, confidence)
    names = heatmaps_by(runs, column)
    seeds = np.sort(runs["seed"].unique())
    grids = [variant_grid(runs, name, seeds) for name in names.values()]
    if any((grid.wds <= 0).any() for grid in grids):
        raise ValueError(f"{column}: a weight decay of 0 has no log2")
    if runs["normalized_weight_decay"].nunique() > 1:
        raise ValueError(f"{column}: the heatmaps mix raw and normalized weight decay")
    x = np.log2(list(names))

    def log2_bests(weights: np.ndarray) -> np.ndarray:
        """``(B, V)``: log2 of each heatmap's best weight decay per resample; NaN where it has no mean."""
        columns = []
        for grid in grids:
            index, error = best_cell_index(grid.means(weights))
            columns.append(np.where(np.isfinite(error), np.log2(grid.wds)[index % len(grid.wds)], np.nan))
        return np.stack(columns, axis=1)

    point = log2_bests(np.ones((1, len(seeds))))
    slope = least_squares_slopes(x, point, np.isfinite(point), MIN_VALUES)[0]
    fitted = np.isfinite(point[0])
    intercept = float(point[0][fitted].mean() - slope * x[fitted].mean()) if np.isfinite(slope) else float("nan")
    if len(seeds) < 2:
        boot, drawn, reason = np.full((1, len(names)), np.nan), 0, "one seed: no bootstrap over seeds, no interval"
    else:
        boot, drawn, reason = log2_bests(seed_weights(len(seeds), n_boot, seed)), n_boot, ""
    low, high, valid = percentile_ci(least_squares_slopes(x, boot, np.isfinite(boot), MIN_VALUES), confidence)
    if not np.isfinite(slope):
        reason = f"fewer than {MIN_VALUES} of the {len(names)} heatmaps have a best cell"
    normalized = bool(runs["normalized_weight_decay"].iloc[0])
    fit = DecayFit(
        float(slope), low, high, intercept, PREDICTED_SLOPE[normalized], len(names), len(seeds), drawn, valid, reason
    )

    rows = []
    for (value, name), grid, log2_best, resampled in zip(names.items(), grids, point[0], boot.T):
        lr, wd, error = grid.best()
        ci_low, ci_high, _ = percentile_ci(resampled, confidence)
        rows.append(
            {
                "value": value,
                "heatmap": name,
                "best_lr": lr,
                "best_weight_decay": wd,
                "log2_best_weight_decay": float(log2_best),
                "ci_low": ci_low,
                "ci_high": ci_high,
                "best_test_error": error,
                "on_border": wd in (grid.wds[0], grid.wds[-1]),
                "n_seeds": len(seeds),
            }
        )
    return pd.DataFrame(rows), fit


def error_at_epoch(runs: pd.DataFrame, epoch: int) -> pd.Series:
    """Each run's test error at the end of ``epoch`` (from its ``history``); a run whose history ends
    earlier (it diverged) keeps its final test error, chance."""

    def at(history: str, final: float) -> float:
        return next((e["test_error"] for e in json.loads(history) if e["epoch"] == epoch), final)

    return pd.Series(list(map(at, runs["history"], runs["final_test_error"])), index=runs.index, dtype=float)


@dataclass(frozen=True)
class AnytimePoint:
    """A warm-restarts variant at the end of one cycle against cosine annealing of that length; see :func:`anytime`."""

    epoch: int
    restarts_error: float  # seed mean at epoch `epoch`, at the restarts' best cell (chosen on final error)
    restarts_lr: float
    restarts_weight_decay: float
    cosine_variant: str
    cosine_error: float  # seed mean of the `epoch`-epoch cosine runs at their best cell
    cosine_lr: float
    cosine_weight_decay: float
    difference_pp: float  # 100 * (restarts_error - cosine_error): positive where the restarts are worse
    difference_pp_ci_low: float
    difference_pp_ci_high: float
    n_seeds: int
    n_boot: int
    n_boot_valid: int
    reason: str  # empty when the interval is finite; else why not


def anytime(
    runs: pd.DataFrame,
    restarts: str,
    cosine: Mapping[int, str],
    ends: list[float],
    *,
    n_boot: int = N_BOOT,
    confidence: float = CONFIDENCE,
    seed: int = BOOT_SEED,
) -> pd.DataFrame:
    """Warm restarts' anytime performance: at the end of each of its cycles, the ``restarts`` variant's test
    error against a cosine run of exactly that many epochs (``cosine``: epochs -> variant), one row per cycle
    end in ``ends`` that ``cosine`` holds.

    The restarts' cell is its *best cell* on final test error (:func:`optbench.analysis.cells.best_cell`): one
    run, stopped at the end of any cycle. Each cosine budget has its own best cell. Statistic: the
    difference of their seed means in percentage points, restarts minus cosine, with its seed-bootstrap
    percentile interval: one draw of seeds for both variants, both best cells chosen again in every
    resample. Columns: the fields of :class:`AnytimePoint`.
    """
    check_ci_args(n_boot, confidence)
    epochs = [round(end) for end in ends if end == round(end) and round(end) in cosine]
    seeds = np.sort(runs.loc[runs["variant"].isin([restarts, *(cosine[e] for e in epochs)]), "seed"].unique())
    restarts_runs = runs[runs["variant"].eq(restarts)]
    final = variant_grid(restarts_runs, restarts, seeds)
    weights = np.ones((1, len(seeds)))
    reason = "" if len(seeds) > 1 else "one seed: no bootstrap over seeds, no interval"
    if len(seeds) > 1:
        weights = np.concatenate([weights, seed_weights(len(seeds), n_boot, seed)])
    cell, _ = best_cell_index(final.means(weights))
    restarts_lr, restarts_wd, _ = final.best()
    rows = []
    for epoch in epochs:
        at_end = variant_grid(
            restarts_runs.assign(final_test_error=error_at_epoch(restarts_runs, epoch)), restarts, seeds
        )
        restarts_error = at_end.means(weights).reshape(len(weights), -1)[np.arange(len(weights)), cell]
        cosine_grid = variant_grid(runs, cosine[epoch], seeds)
        _, cosine_error = best_cell_index(cosine_grid.means(weights))
        difference = 100 * (restarts_error - cosine_error)
        low, high, valid = percentile_ci(difference[1:], confidence)
        lr, wd, _ = cosine_grid.best()
        point = AnytimePoint(
            epoch=epoch,
            restarts_error=float(restarts_error[0]),
            restarts_lr=restarts_lr,
            restarts_weight_decay=restarts_wd,
            cosine_variant=cosine[epoch],
            cosine_error=float(cosine_error[0]),
            cosine_lr=lr,
            cosine_weight_decay=wd,
            difference_pp=float(difference[0]),
            difference_pp_ci_low=low,
            difference_pp_ci_high=high,
            n_seeds=len(seeds),
            n_boot=len(weights) - 1,
            n_boot_valid=valid,
            reason=reason,
        )
        rows.append(asdict(point))
    return pd.DataFrame(rows, columns=list(AnytimePoint.__dataclass_fields__))
