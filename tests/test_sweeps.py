"""The budget sweep's statistics on synthetic runs with known answers: the best weight decay per budget and
its slope, and warm restarts' anytime performance; and the normalized decay per restart cycle."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from fake_records import make_record
from run_specs import spec_dict

from optbench.analysis.sweeps import anytime, best_decay_fit, error_at_epoch, heatmaps_by
from optbench.atomic import atomic_write_csv
from optbench.experiment.layout import outputs
from optbench.experiment.preset import load_experiment
from optbench.optim import AdamW
from optbench.records.table import runs_table
from optbench.report.outputs import write_outputs
from optbench.spec.run import RunSpec
from optbench.spec.schedule import ScheduleSpec
from optbench.train.loop import train
from optbench.train.schedules import build_schedule

ROOT = Path(__file__).resolve().parents[1]
LRS = [2.0**-7, 2.0**-6, 2.0**-5]
WDS = [2.0 ** (k / 2) for k in range(-24, -1)]  # factors of sqrt(2): a slope of -0.5 lands on the grid
SEEDS = (0, 1, 2)


def surface(best_log2_wd):
    """Error of a cell, lowest at lr 2^-6 and weight decay 2^best_log2_wd; seed s adds 0.001 s."""
    return lambda lr, wd, seed: (
        0.03 + 0.01 * (math.log2(lr) + 6) ** 2 + 0.004 * (math.log2(wd) - best_log2_wd) ** 2 + 0.001 * seed
    )


def sweep_runs(variant, setting, best_log2_wd, normalized=False):
    """One heatmap per value: variant-<setting><value>, with ``setting`` in its records (epochs, or train_size
    as a dataset option), best at ``best_log2_wd(value)``."""
    records = []
    for value, best in best_log2_wd.items():
        error = surface(best)
        for lr in LRS:
            for wd in WDS:
                for seed in SEEDS:
                    epochs = value if setting == "epochs" else 2
                    record = make_record(
                        f"{variant}-{setting}{value}",
                        lr,
                        wd,
                        seed,
                        error(lr, wd, seed),
                        normalized_weight_decay=normalized,
                        epochs=epochs,
                    )
                    if setting == "train_size":
                        record["dataset_options"] = {"train_size": value}
                    records.append(record)
    return runs_table(records)


@pytest.mark.parametrize(
    ("setting", "column", "values"),
    [("epochs", "epochs", [2, 4, 8, 16]), ("train_size", "dataset_options.train_size", [1000, 2000, 4000])],
)
def test_raw_decay_falls_by_half_a_power_of_two_per_doubling(setting, column, values):
    # the formula's raw lambda: 2^-6 at the first value, sqrt(2) smaller per doubling
    bests = {v: -6 - 0.5 * math.log2(v / values[0]) for v in values}
    table, fit = best_decay_fit(sweep_runs("adamw_cosine", setting, bests), column, n_boot=200)
    assert table["value"].tolist() == values
    assert table["log2_best_weight_decay"].tolist() == pytest.approx(list(bests.values()))
    assert (table["best_lr"] == 2.0**-6).all() and not table["on_border"].any()
    assert table["heatmap"].tolist() == [f"adamw_cosine-{setting}{v}" for v in values]
    intercept = -6 + 0.5 * math.log2(values[0])  # at a setting of 1
    assert (fit.slope, fit.ci_low, fit.ci_high, fit.intercept) == pytest.approx((-0.5, -0.5, -0.5, intercept))
    assert (fit.predicted, fit.n_values, fit.n_seeds, fit.n_boot, fit.reason) == (-0.5, len(values), 3, 200, "")


def test_normalized_decay_that_stays_has_slope_zero_as_predicted():
    runs = sweep_runs("adamw_norm_cosine", "epochs", {2: -3, 4: -3, 8: -3, 16: -3}, normalized=True)
    table, fit = best_decay_fit(runs, "epochs", n_boot=200)
    assert (table["log2_best_weight_decay"] == -3).all()
    assert (fit.slope, fit.ci_low, fit.ci_high, fit.predicted) == pytest.approx((0, 0, 0, 0))


def test_the_interval_comes_from_resampling_seeds_jointly():
    # At budget 16, seed 2 is 0.2 better at weight decay 2^-4: every draw holding seed 2 (70% of them) moves
    # that budget's best there, giving the plain seed means' slope 0.7 (log2 bests -6.5, -7, -7.5, -4);
    # the draws without it give the surface's -0.5.
    runs = sweep_runs("adamw_cosine", "epochs", {2: -6.5, 4: -7, 8: -7.5, 16: -8})
    at_16 = runs["epochs"].eq(16) & runs["seed"].eq(2)
    runs.loc[at_16, "final_test_error"] -= 0.2 * np.isclose(runs.loc[at_16, "weight_decay"], 2.0**-4)
    table, fit = best_decay_fit(runs, "epochs", n_boot=500)
    assert (fit.slope, fit.ci_low, fit.ci_high, fit.n_boot_valid) == pytest.approx((0.7, -0.5, 0.7, 500))
    assert table.loc[table["value"].eq(16), ["ci_low", "ci_high"]].iloc[0].tolist() == [-8, -4]
    assert table["ci_low"].tolist()[:3] == table["ci_high"].tolist()[:3] == [-6.5, -7, -7.5]


def test_one_seed_gives_a_slope_without_interval():
    runs = sweep_runs("adamw_cosine", "epochs", {2: -6.5, 4: -7, 8: -7.5})
    _, fit = best_decay_fit(runs[runs["seed"].eq(0)], "epochs")
    assert fit.slope == pytest.approx(-0.5) and math.isnan(fit.ci_low) and "one seed" in fit.reason


def test_a_missing_column_or_mixed_heatmaps_are_named():
    runs = sweep_runs("adamw_cosine", "epochs", {2: -6, 4: -6})
    with pytest.raises(ValueError, match="dataset_options.train_size: no such column"):
        heatmaps_by(runs, "dataset_options.train_size")
    runs.loc[runs.index[0], "variant"] = "other"
    with pytest.raises(ValueError, match="epochs = 2: runs of several variants"):
        heatmaps_by(runs, "epochs")


# --- anytime performance ---------------------------------------------------------------------------------


def restarts_and_cosine():
    """Restarts over 7 epochs (cycles end at 1, 3, 7) best at lr 2^-6, wd 2^-6; cosine runs of 1, 3 and 7 epochs.

    A fake record's test error at epoch e of E is its final error + 0.1 (E - e).
    """
    records = []
    for lr in LRS:
        for wd in WDS[::4]:
            for seed in SEEDS:
                error = surface(-6)(lr, wd, seed)
                records.append(make_record("adamw_restarts", lr, wd, seed, error, epochs=7))
                for epochs in (1, 3, 7):
                    records.append(
                        make_record(f"adamw_cosine-epochs{epochs}", lr, wd, seed, error + 0.002, epochs=epochs)
                    )
    return runs_table(records)


def test_restarts_at_each_cycle_end_against_cosine_of_that_length():
    runs = restarts_and_cosine()
    cosine = heatmaps_by(runs[runs["variant"].str.startswith("adamw_cosine")], "epochs")
    ends = ScheduleSpec(kind="warm_restarts", cycles=3, t_mult=2).cycle_ends(7)
    table = anytime(runs, "adamw_restarts", cosine, ends, n_boot=200)
    assert ends == [1, 3, 7] and table["epoch"].tolist() == [1, 3, 7]
    best = 0.03 + 0.001  # the seed mean at the best cell
    assert table["restarts_error"].tolist() == pytest.approx([best + 0.6, best + 0.4, best])
    assert table["cosine_error"].tolist() == pytest.approx([best + 0.002] * 3)
    assert table["difference_pp"].tolist() == pytest.approx([59.8, 39.8, -0.2])
    assert table["difference_pp_ci_low"].tolist() == pytest.approx([59.8, 39.8, -0.2])
    assert (table[["restarts_lr", "cosine_lr"]] == 2.0**-6).all().all()
    assert (table[["restarts_weight_decay", "cosine_weight_decay"]] == 2.0**-6).all().all()


def test_the_restarts_cell_is_chosen_on_final_error():
    runs = restarts_and_cosine()
    other = runs["variant"].eq("adamw_restarts") & runs["lr"].eq(2.0**-5) & runs["weight_decay"].eq(2.0**-6)
    # another cell is far better at epoch 3 but not at the end: the table keeps the final best cell
    runs.loc[other, "history"] = [
        json.dumps([{**e, "test_error": 0.0} if e["epoch"] == 3 else e for e in json.loads(h)])
        for h in runs.loc[other, "history"]
    ]
    assert error_at_epoch(runs[other], 3).eq(0.0).all()
    cosine = heatmaps_by(runs[runs["variant"].str.startswith("adamw_cosine")], "epochs")
    table = anytime(runs, "adamw_restarts", cosine, [3.0], n_boot=50)
    assert table["restarts_error"].item() == pytest.approx(0.031 + 0.4)


def test_a_diverged_run_is_at_chance_after_its_last_epoch():
    record = make_record("adamw_restarts", 0.1, 0.1, 0, 0.9, status="diverged", epochs=2)
    assert error_at_epoch(runs_table([record]), 5).item() == 0.9


# --- the normalized decay per restart cycle -------------------------------------------------------------


def test_normalized_decay_follows_each_restart_cycle_of_the_budgets_preset():
    """AdamWR of the budgets preset on 1000 training signals: T_0 = 3 and T_mult = 2 over 45 epochs, so
    lambda = lambda_norm sqrt(b / (B T_i)) with T_i = 3, 6, 12, 24 in the cycles ending at 3, 9, 21, 45."""
    spec = ScheduleSpec(kind="warm_restarts", cycles=4, t_mult=2)
    assert spec.cycle_ends(45) == [3, 9, 21, 45]
    batch_size, n_train, steps_per_epoch, lambda_norm = 100, 1000, 10, 2.0**-3
    opt = AdamW([torch.zeros(1)], lr=0.01, weight_decay=lambda_norm)
    schedule = build_schedule(
        opt, spec, epochs=45, steps_per_epoch=steps_per_epoch, normalized_weight_decay=(batch_size, n_train)
    )
    starts = [0, 3, 9, 21]
    for step in range(45 * steps_per_epoch):
        cycle = sum(step >= start * steps_per_epoch for start in starts) - 1
        t_i = 3 * 2**cycle
        assert opt.param_groups[0]["weight_decay"] == pytest.approx(
            lambda_norm * math.sqrt(batch_size / (n_train * t_i))
        )
        schedule.step()


def test_a_run_on_a_training_subset_normalizes_by_its_size(data_dir):
    """B is the train_size: 200 of the 800 training signals, 2 batches an epoch; cycles of 1 and 2 epochs."""
    spec = spec_dict(
        data_dir,
        epochs=3,
        schedule={"kind": "warm_restarts", "cycles": 2, "t_mult": 2},
        normalized_weight_decay=True,
        weight_decay=0.5,
        dataset_options={"num_samples": 1000, "train_size": 200},
    )
    record = train(RunSpec.from_dict(spec), quiet=True)
    assert record["dataset_options"] == {"num_samples": 1000, "train_size": 200}
    assert record["weight_decay_applied"] == pytest.approx(0.5 * math.sqrt(100 / (200 * 1)))
    decays = [entry["weight_decay"] for entry in record["history"]]  # each epoch's last batch
    assert decays == pytest.approx([0.5 * math.sqrt(100 / (200 * t_i)) for t_i in (1, 2, 2)])


def test_cycle_ends_of_a_schedule_that_does_not_restart_are_refused():
    with pytest.raises(ValueError, match="kind: cycle ends need kind 'warm_restarts'"):
        ScheduleSpec(kind="cosine").cycle_ends(10)


# --- the outputs of a small budgets preset ---------------------------------------------------------------


def small_budgets_config():
    """The budgets preset on 2 x 3 cells and 2 seeds; budgets 1 and 4 epochs, where restarts with T_0 = 1 and
    T_mult = 3 end their cycles; training-set sizes 1000 and 4000."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["preset"] = "budgets"
    preset = config["presets"]["budgets"]
    swept = ["adamw_cosine", "adamw_norm_cosine"]
    preset.update(epochs=4, seeds=[0, 1], runs_per_job=12)
    preset["sweeps"] = {
        "epochs": {"values": [1, 4], "variants": swept},
        "train_size": {"values": [1000, 4000], "variants": swept},
    }
    preset["schedules"]["restarts"] = {"kind": "warm_restarts", "t_0": 1, "t_mult": 3}
    preset["grids"] = {
        "raw": {"lr": {"log2": [-6, -5]}, "weight_decay": {"log2": [-10, -8]}},
        "normalized": {"lr": {"log2": [-6, -5]}, "weight_decay": {"log2": [-4, -2]}},
    }
    return config


