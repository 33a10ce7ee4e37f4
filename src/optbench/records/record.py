"""Run records: the JSON document one training run writes, and the contract it follows.

The contract is ``schemas/run_record.schema.json``; its ``schema_version`` constant is
:data:`SCHEMA_VERSION`. A record is assembled by :func:`make_record`, checked by
:func:`validate_record` on writing and :func:`read_record` on reading. Numbers must be
finite: JSON cannot hold NaN or infinities, so validation rejects them wherever the schema
asks for a number.

Importing this module does not import torch, so aggregation stays light.
"""

from __future__ import annotations

import functools
import json
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import jsonschema

from optbench.atomic import atomic_write_text
from optbench.spec import schema
from optbench.validators import finite_validator

if TYPE_CHECKING:
    from optbench.spec.run import RunSpec


class RecordError(ValueError):
    """A run record that is not valid JSON or does not follow the schema."""


@functools.cache
def record_schema() -> dict:
    """The run-record schema, its optimizer block generated from the switch table (:mod:`optbench.spec.schema`)."""
    text = resources.files("optbench.records").joinpath("schemas/run_record.schema.json").read_text()
    return schema.record_schema(json.loads(text))


#: The record format's version, the schema's ``schema_version`` constant.
SCHEMA_VERSION: int = record_schema()["properties"]["schema_version"]["const"]


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    """Built once: ``jsonschema.validate`` builds one, and checks the schema, on every call."""
    return finite_validator(record_schema())


def validate_record(record: dict) -> None:
    """Raises :class:`RecordError` naming where the record breaks the schema and how.

    Of several errors, the one jsonschema ranks most relevant (``best_match``) is named.
    """
    error = jsonschema.exceptions.best_match(_validator().iter_errors(record))
    if error is not None:
        raise RecordError(f"{error.json_path}: {error.message}")


def write_record(record: dict, path: str | Path) -> None:
    validate_record(record)
    atomic_write_text(path, json.dumps(record, indent=1, allow_nan=False) + "\n")


def read_record(path: str | Path) -> dict:
    """The record in ``path``; :class:`RecordError` naming the file when it is not valid JSON or not a valid record."""
    try:
        record = json.loads(Path(path).read_text())
        validate_record(record)
    except (json.JSONDecodeError, RecordError) as error:
        raise RecordError(f"{path}: not a valid run record: {error}") from None
    return record


def make_record(
    spec: RunSpec,
    status: str,
    history: list[dict],
    chance: float,
    *,
    weight_decay_applied: float,
    steps_per_epoch: int,
    shared: dict,
    trace: dict | None = None,
) -> dict:
    """One run's record, from its spec, status (``"ok"`` or ``"diverged"``) and history (one entry per epoch).

    ``chance``: the final and best test error of a diverged run. ``shared``: the ``memory``,
    ``timing`` (this run's share, without ``steps_per_second``), ``device`` and
    ``environment`` fields, common to the runs trained together. A language model's history carries
    ``val_bits_per_token``, and its last value becomes ``final_val_bits_per_token``; ``trace``: the run's
    :class:`optbench.train.state.Trace` record, if one was kept.
    """
    final = history[-1]
    train_seconds = shared["timing"]["train_seconds"]
    steps = len(history) * steps_per_epoch
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "preset": spec.preset,
        "variant": spec.variant,
        "optimizer": spec.optimizer.to_dict(),
        "normalized_weight_decay": spec.normalized_weight_decay,
        "lr": spec.lr,
        "weight_decay": spec.weight_decay,
        "schedule": spec.schedule.to_dict(),
        "seed": spec.seed,
        "dataset": spec.dataset,
        "dataset_options": spec.dataset_options,
        "model": spec.model,
        "epochs": spec.epochs,
        "batch_size": spec.batch_size,
        "dtype": spec.dtype,
        "status": status,
        "history": history,
        "final_test_error": chance if status == "diverged" else final["test_error"],
        "best_test_error": chance if status == "diverged" else min(h["test_error"] for h in history),
        "final_train_loss": final["train_loss"],
        "weight_decay_applied": weight_decay_applied,
        **({"final_val_bits_per_token": final["val_bits_per_token"]} if "val_bits_per_token" in final else {}),
        **({"trace": trace} if trace is not None else {}),
        **shared,
        "timing": {**shared["timing"], "steps_per_second": steps / train_seconds if train_seconds else 0.0},
    }
