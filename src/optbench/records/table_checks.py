"""A runs table checked row by row as aggregation checks the records it was made from, for a table read back
from disk (a committed reference, a table someone edited) rather than written here from checked records.

Each row is read back into the record's top-level fields: the schema (:func:`optbench.records.record.record_schema`)
checks their types and ranges (an error of 1.7 or -0.1), an empty cell of a field every record holds is named
as empty, and :func:`optbench.records.consistency.contradictions` checks the row against its own history (a final
error that is not the history's last). The nested blocks (optimizer, schedule, memory, timing, environment)
are flattened into dotted columns in which an empty cell may be a null the record held, so they are not
read back; no table reader uses them to judge a result.

:func:`check_planned` checks that a table holds every run a preset plans and no other: a table to be drawn
(``snakemake figures --config results=DIR``) may be cut short or of another preset.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable

import jsonschema
import pandas as pd

from optbench.records.consistency import contradictions
from optbench.records.record import record_schema
from optbench.spec.run import RunSpec
from optbench.validators import finite_validator


@functools.cache
def _fields_validator(nested: frozenset[str]) -> jsonschema.protocols.Validator:
    """The record schema without the ``nested`` blocks, which the table holds flattened."""
    schema = record_schema()
    return finite_validator(
        {
            **{k: v for k, v in schema.items() if k != "additionalProperties"},
            "required": [k for k in schema["required"] if k not in nested],
            "properties": {k: v for k, v in schema["properties"].items() if k not in nested},
        }
    )


def _nullable(field: str) -> bool:
    kind = record_schema()["properties"].get(field, {}).get("type", [])
    return "null" in kind


def _row_problems(row: dict, validator: jsonschema.protocols.Validator) -> list[str]:
    """What is wrong with one row's top-level fields: empty cells, schema errors, contradictions."""
    required = set(validator.schema["required"])
    empty = [k for k, v in row.items() if isinstance(v, float) and math.isnan(v) and not _nullable(k)]
    if found := [f"{k} is empty" for k in empty if k in required]:
        return found
    fields = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items() if k not in empty}
    try:
        fields["history"] = json.loads(fields["history"])
    except (json.JSONDecodeError, TypeError):
        return [f"history is not a JSON list: {str(fields['history'])[:40]!r}"]
    error = jsonschema.exceptions.best_match(validator.iter_errors(fields))
    if error is not None:
        return [f"{error.json_path.removeprefix('$.')}: {error.message}"]
    return contradictions(fields)


def check_table(runs: pd.DataFrame, name: str) -> None:
    """ValueError, one line, naming ``name`` (which table, and its path), the first bad row by its line in the
    CSV file and its run id, and what is wrong with it (the module's docstring), with the count of bad rows."""
    nested = frozenset(c.split(".", 1)[0] for c in runs.columns if "." in c)
    validator = _fields_validator(nested)
    top = [c for c in runs.columns if "." not in c]
    bad = []
    for index, row in enumerate(runs[top].to_dict("records")):
        if problems := _row_problems(row, validator):
            bad.append(f"line {index + 2} (run {row.get('run_id')}): {'; '.join(problems)}")
    if bad:
        more = f" (and {len(bad) - 1} more bad rows)" if len(bad) > 1 else ""
        raise ValueError(f"{name}: {bad[0]}{more}")


def check_planned(runs: pd.DataFrame, specs: Iterable[RunSpec], preset: str, name: str) -> None:
    """ValueError, one line naming ``name``, unless ``runs`` is the table of ``preset``, with a row for each of
    ``specs`` (every run the preset plans) and no other."""
    presets = sorted(set(runs["preset"].dropna().astype(str)))
    if presets != [preset]:
        raise ValueError(
            f"{name}: holds the runs of preset {', '.join(presets)}, not of {preset} (the config's preset)"
        )
    planned = [spec.run_id for spec in specs]
    present, expected = set(runs["run_id"]), set(planned)
    missing = [run_id for run_id in planned if run_id not in present]
    unplanned = [run_id for run_id in runs["run_id"] if run_id not in expected]
    faults = []
    if missing:
        faults.append(f"{len(missing)} of the {len(planned)} runs of preset {preset} are missing, {missing[0]} first")
    if unplanned:
        faults.append(f"{len(unplanned)} runs that preset {preset} does not plan, {unplanned[0]} first")
    if faults:
        raise ValueError(f"{name}: {'; '.join(faults)}")
