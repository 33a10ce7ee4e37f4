"""Every table and figure of a preset, from ``runs.csv`` alone."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from . import formatting as fmt
from .aggregate import read_runs, write_table
from .atomic import atomic_write_text
from .experiment import Experiment, present_panels
from .memory_tables import markdown_table, memory_models, memory_table, write_memory_tables
from .plots import heatmap_figure, learning_curves_figure
from .statistics import CONFIDENCE, improvement_table, variant_statistics

CI = f"[{100 * CONFIDENCE:g}% CI]"
IMPROVEMENT_HEADERS = [
    "baseline",
    "candidate",
    "baseline best",
    "candidate best",
    f"relative improvement {CI}",
    f"difference (pp) {CI}",
    "seeds",
]


def _best(error: float, lr: float, weight_decay: float) -> str:
    return f"{fmt.percent(error)} at lr {fmt.power_of_two(lr)}, wd {fmt.power_of_two(weight_decay)}"


def _markdown(rows: list[dict[str, str]], left: tuple[str, ...], columns: list[str] | None = None) -> str:
    """Rows of ready-made text as a Markdown table: the ``left`` columns left-aligned, the rest right-aligned."""
    table = pd.DataFrame(rows, columns=columns)
    return markdown_table(table, {column: None if column in left else str for column in table.columns})


def summary_markdown(summary: pd.DataFrame, labels: dict[str, str] | None = None) -> str:
    """:func:`optbench.statistics.variant_statistics` for humans: errors in percent with one decimal,
    the slope with its CI, the noise floor in percentage points."""
    labels = labels or {}
    rows = []
    for r in summary.itertuples(index=False):
        slope = fmt.estimate(r.slope, r.slope_ci_low, r.slope_ci_high, r.n_seeds)
        if r.slope_reason and slope == fmt.NA:
            slope += f" ({r.slope_reason})"
        noise = f"{100 * r.noise_floor:.1f} pp" if pd.notna(r.noise_floor) else fmt.NA
        rows.append(
            {
                "variant": labels.get(r.variant, r.variant),
                "best test error": fmt.percent(r.best_test_error) + (" (border)" if r.best_on_border else ""),
                "at lr": fmt.power_of_two(r.best_lr),
                "at weight decay": fmt.power_of_two(r.best_weight_decay),
                f"slope of log2 best lambda on log2 lr {CI}": slope,
                "lr rows in fit": f"{r.slope_rows} ({r.slope_rows_at_edge} at edge)"
                if r.slope_rows_at_edge
                else f"{r.slope_rows}",
                "noise floor": noise + (" (1 seed)" if r.n_seeds < 2 else ""),
                "seeds": str(r.n_seeds),
                "runs": str(r.n_runs),
                "diverged": str(r.n_diverged),
            }
        )
    return _markdown(rows, left=("variant",))


def improvements_markdown(improvements: pd.DataFrame, labels: dict[str, str] | None = None) -> str:
    """:func:`optbench.statistics.improvement_table` for humans: each variant's best cell, the relative
    improvement in percent and the difference in percentage points, each with its CI."""
    labels = labels or {}
    rows = [
        {  # in the order of IMPROVEMENT_HEADERS
            "baseline": labels.get(r.baseline, r.baseline),
            "candidate": labels.get(r.candidate, r.candidate),
            "baseline best": _best(r.baseline_error, r.baseline_lr, r.baseline_weight_decay),
            "candidate best": _best(r.candidate_error, r.candidate_lr, r.candidate_weight_decay),
            f"relative improvement {CI}": fmt.estimate(
                r.relative, r.relative_ci_low, r.relative_ci_high, r.n_seeds, fmt.percent
            ),
            f"difference (pp) {CI}": fmt.estimate(
                r.difference_pp, r.difference_pp_ci_low, r.difference_pp_ci_high, r.n_seeds, lambda x: f"{x:+.1f}"
            ),
            "seeds": str(r.n_seeds),
        }
        for r in improvements.itertuples(index=False)
    ]
    return _markdown(rows, left=("baseline", "candidate"), columns=IMPROVEMENT_HEADERS)


def _write_tables(table: pd.DataFrame, markdown: str, csv_path: str | os.PathLike, md_path: str | os.PathLike):
    write_table(table, csv_path)
    atomic_write_text(md_path, markdown)


def write_outputs(runs_csv: str | Path, experiment: Experiment, results: str | Path) -> None:
    """Summary, improvement and memory tables (the preset's model and the papers'), one heatmap figure
    per configured figure, and the learning curves, of the variants ``runs.csv`` holds."""
    runs = read_runs(runs_csv)
    out = experiment.outputs(str(results))
    labels = {name: row["label"] for name, row in experiment.variants.items()}
    ran = set(runs["variant"])
    summary = variant_statistics(runs)
    _write_tables(summary, summary_markdown(summary, labels), *out["summary"])
    pairs = [pair for pair in experiment.comparisons if set(pair) <= ran]
    improvements = improvement_table(runs, pairs)
    _write_tables(improvements, improvements_markdown(improvements, labels), *out["improvements"])
    optimizers = {name: {**row["optimizer"], "label": row["label"]} for name, row in experiment.variants.items()}
    models = memory_models([experiment.settings["model"]])
    write_memory_tables(memory_table(optimizers, runs, models), *out["memory"])
    for name, paths in out["heatmaps"].items():
        spec = experiment.figures[name]
        panels = present_panels(spec["panels"], ran)
        if panels:
            heatmap_figure(runs, panels, paths, title=spec.get("title"), labels=labels)
    present = [v for v in experiment.variants if v in ran]
    learning_curves_figure(runs, present, out["learning_curves"], labels=labels)
