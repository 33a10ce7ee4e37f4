"""Run records checked against the config they were trained from, before aggregation writes a table.

The schema (:func:`optbench.records.record.read_record`) checks each record alone: fields, types, ranges and
finite numbers. :func:`preset_runs` lists every run of a preset with the file its training job writes
its record to, and :func:`check_against` checks that each record holds its run's id, preset, variant,
grid cell, seed, optimizer, schedule and training settings as the config gives them. A
:class:`~optbench.records.record.RecordError` names the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optbench.records.record import RecordError
from optbench.spec.run_ids import default_run_id
from optbench.spec.schedule import ScheduleSpec
from optbench.spec.switches import resolve

if TYPE_CHECKING:
    from optbench.experiment.preset import Experiment


def expected_fields(run: dict[str, Any]) -> dict[str, Any]:
    """The fields the record of run spec dict ``run`` (:meth:`optbench.experiment.preset.Experiment.run`) holds:
    the spec's, with its run id and its optimizer and schedule resolved as a record writes them, but the
    device, which a record gives as trained on (``auto`` resolves to ``cpu`` or ``cuda``)."""
    switches = dict(run["optimizer"])
    base = switches.pop("base")
    fields = {
        **run,
        "run_id": default_run_id(run["variant"], run["lr"], run["weight_decay"], run["seed"]),
        "optimizer": {"base": base, **resolve(base, switches)},
        "schedule": ScheduleSpec.from_dict(run["schedule"]).to_dict(),
    }
    del fields["device"]
    return fields


def shard_dir(runs_dir: str | os.PathLike, variant: str, index: int) -> Path:
    """Where the training job of a variant's ``index``-th shard writes its records, one ``<run_id>.json`` each."""
    return Path(runs_dir) / variant / f"shard{index:03d}"


def preset_runs(experiment: Experiment, runs_dir: str | os.PathLike) -> tuple[list[Path], list[dict[str, Any]]]:
    """Every run spec dict of ``experiment``'s preset, and the path of its record under ``runs_dir``."""
    paths, runs = [], []
    for variant in experiment.variants:
        for index, shard in enumerate(experiment.shards(variant)):
            for run in shard:
                run_id = default_run_id(run["variant"], run["lr"], run["weight_decay"], run["seed"])
                paths.append(shard_dir(runs_dir, variant, index) / f"{run_id}.json")
                runs.append(run)
    return paths, runs


def check_against(
    paths: Sequence[str | os.PathLike], records: Sequence[dict], runs: Sequence[dict[str, Any]], preset: str
) -> None:
    """RecordError naming the first file whose record is not its run (the same place in ``runs``) of
    ``preset`` as the config gives it."""
    for path, record, run in zip(paths, records, runs, strict=True):
        for key, value in expected_fields(run).items():
            if key in record and record[key] != value:
                raise RecordError(
                    f"{path}: {key} is {record[key]!r} in the record but {value!r} in config.yaml (preset {preset})"
                )
