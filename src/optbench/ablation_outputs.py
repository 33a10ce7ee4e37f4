r"""An ablation table and its update-RMS figure (:mod:`optbench.ablations`), from ``runs.csv`` alone.

Per cell (a row's variant in one column, e.g. without warm-up), over its seeds:

* **final validation loss** in bits per token: the seed mean with its seed-bootstrap interval
  (:func:`optbench.statistics.mean_ci`);
* **spikes**: the steps :math:`t \ge 2` whose training loss is not finite or exceeds ``spike_factor``
  times the lowest training loss of the steps before it, :math:`L_t > f \min_{s < t} L_s`, summed over
  the seeds, with the number of runs that have any;
* **far above**: the runs whose final validation loss exceeds the best cell's seed mean (the lowest of the
  whole table) by more than ``far_margin`` bits per token; a diverged run counts, with the validation loss
  of a uniform guess;
* **diverged**: the runs the trainer stopped (its criterion, unchanged);
* **optimizer state**: the bytes measured at the end of the runs, and whether they equal the prediction from
  shapes;
* **paper**: the paper's own number, as configured, or "not found".

The figure has one row per column (without and with warm-up) and two panels: the update RMS over the
steps (mean over tensors of :math:`\mathrm{RMS}(U)` before clipping, solid; max over tensors, dotted) and the
training loss in bits per token, each the mean over seeds with the range over seeds as a band, and the
validation loss of each evaluation as dots.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.figure import Figure

from . import formatting as fmt
from .ablations import Ablation
from .aggregate import write_table
from .atomic import atomic_write_text
from .memory_tables import format_bytes, markdown_table
from .plots import save_figure
from .statistics import CONFIDENCE, mean_ci

LN2 = math.log(2)
CI = f"[{100 * CONFIDENCE:g}% CI]"
TRACE = "trace.train_loss"
RMS = {key: f"trace.update_rms.{key}" for key in ("step", "mean", "max")}


def spikes(losses: Sequence[float | None], factor: float) -> int:
    r"""Steps :math:`t \ge 2` whose loss is not finite (None) or exceeds ``factor`` times the lowest before it."""
    best, count = math.inf, 0
    for loss in losses:
        if loss is None or not math.isfinite(loss) or loss > factor * best:
            count += 1
        if loss is not None and math.isfinite(loss):
            best = min(best, loss)
    return count


def _require_trace(runs: pd.DataFrame, columns: Sequence[str]) -> None:
    """ValueError naming the first of the trace's ``columns`` that ``runs`` lack."""
    missing = [column for column in columns if column not in runs.columns]
    if missing:
        raise ValueError(f"runs.csv lacks {missing[0]}: an ablation table needs traced runs (trace_every > 0)")


def _json(cell) -> list:
    return json.loads(cell) if isinstance(cell, str) else []


def cell_table(runs: pd.DataFrame, ablation: Ablation) -> pd.DataFrame:
    """One row per (row, column) cell the runs hold: the statistics of the module's docstring, as numbers."""
    _require_trace(runs, [TRACE])
    cells = []
    for row in ablation.rows:
        for column, variant, paper in zip(ablation.columns, row.variants, row.paper):
            sub = runs[runs["variant"].eq(variant)]
            if sub.empty:
                continue
            mean, low, high = mean_ci(sub["final_val_bits_per_token"].to_numpy(dtype=float))
            counts = [spikes(_json(trace), ablation.spike_factor) for trace in sub[TRACE]]
            cells.append(
                {
                    "row": row.label,
                    "column": column,
                    "variant": variant,
                    "n_seeds": len(sub),
                    "final_val_bits_per_token": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "spikes": sum(counts),
                    "runs_with_spikes": sum(c > 0 for c in counts),
                    "n_diverged": int(sub["status"].eq("diverged").sum()),
                    "optimizer_state_bytes": int(sub["memory.optimizer_state_bytes"].max()),
                    "state_equals_predicted": bool(
                        sub["memory.optimizer_state_bytes"].eq(sub["memory.optimizer_state_bytes_predicted"]).all()
                    ),
                    "paper": paper,
                    "_finals": sub["final_val_bits_per_token"].to_numpy(dtype=float),
                }
            )
    table = pd.DataFrame(cells)
    best = table["final_val_bits_per_token"].min()
    table["far_above"] = [int((finals > best + ablation.far_margin).sum()) for finals in table.pop("_finals")]
    return table


