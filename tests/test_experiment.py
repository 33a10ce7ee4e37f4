"""Config -> runs, shards and outputs."""

import json
import math
import re
from pathlib import Path

import pytest
import yaml

from optbench.experiment.layout import outputs, shard_index, shard_name
from optbench.experiment.preset import axis_values, load_experiment
from optbench.experiment.sweeps import SETTINGS
from optbench.spec.run import RunSpec

ROOT = Path(__file__).resolve().parents[1]


def config(preset):
    c = yaml.safe_load((ROOT / "config.yaml").read_text())
    c["preset"] = preset
    return c


@pytest.mark.parametrize("preset", ["quick", "smoke", "paper", "budgets"])
def test_every_run_spec_of_every_preset_is_valid(preset):
    exp = load_experiment(config(preset))
    for variant in exp.variants:
        shards = exp.shards(variant)
        runs = [run for shard in shards for run in shard]
        assert all(len(shard) <= exp.runs_per_job for shard in shards)
        assert runs == exp.runs(variant)
        assert all(isinstance(spec, RunSpec) for spec in runs)
        assert len({spec.run_id for spec in runs}) == len(runs)
        assert all(spec.preset == preset for spec in runs)


def test_quick_grids_are_11_by_12_factors_of_two_apart():
    exp = load_experiment(config("quick"))
    assert len(exp.variants) == 17  # the AdamW and Adafactor variants; SGD runs in reproduce
    for variant in exp.variants:
        lrs, decays = exp.grid(variant)
        assert (len(lrs), len(decays)) == (11, 12)
        for axis in (lrs, decays):
            assert all(math.isclose(b / a, 2.0) for a, b in zip(axis, axis[1:]))


def test_the_relative_step_axis_holds_adafactors_default_cap():
    exp = load_experiment(config("quick"))
    assert 1e-2 in exp.grid("adafactor")[0]


def test_axis_values():
    assert axis_values({"log2": [-2, 1]}) == [0.25, 0.5, 1.0, 2.0]
    assert axis_values({"values": [0, 1e-4]}) == [0.0, 1e-4]
    assert axis_values({"log2": [-1, 1], "times": 0.01}) == [0.005, 0.01, 0.02]
    with pytest.raises(ValueError, match=r"log2: \[2, 1\] is an empty range"):
        axis_values({"log2": [2, 1]})


def test_smoke_figures_drop_absent_variants():
    exp = load_experiment(config("smoke"))
    assert exp.figures["adam_vs_adamw"]["panels"] == [["adam_l2_cosine"], ["adamw_cosine"]]
    assert outputs(exp, "r")["heatmaps"]["adafactor"] == ["r/figures/adafactor.png", "r/figures/adafactor.pdf"]


def test_a_figure_of_some_rows_is_titled_with_what_it_draws():
    """quick runs no SGD: its sgd_vs_adam draws the Adam row alone, and says so; reproduce draws both rows."""
    sgd_vs_adam = {p: load_experiment(config(p)).figures["sgd_vs_adam"]["title"] for p in ("quick", "reproduce")}
    assert sgd_vs_adam["quick"] == "Adam with L2 vs AdamW, cosine annealing"
    assert sgd_vs_adam["reproduce"] == config("reproduce")["figures"]["sgd_vs_adam"]["title"]
    assert load_experiment(config("smoke")).figures["adafactor"]["title"] == "Adafactor"


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda c: c.update(preset="nope"), "preset: unknown preset 'nope'"),
        (lambda c: c["presets"]["quick"].update(variants=["adamw_x"]), "unknown variant 'adamw_x'"),
        (lambda c: c["variants"]["adamw_fixed"].update(schedule="weekly"), "variants.adamw_fixed.schedule: 'weekly'"),
    ],
)
def test_bad_references_are_named(change, message):
    c = config("quick")
    change(c)
    with pytest.raises(ValueError, match=message):
        load_experiment(c)


def test_a_reversed_log2_range_is_named():
    cfg = config("quick")
    cfg["presets"]["quick"]["grids"]["raw"]["weight_decay"] = {"log2": [-3, -14]}
    with pytest.raises(ValueError, match=r"presets.quick.grids.raw.weight_decay.log2: \[-3, -14\] is an empty range"):
        load_experiment(cfg)


