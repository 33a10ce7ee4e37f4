r"""A stability map's tables and figures (:mod:`optbench.experiment.stability_maps`), from ``runs.csv`` alone.

Tables (each ``.csv`` and ``.md``; the statistics are :mod:`optbench.analysis.stability`'s):

* ``<name>``: per row, for each column, the paper's number, the final validation loss at the reference lr with
  its CI, the seeds' classes there, the max stable lr (the seeds' spread) and the verdict;
* ``<name>_cells``: every cell of the map (row, column, lr): classes, spike onsets, final validation loss;
* ``<name>_claims``: the claims, one line each, with the statistic, the measurement and the verdict: each row's
  outcome per column against the paper's, the ``worse`` pairs, Figure 1's RMS(U) and the spikes' RMS(U);
* ``<name>_length``: each ``longer`` pair's max stable lr at the preset's length and at twice it;
* ``<name>_spikes``: the spike onsets' RMS(U) against the stable runs' at the same learning rates.

Figures (``.png`` and ``.pdf``; :mod:`optbench.report.stability_figures`): ``<name>_map``, the map as heatmaps, and
``<name>_update_rms``, Figure 1's comparison and the spikes' RMS(U).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import pandas as pd

from optbench.analysis.bootstrap import mean_ci
from optbench.analysis.estimate_text import estimate
from optbench.analysis.spikes import QUANTILE, WINDOW, spike_table
from optbench.analysis.stability import (
    BITS,
    CLASSES,
    LARGE_RMS,
    best_lr,
    large_update_fraction,
    length_table,
    map_cell_table,
    map_runs,
    row_reference,
    row_table,
    worse_table,
)
from optbench.experiment.stability_maps import StabilityMap
from optbench.report import text as fmt
from optbench.report.files import write_table_and_markdown
from optbench.report.stability_figures import map_figure, update_rms_figure
from optbench.report.text import CI, markdown_table


def _bits(mean: float, low: float, high: float, n: int) -> str:
    return estimate(mean, low, high, n, lambda x: f"{x:.2f}")


def _classes(r) -> str:
    """``2/2 stable`` or ``1 stable, 1 spiking`` of a row with n_seeds and n_<class> fields."""
    counts = {c: getattr(r, f"n_{c}") for c in CLASSES}
    if not r.n_seeds:
        return "not run"
    present = [f"{n} {c}" for c, n in counts.items() if n]
    return f"{r.n_seeds}/{r.n_seeds} {present[0].split(' ', 1)[1]}" if len(present) == 1 else ", ".join(present)


def _lr(value: float, relative: bool = False) -> str:
    """A learning rate of the map's axes: 2^k, or 10 x 2^k on a relative-step axis."""
    if not np.isfinite(value):
        return "none"
    if relative:
        return f"10 x {fmt.power_of_two(value / 10)}" if fmt.power_of_two(value / 10).startswith("2^") else f"{value:g}"
    return fmt.power_of_two(value)


def _boundary(r, relative: bool) -> str:
    """The max stable lr with the seeds' spread, and where it sits on the axis."""
    if not np.isfinite(r.max_stable_lr):
        text = f"none (below {_lr(r.axis_low, relative)})"
    else:
        text = _lr(r.max_stable_lr, relative) + (" (top)" if r.max_stable_lr == r.axis_high else "")
    if np.isfinite(r.seed_max) and not r.seed_min == r.seed_max:  # the seeds disagree (NaN: stable nowhere)
        text += f"; seeds {_lr(r.seed_min, relative)} to {_lr(r.seed_max, relative)}"
    return text


def rows_markdown(table: pd.DataFrame, smap: StabilityMap, reference: float) -> str:
    lines = []
    for row in smap.rows:
        line = {
            "row": row.label,
            "configuration": row.configuration,
            "ref. lr": _lr(row_reference(smap, row, reference), row.relative),
        }
        for column in smap.columns:
            found = table[table["row"].eq(row.label) & table["column"].eq(column)]
            if found.empty:
                continue
            r = found.iloc[0]
            paper = "n/a" if r.paper is None or pd.isna(r.paper) else f"{r.paper:g} ({r.paper_outcome})"
            line[f"{column}: paper BLEU"] = paper
            line[f"{column}: val bits at ref. lr {CI}"] = _bits(r[BITS], r.ci_low, r.ci_high, r.n_seeds)
            line[f"{column}: seeds at ref. lr"] = _classes(r)
            line[f"{column}: max stable lr"] = _boundary(r, row.relative)
            line[f"{column}: verdict"] = r.verdict
        lines.append(line)
    return markdown_table(pd.DataFrame(lines), {"row": None, "configuration": None})