def ablation_markdown(cells: pd.DataFrame, ablation: Ablation) -> str:
    """The cells as one line per row: per column the final validation loss with its CI, the spikes, the runs
    far above the best and the paper's number; then the optimizer state."""
    lines = []
    for row in ablation.rows:
        line = {"configuration": row.label}
        for column in ablation.columns:
            found = cells[cells["row"].eq(row.label) & cells["column"].eq(column)]
            if found.empty:
                line.update({f"{column}: {h}": "not run" for h in (f"val bits/token {CI}", "spikes", "far above")})
            else:
                c = found.iloc[0]
                bits = fmt.estimate(c.final_val_bits_per_token, c.ci_low, c.ci_high, c.n_seeds, lambda x: f"{x:.2f}")
                line[f"{column}: val bits/token {CI}"] = bits + (f" ({c.n_diverged} diverged)" if c.n_diverged else "")
                line[f"{column}: spikes"] = f"{c.spikes} ({c.runs_with_spikes}/{c.n_seeds} runs)"
                line[f"{column}: far above"] = f"{c.far_above}/{c.n_seeds}"
            paper = row.paper[ablation.columns.index(column)]
            line[f"{column}: paper"] = "not found" if paper is None else f"{paper:g}"
        state = cells[cells["row"].eq(row.label)]
        line["optimizer state (measured)"] = (
            format_bytes(int(state["optimizer_state_bytes"].iloc[0]))
            + (" = predicted" if state["state_equals_predicted"].all() else " != predicted")
            if len(state)
            else "not run"
        )
        lines.append(line)
    return markdown_table(pd.DataFrame(lines), {"configuration": None})


def _curves(runs: pd.DataFrame, variant: str) -> dict[str, pd.DataFrame]:
    """Seed mean, min and max per step of the update RMS (mean and max over tensors) and of the training loss
    in bits, and per evaluation of the validation loss, of one variant's runs."""
    sub = runs[runs["variant"].eq(variant)]
    rms = pd.concat(
        pd.DataFrame({key: _json(r[column]) for key, column in RMS.items()}).assign(seed=r["seed"])
        for _, r in sub.iterrows()
    )
    loss = pd.concat(
        pd.DataFrame({"bits": np.array(_json(r[TRACE]), dtype=float) / LN2}).assign(step=lambda d: d.index + 1)
        for _, r in sub.iterrows()
    )
    evals = []
    for _, r in sub.iterrows():
        history, steps = _json(r["history"]), len(_json(r[TRACE]))
        per_epoch = steps // max(len(history), 1)
        evals += [{"step": h["epoch"] * per_epoch, "bits": h.get("val_bits_per_token")} for h in history]
    return {
        "rms": rms.groupby("step")[["mean", "max"]].agg(["mean", "min", "max"]),
        "loss": loss.groupby("step")["bits"].agg(["mean", "min", "max"]),
        "val": pd.DataFrame(evals).groupby("step")["bits"].mean(),
    }


def update_rms_figure(
    runs: pd.DataFrame, ablation: Ablation, paths: Sequence[str | os.PathLike], labels: dict[str, str]
) -> Figure:
    """One row per column of the table, each with the update-RMS and the loss panel of every configured curve."""
    _require_trace(runs, [TRACE, *RMS.values()])
    fig = Figure(figsize=(11, 3.4 * len(ablation.columns)), layout="constrained")
    axes = fig.subplots(len(ablation.columns), 2, squeeze=False)
    for j, (column, (rms_ax, loss_ax)) in enumerate(zip(ablation.columns, axes)):
        for i, curve in enumerate(ablation.curves):
            variant = curve[j]
            if variant is None or not runs["variant"].eq(variant).any():
                continue
            c, colour = _curves(runs, variant), colormaps["tab10"](i % 10)
            label = labels.get(variant, variant)
            rms = c["rms"]
            rms_ax.plot(rms.index, rms[("mean", "mean")], color=colour, label=label)
            rms_ax.fill_between(rms.index, rms[("mean", "min")], rms[("mean", "max")], color=colour, alpha=0.15, lw=0)
            rms_ax.plot(rms.index, rms[("max", "mean")], color=colour, linestyle=":", linewidth=1)
            loss_ax.plot(c["loss"].index, c["loss"]["mean"], color=colour, linewidth=0.8, label=label)
            loss_ax.fill_between(c["loss"].index, c["loss"]["min"], c["loss"]["max"], color=colour, alpha=0.15, lw=0)
            loss_ax.plot(c["val"].index, c["val"], "o", color=colour, markersize=4)
        rms_ax.axhline(1.0, color="0.5", linewidth=0.8)
        rms_ax.set(yscale="log", xlabel="step", ylabel="RMS(U) before clipping", title=f"update RMS, {column}")
        loss_ax.set(xlabel="step", ylabel="bits per token", title=f"loss, {column}")
        rms_ax.legend(fontsize=7, title="solid: mean over tensors, dotted: max", title_fontsize=7)
        loss_ax.legend(fontsize=7, title="line: training (band: seeds), dots: validation", title_fontsize=7)
    save_figure(fig, paths)
    return fig


def write_ablation_outputs(
    runs: pd.DataFrame, ablation: Ablation, paths: Sequence[str | os.PathLike], labels: dict[str, str]
) -> None:
    """``paths``: the table's CSV and Markdown, then the figure's files (:meth:`Experiment.outputs`)."""
    csv_path, md_path, *figure_paths = paths
    cells = cell_table(runs, ablation)
    write_table(cells, csv_path)
    atomic_write_text(md_path, ablation_markdown(cells, ablation))
    update_rms_figure(runs, ablation, figure_paths, labels)
