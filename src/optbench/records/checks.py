"""Run records checked against the run specs they were trained from, before aggregation writes a table.

The schema (:func:`optbench.records.record.read_record`) checks each record alone: fields, types, ranges and
finite numbers. :func:`check_against` checks that each record holds its run spec's id, preset, variant,
grid cell, seed, optimizer, schedule and training settings. A :class:`~optbench.records.record.RecordError`
names the file.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from optbench.records.record import RecordError
from optbench.spec.run import RunSpec


def expected_fields(spec: RunSpec) -> dict[str, Any]:
    """The fields the record of ``spec`` holds: the spec's, its optimizer and schedule resolved as a record
    writes them, but the device, which a record gives as trained on (``auto`` resolves to ``cpu`` or ``cuda``)."""
    fields = spec.to_dict()
    del fields["device"]
    return fields


def check_against(
    paths: Sequence[str | os.PathLike], records: Sequence[dict], specs: Sequence[RunSpec], preset: str
) -> None:
    """RecordError naming the first file whose record is not its run spec (the same place in ``specs``) of
    ``preset`` as the config gives it."""
    for path, record, spec in zip(paths, records, specs, strict=True):
        for key, value in expected_fields(spec).items():
            if key in record and record[key] != value:
                raise RecordError(
                    f"{path}: {key} is {record[key]!r} in the record but {value!r} in config.yaml (preset {preset})"
                )
