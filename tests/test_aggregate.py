import json
import math
import re
from importlib import resources

import jsonschema
import pandas as pd
import pytest
from fake_records import (
    LRS,
    WDS,
    corner_error,
    diagonal_error,
    grid_records,
    make_record,
    separable_error,
)

from optbench.aggregate import aggregate, cell_table, read_runs, runs_table, spearman, summary_table, write_table
from optbench.records import SCHEMA_VERSION

DIVERGE_ABOVE_LR = 2.0**-10  # the corner variant's two largest learning rates diverge


@pytest.fixture(scope="module")
def records():
    return (
        grid_records("adamw", separable_error)
        + grid_records("adam_l2", diagonal_error)
        + grid_records("corner", corner_error, seeds=(0,), diverge_above_lr=DIVERGE_ABOVE_LR)
    )


@pytest.fixture(scope="module")
def runs(records):
    return runs_table(records)


@pytest.fixture(scope="module")
def summary(runs):
    return summary_table(runs).set_index("variant")


def test_fake_records_follow_the_run_record_schema(records):
    schema = json.loads(resources.files("optbench").joinpath("schemas/run_record.schema.json").read_text())
    diverged = make_record("adamw", 1e-3, 0.1, 0, 0.9, status="diverged")
    for record in [records[0], diverged]:
        jsonschema.validate(record, schema)


def test_runs_table_has_one_flat_row_per_run(records, runs):
    assert len(runs) == len(records)
    for column in [
        "optimizer.weight_decay_mode",
        "memory.optimizer_state_bytes",
        "schedule.kind",
        "environment.git_commit",
    ]:
        assert column in runs.columns
    assert runs["normalized_weight_decay"].dtype == bool
    assert runs["optimizer.beta2_decay"].isna().all()
    row = runs.set_index("run_id").loc[records[0]["run_id"]]
    assert json.loads(row["history"]) == records[0]["history"]
    assert json.loads(row["schedule.milestones"]) == [30, 60, 80]


def test_runs_table_sorts_by_variant_lr_weight_decay_seed(runs):
    keys = runs[["variant", "lr", "weight_decay", "seed"]]
    pd.testing.assert_frame_equal(keys, keys.sort_values(list(keys.columns), ignore_index=True))


def test_history_is_compact_json(runs):
    assert " " not in runs.loc[0, "history"]


def test_duplicate_run_id_is_rejected():
    record = make_record("adamw", 1e-3, 0.1, 0, 0.2)
    with pytest.raises(ValueError, match="duplicate run_id.*adamw-lr0.001-wd0.1-s0"):
        runs_table([record, record])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("final_test_error"), "final_test_error"),
        (lambda r: r.update(status="exploded"), "exploded"),
        (lambda r: r.update(schema_version=SCHEMA_VERSION - 1), "schema_version"),
    ],
)
def test_malformed_record_is_rejected(change, message):
    record = make_record("adamw", 1e-3, 0.1, 0, 0.2)
    change(record)
    with pytest.raises(ValueError, match=message):
        runs_table([record])


def test_no_records_is_rejected():
    with pytest.raises(ValueError, match="no run records"):
        runs_table([])


def test_runs_csv_round_trip(runs, tmp_path):
    path = tmp_path / "runs.csv"
    write_table(runs, path)
    back = read_runs(path)
    pd.testing.assert_frame_equal(back, runs)
    # version-like and all-digit strings stay text, nothing temporary is left behind
    assert back.loc[0, "environment.torch"] == "2.5"
    assert back.loc[0, "environment.git_commit"] == "0123456"
    assert [p.name for p in tmp_path.iterdir()] == ["runs.csv"]


def test_cell_table_averages_seeds(runs):
    cells = cell_table(runs).set_index(["variant", "lr", "weight_decay"])
    assert len(cells) == 3 * len(LRS) * len(WDS)
    cell = cells.loc[("adamw", 2.0**-10, 2.0**-3)]
    assert cell["n_seeds"] == 2
    assert cell["n_diverged"] == 0
    assert cell["mean_test_error"] == pytest.approx(separable_error(2.0**-10, 2.0**-3) + 0.001)


def test_summary_counts_runs_and_divergences(summary):
    assert summary.loc["adamw", "n_runs"] == 2 * len(LRS) * len(WDS)
    assert summary.loc["corner", "n_runs"] == len(LRS) * len(WDS)
    n_diverging_lrs = sum(lr > DIVERGE_ABOVE_LR for lr in LRS)
    assert summary.loc["corner", "n_diverged"] == n_diverging_lrs * len(WDS)
    assert summary.loc["adamw", "n_diverged"] == 0


