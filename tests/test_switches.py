"""The table of optimizer switches: what reads it agrees with it, and so do both JSON schemas."""

import inspect
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from optbench.experiment import load_experiment
from optbench.optim import Adafactor, AdamW, AdaptiveOptimizer, make_optimizer
from optbench.spec import OptimizerSpec, RunSpec
from optbench.switches import BASES, RENAMED, SWITCHES, defaults, resolve

ROOT = Path(__file__).resolve().parents[1]


def schema_of(switch):
    """The JSON Schema a switch's values follow, from its row of the table."""
    if switch.type is str:
        return {"enum": list(switch.choices)}
    if switch.type is bool:
        return {"type": "boolean"}
    schema = {"type": ["number", "null"] if switch.nullable else "number"}
    for key, bound in (
        ("minimum", switch.minimum),
        ("exclusiveMinimum", switch.exclusive_minimum),
        ("exclusiveMaximum", switch.exclusive_maximum),
    ):
        if bound is not None:
            schema[key] = bound
    return schema


def optimizer_blocks():
    config = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())["$defs"]["optimizer"]
    record = json.loads((ROOT / "src/optbench/schemas/run_record.schema.json").read_text())
    return {"config": config, "record": record["properties"]["optimizer"]}


@pytest.mark.parametrize("name", ["config", "record"])
def test_schema_optimizer_blocks_follow_the_table(name):
    block = optimizer_blocks()[name]
    properties = {k: v for k, v in block["properties"].items() if k not in RENAMED}
    assert properties == {"base": {"enum": list(BASES)}, **{n: schema_of(s) for n, s in SWITCHES.items()}}
    if name == "record":
        assert block["required"] == ["base", *SWITCHES]


def test_config_schema_names_the_new_key_of_each_renamed_one():
    properties = optimizer_blocks()["config"]["properties"]
    for old, new in RENAMED.items():
        assert properties[old]["not"]["description"] == f"renamed to {new.split(' (')[0]}"


@pytest.mark.parametrize("base", BASES)
def test_every_default_is_allowed(base):
    assert resolve(base, {}) == defaults(base)


def test_signature_defaults_come_from_the_table():
    adamw, adafactor = defaults("AdamW"), defaults("Adafactor")
    sig = inspect.signature(AdamW).parameters
    assert sig["betas"].default == (adamw["beta1"], adamw["beta2"]) and sig["eps"].default == adamw["eps"]
    assert inspect.signature(Adafactor).parameters["beta1"].default == adafactor["beta1"]
    for cls, base in ((AdaptiveOptimizer, "AdamW"), (AdamW, "AdamW"), (Adafactor, "Adafactor")):
        group = cls([torch.zeros(2)]).param_groups[0]
        assert {k: group[k] for k in SWITCHES} == defaults(base)


@pytest.mark.parametrize("base", BASES)
def test_make_optimizer_fills_the_base_defaults(base):
    group = make_optimizer(base, [torch.zeros(2)], lr=0.1, weight_decay=0.0, switches={"beta1": 0.5}).param_groups[0]
    assert {k: group[k] for k in SWITCHES} == {**defaults(base), "beta1": 0.5}


@pytest.mark.parametrize(
    "name,value",
    [
        ("beta1", 1.0),
        ("beta2", -0.1),
        ("beta2_decay", 0.0),
        ("eps", -1.0),
        ("eps", math.inf),
        ("eps1", math.nan),
        ("eps2", "small"),
        ("clip_threshold", math.inf),
        ("clip_threshold", 0),
        ("weight_decay_mode", "l1"),
        ("momentum", "nesterov"),
        ("factored", 1),
        ("relative_step", None),
        ("beta1", True),
    ],
)
def test_bad_values_name_the_switch_everywhere(name, value):
    with pytest.raises(ValueError, match=rf"^{name}: must be "):
        SWITCHES[name].check(value)
    with pytest.raises(ValueError, match=rf"^{name}: must be "):
        AdaptiveOptimizer([torch.zeros(2)], **{name: value})
    with pytest.raises(ValueError, match=rf"^optimizer\.{name}: must be "):
        OptimizerSpec.from_dict({"base": "AdamW", name: value})


def test_unknown_base_or_switch():
    with pytest.raises(ValueError, match=r"^optimizer\.base: unknown base optimizer 'SGD'"):
        OptimizerSpec.from_dict({"base": "SGD"})
    with pytest.raises(ValueError, match=r"^nesterov: unknown optimizer switch"):
        AdaptiveOptimizer([torch.zeros(2)], nesterov=True)


def test_spec_resolves_switches_from_the_table():
    spec = OptimizerSpec.from_dict({"base": "Adafactor", "beta1": 0.9})
    assert spec.to_dict() == {"base": "Adafactor", **defaults("Adafactor"), "beta1": 0.9}


@pytest.mark.parametrize("old", RENAMED)
def test_renamed_keys_name_the_new_one(old):
    with pytest.raises(ValueError, match=rf"^optimizer\.{old}: renamed to {RENAMED[old].split(',')[0]}"):
        RunSpec.from_dict({"variant": "v", "optimizer": {old: True}, "lr": 0.1, "weight_decay": 0.0})
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["variants"]["adam_l2_fixed"]["optimizer"][old] = True
    with pytest.raises(ValueError, match=rf"^variants\.adam_l2_fixed\.optimizer\.{old}: renamed to "):
        load_experiment(config)


def test_the_config_check_imports_no_torch():
    code = "import sys, optbench.experiment, optbench.switches; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT / "src")


def test_docs_list_every_switch_in_table_order():
    lines = (ROOT / "docs/optimizer.md").read_text().split("| switch | values |", 1)[1].splitlines()[2:]
    rows = [line.split("|")[1].strip().strip("`") for line in lines[: lines.index("")]]
    assert rows == list(SWITCHES)
