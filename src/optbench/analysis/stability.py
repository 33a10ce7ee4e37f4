r"""The statistics of a stability map (:mod:`optbench.experiment.stability_maps`), from ``runs.csv`` alone.

**Classes.** Every run is one of

* ``diverged``: the trainer stopped it (its criterion), a step's training loss is not finite, or its final
  validation loss exceeds the map's bound, :math:`b + f (u - b)`: b the best cell's seed mean (the lowest over
  the map's rows and columns), u ``unigram_bits`` (what the byte frequencies alone give) and f
  ``diverged_fraction``: the run lost more than that fraction of what the best cell learned beyond them;
* ``spiking``: it has a spike, a step :math:`t \ge 2` whose training loss exceeds ``spike_factor`` times the
  lowest training loss of the steps before it, :math:`L_t > f \min_{s < t} L_s`;
* ``stable``: neither.

**Max stable lr.** Per variant: the largest learning rate of its axis at which every seed is stable (NaN if
none is), and per seed the largest at which that seed is stable: the seeds' spread.

**Reference lr.** The best learning rate (lowest seed-mean final validation loss) of the map's ``reference``
variant; for a relative-step row, ``relative_scale`` times it (the paper's rho_t = s_t against alpha_t = 0.1 s_t).

**Verdicts.** A paper number of at least ``paper_trains`` says the configuration trains, a smaller one that it
fails. At the reference lr a cell trains when every seed is stable and fails when none is; the verdict is
*reproduced* when that agrees with the paper, *not reproduced* when it is the opposite, and *inconclusive*
when the seeds disagree (or the cell is absent).

**Spikes and RMS(U).** :mod:`optbench.analysis.spikes`: a spike's onset, its window and the update RMS in it.

Imports numpy and pandas only: no files, no figures (:mod:`optbench.report.stability` draws them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from optbench.analysis.bootstrap import mean_ci
from optbench.analysis.spikes import LOSS, RMS_MAX, json_list, onsets, require_traces, spike_steps
from optbench.experiment.stability_maps import MapRow, StabilityMap

CLASSES = ("stable", "spiking", "diverged")
BITS = "final_val_bits_per_token"
LARGE_RMS = 2.0  # RMS(U) "far above 1" in the update-RMS claim (Figure 1)


def map_runs(runs: pd.DataFrame, smap: StabilityMap) -> pd.DataFrame:
    """The runs of the map's variants (its rows' and the longer runs'), each with its ``class`` and its spike
    ``onsets``; the bound of ``diverged`` comes from the rows' cells alone."""
    require_traces(runs, ["variant", "lr", "seed", "status", BITS, LOSS])
    variants = [*smap.variants, *(long for _, long in smap.longer)]
    sub = runs[runs["variant"].isin(variants)].copy()
    rows = sub[sub["variant"].isin(smap.variants)]
    best = rows.groupby(["variant", "lr"])[BITS].mean().min()
    bound = best + smap.diverged_fraction * (smap.unigram_bits - best)
    losses = sub[LOSS].map(json_list)
    spikes = losses.map(lambda ls: spike_steps(ls, smap.spike_factor))
    not_finite = losses.map(lambda ls: any(v is None for v in ls))
    diverged = sub["status"].eq("diverged") | not_finite | (sub[BITS] > bound)
    sub["class"] = np.where(diverged, "diverged", np.where(spikes.map(len) > 0, "spiking", "stable"))
    sub["onsets"] = spikes.map(onsets)
    sub.attrs["bound"] = float(bound)
    return sub


def boundary(runs: pd.DataFrame) -> dict:
    """One variant's classified runs -> its max stable lr (all seeds; NaN if none), the seeds' least and largest
    max stable lr (the least NaN if some seed is stable nowhere, the largest if every seed is), and the lowest and
    highest lr of its axis."""
    lrs = np.sort(runs["lr"].unique())
    stable = runs.assign(ok=runs["class"].eq("stable")).pivot_table(index="lr", columns="seed", values="ok")
    every = stable.index[stable.all(axis=1)]
    per_seed = [stable.index[stable[s].astype(bool)].max() if stable[s].any() else np.nan for s in stable.columns]
    return {
        "max_stable_lr": float(every.max()) if len(every) else np.nan,
        "seed_min": float(np.min(per_seed)),  # NaN if some seed is stable nowhere
        "seed_max": float(np.nanmax(per_seed)) if np.isfinite(per_seed).any() else np.nan,
        "axis_low": float(lrs[0]),
        "axis_high": float(lrs[-1]),
    }


def best_lr(runs: pd.DataFrame, variant: str) -> float:
    """The learning rate of the variant's lowest seed-mean final validation loss."""
    means = runs[runs["variant"].eq(variant)].groupby("lr")[BITS].mean()
    if means.empty:
        raise ValueError(f"runs.csv has no runs of the reference variant {variant!r}")
    return float(means.idxmin())


def row_reference(smap: StabilityMap, row: MapRow, reference: float) -> float:
    return reference * smap.relative_scale if row.relative else reference


def _at(runs: pd.DataFrame, variant: str, lr: float) -> pd.DataFrame:
    return runs[runs["variant"].eq(variant) & np.isclose(runs["lr"], lr, rtol=1e-9, atol=0)]


def outcome(classes: pd.Series) -> str:
    """A cell's outcome over its seeds: ``trains`` (every seed stable), ``fails`` (none), ``mixed`` or ``absent``."""
    if classes.empty:
        return "absent"
    stable = classes.eq("stable")
    return "trains" if stable.all() else "fails" if not stable.any() else "mixed"


