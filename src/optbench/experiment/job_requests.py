"""What a preset's training jobs ask of a cluster, said before any job is submitted.

:func:`gpu_hours` totals the GPU time the jobs request (``resources.gpu`` x ``resources.runtime`` per job), so that
a run of the ``paper`` preset is not started without knowing it asks for thousands of GPU-hours.

:func:`runtime_warning` checks that a job's runs fit in ``resources.runtime``. The time an epoch takes is measured,
per variant, in the ``runs.csv`` of a run of the preset (yours, else the committed reference), as each run's
training and evaluation seconds (its share of a stacked job) per epoch. Setup is left out, so the estimate is a
lower bound: a job beyond the runtime at this pace certainly is. A preset that no table has measured yet (``paper``)
may declare its pace, measured elsewhere, as ``resources.epoch_seconds``; else nothing is estimated.
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


def runtime_warning(exp: Experiment, runs_csv: str | os.PathLike | None) -> str | None:
    """``"presets.<name>.epochs: ..."``, one line, when some job of ``exp`` needs more than ``resources.runtime``
    minutes at the pace measured in ``runs_csv`` (:func:`epoch_seconds`; a variant it lacks takes the median pace of
    those it has), else at the declared ``resources.epoch_seconds``; None when every job fits or neither gives a
    pace."""
    resources = exp.settings["resources"]
    paces = epoch_seconds(runs_csv) if runs_csv else {}
    typical = statistics.median(paces.values()) if paces else resources.get("epoch_seconds")
    if typical is None:
        return None
    minutes, variant = max(
        (sum(run.epochs for run in shard) * paces.get(variant, typical) / 60, variant)
        for variant in exp.variants
        for shard in exp.shards(variant)
    )
    if minutes <= resources["runtime"]:
        return None
    s = exp.settings
    pace = f"the pace measured in {runs_csv}" if paces else "the pace of resources.epoch_seconds"
    return (
        f"presets.{exp.preset}.epochs: {s['epochs']} epochs, with runs_per_job {s['runs_per_job']},"
        f" take at least {minutes:.0f} min per {variant} job at {pace} ({paces.get(variant, typical):.3g} s per run"
        f" and epoch), beyond resources.runtime ({resources['runtime']} min): on SLURM each job would be stopped at"
        " its time limit"
    )
