"""Run records checked against themselves and against the run specs they were trained from, before aggregation
writes a table.

The schema (:func:`optbench.records.record.read_record`) checks each record alone: fields, types, ranges and
finite numbers. :func:`~optbench.records.consistency.contradictions` checks that a record agrees with itself.
:func:`mismatches` checks that each record holds its run spec's id, preset,
variant, grid cell, seed, optimizer, schedule and training settings; an optimizer switch the record lacks
(one added after it was trained) is read as its default. :func:`check_records` names every bad file, one line
each, in one :class:`~optbench.records.record.RecordError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from optbench.records.consistency import contradictions
from optbench.records.record import RecordError
from optbench.spec.run import RunSpec
from optbench.spec.switches import resolve


def expected_fields(spec: RunSpec) -> dict[str, Any]:
    """The fields the record of ``spec`` holds: the spec's, its optimizer and schedule resolved as a record
    writes them, but the device, which a record gives as trained on (``auto`` resolves to ``cpu`` or ``cuda``)."""
    fields = spec.to_dict()
    del fields["device"]
    return fields


def with_default_switches(block: dict) -> dict:
    """A record's optimizer block with every switch it lacks at its base's default (external classes as they
    are): how a record trained before a switch existed reads today."""
    if "base" not in block:
        return block
    try:
        return {"base": block["base"], **resolve(block["base"], {k: v for k, v in block.items() if k != "base"})}
    except ValueError:  # a switch this code no longer has: it cannot match any spec
        return block


def mismatches(record: dict, spec: RunSpec, preset: str) -> list[str]:
    """Where ``record`` is not the run of ``spec`` that ``preset``'s config plans, in the fields it records (not
    the spec's ``data_dir``, ``bf16`` or ``trace_every``, which a record does not hold)."""
    found = []
    for key, value in expected_fields(spec).items():
        if key in record and (with_default_switches(record[key]) if key == "optimizer" else record[key]) != value:
            found.append(f"{key} is {record[key]!r} in the record but {value!r} in config.yaml (preset {preset})")
    return found


def check_records(
    paths: Sequence[str | os.PathLike], records: Sequence[dict], specs: Sequence[RunSpec] | None, preset: str = ""
) -> None:
    """RecordError naming every file whose record contradicts itself or, with ``specs`` (one per record, in
    order), is not its run spec of ``preset``: one line per file."""
    lines = []
    for i, (path, record) in enumerate(zip(paths, records, strict=True)):
        found = contradictions(record) + (mismatches(record, specs[i], preset) if specs is not None else [])
        if found:
            lines.append(f"{path}: {'; '.join(found)}")
    if lines:
        raise RecordError("\n".join(lines))
