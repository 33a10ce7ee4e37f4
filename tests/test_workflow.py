"""The Snakemake workflow through the `snakemake` command: smoke preset end to end, figures only, lint, bad config."""

import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from optbench.records import read_record

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
WORKFLOW_FILES = ["Snakefile", "config.yaml", "workflow", "src", "envs", "profiles"]


def copy_workflow(dest: Path, extra=()) -> Path:
    for name in [*WORKFLOW_FILES, *extra]:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def snakemake(workdir: Path, *args, timeout=600):
    return subprocess.run([*SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    result = snakemake(workdir, "--cores", "2", "--config", "preset=smoke")
    assert result.returncode == 0, result.stderr[-5000:]
    return workdir, result


@pytest.mark.slow
def test_smoke_preset_makes_every_output(smoke_run):
    workdir, _ = smoke_run
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    smoke = config["presets"]["smoke"]
    results = workdir / "results" / "smoke"
    records = sorted((results / "runs").glob("*/shard*/*.json"))
    assert len(records) == len(smoke["variants"]) * 2 * 2  # 2 x 2 grids, one seed
    for path in records:
        record = read_record(path)
        assert record["preset"] == "smoke" and record["epochs"] == smoke["epochs"]
    runs = pd.read_csv(results / "tables" / "runs.csv")
    assert len(runs) == len(records) and set(runs["variant"]) == set(smoke["variants"])
    summary = pd.read_csv(results / "tables" / "summary.csv")
    assert set(summary["variant"]) == set(smoke["variants"])
    assert "slope of log2 best lambda on log2 lr" in (results / "tables" / "summary.md").read_text()
    # of the configured comparisons, only the pair whose variants smoke runs
    improvements = pd.read_csv(results / "tables" / "improvements.csv")
    assert improvements[["baseline", "candidate"]].values.tolist() == [["adam_l2_cosine", "adamw_cosine"]]
    assert "Adam (L2), cosine" in (results / "tables" / "improvements.md").read_text()
    memory = pd.read_csv(results / "tables" / "memory.csv")
    assert memory["MNIST-1D CNN measured == predicted"].dropna().all()
    assert "Transformer-base" in (results / "tables" / "memory.md").read_text()
    for name in ["adam_vs_adamw", "adamw_normalized", "adafactor", "learning_curves"]:
        assert (results / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (results / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"
    # records of one variant's shard land together: shard directories of runs_per_job records
    assert all(len(list(d.glob("*.json"))) == smoke["runs_per_job"] for d in (results / "runs").glob("*/shard*"))


@pytest.mark.slow
def test_second_run_has_nothing_to_do(smoke_run):
    workdir, _ = smoke_run
    result = snakemake(workdir, "--cores", "1", "--config", "preset=smoke", "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
def test_report_is_built(smoke_run):
    workdir, _ = smoke_run
    result = snakemake(workdir, "--config", "preset=smoke", "--report", "report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (workdir / "report.html").stat().st_size > 10_000


@pytest.mark.slow
def test_figures_from_the_committed_runs_csv_alone(tmp_path):
    """A fresh clone: the committed quick results, no run records, every file with a new mtime."""
    workdir = copy_workflow(tmp_path, extra=["results/quick/tables", "results/quick/figures"])
    assert not (workdir / "results" / "quick" / "runs").exists()
    files = [p for p in workdir.rglob("*") if p.is_file()]
    random.Random(0).shuffle(files)
    now = time.time()
    for i, path in enumerate(files):
        os.utime(path, (now + i * 1e-3, now + i * 1e-3))
    figure = workdir / "results" / "quick" / "figures" / "adam_vs_adamw.png"
    before = figure.stat().st_mtime
    start = time.monotonic()
    result = snakemake(workdir, "figures", "--cores", "1")
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-5000:]
    log = result.stdout + result.stderr
    assert "rule train" not in log and "rule aggregate" not in log
    assert figure.stat().st_mtime > before  # regenerated
    assert not (workdir / "results" / "quick" / "runs").exists()
    assert elapsed < 60, f"snakemake figures took {elapsed:.0f} s"


def test_lint_is_clean():
    result = snakemake(ROOT, "--lint", timeout=120)
    assert result.returncode == 0
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_paper_preset_dag_builds():
    result = snakemake(ROOT, "--dry-run", "--quiet", "rules", "--config", "preset=paper", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    # one training job per run: every variant's 132 cells
    variants = yaml.safe_load((ROOT / "config.yaml").read_text())["variants"]
    assert f"train {len(variants) * 132}" in " ".join(result.stdout.split())


@pytest.mark.parametrize(
    "override,message",
    [
        ({"preset": "nope"}, "preset: unknown preset 'nope'"),
        ({"presets": {"quick": {"epochs": 0}}}, "epochs"),
        (
            {"variants": {"adamw_fixed": {"optimizer": {"base": "AdamW", "weight_decay_mode": "l1"}}}},
            "weight_decay_mode",
        ),
        ({"variants": {"adamw_fixed": {"optimizer": {"base": "AdamW", "nesterov": True}}}}, "nesterov"),
        (
            {"variants": {"adamw_fixed": {"optimizer": {"base": "AdamW", "decay": "l2"}}}},
            "renamed to weight_decay_mode",
        ),
        ({"variants": {"adamw_fixed": {"grid": "huge"}}}, "variants.adamw_fixed.grid: 'huge'"),
        ({"presets": {"quick": {"grids": {"raw": {"lr": {"log2": [-3]}}}}}}, "log2"),
        (
            {"comparisons": [{"baseline": "adam_l2_cosine", "candidate": "adamw_cosin"}]},
            "comparisons[0].candidate: unknown variant 'adamw_cosin'",
        ),
    ],
)
def test_bad_config_stops_before_any_job(tmp_path, override, message):
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    merge(config, override)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(ROOT, "--dry-run", "--configfile", str(tmp_path / "bad.yaml"), timeout=120)
    assert result.returncode != 0
    assert message in result.stdout + result.stderr
    assert "rule train" not in result.stdout


def merge(base: dict, override: dict) -> None:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value


def test_config_matches_the_variant_table():
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    variants = config["variants"]
    assert len(variants) == 3 + 8 + 2 + 4 + 2
    sgd = {name: v for name, v in variants.items() if v["optimizer"]["base"] == "SGD"}
    assert {name: (v["optimizer"], v["schedule"]) for name, v in sgd.items()} == {
        "sgd_l2_cosine": ({"base": "SGD"}, "cosine"),
        "sgdw_cosine": ({"base": "SGD", "weight_decay_mode": "decoupled"}, "cosine"),
    }
    assert config["figures"]["sgd_vs_adam"]["panels"] == [
        ["sgd_l2_cosine", "sgdw_cosine"],
        ["adam_l2_cosine", "adamw_cosine"],
    ]
    plain = [v for v in variants.values() if v["optimizer"] == {"base": "AdamW"}]
    adamw = [v for v in plain if not v.get("normalized_weight_decay")]
    normalized = [v for v in plain if v.get("normalized_weight_decay")]
    assert (
        sorted(v["schedule"] for v in adamw)
        == sorted(v["schedule"] for v in normalized)
        == ["cosine", "fixed", "restarts", "step"]
    )
    grids = config["presets"]["quick"]["grids"]
    for grid in grids.values():
        (lo, hi), (wlo, whi) = grid["lr"]["log2"], grid["weight_decay"]["log2"]
        assert (hi - lo + 1, whi - wlo + 1) == (11, 12)