def verdict(paper: float | None, ours: str, paper_trains: float) -> str:
    if paper is None:
        return "no paper number"
    if ours not in ("trains", "fails"):
        return "inconclusive"
    return "reproduced" if (paper >= paper_trains) == (ours == "trains") else "not reproduced"


def map_cell_table(runs: pd.DataFrame, smap: StabilityMap) -> pd.DataFrame:
    """One row per (map row, column, learning rate): seeds, their classes, spike onsets, and the final validation
    loss (seed mean and bootstrap CI). ``runs`` are :func:`map_runs`'."""
    cells = []
    for row in smap.rows:
        for column, variant in zip(smap.columns, row.variants):
            for lr, sub in runs[runs["variant"].eq(variant)].groupby("lr"):
                mean, low, high = mean_ci(sub[BITS].to_numpy(dtype=float))
                counts = sub["class"].value_counts()
                cells.append(
                    {
                        "row": row.label,
                        "column": column,
                        "variant": variant,
                        "lr": float(lr),
                        "n_seeds": len(sub),
                        **{f"n_{c}": int(counts.get(c, 0)) for c in CLASSES},
                        "spike_onsets": int(sub["onsets"].map(len).sum()),
                        BITS: mean,
                        "ci_low": low,
                        "ci_high": high,
                    }
                )
    return pd.DataFrame(cells)


def row_table(runs: pd.DataFrame, smap: StabilityMap, reference: float) -> pd.DataFrame:
    """One row per (map row, column): the max stable lr and the seeds' spread; at the row's reference lr the final
    validation loss (mean, CI), the classes and the outcome; the paper's number, its outcome and the verdict."""
    table = []
    for row in smap.rows:
        lr = row_reference(smap, row, reference)
        for column, variant, paper in zip(smap.columns, row.variants, row.paper):
            if variant is None:
                continue
            at = _at(runs, variant, lr)
            mean, low, high = mean_ci(at[BITS].to_numpy(dtype=float))
            ours = outcome(at["class"])
            table.append(
                {
                    "row": row.label,
                    "configuration": row.configuration,
                    "column": column,
                    "variant": variant,
                    **boundary(runs[runs["variant"].eq(variant)]),
                    "reference_lr": lr,
                    "n_seeds": len(at),
                    **{f"n_{c}": int(at["class"].eq(c).sum()) for c in CLASSES},
                    BITS: mean,
                    "ci_low": low,
                    "ci_high": high,
                    "outcome": ours,
                    "paper": paper,
                    "paper_outcome": None if paper is None else "trains" if paper >= smap.paper_trains else "fails",
                    "verdict": verdict(paper, ours, smap.paper_trains),
                }
            )
    return pd.DataFrame(table)


def worse_table(runs: pd.DataFrame, smap: StabilityMap, reference: float) -> pd.DataFrame:
    """Per ``worse`` pair (row, than) and column: the difference of their final validation losses at the
    reference lr, per seed (paired), its mean and bootstrap CI; *reproduced* when the CI lies above 0,
    *not reproduced* when it lies below, otherwise *inconclusive*."""
    table = []
    for label, than in smap.worse:
        row, other = smap.row(label), smap.row(than)
        if row is None or other is None:
            continue
        for j, column in enumerate(smap.columns):
            if row.variants[j] is None or other.variants[j] is None:
                continue
            mine = _at(runs, row.variants[j], row_reference(smap, row, reference)).set_index("seed")[BITS]
            theirs = _at(runs, other.variants[j], row_reference(smap, other, reference)).set_index("seed")[BITS]
            difference = (mine - theirs).dropna().to_numpy(dtype=float)
            mean, low, high = mean_ci(difference)
            table.append(
                {
                    "row": label,
                    "than": than,
                    "column": column,
                    "difference_bits": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "n_seeds": len(difference),
                    "verdict": "reproduced" if low > 0 else "not reproduced" if high < 0 else "inconclusive",
                }
            )
    return pd.DataFrame(
        table, columns=["row", "than", "column", "difference_bits", "ci_low", "ci_high", "n_seeds", "verdict"]
    )


def length_table(runs: pd.DataFrame, smap: StabilityMap) -> pd.DataFrame:
    """Per ``longer`` pair: the max stable lr (and the seeds' spread) at the preset's length and at twice it, and
    whether the boundary moved: by how many factors of 2 (negative: down), NaN where either is stable nowhere."""
    table = []
    for variant, long in smap.longer:
        short, twice = (boundary(runs[runs["variant"].eq(v)]) for v in (variant, long))
        moved = np.log2(twice["max_stable_lr"] / short["max_stable_lr"])
        table.append(
            {
                "variant": variant,
                "longer": long,
                **{f"{key}": value for key, value in short.items()},
                **{f"long_{key}": value for key, value in twice.items()},
                "moved_factors_of_2": float(moved),
            }
        )
    return pd.DataFrame(table)


def large_update_fraction(runs: pd.DataFrame, variant: str, lr: float, threshold: float = LARGE_RMS) -> pd.Series:
    """Per seed: the fraction of traced steps at which some tensor's RMS(U) exceeds ``threshold``."""
    at = _at(runs, variant, lr)
    return pd.Series(
        [np.mean(np.asarray(json_list(r[RMS_MAX]), dtype=float) > threshold) for _, r in at.iterrows()],
        index=at["seed"].to_numpy(),
        dtype=float,
    )