def cells_markdown(cells: pd.DataFrame, smap: StabilityMap) -> str:
    relative = {row.label: row.relative for row in smap.rows}
    lines = [
        {
            "row": r.row,
            "column": r.column,
            "lr": _lr(r.lr, relative[r.row]),
            "seeds": _classes(r),
            "spike onsets": str(r.spike_onsets),
            f"val bits {CI}": _bits(getattr(r, BITS), r.ci_low, r.ci_high, r.n_seeds),
        }
        for r in cells.itertuples(index=False)
    ]
    return markdown_table(pd.DataFrame(lines), {"row": None, "column": None})


def length_markdown(table: pd.DataFrame, labels: dict[str, str]) -> str:
    def moved(value: float) -> str:
        if not np.isfinite(value):
            return "n/a (stable nowhere)"
        return "no" if value == 0 else f"{'down' if value < 0 else 'up'} {abs(value):g} factor(s) of 2"

    lines = []
    for r in table.itertuples(index=False):
        short = pd.Series(
            {k: getattr(r, k) for k in ("max_stable_lr", "seed_min", "seed_max", "axis_low", "axis_high")}
        )
        long = pd.Series({k: getattr(r, f"long_{k}") for k in short.index})
        lines.append(
            {
                "variant": labels.get(r.variant, r.variant),
                "max stable lr": _boundary(short, False),
                "with twice the steps": _boundary(long, False),
                "moved": moved(r.moved_factors_of_2),
            }
        )
    return markdown_table(
        pd.DataFrame(lines, columns=["variant", "max stable lr", "with twice the steps", "moved"]), {"variant": None}
    )


def spikes_markdown(table: pd.DataFrame) -> str:
    """One line per learning rate with spiking and stable runs, and the pooled line ``all``; only the header
    where there is none."""

    def number(x) -> str:
        return "" if not np.isfinite(x) else f"{x:.2f}"

    columns = [
        "lr",
        "spiking runs",
        "spike onsets",
        f"RMS(U) before onsets (median, {WINDOW} steps)",
        "stable runs' windows: median",
        f"stable: {100 * QUANTILE:g}th percentile",
        f"onsets above it {CI}",
    ]
    lines = [
        [
            r.lr if r.lr == "all" else fmt.power_of_two(r.lr),
            str(r.spiking_runs),
            str(r.onsets),
            number(r.onset_median),
            number(r.stable_median),
            number(r.stable_p95),
            estimate(r.fraction_above, r.ci_low, r.ci_high, r.spiking_runs, fmt.percent),
        ]
        for r in table.itertuples(index=False)
    ]
    return markdown_table(pd.DataFrame(lines, columns=columns), {c: None if c in columns[:3] else str for c in columns})


