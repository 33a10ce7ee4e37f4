"""Every table and figure of a preset, from ``runs.csv`` alone."""

from __future__ import annotations

from pathlib import Path

from .aggregate import read_runs, summary_table, write_table
from .experiment import Experiment
from .memory_tables import memory_models, memory_table, write_memory_tables
from .plots import heatmap_figure, learning_curves_figure


def write_outputs(runs_csv: str | Path, experiment: Experiment, results: str | Path) -> None:
    """Summary and memory tables (the preset's model and the papers'), one heatmap figure per configured
    figure, and the learning curves."""
    runs = read_runs(runs_csv)
    out = experiment.outputs(str(results))
    labels = {name: row["label"] for name, row in experiment.variants.items()}
    write_table(summary_table(runs), out["summary"])
    optimizers = {name: {**row["optimizer"], "label": row["label"]} for name, row in experiment.variants.items()}
    models = memory_models([experiment.settings["model"]])
    write_memory_tables(memory_table(optimizers, runs, models), *out["memory"])
    for name, paths in out["heatmaps"].items():
        spec = experiment.figures[name]
        heatmap_figure(runs, spec["panels"], paths, title=spec.get("title"), labels=labels)
    present = [v for v in experiment.variants if v in set(runs["variant"])]
    learning_curves_figure(runs, present, out["learning_curves"], labels=labels)
