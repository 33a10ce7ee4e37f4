r"""Loss spikes in a training trace, and the update RMS in the steps before them (the traced columns of ``runs.csv``).

A **spike** is a step :math:`t \ge 2` whose training loss is not finite or exceeds a factor times the lowest
training loss of the steps before it (:func:`spike_steps`); its **onset** is a spike whose step before is none
(:func:`onsets`). An onset's window is the ``window`` steps before it; its RMS(U) is the largest traced
max-over-tensors :math:`\mathrm{RMS}(U)` in the window. The stable runs at the same learning rate give the same
statistic for every window of theirs: the onset is *preceded by a large update* when its RMS(U) exceeds their
95th percentile (:func:`spike_table`). Which runs are stable or spiking is
:func:`optbench.analysis.stability.map_runs`'.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from optbench.analysis.bootstrap import BOOT_SEED, CONFIDENCE, N_BOOT

LOSS = "trace.train_loss"
RMS_STEP, RMS_MAX, RMS_MEAN = (f"trace.update_rms.{key}" for key in ("step", "max", "mean"))
WINDOW = 20  # steps before a spike's onset in which its RMS(U) is read
QUANTILE = 0.95  # of the stable runs' windows: above it, an onset is preceded by a large update


def json_list(cell) -> list:
    """A ``runs.csv`` cell holding a JSON list (the trace), [] where empty."""
    return json.loads(cell) if isinstance(cell, str) else []


def spike_steps(losses: Sequence[float | None], factor: float) -> list[int]:
    r"""The steps (from 1) :math:`t \ge 2` whose loss is not finite (None) or exceeds ``factor`` times the lowest
    loss of the steps before them."""
    best, steps = math.inf, []
    for t, loss in enumerate(losses, start=1):
        if loss is None or not math.isfinite(loss) or loss > factor * best:
            steps.append(t)
        if loss is not None and math.isfinite(loss):
            best = min(best, loss)
    return steps


def onsets(steps: Sequence[int]) -> list[int]:
    """The spikes whose step before is none."""
    taken = set(steps)
    return [t for t in steps if t - 1 not in taken]


def require_traces(runs: pd.DataFrame, columns: Sequence[str]) -> None:
    """ValueError naming the first of ``columns`` that ``runs`` lacks."""
    missing = [column for column in columns if column not in runs.columns]
    if missing:
        raise ValueError(f"runs.csv lacks {missing[0]}: a stability map needs traced language-model runs")


def _windows(run: pd.Series, starts: Sequence[int], window: int) -> list[float]:
    """The largest traced max-over-tensors RMS(U) in the ``window`` steps before each step of ``starts``
    (NaN where none was traced there)."""
    steps, values = np.asarray(json_list(run[RMS_STEP])), np.asarray(json_list(run[RMS_MAX]), dtype=float)
    out = []
    for t in starts:
        inside = values[(steps >= t - window) & (steps < t)]
        out.append(float(np.nanmax(inside)) if inside.size and np.isfinite(inside).any() else np.nan)
    return out


def spike_table(runs: pd.DataFrame, variants: Sequence[str], window: int = WINDOW) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per learning rate with spiking and stable runs (of ``variants``, the map's rows'; ``runs`` classified by
    :func:`optbench.analysis.stability.map_runs`): the spike onsets' RMS(U) (median) against
    the stable runs' windows (median, 95th percentile), and the fraction of onsets above that percentile, with a
    bootstrap CI over the spiking runs; and the pooled row ``all`` over those learning rates. Also returns the
    window values themselves (``kind`` onset or stable) for the figure."""
    require_traces(runs, [RMS_STEP, RMS_MAX])
    rows = runs[runs["variant"].isin(variants)]
    values, table = [], []
    for lr, sub in rows.groupby("lr"):
        spiking, stable = sub[sub["class"].eq("spiking")], sub[sub["class"].eq("stable")]
        if spiking.empty or stable.empty:
            continue
        calm = np.concatenate([_windows(r, json_list(r[RMS_STEP])[1:], window) for _, r in stable.iterrows()])
        calm = calm[np.isfinite(calm)]
        cut = float(np.quantile(calm, QUANTILE))
        per_run = [np.asarray(_windows(r, r["onsets"], window)) for _, r in spiking.iterrows()]
        values += [{"lr": lr, "kind": "stable", "rms": v} for v in calm]
        values += [{"lr": lr, "kind": "onset", "rms": v} for run in per_run for v in run if np.isfinite(v)]
        table.append(_spike_row(float(lr), per_run, calm, cut))
    if table:
        pooled = pd.DataFrame(values)
        cuts = {row["lr"]: row["stable_p95"] for row in table}
        onset = pooled[pooled["kind"].eq("onset")]
        above = (onset["rms"] > onset["lr"].map(cuts)).to_numpy()
        table.append(
            {
                "lr": "all",
                "spiking_runs": sum(r["spiking_runs"] for r in table),
                "onsets": int(len(onset)),
                "onset_median": float(onset["rms"].median()),
                "stable_median": float(pooled.loc[pooled["kind"].eq("stable"), "rms"].median()),
                "stable_p95": np.nan,
                "fraction_above": float(above.mean()) if above.size else np.nan,
                **_run_bootstrap([r["_above"] for r in table]),
            }
        )
    for row in table:
        row.pop("_above", None)
    return pd.DataFrame(table), pd.DataFrame(values, columns=["lr", "kind", "rms"])


def _spike_row(lr: float, per_run: list[np.ndarray], calm: np.ndarray, cut: float) -> dict:
    above = [run[np.isfinite(run)] > cut for run in per_run]
    flat = np.concatenate(above) if above else np.array([])
    onset_values = np.concatenate([run[np.isfinite(run)] for run in per_run])
    return {
        "lr": lr,
        "spiking_runs": len(per_run),
        "onsets": int(flat.size),
        "onset_median": float(np.median(onset_values)) if onset_values.size else np.nan,
        "stable_median": float(np.median(calm)),
        "stable_p95": cut,
        "fraction_above": float(flat.mean()) if flat.size else np.nan,
        **_run_bootstrap([above]),
        "_above": above,
    }


def _run_bootstrap(groups: list[list[np.ndarray]], n_boot: int = N_BOOT, confidence: float = CONFIDENCE) -> dict:
    """The fraction of onsets above the cut with a percentile CI from resampling the spiking runs (onsets of one
    run move together)."""
    runs = [run for group in groups for run in group if run.size]
    if len(runs) < 2:
        return {"ci_low": np.nan, "ci_high": np.nan}
    hits, counts = np.array([run.sum() for run in runs]), np.array([run.size for run in runs])
    draws = np.random.default_rng(BOOT_SEED).integers(0, len(runs), size=(n_boot, len(runs)))
    fractions = hits[draws].sum(axis=1) / counts[draws].sum(axis=1)
    low, high = np.quantile(fractions, [(1 - confidence) / 2, (1 + confidence) / 2])
    return {"ci_low": float(low), "ci_high": float(high)}