def test_budgets_sweeps_expand_each_variant_into_one_heatmap_per_value():
    exp = load_experiment(config("budgets"))
    assert list(exp.variants) == [
        *(f"adamw_cosine-epochs{t}" for t in (3, 9, 21, 45)),
        *(f"adamw_cosine-train_size{b}" for b in (1000, 2000, 4000)),
        *(f"adamw_norm_cosine-epochs{t}" for t in (3, 9, 21, 45)),
        *(f"adamw_norm_cosine-train_size{b}" for b in (1000, 2000, 4000)),
        "adamw_restarts",
        "adamw_norm_restarts",
    ]
    assert all(len(exp.runs(v)) == 3 * 8 * 3 == exp.runs_per_job for v in exp.variants)
    assert {r.epochs for r in exp.runs("adamw_cosine-epochs9")} == {9}
    assert {json.dumps(r.dataset_options) for r in exp.runs("adamw_norm_cosine-train_size1000")} == {
        '{"train_size": 1000}'
    }
    assert all(r.epochs == 45 and r.dataset_options == {} for r in exp.runs("adamw_restarts"))
    assert exp.variants["adamw_cosine-train_size2000"]["label"] == "AdamW, cosine, B = 2000"
    assert exp.anytime == (("adamw_restarts", "adamw_cosine"), ("adamw_norm_restarts", "adamw_norm_cosine"))
    assert [(s.key, s.column) for s in exp.sweeps] == [
        ("epochs", "epochs"),
        ("train_size", "dataset_options.train_size"),
    ]


def test_budgets_restart_cycles_end_at_the_cosine_budgets():
    exp = load_experiment(config("budgets"))
    spec = exp.runs("adamw_restarts")[0]
    ends = spec.schedule.cycle_ends(spec.epochs)
    assert ends == [3, 9, 21, 45] == list(exp.sweeps[0].values)
    assert max(ends) / min(ends) >= 8  # the span of budgets


@pytest.mark.parametrize("preset", ["quick", "smoke", "paper"])
def test_presets_without_sweeps_have_no_sweep_outputs(preset):
    exp = load_experiment(config(preset))
    assert exp.sweeps == () and exp.anytime == () and outputs(exp, "r")["sweeps"] == {}


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda b: b["sweeps"].update(batch_size=b["sweeps"]["epochs"]), r"presets.budgets.sweeps.batch_size: unknown"),
        (lambda b: b["sweeps"]["epochs"].update(values=[3, 3.5]), r"sweeps.epochs.values: must be distinct integers"),
        (lambda b: b["sweeps"]["epochs"].update(variants=["adamw_fixed"]), r"sweeps.epochs.variants: 'adamw_fixed'"),
        (lambda b: b["schedules"]["restarts"].update(kind="cosine", cycles=None), r"anytime\[0\].restarts: 'adamw_r"),
    ],
)
def test_bad_sweeps_are_named(change, message):
    c = config("budgets")
    change(c["presets"]["budgets"])
    with pytest.raises(ValueError, match=message):
        load_experiment(c)


def test_an_unknown_anytime_variant_is_named():
    c = config("quick")
    c["anytime"] = [{"restarts": "adamw_restart", "cosine": "adamw_cosine"}]
    with pytest.raises(ValueError, match=r"anytime\[0\].restarts: unknown variant 'adamw_restart'"):
        load_experiment(c)


def test_swept_names_are_wildcard_and_file_name_safe():
    exp = load_experiment(config("budgets"))
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", name) for name in exp.variants)


def test_config_schema_allows_exactly_the_sweepable_settings():
    schema = yaml.safe_load((ROOT / "workflow" / "schemas" / "config.schema.yaml").read_text())
    assert schema["$defs"]["preset"]["properties"]["sweeps"]["propertyNames"]["enum"] == list(SETTINGS)


@pytest.mark.parametrize(("index", "name"), [(0, "shard000"), (7, "shard007"), (999, "shard999"), (1000, "shard1000")])
def test_a_shards_name_and_index_go_both_ways(index, name):
    assert shard_name(index) == name and shard_index(name) == index


@pytest.mark.parametrize("name", ["shard0007", "shard07", "shard01000", "shardx", "shard"])
def test_a_name_no_shard_has_is_refused(name):
    with pytest.raises(ValueError, match=re.escape(f"shard: {name!r} is not a shard's name")):
        shard_index(name)
