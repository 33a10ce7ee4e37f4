r"""A stability map's figures (:mod:`optbench.report.stability` writes them).

* ``map_figure``: one heatmap per column (warm-up or none) and per learning-rate axis (absolute steps; the
  relative-step rows' caps below): rows x learning rates, each cell coloured by its seed-mean final validation
  loss and showing it, with one mark per seed (o stable, ^ spiking, x diverged); a black frame around each
  row's max stable lr, the reference lr's tick in red.
* ``update_rms_figure``: Figure 1's comparison at the reference lr with warm-up (max over tensors of
  :math:`\mathrm{RMS}(U)`, and the training loss, seed mean with the seeds' range), and the RMS(U) in the
  windows before spike onsets against the stable runs' windows at the same learning rates.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from optbench.analysis.spikes import LOSS, RMS_MAX, RMS_STEP, WINDOW, json_list
from optbench.analysis.stability import BITS
from optbench.experiment.stability_maps import StabilityMap
from optbench.report.figures import CMAP, RELATIVE_STEP_AXIS, log2_label, save_figure, text_colour

MARKS = {"stable": "o", "spiking": "^", "diverged": "x"}
LN2 = math.log(2)


def _panels(smap: StabilityMap) -> list[list]:
    """The rows grouped by kind of axis: absolute steps first, then relative ones."""
    return [
        group for group in ([r for r in smap.rows if not r.relative], [r for r in smap.rows if r.relative]) if group
    ]


def map_figure(cells: pd.DataFrame, smap: StabilityMap, reference: float, paths: Sequence[str | os.PathLike]) -> Figure:
    groups = _panels(smap)
    heights = [len(group) + 1.5 for group in groups]
    fig = Figure(figsize=(5.2 * len(smap.columns) + 1, 0.42 * sum(heights) + 1), layout="constrained")
    axes = fig.subplots(len(groups), len(smap.columns), squeeze=False, gridspec_kw={"height_ratios": heights})
    low, high = cells[BITS].min(), cells[BITS].max()
    norm = Normalize(low, min(high, smap.unigram_bits) if smap.unigram_bits > low else high)  # unigram and above: dark
    cmap = colormaps[CMAP]
    for (rows, line), column in ((g, c) for g in zip(groups, axes) for c in smap.columns):
        ax = line[smap.columns.index(column)]
        sub = cells[cells["column"].eq(column) & cells["row"].isin([r.label for r in rows])]
        lrs = np.sort(sub["lr"].unique())
        for i, row in enumerate(rows):
            for j, lr in enumerate(lrs):
                found = sub[sub["row"].eq(row.label) & np.isclose(sub["lr"], lr)]
                if found.empty:
                    continue
                c = found.iloc[0]
                colour = cmap(norm(c[BITS]))
                ax.add_patch(Rectangle((j, i), 1, 1, color=colour))
                marks = "".join(MARKS[k] * int(c[f"n_{k}"]) for k in MARKS)
                ax.text(
                    j + 0.5,
                    i + 0.5,
                    f"{c[BITS]:.2f}\n{marks}",
                    ha="center",
                    va="center",
                    fontsize=5.5,
                    color=text_colour(colour),
                )
            bound = boundary_lr(sub[sub["row"].eq(row.label)])
            if np.isfinite(bound):
                j = int(np.argmin(np.abs(lrs - bound)))
                ax.add_patch(Rectangle((j, i), 1, 1, fill=False, edgecolor="black", linewidth=1.6))
        ref = reference * (smap.relative_scale if rows[0].relative else 1)
        ax.set(xlim=(0, len(lrs)), ylim=(len(rows), 0))
        ax.set_xticks(
            np.arange(len(lrs)) + 0.5,
            [_tick(lr, rows[0].relative) for lr in lrs],
            fontsize=7,
            rotation=30 * rows[0].relative,
        )
        for lr, tick in zip(lrs, ax.get_xticklabels()):
            if np.isclose(lr, ref):
                tick.set(color="red", fontweight="bold")
        ax.set_yticks(np.arange(len(rows)) + 0.5, [f"{r.label}: {r.configuration}" for r in rows], fontsize=6)
        axis = RELATIVE_STEP_AXIS if rows[0].relative else "peak learning rate alpha"
        ax.set_xlabel(axis, fontsize=8)
        ax.set_title(column, fontsize=9)
    fig.colorbar(
        ScalarMappable(norm=norm, cmap=cmap), ax=axes, shrink=0.6, label="final validation bits per byte (seed mean)"
    )
    fig.suptitle(
        "Stability map: o stable, ^ spiking, x diverged (a mark per seed); frame: max stable lr; red: the reference lr",
        fontsize=9,
    )
    save_figure(fig, paths)
    return fig


def boundary_lr(cells: pd.DataFrame) -> float:
    """A row's max stable lr from its cells (every seed stable)."""
    stable = cells[cells["n_stable"].eq(cells["n_seeds"])]
    return float(stable["lr"].max()) if len(stable) else np.nan


