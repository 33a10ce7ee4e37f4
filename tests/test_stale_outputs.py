"""No stale output: what a failed or partial run leaves is never taken for current by the next one."""

import json
import re
import shutil

import pandas as pd
import pytest
import yaml
from workflow_copy import copy_workflow, snakemake


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
