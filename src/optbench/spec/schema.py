"""The JSON-schema parts that the spec tables define, generated from them.

The config schema (``workflow/schemas/config.schema.yaml``) and the run-record schema
(``optbench/records/schemas/run_record.schema.json``) leave these parts to this module, so each fact
is written once: the optimizer block (:data:`optbench.spec.switches.SWITCHES`, or an external class's,
:mod:`optbench.spec.external`), the schedule block
(:data:`optbench.spec.schedule.FIELDS`), and the models and datasets a preset can name
(:mod:`optbench.spec.models`, :mod:`optbench.spec.datasets`). :func:`config_schema` and
:func:`record_schema` fill them in where the schema files hold a ``$comment`` naming this module.
"""

from __future__ import annotations

import copy
from typing import Any

from optbench.spec.datasets import DATASETS
from optbench.spec.decay_modes import DECAY_MODES
from optbench.spec.external import AXES, KEYS
from optbench.spec.models import TRAINABLE
from optbench.spec.schedule import FIELDS
from optbench.spec.switches import ADDED_SINCE_V2, BASES, RENAMED, SWITCHES, Switch


def switch_schema(switch: Switch) -> dict[str, Any]:
    """The JSON schema a switch's values follow, from its row of the table."""
    if switch.type is str:
        return {"enum": list(switch.choices)}
    if switch.type is bool:
        return {"type": "boolean"}
    schema: dict[str, Any] = {"type": ["number", "null"] if switch.nullable else "number"}
    for key, bound in (
        ("minimum", switch.minimum),
        ("exclusiveMinimum", switch.exclusive_minimum),
        ("exclusiveMaximum", switch.exclusive_maximum),
    ):
        if bound is not None:
            schema[key] = bound
    return schema


def optimizer_schema(required: list[str]) -> dict[str, Any]:
    """An optimizer block: ``base`` and every switch, the keys ``required`` required, no others allowed."""
    return {
        "type": "object",
        "required": required,
        "additionalProperties": False,
        "properties": {"base": {"enum": list(BASES)}, **{n: switch_schema(s) for n, s in SWITCHES.items()}},
    }


def external_schema(required: list[str]) -> dict[str, Any]:
    """An external optimizer's block (:class:`optbench.spec.external.ExternalOptimizerSpec`), the keys
    ``required`` required."""
    keyword = {"type": "string", "pattern": r"^[A-Za-z_]\w*$"}
    return {
        "type": "object",
        "description": "A torch.optim.Optimizer class by import path, what its weight decay means, its fixed keywords",
        "required": required,
        "additionalProperties": False,
        "properties": {
            "class": {"type": "string", "pattern": r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$"},
            "weight_decay_mode": {"enum": list(DECAY_MODES)},
            "kwargs": {"type": "object", "propertyNames": {"pattern": keyword["pattern"]}},
            "axes": {"type": "object", "additionalProperties": False, "properties": dict.fromkeys(AXES, keyword)},
            "stack": {"type": "boolean"},
        },
    }


def _either(external: dict[str, Any], ours: dict[str, Any]) -> dict[str, Any]:
    """A block that is ``external`` where it names a ``class``, else ``ours``: each checked alone, so that an
    error names the key of the form it is in."""
    return {"if": {"type": "object", "required": ["class"]}, "then": external, "else": ours}


def config_optimizer() -> dict[str, Any]:
    """A variant's optimizer: a base and the switches that differ from its defaults (a renamed key fails,
    naming its new key), or an external class."""
    schema = optimizer_schema(["base"])
    schema["description"] = "A base optimizer and the switches that differ from its defaults"
    for old, new in RENAMED.items():
        schema["properties"][old] = {"not": {"description": f"renamed to {new.split(' (')[0]}"}}
    return _either(external_schema(["class", "weight_decay_mode"]), schema)


def record_optimizer() -> dict[str, Any]:
    """A record's optimizer: every switch resolved, but those added since schema version 2; or an external
    class's block, every key given."""
    ours = optimizer_schema(["base", *(name for name in SWITCHES if name not in ADDED_SINCE_V2)])
    return _either(external_schema(list(KEYS)), ours)


def config_schedule() -> dict[str, Any]:
    """A preset's schedule: ``kind`` and the times and factors of :class:`optbench.spec.schedule.ScheduleSpec`."""
    return {"type": "object", "required": ["kind"], "additionalProperties": False, "properties": dict(FIELDS)}


def config_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The config schema with its generated parts filled in: ``$defs.optimizer``, ``$defs.schedule`` and the
    model and dataset of ``$defs.preset``."""
    schema = copy.deepcopy(schema)
    schema["$defs"]["optimizer"] = config_optimizer()
    schema["$defs"]["schedule"] = config_schedule()
    preset = schema["$defs"]["preset"]["properties"]
    preset["model"] = {"enum": list(TRAINABLE)}
    preset["dataset"] = {"enum": list(DATASETS)}
    return schema


def record_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The run-record schema with its optimizer block filled in."""
    schema = copy.deepcopy(schema)
    schema["properties"]["optimizer"] = record_optimizer()
    return schema
