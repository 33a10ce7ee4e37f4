"""The workflow's config, checked as the Snakefile loads it: the schema, then what a training job would reject.

:func:`load_checked` validates the config against ``workflow/schemas/config.schema.yaml``, with numbers
that must be finite (YAML's ``.inf`` and ``.nan`` are rejected wherever the schema asks for a number),
then loads and checks the preset's experiment (:func:`optbench.experiment.checks.checked_experiment`).
Every error is a ValueError of one line, the config key first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from optbench.experiment.checks import checked_experiment
from optbench.experiment.preset import Experiment
from optbench.spec.schema import config_schema
from optbench.validators import finite_validator


def load_checked(config: dict[str, Any], schema_path: str | Path) -> Experiment:
    """The experiment of ``config``, after every check that can be made before any job starts."""
    validate_config(config, schema_path)
    return checked_experiment(config)


def validate_config(config: dict[str, Any], schema_path: str | Path) -> None:
    """ValueError ``"<key>: <what is wrong>"`` for the error jsonschema ranks most relevant (``best_match``)."""
    schema = config_schema(
        yaml.load(Path(schema_path).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    )
    error = jsonschema.exceptions.best_match(finite_validator(schema).iter_errors(config))
    if error is not None:
        raise ValueError(f"{_key(error.absolute_path)}: {_message(error)}")


def _key(path: Iterable[str | int]) -> str:
    """``presets.quick.schedules.step.milestones[1]``; ``(top level)`` for the config itself."""
    key = ""
    for part in path:
        key += f"[{part}]" if isinstance(part, int) else f".{part}" if key else part
    return key or "(top level)"


def _message(error: jsonschema.ValidationError) -> str:
    if error.validator == "not" and "description" in error.validator_value:  # a renamed key says its new name
        return error.validator_value["description"]
    if error.validator == "type" and isinstance(error.instance, float) and not math.isfinite(error.instance):
        return f"{error.instance} is not a finite number"
    return error.message.replace("\n", " ")


def check_yaml(path: str | Path) -> None:
    """ValueError ``"<path>, line L, column C: <what is wrong>"`` where ``path`` is not valid YAML (a tab in
    the indentation, an unclosed bracket, ...); Snakemake's own error names neither the line nor the problem."""
    try:
        yaml.safe_load(Path(path).read_text())
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ValueError(f"{path}{where}: not valid YAML: {err.problem or err.context}") from None
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML: {err}") from None


def error_source(message: str, files: Sequence[str | Path], overrides: Mapping[str, Any]) -> str:
    """Where the value that a config error (``"<key>: ..."``) names came from: of ``files``, in the order
    Snakemake merges them (``config.yaml``, then each ``--configfile``), and ``overrides`` (``--config``, merged
    last), the one that holds the most of the key's path (with a key the schema does not allow), the later one on
    a tie; ``files[0]`` where none does."""
    key, _, problem = message.partition(": ")
    path = [] if key == "(top level)" else re.findall(r"[^.\[\]]+", key)
    path += re.findall(r"\('([^']+)' was unexpected\)", problem)  # a key the schema does not allow
    sources = [(str(f), yaml.safe_load(Path(f).read_text()) or {}) for f in files] + [("--config", overrides)]
    depths = [(_depth(data, path), i) for i, (_, data) in enumerate(sources)]
    depth, best = max(depths)
    return sources[best][0] if depth else str(files[0])


def _depth(data: Any, path: Sequence[str]) -> int:
    """How many keys (or list indices) of ``path``, from the first, ``data`` holds."""
    for depth, part in enumerate(path):
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return depth
    return len(path)
