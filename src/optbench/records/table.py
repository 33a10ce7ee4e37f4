"""Collect run records into tables: one row per run, per grid cell, per variant.

A *run record* is the JSON document one training run writes (see :mod:`optbench.records.record`).
``runs_table`` flattens records into ``runs.csv`` (dotted column names such as
``optimizer.weight_decay_mode``; list values such as ``history`` stored as compact JSON);
:func:`optbench.analysis.cells.cell_statistics` averages seeds per (variant, lr, weight_decay) cell, the
value drawn in the heatmaps. Each variant's grid is condensed by :mod:`optbench.analysis.heatmap`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import pandas as pd

from optbench.records.record import SCHEMA_VERSION

STATUSES = ("ok", "diverged")
REQUIRED_COLUMNS = (
    "schema_version",
    "run_id",
    "variant",
    "lr",
    "weight_decay",
    "seed",
    "status",
    "final_test_error",
    "history",
)
SORT_COLUMNS = ["variant", "lr", "weight_decay", "seed"]
# Text columns whose values may look like numbers (a git commit of digits only, a
# torch version such as "2.5"): read back as text. Absent columns are ignored.
TEXT_COLUMNS = {
    column: "str"
    for column in (
        "run_id",
        "preset",
        "variant",
        "environment.python",
        "environment.torch",
        "environment.optbench",
        "environment.device_name",
        "environment.git_commit",
        "environment.hostname",
    )
}


def _compact_json(value) -> str:
    return json.dumps(value, separators=(",", ":"))


def _encode_lists(df: pd.DataFrame) -> pd.DataFrame:
    """Store list values (``history``, ``schedule.milestones``) as compact JSON strings."""
    list_columns = [c for c in df.columns if df[c].map(lambda v: isinstance(v, list)).any()]
    return df.assign(**{c: df[c].map(_compact_json, na_action="ignore") for c in list_columns})


def _nulls_as_nan(df: pd.DataFrame) -> pd.DataFrame:
    """Give all-null columns a float dtype, as reading them back from CSV does."""
    return df.astype({c: float for c in df.columns[df.isna().all()]})


def _check_runs(df: pd.DataFrame) -> None:
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"run records lack required fields: {missing}")
    versions = set(df["schema_version"]) - {SCHEMA_VERSION}
    if versions:
        raise ValueError(f"unsupported record schema_version {sorted(versions)}, expected {SCHEMA_VERSION}")
    statuses = set(df["status"]) - set(STATUSES)
    if statuses:
        raise ValueError(f"unknown run status {sorted(statuses)}, expected one of {STATUSES}")
    duplicates = df.loc[df["run_id"].duplicated(), "run_id"].unique()
    if len(duplicates):
        raise ValueError(f"duplicate run_id: {list(duplicates)}")


def runs_table(records: Iterable[dict]) -> pd.DataFrame:
    """One row per run, sorted by variant, lr, weight_decay, seed."""
    records = list(records)
    if not records:
        raise ValueError("no run records to aggregate")
    df = _nulls_as_nan(_encode_lists(pd.json_normalize(records)))
    _check_runs(df)
    return df.sort_values(SORT_COLUMNS, kind="stable", ignore_index=True)


def read_runs(path: str | os.PathLike) -> pd.DataFrame:
    """Read ``runs.csv`` back with the dtypes ``runs_table`` produces."""
    df = pd.read_csv(path, dtype=TEXT_COLUMNS)
    _check_runs(df)
    return df
