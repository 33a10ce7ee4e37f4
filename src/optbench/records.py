"""Run records: the JSON schema they follow, atomic writing, and the environment they were made in."""

from __future__ import annotations

import functools
import json
import platform
import socket
import subprocess
from importlib import metadata, resources
from pathlib import Path
from typing import Any

import jsonschema
import torch

from .atomic import atomic_write_text


@functools.cache
def record_schema() -> dict:
    return json.loads(resources.files("optbench").joinpath("schemas/run_record.schema.json").read_text())


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    """Built (and the schema checked) once: ``jsonschema.validate`` does both on every call."""
    schema = record_schema()
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    return validator(schema)


def validate_record(record: dict) -> None:
    """jsonschema.ValidationError when the record does not follow the schema."""
    _validator().validate(record)


def write_record(record: dict, path: str | Path) -> None:
    validate_record(record)
    atomic_write_text(path, json.dumps(record, indent=1, allow_nan=False) + "\n")


def read_record(path: str | Path) -> dict:
    record = json.loads(Path(path).read_text())
    validate_record(record)
    return record


@functools.cache
def git_commit() -> str | None:
    """The commit of the checkout the package runs from, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment(device: torch.device) -> dict[str, Any]:
    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": version("torchvision"),
        "numpy": version("numpy"),
        "optbench": version("optbench"),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "threads": torch.get_num_threads(),
    }
