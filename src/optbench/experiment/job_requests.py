"""What a preset's training jobs ask of a cluster, said before any job is submitted.

:func:`gpu_hours` totals the GPU time the jobs request (``resources.gpu`` x ``resources.runtime`` per job), so that
a run of the ``paper`` preset is not started without knowing it asks for thousands of GPU-hours.

:func:`runtime_warning` checks that a job's runs fit in ``resources.runtime``. The time an epoch takes is not
declared anywhere: it is measured, per variant, in the ``runs.csv`` of a run of the preset (yours, else the
committed reference), as each run's training and evaluation seconds (its share of a stacked job) per epoch.
Setup is left out, so the estimate is a lower bound: a job beyond the runtime at this pace certainly is.
Without such a table (the ``paper`` preset has no reference) nothing is estimated.
"""

from __future__ import annotations

import csv
import os
import statistics
import sys
from collections import defaultdict

from optbench.experiment.preset import Experiment


def gpu_hours(exp: Experiment) -> str | None:
    """``"paper: 2508 training jobs x 1 GPU x 120 min = 5016 GPU-hours requested"``; None when the preset asks
    for no GPU."""
    resources = exp.settings["resources"]
    gpus, minutes = resources["gpu"], resources["runtime"]
    if not gpus:
        return None
    jobs = sum(len(exp.shards(variant)) for variant in exp.variants)
    hours = jobs * gpus * minutes / 60
    return f"{exp.preset}: {jobs} training jobs x {gpus} GPU x {minutes} min = {hours:.10g} GPU-hours requested"


def epoch_seconds(runs_csv: str | os.PathLike) -> dict[str, float]:
    """Per variant of a ``runs.csv``, the median over its finished runs of (training + evaluation seconds) / epochs."""
    csv.field_size_limit(sys.maxsize)  # a row's history is one long field
    paces = defaultdict(list)
    with open(runs_csv, newline="") as f:
        for row in csv.DictReader(f):
            if row["status"] == "ok":
                seconds = float(row["timing.train_seconds"]) + float(row["timing.eval_seconds"])
                paces[row["variant"]].append(seconds / int(row["epochs"]))
    return {variant: statistics.median(p) for variant, p in paces.items()}


def runtime_warning(exp: Experiment, runs_csv: str | os.PathLike) -> str | None:
    """``"presets.<name>.epochs: ..."``, one line, when at the pace measured in ``runs_csv`` (:func:`epoch_seconds`;
    a variant it lacks takes the median pace of those it has) some job of ``exp`` needs more than
    ``resources.runtime`` minutes; None when every job fits, or ``runs_csv`` holds no finished run."""
    paces = epoch_seconds(runs_csv)
    if not paces:
        return None
    typical = statistics.median(paces.values())
    runtime = exp.settings["resources"]["runtime"]
    minutes, variant = max(
        (sum(run.epochs for run in shard) * paces.get(variant, typical) / 60, variant)
        for variant in exp.variants
        for shard in exp.shards(variant)
    )
    if minutes <= runtime:
        return None
    s = exp.settings
    return (
        f"presets.{exp.preset}.epochs: {s['epochs']} epochs of up to {s['runs_per_job']} runs per job (runs_per_job)"
        f" take at least {minutes:.0f} min per {variant} job at the pace measured in {runs_csv}"
        f" ({paces.get(variant, typical):.3g} s per run and epoch), beyond resources.runtime ({runtime} min):"
        " on SLURM each job would be stopped at its time limit"
    )
