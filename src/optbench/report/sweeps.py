"""Figures of the sweeps (:mod:`optbench.analysis.sweeps`): the best weight decay against a swept setting, and
warm restarts' anytime performance against cosine annealing. The heatmaps per swept value are
:func:`optbench.report.heatmaps.heatmap_figure`'s."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from optbench.analysis.bootstrap import CONFIDENCE
from optbench.analysis.curves import best_cell_curve
from optbench.analysis.estimate_text import estimate
from optbench.experiment.sweeps import SETTINGS
from optbench.report.figures import log2_label, save_figure

LEGEND_TITLE = "line, point: seed mean; band, bar: lowest to highest seed\ndotted: the restarts' cycle ends"


def best_decay_figure(bests: pd.DataFrame, fits: pd.DataFrame, out_paths: Sequence[str | os.PathLike]) -> Figure:
    """One panel per swept setting: each variant's best weight decay (:func:`optbench.analysis.sweeps.best_decay_fit`)
    against the setting's value, both on log2 axes, with its seed-bootstrap CI as error bars and its fitted
    line; the legend gives the slope, its CI and the formula's prediction.

    ``bests`` and ``fits``: the tables ``best_decay`` and ``decay_slopes``
    (:func:`optbench.report.outputs.write_outputs`),
    with columns ``setting``, ``variant`` and ``label`` before those of the statistics.
    """
    settings = list(dict.fromkeys(fits["setting"]))
    fig = Figure(figsize=(5.2 * len(settings), 4.2), layout="constrained")
    for ax, setting in zip(fig.subplots(1, len(settings), squeeze=False)[0], settings):
        for i, fit in enumerate(fits[fits["setting"].eq(setting)].itertuples(index=False)):
            points = bests[bests["setting"].eq(setting) & bests["variant"].eq(fit.variant)]
            x, y = np.log2(points["value"].to_numpy(float)), points["log2_best_weight_decay"].to_numpy()
            errors = np.abs(points[["ci_low", "ci_high"]].to_numpy().T - y)
            slope = estimate(fit.slope, fit.ci_low, fit.ci_high, fit.n_seeds)
            text = f"{fit.label}: slope {slope} (predicted {fit.predicted:g})"
            ax.errorbar(x, y, yerr=errors, fmt="o", color=f"C{i}", capsize=3, label=text)
            ax.plot(x, fit.intercept + fit.slope * x, color=f"C{i}", linewidth=1)
        values = bests.loc[bests["setting"].eq(setting), "value"].unique()
        ax.set_xticks(np.log2(values.astype(float)), [f"{v:g}" for v in values])
        ax.yaxis.set_major_formatter(lambda y, _: log2_label(2.0**y))
        ax.set(xlabel=f"{SETTINGS[setting].axis} (log scale)", ylabel="best weight decay: lambda or lambda_norm")
        ax.legend(fontsize=7, loc="lower left")
        ax.grid(alpha=0.3)
    fig.suptitle(
        f"Best weight decay of each heatmap (seed means, {100 * CONFIDENCE:g}% seed-bootstrap CI)", fontsize=10
    )
    save_figure(fig, out_paths)
    return fig


def anytime_figure(
    runs: pd.DataFrame,
    panels: Sequence[tuple[str, str, Mapping[int, str], Sequence[float]]],
    out_paths: Sequence[str | os.PathLike],
    labels: Mapping[str, str],
) -> Figure:
    """One panel per ``(restarts, cosine label, {epochs: cosine variant}, cycle ends)``: the restarts variant's
    test error over epochs at its best cell (seed mean, band from the lowest to the highest seed), each cosine
    budget's learning curve at its own best cell (thin) ending in a point with the same range as error bar,
    and a dotted line at each of the restarts' cycle ends."""
    fig = Figure(figsize=(5.2 * len(panels), 4.2), layout="constrained")
    for ax, (restarts, cosine_label, cosine, ends) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        lr, wd, curve = best_cell_curve(runs, restarts)
        error = 100 * curve["test_error"]
        ax.plot(
            curve.index,
            error["mean"],
            color="C1",
            label=f"{labels[restarts]} (lr {log2_label(lr)}, wd {log2_label(wd)})",
        )
        ax.fill_between(curve.index, error["min"], error["max"], color="C1", alpha=0.2, linewidth=0)
        for i, name in enumerate(cosine.values()):
            _, _, curve = best_cell_curve(runs, name)
            error = 100 * curve["test_error"]
            ax.plot(curve.index, error["mean"], color="C0", linewidth=0.7, alpha=0.5)
            last = error.iloc[-1]
            ax.errorbar(
                curve.index[-1],
                last["mean"],
                yerr=[[last["mean"] - last["min"]], [last["max"] - last["mean"]]],
                fmt="o",
                color="C0",
                capsize=3,
                label=f"{cosine_label}, each budget at its best cell" if i == 0 else None,
            )
        for end in ends:
            ax.axvline(end, color="0.5", linestyle=":", linewidth=0.8)
        ax.set(xlabel="epoch", ylabel="test error (%, log scale)", yscale="log", title=labels[restarts])
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.yaxis.set_major_formatter("{x:g}")
        ax.yaxis.set_minor_formatter("{x:g}")
        ax.legend(fontsize=7, title=LEGEND_TITLE, title_fontsize=7)
    fig.suptitle("Anytime performance: warm restarts against cosine runs of each cycle's length", fontsize=10)
    save_figure(fig, out_paths)
    return fig
