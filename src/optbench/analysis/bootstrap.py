"""The seed bootstrap: percentile intervals from resampling seeds, shared by every statistic of the package.

Seeds are shared across cells (seed s is the same initialization and data order in every cell of every
variant), so a resample draws n seeds with replacement from the n distinct seeds and applies that *same* draw
to every cell (and, when two variants are compared, to both variants). A seed drawn k times gets weight k in
every cell's mean (:func:`seed_weights`); a cell none of whose seeds was drawn has no mean in that resample and
takes no part in it. Every derived quantity (row bests, near-best rows, best cells) is recomputed inside each
resample, because choosing them is part of the estimate. The interval is the percentile interval
(:func:`percentile_ci`): the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles (numpy's default
linear interpolation) of the finite resampled values. Resampling uses ``numpy.random.default_rng(seed)``, so a
result is reproducible. With few seeds this interval is optimistic: n = 3 seeds give only 10 distinct
resamples; with one seed there is nothing to resample and the interval is NaN.
"""

from __future__ import annotations

import numpy as np

N_BOOT = 2000
CONFIDENCE = 0.95
BOOT_SEED = 0


def check_ci_args(n_boot: int, confidence: float) -> None:
    """ValueError unless ``n_boot`` is positive and ``confidence`` lies in (0, 1)."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")


def seed_weights(n_seeds: int, n_boot: int, seed: int) -> np.ndarray:
    """``(n_boot, n_seeds)`` multiplicities of a with-replacement draw of n_seeds seeds: row b gives each seed's
    weight in resample b."""
    draws = np.random.default_rng(seed).integers(0, n_seeds, size=(n_boot, n_seeds))
    return (draws[:, :, None] == np.arange(n_seeds)).sum(axis=1).astype(float)


def percentile_ci(values: np.ndarray, confidence: float) -> tuple[float, float, int]:
    """The percentile interval of the finite ``values`` (resampled statistics) and how many were finite:
    ``(low, high, n_finite)``; NaN bounds where none is."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan"), 0
    low, high = np.quantile(finite, [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high), int(finite.size)


def mean_ci(
    values: np.ndarray, n_boot: int = N_BOOT, confidence: float = CONFIDENCE, seed: int = BOOT_SEED
) -> tuple[float, float, float]:
    """The mean of one value per seed and its seed-bootstrap percentile interval: ``(mean, low, high)``;
    the interval is NaN with fewer than two seeds."""
    check_ci_args(n_boot, confidence)
    values = np.asarray(values, dtype=float)
    if values.size < 2:
        return float(values.mean()) if values.size else float("nan"), float("nan"), float("nan")
    weights = seed_weights(values.size, n_boot, seed)
    low, high, _ = percentile_ci(weights @ values / values.size, confidence)
    return float(values.mean()), low, high