def _tick(lr: float, relative: bool) -> str:
    return f"10 x {log2_label(lr / 10)}" if relative else log2_label(lr)


def _series(runs: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per traced step: seed mean, min and max of the runs' max-over-tensors RMS(U) (``rms``) or of their training
    loss in bits (``loss``)."""
    frames = []
    for _, r in runs.iterrows():
        if key == "rms":
            frames.append(pd.DataFrame({"step": json_list(r[RMS_STEP]), "value": json_list(r[RMS_MAX])}))
        else:
            loss = np.array([np.nan if v is None else v for v in json_list(r[LOSS])], dtype=float) / LN2
            frames.append(pd.DataFrame({"step": np.arange(1, len(loss) + 1), "value": loss}))
    return pd.concat(frames).groupby("step")["value"].agg(["mean", "min", "max"])


def update_rms_figure(
    runs: pd.DataFrame,
    smap: StabilityMap,
    reference: float,
    windows: pd.DataFrame,
    paths: Sequence[str | os.PathLike],
    labels: dict[str, str],
) -> Figure:
    fig = Figure(figsize=(14, 3.6), layout="constrained")
    rms_ax, loss_ax, spike_ax = fig.subplots(1, 3)
    for i, variant in enumerate(smap.update_rms):
        at = runs[runs["variant"].eq(variant) & np.isclose(runs["lr"], reference)]
        if at.empty:
            continue
        colour, label = colormaps["tab10"](i), labels.get(variant, variant)
        for ax, key in ((rms_ax, "rms"), (loss_ax, "loss")):
            s = _series(at, key)
            ax.plot(s.index, s["mean"], color=colour, linewidth=0.8, label=label)
            ax.fill_between(s.index, s["min"], s["max"], color=colour, alpha=0.2, linewidth=0)
    rms_ax.axhline(1.0, color="0.5", linewidth=0.8)
    rms_ax.set(
        yscale="log", xlabel="step", ylabel="max over tensors of RMS(U)", title=f"RMS(U) at lr {log2_label(reference)}"
    )
    loss_ax.set(xlabel="step", ylabel="training loss (bits per byte)", title="loss (band: seeds)")
    rms_ax.legend(fontsize=7)
    loss_ax.legend(fontsize=7)
    if len(windows):
        bins = np.geomspace(max(windows["rms"].min(), 1e-2), windows["rms"].max() * 1.01, 40)
        for kind, colour in (("stable", "0.5"), ("onset", "red")):
            values = windows.loc[windows["kind"].eq(kind), "rms"]
            spike_ax.hist(
                values, bins=bins, density=True, histtype="step", color=colour, label=f"{kind} ({len(values)})"
            )
        spike_ax.legend(fontsize=7, title="windows", title_fontsize=7)
    else:
        spike_ax.text(0.5, 0.5, "no learning rate has both\nspiking and stable runs", ha="center", va="center")
    spike_ax.set(
        xscale="log",
        xlabel=f"largest RMS(U) in the {WINDOW} steps before",
        ylabel="density",
        title="before spike onsets vs stable runs, same lrs",
    )
    save_figure(fig, paths)
    return fig
