import json
import math
import re

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

from optbench.analysis.cells import cell_statistics
from optbench.analysis.estimate_text import estimate
from optbench.analysis.heatmap import variant_statistics
from optbench.analysis.improvement import improvement_table
from optbench.atomic import atomic_write_csv
from optbench.records.aggregate import aggregate
from optbench.records.record import SCHEMA_VERSION, record_schema
from optbench.records.table import REQUIRED_COLUMNS, read_runs, runs_table
from optbench.report.outputs import IMPROVEMENT_HEADERS, improvements_markdown, summary_markdown
from optbench.report.text import percent, power_of_two

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


def test_fake_records_follow_the_run_record_schema(records):
    schema = record_schema()
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
    atomic_write_csv(path, runs)
    back = read_runs(path)
    pd.testing.assert_frame_equal(back, runs)
    # version-like and all-digit strings stay text, nothing temporary is left behind
    assert back.loc[0, "environment.torch"] == "2.5"
    assert back.loc[0, "environment.git_commit"] == "0123456"
    assert [p.name for p in tmp_path.iterdir()] == ["runs.csv"]


def test_cell_statistics_average_seeds(runs):
    cells = cell_statistics(runs).set_index(["variant", "lr", "weight_decay"])
    assert len(cells) == 3 * len(LRS) * len(WDS)
    cell = cells.loc[("adamw", 2.0**-10, 2.0**-3)]
    assert cell["n_seeds"] == 2
    assert cell["n_diverged"] == 0
    assert cell["mean_test_error"] == pytest.approx(separable_error(2.0**-10, 2.0**-3) + 0.001)
    assert cell["std_test_error"] == pytest.approx(0.002 / math.sqrt(2))  # seeds 0 and 1 differ by 0.002
    assert math.isnan(cells.loc[("corner", 2.0**-10, 2.0**-3), "std_test_error"])  # one seed


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


def test_aggregate_stops_at_a_record_that_contradicts_itself(tmp_path):
    """The case of issue 22: a final error of 0.01 under a history that ends at 0.75 reached summary.md."""
    bad = make_record("adamw", 1e-3, 0.1, 0, 0.75)
    bad.update(final_test_error=0.01)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=re.escape(f"{path}: final_test_error is 0.01 but its history gives 0.75")):
        aggregate([path], tmp_path / "runs.csv")
    assert not (tmp_path / "runs.csv").exists()


# --- the summary and improvement tables for humans (optbench.report.outputs) -----------------------------------


@pytest.fixture(scope="module")
def summary(runs):
    return variant_statistics(runs, n_boot=100)


def markdown_rows(text):
    """The cells of a Markdown table, header first, the alignment rule left out."""
    lines = text.splitlines()
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[:1] + lines[2:]]


def test_summary_markdown_formats_for_humans(summary):
    text = summary_markdown(summary, labels={"adam_l2": "Adam (L2)"})
    header, *rows = markdown_rows(text)
    by_variant = {row[0]: dict(zip(header, row)) for row in rows}
    assert list(by_variant) == ["Adam (L2)", "adamw", "corner"]
    l2, adamw, corner = by_variant["Adam (L2)"], by_variant["adamw"], by_variant["corner"]
    assert text.splitlines()[1].startswith("| --- | ---: |")  # text left, numbers right
    assert adamw["best test error"] == f"{100 * (separable_error(2.0**-10, 2.0**-3) + 0.001):.1f}%" == "10.1%"
    assert (adamw["at lr"], adamw["at weight decay"]) == ("2^-10", "2^-3")
    slope = "slope of log2 best lambda on log2 lr [95% CI]"
    assert l2[slope] == "-1.00 [-1.00, -1.00]" and adamw[slope] == "0.00 [0.00, 0.00]"
    assert l2["lr rows in fit"] == "5 (1 at edge)"
    assert corner[slope] == "n/a (only 2 near-best lr rows, at least 3 needed)"
    assert corner["best test error"].endswith("% (border)")
    assert adamw["noise floor"] == "0.1 pp" and corner["noise floor"] == "n/a (1 seed)"
    assert (corner["seeds"], corner["runs"], corner["diverged"]) == ("1", "30", "12")  # two diverged lr rows of 6 cells


def test_improvements_table_and_markdown(runs):
    table = improvement_table(runs, [("adam_l2", "adamw"), ("adamw", "corner")], n_boot=100)
    assert table[["baseline", "candidate"]].values.tolist() == [["adam_l2", "adamw"], ["adamw", "corner"]]
    e_l2, e_w = diagonal_error(2.0**-10, 2.0**-3) + 0.001, separable_error(2.0**-10, 2.0**-3) + 0.001
    assert table.loc[0, "relative"] == pytest.approx(1 - e_w / e_l2)
    header, first, second = markdown_rows(improvements_markdown(table, labels={"adamw": "AdamW"}))
    first, second = dict(zip(header, first)), dict(zip(header, second))
    assert (first["baseline"], first["candidate"]) == ("adam_l2", "AdamW")
    assert first["candidate best"] == "10.1% at lr 2^-10, wd 2^-3"
    relative = f"{100 * (1 - e_w / e_l2):.1f}%"
    assert first["relative improvement [95% CI]"] == f"{relative} [{relative}, {relative}]"  # seed offsets cancel
    assert first["difference (pp) [95% CI]"].startswith(f"{100 * (e_l2 - e_w):+.1f} [")
    # corner has one seed, adamw two: the union has two, but corner's mean is missing when seed 0 is not drawn
    assert second["seeds"] == "2"


def test_improvements_markdown_of_no_comparison_is_a_header():
    text = improvements_markdown(improvement_table(pd.DataFrame(columns=list(REQUIRED_COLUMNS)), []))
    assert markdown_rows(text) == [IMPROVEMENT_HEADERS]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        ((-0.95, -1.1, -0.8, 3), "-0.95 [-1.10, -0.80]"),
        ((-0.001, -0.004, 0.2, 3), "0.00 [0.00, 0.20]"),
        ((-0.95, math.nan, math.nan, 1), "-0.95, CI n/a (1 seed)"),
        ((-0.95, math.nan, math.nan, 3), "-0.95, CI n/a"),
        ((math.nan, math.nan, math.nan, 3), "n/a"),
    ],
)
def test_estimate_format(args, text):
    assert estimate(*args) == text


def test_percent_and_power_of_two():
    assert (percent(0.1234), percent(math.nan)) == ("12.3%", "n/a")
    assert (power_of_two(2.0**-5), power_of_two(0.0), power_of_two(0.001)) == ("2^-5", "0", "0.001")
