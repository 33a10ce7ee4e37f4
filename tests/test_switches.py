"""The table of optimizer switches: what reads it agrees with it, and so do both JSON schemas."""

import inspect
import math
from pathlib import Path

import pytest
import torch
import yaml
from fake_records import make_record

from optbench.experiment.preset import load_experiment
from optbench.optim import SGD, Adafactor, AdamW, AdaptiveOptimizer, make_optimizer
from optbench.records.record import record_schema, validate_record
from optbench.spec.run import OptimizerSpec, RunSpec
from optbench.spec.schema import config_schema
from optbench.spec.switches import ADDED_SINCE_V2, BASES, RENAMED, SWITCHES, defaults, resolve
from optbench.validators import finite_validator

ROOT = Path(__file__).resolve().parents[1]


def optimizer_blocks():
    config = config_schema(yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text()))
    blocks = {"config": config["$defs"]["optimizer"], "record": record_schema()["properties"]["optimizer"]}
    return {form: block["else"] for form, block in blocks.items()}  # "then": an external class's block


def probes(switch):
    """Values at and around a switch's bounds and choices, and values of the wrong type."""
    numbers = [
        b + d
        for b in (switch.minimum, switch.exclusive_minimum, switch.exclusive_maximum)
        if b is not None
        for d in (-0.5, 0.0, 0.5)
    ]
    return [*numbers, *switch.defaults, *switch.choices, "other", None, True, 0, 1.5, [], float("nan")]


@pytest.mark.parametrize("name", ["config", "record"])
@pytest.mark.parametrize("switch", SWITCHES.values(), ids=list(SWITCHES))
def test_generated_schemas_accept_what_the_switch_accepts(name, switch):
    block = optimizer_blocks()[name]
    validator = finite_validator(block["properties"][switch.name])
    for value in probes(switch):
        assert validator.is_valid(value) == switch.accepts(value), value


def test_the_record_schema_requires_every_switch_but_the_new_ones():
    block = optimizer_blocks()["record"]
    assert block["required"] == ["base", *(n for n in SWITCHES if n not in ADDED_SINCE_V2)]
    assert set(block["properties"]) == {"base", *SWITCHES} and block["additionalProperties"] is False


def test_switches_added_since_v2_are_optional_in_records_and_default_alike_in_every_base():
    record = make_record("adamw_cosine", 0.01, 0.001, 0, 0.1)
    assert not set(ADDED_SINCE_V2) & set(record["optimizer"])
    validate_record(record)  # a record written before them stays valid
    for name in ADDED_SINCE_V2:
        assert len(set(SWITCHES[name].defaults)) == 1


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
    assert inspect.signature(SGD).parameters["momentum"].default == defaults("SGD")["beta1"]
    for cls, base in ((AdaptiveOptimizer, "AdamW"), (AdamW, "AdamW"), (Adafactor, "Adafactor"), (SGD, "SGD")):
        group = cls([torch.zeros(2)]).param_groups[0]
        assert {k: group[k] for k in SWITCHES} == defaults(base)


@pytest.mark.parametrize("base", BASES)
def test_make_optimizer_fills_the_base_defaults(base):
    group = make_optimizer(base, [torch.zeros(2)], lr=0.1, weight_decay=0.0, switches={"beta1": 0.5}).param_groups[0]
    assert {k: group[k] for k in SWITCHES} == {**defaults(base), "beta1": 0.5}


def test_sgd_is_torchs_sgd_in_the_table():
    sgd = defaults("SGD")
    assert (sgd["weight_decay_mode"], sgd["beta1"], sgd["second_moment"], sgd["momentum"]) == (
        "l2",
        0.9,
        False,
        "heavy_ball",
    )
    assert sgd["clip_threshold"] is None and not sgd["relative_step"] and not sgd["factored"]


def test_every_switch_has_one_default_per_base():
    with pytest.raises(ValueError, match=r"^beta9: needs one default per base \(AdamW, Adafactor, SGD\)"):
        type(SWITCHES["beta1"])("beta9", float, (0.9, 0.0), "too few defaults")
    with pytest.raises(ValueError, match=r"^beta9: must be "):
        type(SWITCHES["beta1"])("beta9", float, (0.9, 0.0, 2.0), "a default out of range", exclusive_maximum=1.0)


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
        ("factored_axes", "diagonal"),
        ("second_moment", 0),
        ("second_moment", None),
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
    for base in BASES:
        with pytest.raises(ValueError, match=rf"^optimizer\.{name}: must be "):
            OptimizerSpec.from_dict({"base": base, name: value})
        with pytest.raises(ValueError, match=rf"^{name}: must be "):
            make_optimizer(base, [torch.zeros(2)], lr=0.1, weight_decay=0.0, switches={name: value})


def test_unknown_base_or_switch():
    with pytest.raises(
        ValueError, match=r"^optimizer\.base: unknown base optimizer 'Lion'; allowed: AdamW, Adafactor, SGD"
    ):
        OptimizerSpec.from_dict({"base": "Lion"})
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


def doc_value(cell: str):
    """A default as docs/optimizer.md writes it: "text", None, True, False or a number."""
    cell = cell.strip()
    if cell.startswith('"'):
        return cell.strip('"')
    return {"None": None, "True": True, "False": False}.get(cell, cell)


def test_docs_list_every_switch_and_its_defaults_in_table_order():
    text = (ROOT / "docs/optimizer.md").read_text()
    table = text.split("| switch | values |", 1)[1]
    columns = table.splitlines()[0].split("|")[:-2]  # the bases, then "meaning"
    assert [c.strip().strip("`") for c in columns] == list(BASES)
    lines = table.splitlines()[2:]
    cells = [line.split("|")[1:-1] for line in lines[: lines.index("")]]
    assert [row[0].strip().strip("`") for row in cells] == list(SWITCHES)
    for row in cells:
        switch = SWITCHES[row[0].strip().strip("`")]
        for base, cell in zip(BASES, row[2 : 2 + len(BASES)]):
            value = doc_value(cell)
            expected = switch.default(base)
            if isinstance(value, str) and switch.type is float:
                value = float(value)
            assert value == expected, (switch.name, base, cell)