def fake_records(experiment):
    """A record per run: raw decay best at 2^-8 for the smaller value of a sweep and 2^-9 for the larger
    (slope -0.5 in log2 of 4x), normalized decay best at 2^-3 throughout (slope 0)."""
    records = []
    for variant, row in experiment.variants.items():
        sweep = row.get("sweep")
        larger = sweep is not None and sweep["value"] in (4, 4000)
        best = -3 if row.get("normalized_weight_decay") else -9 if larger else -8
        for spec in experiment.runs(variant):
            error = surface(best)(spec.lr, spec.weight_decay, spec.seed)
            record = make_record(
                variant,
                spec.lr,
                spec.weight_decay,
                spec.seed,
                error,
                normalized_weight_decay=spec.normalized_weight_decay,
                epochs=spec.epochs,
            )
            records.append({**record, "model": spec.model, "dataset_options": spec.dataset_options})
    return records


def test_outputs_of_a_small_budgets_preset(tmp_path):
    experiment = load_experiment(small_budgets_config())
    atomic_write_csv(tmp_path / "runs.csv", runs_table(fake_records(experiment)))
    write_outputs(tmp_path / "runs.csv", experiment, tmp_path)
    out = outputs(experiment, tmp_path)["sweeps"]
    assert sorted(out) == sorted(
        [
            "best_decay",
            "decay_slopes",
            "best_decay_figure",
            "heatmaps_epochs",
            "heatmaps_train_size",
            "anytime",
            "anytime_figure",
        ]
    )
    for paths in out.values():
        for path in paths:
            assert Path(path).stat().st_size > 0
    assert Path(out["heatmaps_epochs"][0]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    slopes = pd.read_csv(out["decay_slopes"][0])
    assert slopes[["setting", "variant"]].values.tolist() == [
        ["epochs", "adamw_cosine"],
        ["epochs", "adamw_norm_cosine"],
        ["train_size", "adamw_cosine"],
        ["train_size", "adamw_norm_cosine"],
    ]
    assert slopes["slope"].tolist() == pytest.approx([-0.5, 0, -0.5, 0])
    assert slopes["predicted"].tolist() == [-0.5, 0, -0.5, 0]
    bests = pd.read_csv(out["best_decay"][0])
    assert bests["log2_best_weight_decay"].tolist() == [-8, -9, -3, -3, -8, -9, -3, -3]
    assert "| training signals B | AdamW, cosine | 4000 | 2^-9 [2^-9, 2^-9] |" in Path(out["best_decay"][1]).read_text()
    anytime_table = pd.read_csv(out["anytime"][0])
    assert anytime_table[["restarts", "epoch", "cosine_variant"]].values.tolist() == [
        ["adamw_restarts", 1, "adamw_cosine-epochs1"],
        ["adamw_restarts", 4, "adamw_cosine-epochs4"],
        ["adamw_norm_restarts", 1, "adamw_norm_cosine-epochs1"],
        ["adamw_norm_restarts", 4, "adamw_norm_cosine-epochs4"],
    ]
    # a fake learning curve is 0.1 above its final error per epoch to go: 0.3 at the end of the first cycle
    assert anytime_table["difference_pp"].tolist() == pytest.approx([30, 0, 30, 0])