def test_summary_best_cell_and_top10_mean(summary):
    best = summary.loc["adamw"]
    assert (best["best_lr"], best["best_weight_decay"]) == (2.0**-10, 2.0**-3)
    assert best["best_test_error"] == pytest.approx(separable_error(2.0**-10, 2.0**-3) + 0.001)
    cell_means = sorted(separable_error(lr, wd) + 0.001 for lr in LRS for wd in WDS)
    assert best["top10_mean_test_error"] == pytest.approx(sum(cell_means[:10]) / 10)


def test_summary_flags_best_cell_on_grid_border(summary):
    assert not summary.loc["adamw", "best_on_border"]
    assert summary.loc["corner", "best_on_border"]
    assert (summary.loc["corner", "best_lr"], summary.loc["corner", "best_weight_decay"]) == (min(LRS), max(WDS))


def test_coupling_is_zero_for_separable_and_negative_for_diagonal(summary):
    # Separable: the top cells form a block symmetric around the optimum, so ranks are uncorrelated.
    assert abs(summary.loc["adamw", "coupling_spearman"]) < 0.1
    # Diagonal: only lr * wd matters, so good cells satisfy log lr + log wd = const; a larger lr
    # goes with a smaller weight decay, hence a strongly negative rank correlation.
    assert summary.loc["adam_l2", "coupling_spearman"] < -0.8


def test_top10_uses_all_cells_of_a_small_grid():
    runs = runs_table(grid_records("small", separable_error, seeds=(0,), lrs=LRS[:2], wds=WDS[:3]))
    summary = summary_table(runs).iloc[0]
    all_cells = [separable_error(lr, wd) for lr in LRS[:2] for wd in WDS[:3]]
    assert summary["top10_mean_test_error"] == pytest.approx(sum(all_cells) / len(all_cells))


def test_coupling_is_nan_when_an_axis_is_constant():
    runs = runs_table(grid_records("one_wd", separable_error, seeds=(0,), wds=[0.1]))
    assert math.isnan(summary_table(runs).loc[0, "coupling_spearman"])


def test_spearman_ranks_with_ties():
    x = pd.Series([1.0, 2.0, 3.0, 4.0])
    assert spearman(x, 10 * x**3) == pytest.approx(1.0)
    assert spearman(x, -x) == pytest.approx(-1.0)
    # ties get average ranks: ranks (1, 2.5, 2.5, 4) vs (1, 2, 3, 4)
    assert spearman(pd.Series([0.0, 1.0, 1.0, 5.0]), x) == pytest.approx(4.5 / math.sqrt(4.5 * 5))


def test_aggregate_writes_runs(records, tmp_path):
    paths = []
    for i, record in enumerate(records[:12]):
        paths.append(tmp_path / f"run{i}.json")
        paths[-1].write_text(json.dumps(record))
    aggregate(paths, tmp_path / "out" / "runs.csv")
    assert len(read_runs(tmp_path / "out" / "runs.csv")) == 12


def test_aggregate_names_an_invalid_json_file(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("{")
    with pytest.raises(ValueError, match="broken.json"):
        aggregate([bad], tmp_path / "runs.csv")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        (lambda r: r.update(final_test_error=1.7), r"\$\.final_test_error: 1\.7 is greater than the maximum of 1"),
        (lambda r: r.update(lr=-0.1), r"\$\.lr: -0\.1 is less than the minimum of 0"),
        (lambda r: r.pop("history"), r"\$: 'history' is a required property"),
        (lambda r: r.update(schema_version=SCHEMA_VERSION - 1), rf"\$\.schema_version: {SCHEMA_VERSION} was expected"),
    ],
)
def test_aggregate_stops_at_a_record_that_breaks_the_schema(tmp_path, change, error):
    good, bad = make_record("adamw", 1e-3, 0.1, 0, 0.2), make_record("adamw", 1e-3, 0.1, 1, 0.2)
    change(bad)
    paths = [tmp_path / "good.json", tmp_path / "bad.json"]
    for path, record in zip(paths, [good, bad]):
        path.write_text(json.dumps(record))
    with pytest.raises(ValueError, match=f"{re.escape(str(paths[1]))}: not a valid run record: {error}"):
        aggregate(paths, tmp_path / "runs.csv")
    assert not (tmp_path / "runs.csv").exists()