def claims(
    runs: pd.DataFrame,
    smap: StabilityMap,
    tables: dict[str, pd.DataFrame],
    reference: float,
    labels: dict[str, str],
) -> pd.DataFrame:
    """The claims, one line each: claim, statistic, measured, verdict. ``tables``: the row, worse and spike
    tables."""
    rows, worse, spikes = tables["rows"], tables["worse"], tables["spikes"]
    lines = []
    for r in rows.itertuples(index=False):
        if r.paper is None or pd.isna(r.paper):
            continue
        lines.append(
            {
                "claim": f"{r.row} ({r.configuration}), {r.column}: {r.paper_outcome} (BLEU {r.paper:g})",
                "statistic": f"the seeds' classes at lr {_lr(r.reference_lr, smap.row(r.row).relative)}",
                "measured": f"{_classes(r)}; {_bits(getattr(r, BITS), r.ci_low, r.ci_high, r.n_seeds)} bits",
                "verdict": r.verdict,
            }
        )
    for r in worse.itertuples(index=False):
        lines.append(
            {
                "claim": f"{r.row} converges worse than {r.than}, {r.column}",
                "statistic": f"final val bits of {r.row} minus {r.than} at the reference lr, per seed",
                "measured": estimate(r.difference_bits, r.ci_low, r.ci_high, r.n_seeds, lambda x: f"{x:+.2f}"),
                "verdict": r.verdict,
            }
        )
    if len(smap.update_rms) == 2:
        lines.append(_figure_one(runs, smap, reference, labels))
    pooled = spikes[spikes["lr"].eq("all")] if len(spikes) else spikes
    if len(pooled):
        p = pooled.iloc[0]
        chance = 1 - QUANTILE
        lines.append(
            {
                "claim": "RMS(U) far above 1 comes before the spikes (Section 5)",
                "statistic": f"spike onsets whose RMS(U) in the {WINDOW} steps before exceeds the {100 * QUANTILE:g}th "
                f"percentile of stable runs' windows at the same lr ({100 * chance:g}% by chance)",
                "measured": f"{estimate(p.fraction_above, p.ci_low, p.ci_high, p.spiking_runs, fmt.percent)} "
                f"of {p.onsets} onsets in {p.spiking_runs} runs",
                "verdict": "reproduced"
                if p.ci_low > chance
                else "not reproduced"
                if p.ci_high <= chance
                else "inconclusive",
            }
        )
    return pd.DataFrame(lines, columns=["claim", "statistic", "measured", "verdict"])


def _figure_one(runs: pd.DataFrame, smap: StabilityMap, reference: float, labels: dict[str, str]) -> dict:
    """Figure 1's claim: with warm-up, RMS(U) swings far above 1 with beta2 0.999 and not with 0.9."""
    slow, fast = smap.update_rms
    fractions = {v: large_update_fraction(runs, v, reference).to_numpy() for v in (slow, fast)}
    estimates = {v: mean_ci(values) for v, values in fractions.items()}
    (s, s_low, s_high), (f, f_low, f_high) = estimates[slow], estimates[fast]
    n = len(fractions[slow])
    if s_low > f_high:
        verdict = "reproduced"
    elif s_high < f_low or s == f:
        verdict = "not reproduced"
    else:
        verdict = "inconclusive"
    return {
        "claim": f"RMS(U) swings far above 1 with {labels.get(slow, slow)}, stays near 1 with "
        f"{labels.get(fast, fast)} (Figure 1)",
        "statistic": f"traced steps at which some tensor's RMS(U) exceeds {LARGE_RMS:g}, at lr {_lr(reference)}",
        "measured": " against ".join(estimate(*estimates[v], n, fmt.percent) for v in (slow, fast)),
        "verdict": verdict,
    }


def claims_markdown(table: pd.DataFrame) -> str:
    return markdown_table(table, {column: None for column in table.columns})


def write_stability_outputs(
    runs: pd.DataFrame, smap: StabilityMap, paths: Sequence[str | os.PathLike], labels: dict[str, str]
) -> None:
    """``paths``: :meth:`StabilityMap.outputs`'s, in its order."""
    if smap.reference is None:
        raise ValueError(
            f"stability_maps.{smap.name}.reference: the preset does not run it, so the map has no reference lr"
        )
    classified = map_runs(runs, smap)
    reference = best_lr(classified, smap.reference)
    rows = row_table(classified, smap, reference)
    cells = map_cell_table(classified, smap)
    worse = worse_table(classified, smap, reference)
    length = length_table(classified, smap)
    spikes, windows = spike_table(classified, smap.variants)
    tables = {
        "": (rows, rows_markdown(rows, smap, reference)),
        "_cells": (cells, cells_markdown(cells, smap)),
        "_claims": (
            claim := claims(classified, smap, {"rows": rows, "worse": worse, "spikes": spikes}, reference, labels),
            claims_markdown(claim),
        ),
        "_length": (length, length_markdown(length, labels)),
        "_spikes": (spikes, spikes_markdown(spikes)),
    }
    paths = iter(paths)
    for table, markdown in tables.values():
        write_table_and_markdown(table, markdown, next(paths), next(paths))
    map_figure(cells, smap, reference, [next(paths), next(paths)])
    update_rms_figure(classified, smap, reference, windows, [next(paths), next(paths)], labels)
