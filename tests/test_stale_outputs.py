"""No stale output: what a failed or partial run leaves is never taken for current by the next one."""

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_copy import copy_workflow, snakemake, tree_digest

from optbench.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def planned(result) -> dict[str, int]:
    """The jobs a `--dry-run --quiet rules` plans, by rule."""
    return {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.MULTILINE)}


def set_variants(workdir, variants: list[str]) -> None:
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["presets"]["smoke"]["variants"] = variants
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


@pytest.fixture
def small_run(tmp_path):
    """The smoke preset with two variants, trained and aggregated: 4 training jobs."""
    workdir = copy_workflow(tmp_path)
    set_variants(workdir, ["adam_l2_cosine", "adamw_cosine"])
    result = snakemake(workdir, "--cores", "2", "--config", "preset=smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


@pytest.mark.slow
def test_a_deleted_shard_is_planned_and_trained_again(small_run):
    """With runs.csv up to date, deleted training outputs are still planned, by a dry run and a real one."""
    runs = small_run / "results" / "smoke" / "runs"
    for shard in ["adamw_cosine/shard000", "adamw_cosine/shard001"]:
        shutil.rmtree(runs / shard)
    dry = snakemake(small_run, "--dry-run", "--quiet", "rules", "--config", "preset=smoke")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert planned(dry) == {"train": 2, "aggregate": 1, "outputs": 1, "report_tables": 1, "all": 1, "total": 6}
    result = snakemake(small_run, "--cores", "2", "--config", "preset=smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    assert len(list(runs.glob("adamw_cosine/shard*/*.json"))) == 4


@pytest.mark.slow
def test_a_failed_aggregation_leaves_no_table_the_next_run_takes_for_current(small_run):
    """A variant swapped for another, and a bad record of the new one: the aggregation fails and leaves no runs.csv
    (not the old one, restored as if current); once the record is fixed, the next run aggregates the new variants."""
    set_variants(small_run, ["adam_l2_cosine", "adamw_fixed"])
    trained = snakemake(small_run, "--cores", "2", "--config", "preset=smoke", "--until", "train")
    assert trained.returncode == 0, trained.stderr[-3000:]
    record = next((small_run / "results" / "smoke" / "runs" / "adamw_fixed" / "shard000").glob("*.json"))
    good = record.read_text()
    record.write_text(json.dumps({**json.loads(good), "final_test_error": 0.01}))
    failed = snakemake(small_run, "--cores", "2", "--config", "preset=smoke")
    assert (
        failed.returncode != 0
        and "final_test_error is 0.01" in (small_run / "results/smoke/logs/aggregate.log").read_text()
    )
    tables = small_run / "results" / "smoke" / "tables"
    assert not (tables / "runs.csv").exists()
    record.write_text(good)
    dry = snakemake(small_run, "--dry-run", "--quiet", "rules", "--config", "preset=smoke")
    assert planned(dry).get("aggregate") == 1, dry.stdout[-3000:]
    result = snakemake(small_run, "--cores", "2", "--config", "preset=smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(pd.read_csv(tables / "summary.csv")["variant"]) == {"adam_l2_cosine", "adamw_fixed"}


# --- figures on a given DIR: the whole runs.csv checked first, the outputs written as a set ---------------------


@pytest.fixture
def drawn(tmp_path):
    """A copy of the committed smoke reference (its runs.csv, tables and figures) and the config that drew it."""
    results = tmp_path / "smoke"
    shutil.copytree(ROOT / "results" / "reference" / "smoke", results)
    config = {**yaml.safe_load((ROOT / "config.yaml").read_text()), "preset": "smoke"}
    return results, config


def draw(capsys, results, config) -> tuple[int, list[str]]:
    runs = results / "tables" / "runs.csv"
    args = ["outputs", "--runs", str(runs), "--config-json", json.dumps(config), "--results", str(results)]
    status = main(args)
    return status, capsys.readouterr().err.splitlines()


def cut(runs_csv, change) -> None:
    """``runs.csv`` rewritten with ``change`` applied to its table, in its own format."""
    table = pd.read_csv(runs_csv, dtype=str, keep_default_na=False)
    change(table).to_csv(runs_csv, index=False)


BAD_TABLES = [
    (lambda t: t.iloc[: len(t) // 2], "8 of the 16 runs of preset smoke are missing, adamw_cosine-lr0.0078125-wd"),
    (lambda t: t.assign(preset="quick"), "holds the runs of preset quick, not of smoke (the config's preset)"),
    (
        lambda t: t.assign(final_test_error=t["final_test_error"].where(t.index != 5, "0.01")),
        "line 7 (run adam_l2_cosine-lr0.0078125-wd0.00195312-s0): final_test_error is 0.01 but its history gives 0.76",
    ),
    (
        lambda t: t.assign(seed=t["seed"].where(t.index != 2, "")),
        "line 4 (run adafactor-lr0.0625-wd0.000976562-s0): seed is empty",
    ),
]


@pytest.mark.parametrize("change, message", BAD_TABLES, ids=["half", "other preset", "contradiction", "empty cell"])
def test_figures_on_a_bad_table_are_one_line_and_write_nothing(drawn, capsys, change, message):
    results, config = drawn
    runs_csv = results / "tables" / "runs.csv"
    cut(runs_csv, change)
    before = tree_digest(results)
    status, lines = draw(capsys, results, config)
    assert status == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"optbench outputs: error: {runs_csv}: ") and message in lines[0], lines[0]
    assert tree_digest(results) == before


def test_a_drawing_that_fails_midway_leaves_the_old_set(drawn, capsys, monkeypatch):
    """The summary and improvement tables drawn, then a failure: none of them replaces the old, nothing is left."""

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device", "learning_curves.png")

    monkeypatch.setattr("optbench.report.outputs.learning_curves_figure", fail)
    results, config = drawn
    (results / "tables" / "summary.md").write_text("the old summary\n")
    before = tree_digest(results)
    status, lines = draw(capsys, results, config)
    assert (status, lines) == (
        2,
        ["optbench outputs: error: [Errno 28] No space left on device: 'learning_curves.png'"],
    )
    assert tree_digest(results) == before


def test_figures_redraw_a_complete_table_to_the_same_bytes(drawn, capsys):
    results, config = drawn
    before = tree_digest(results)
    status, _ = draw(capsys, results, config)
    assert status == 0 and tree_digest(results) == before


@pytest.mark.slow
def test_snakemake_figures_on_half_a_table_stop_with_the_line(drawn, tmp_path):
    results, _ = drawn
    workdir = copy_workflow(tmp_path / "wf")
    runs_csv = results / "tables" / "runs.csv"
    cut(runs_csv, lambda t: t.iloc[: len(t) // 2])
    before = tree_digest(results)
    result = snakemake(workdir, "figures", "--cores", "1", "--config", "preset=smoke", f"results={results}")
    assert result.returncode != 0
    line = f"optbench outputs: error: {runs_csv}: 8 of the 16 runs of preset smoke are missing,"
    assert (workdir / "results" / "smoke" / "logs" / "figures.log").read_text().startswith(line)
    assert any(text.startswith(line) for text in result.stderr.splitlines()), result.stderr[-3000:]  # the terminal
    assert tree_digest(results) == before
