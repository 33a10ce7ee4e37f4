"""The aggregation step: run records -> ``runs.csv``, each record read, validated, checked against itself and,
for a preset, against its run spec first (:mod:`optbench.records.checks`); a missing or bad record stops it,
naming the file (every bad one, a line each), and leaves ``runs.csv`` as it was."""

from __future__ import annotations

import os
from collections.abc import Iterable

from optbench.atomic import atomic_write_csv
from optbench.experiment.layout import record_paths
from optbench.experiment.preset import Experiment
from optbench.records.checks import check_records, with_default_switches
from optbench.records.record import read_record
from optbench.records.table import runs_table


def load_records(paths: Iterable[str | os.PathLike]) -> list[dict]:
    """Read and validate run-record files, each optimizer switch a record lacks at its default; the first bad
    file stops it, naming the file and its first error."""
    records = [read_record(path) for path in paths]
    return [{**record, "optimizer": with_default_switches(record["optimizer"])} for record in records]


def aggregate(paths: Iterable[str | os.PathLike], runs_csv: str | os.PathLike) -> None:
    """Run-record JSON files, each consistent with itself -> ``runs.csv``."""
    paths = list(paths)
    records = load_records(paths)
    check_records(paths, records, None)
    atomic_write_csv(runs_csv, runs_table(records))


def aggregate_preset(experiment: Experiment, runs_dir: str | os.PathLike, runs_csv: str | os.PathLike) -> None:
    """The record of every run of ``experiment``'s preset, where its training job wrote it under ``runs_dir``
    (:func:`optbench.experiment.layout.record_paths`), each checked against its run spec
    (:mod:`optbench.records.checks`) -> ``runs.csv``."""
    paths, specs = record_paths(experiment, runs_dir)
    records = load_records(paths)
    check_records(paths, records, specs, experiment.preset)
    atomic_write_csv(runs_csv, runs_table(records))
