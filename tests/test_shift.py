"""Best-cell shifts against a published claim (optbench.analysis.shift), on synthetic heatmaps with known answers."""

import itertools

import pandas as pd
import pytest
import yaml
from workflow_copy import ROOT

from optbench.analysis.shift import best_cell_shift, verdict
from optbench.experiment.preset import load_experiment

LION = {"lr": [0.1, 0.3333], "weight_decay": [3, 10], "source": "Chen et al. 2023"}


def heatmap(variant, best_lr, best_wd, seeds=(0, 1, 2), moves=None):
    """A 7 x 8 grid of factors of 2 whose best cell is (2^best_lr, 2^best_wd); ``moves[seed]`` shifts one seed's."""
    rows = []
    for seed, i, j in itertools.product(seeds, range(-9, -2), range(-6, 2)):
        lr_best, wd_best = (moves or {}).get(seed, (best_lr, best_wd))
        error = 0.05 + 0.01 * (abs(i - lr_best) + abs(j - wd_best)) + 0.001 * seed
        rows.append((variant, 2.0**i, 2.0**j, seed, "ok", error))
    return pd.DataFrame(rows, columns=["variant", "lr", "weight_decay", "seed", "status", "final_test_error"])


def shift(baseline, candidate):
    runs = pd.concat([baseline, candidate], ignore_index=True)
    table = best_cell_shift(runs, {"baseline": "adamw", "candidate": "lion", **LION})
    return table.set_index("axis")


def test_a_best_cell_4x_smaller_in_lr_and_4x_larger_in_decay_reproduces_lions_claim():
    table = shift(heatmap("adamw", -6, -2), heatmap("lion", -8, 0))
    assert table.loc["lr", ["log2_ratio", "log2_ratio_ci_low", "log2_ratio_ci_high"]].tolist() == [-2, -2, -2]
    assert table.loc["weight_decay", "log2_ratio"] == 2
    assert table["verdict"].tolist() == ["reproduced", "reproduced"]


def test_the_same_lr_is_not_reproduced_and_a_border_cell_is_inconclusive():
    table = shift(heatmap("adamw", -6, -2), heatmap("lion", -6, 1))  # decay at the grid's last column
    assert table.loc["lr", "verdict"] == "not reproduced"
    assert table.loc["weight_decay", "verdict"] == "inconclusive (a best cell on the grid's border)"


def test_seeds_that_disagree_give_an_interval_across_the_claims_edge():
    table = shift(heatmap("adamw", -6, -2), heatmap("lion", -8, 0, moves={2: (-6, -2)}))
    low, high = table.loc["lr", ["log2_ratio_ci_low", "log2_ratio_ci_high"]]
    assert low <= -2 and high == 0 and table.loc["lr", "verdict"] == "inconclusive"


def test_one_seed_has_no_interval():
    table = shift(heatmap("adamw", -6, -2, seeds=(0,)), heatmap("lion", -8, 0, seeds=(0,)))
    assert set(table["verdict"]) == {"inconclusive (no interval: one seed)"}


@pytest.mark.parametrize(
    "low,high,expected",
    [(-2, -2, "reproduced"), (-1, -1, "not reproduced"), (-4, -2, "inconclusive"), (-5, -4, "not reproduced")],
)
def test_verdict_against_three_to_ten_times_smaller(low, high, expected):
    assert verdict(low, high, (0.1, 1 / 3), on_border=False) == expected


def config(preset):
    c = yaml.safe_load((ROOT / "config.yaml").read_text())
    c["preset"] = preset
    return c


def test_the_zoo_carries_lions_claim_and_other_presets_none():
    assert [(s["baseline"], s["candidate"]) for s in load_experiment(config("zoo")).shifts] == [
        ("zoo_torch_adamw", "zoo_lion")
    ]
    assert load_experiment(config("reproduce")).shifts == ()


def test_a_claim_range_must_rise():
    c = config("zoo")
    c["comparisons"][-1]["claim"]["lr"] = [0.3, 0.1]
    with pytest.raises(ValueError, match=r"comparisons\[\d+\]\.claim\.lr: \[low, high\] with low below high"):
        load_experiment(c)
