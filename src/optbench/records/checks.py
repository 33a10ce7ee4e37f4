"""Run records checked against themselves and against the run specs they were trained from, before aggregation
writes a table.

The schema (:func:`optbench.records.record.read_record`) checks each record alone: fields, types, ranges and
finite numbers. :func:`contradictions` checks that a record agrees with itself: its history counts its epochs
from 1, is as long as the run (or ends where the run diverged), and its final and best test errors and final
training loss are the history's. :func:`mismatches` checks that each record holds its run spec's id, preset,
variant, grid cell, seed, optimizer, schedule and training settings; an optimizer switch the record lacks
(one added after it was trained) is read as its default. :func:`check_records` names every bad file, one line
each, in one :class:`~optbench.records.record.RecordError`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from optbench.records.record import RecordError
from optbench.spec.run import RunSpec
from optbench.spec.switches import resolve


def expected_fields(spec: RunSpec) -> dict[str, Any]:
    """The fields the record of ``spec`` holds: the spec's, its optimizer and schedule resolved as a record
    writes them, but the device, which a record gives as trained on (``auto`` resolves to ``cpu`` or ``cuda``)."""
    fields = spec.to_dict()
    del fields["device"]
    return fields


def contradictions(record: dict) -> list[str]:
    """Where ``record`` contradicts itself (see the module's docstring); empty for a consistent record."""
    history, epochs, status = record["history"], record["epochs"], record["status"]
    if not history:
        return ["the history is empty"]
    found = []
    numbers = [entry["epoch"] for entry in history]
    if numbers != list(range(1, len(history) + 1)):
        found.append(f"the history's epochs are {numbers}, not 1 to {len(history)}")
    if status == "ok" and len(history) != epochs:
        found.append(f"the history has {len(history)} epochs but the run has {epochs} and did not diverge")
    if status == "diverged" and len(history) > epochs:
        found.append(f"the history has {len(history)} epochs but the run has {epochs}")
    last = history[-1]
    best = last["test_error"] if status == "diverged" else min(entry["test_error"] for entry in history)
    for key, value in [
        ("final_test_error", last["test_error"]),
        ("best_test_error", best),
        ("final_train_loss", last["train_loss"]),
        ("final_val_bits_per_token", last.get("val_bits_per_token")),
    ]:
        if record.get(key) != value:
            found.append(f"{key} is {record.get(key)!r} but its history gives {value!r}")
    return found


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
