"""Config -> runs, shards and outputs."""

import math
from pathlib import Path

import pytest
import yaml

from optbench.experiment import axis_values, load_experiment
from optbench.spec import RunSpec, default_run_id

ROOT = Path(__file__).resolve().parents[1]


def config(preset):
    c = yaml.safe_load((ROOT / "config.yaml").read_text())
    c["preset"] = preset
    return c


@pytest.mark.parametrize("preset", ["quick", "smoke", "paper"])
def test_every_run_spec_of_every_preset_is_valid(preset):
    exp = load_experiment(config(preset))
    for variant in exp.variants:
        shards = exp.shards(variant)
        runs = [run for shard in shards for run in shard]
        assert all(len(shard) <= exp.runs_per_job for shard in shards)
        assert runs == exp.runs(variant)
        specs = [RunSpec.from_dict(run) for run in (runs[0], runs[-1])]
        assert len({default_run_id(r["variant"], r["lr"], r["weight_decay"], r["seed"]) for r in runs}) == len(runs)
        assert all(s.preset == preset for s in specs)


def test_quick_grids_are_11_by_12_factors_of_two_apart():
    exp = load_experiment(config("quick"))
    assert len(exp.variants) == 19
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
    assert exp.outputs("r")["heatmaps"]["adafactor"] == ["r/figures/adafactor.png", "r/figures/adafactor.pdf"]


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
