"""The Snakemake workflow through the `snakemake` command: smoke preset end to end, compare, report (in a browser),
figures only, lint, bad config."""

import os
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from browser import chromium, measured_layout
from matplotlib import image as plt_image
from workflow_copy import copy_workflow, snakemake, tree_digest

from optbench.experiment.machine import job_cores, machine_cores
from optbench.records.record import read_record

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """A fresh clone's smoke run: the workflow and the committed smoke reference, then the default target."""
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"), extra=["results/reference/smoke"])
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
    assert (results / "report" / "tables.html").read_text().count("<table") == 3  # summary, improvements, memory
    # no rule wrote into the reference
    reference = Path("results") / "reference" / "smoke"
    assert tree_digest(workdir / reference) == tree_digest(ROOT / reference)


@pytest.mark.slow
def test_progress_shows_in_the_log_and_terminal_and_checkpoints_go(smoke_run):
    workdir, result = smoke_run
    results = workdir / "results" / "smoke"
    shards = sorted((results / "runs").glob("*/shard*"))
    epochs = yaml.safe_load((workdir / "config.yaml").read_text())["presets"]["smoke"]["epochs"]
    for shard in shards:  # a line per epoch in the job's log
        log = (results / "logs" / "train" / shard.parent.name / f"{shard.name}.log").read_text()
        assert f"epoch {epochs}/{epochs}: " in log and ", ETA " in log, log
    # one summary line per training job on the terminal (the jobs' standard output)
    lines = [line for line in result.stdout.splitlines() if line.startswith("results/smoke/runs/")]
    assert sorted(line.split(":")[0] for line in lines) == [str(s.relative_to(workdir)) for s in shards]
    assert all(" trained in " in line and "best final test error" in line for line in lines)
    assert not (results / "checkpoints").exists()  # deleted with the records written, then the empty folders


@pytest.mark.slow
def test_second_run_has_nothing_to_do(smoke_run):
    workdir, _ = smoke_run
    result = snakemake(workdir, "--cores", "1", "--config", "preset=smoke", "--dry-run")
    assert result.returncode == 0
    assert "Nothing to be done" in result.stdout + result.stderr


@pytest.mark.slow
def test_compare_with_the_committed_smoke_reference(smoke_run):
    workdir, _ = smoke_run
    result = snakemake(workdir, "compare", "--cores", "1", "--config", "preset=smoke")
    assert result.returncode == 0, result.stderr[-5000:]
    compare = workdir / "results" / "smoke" / "compare"
    # identical where this CPU rounds as the reference's did (README: bit for bit per CPU), else inconclusive:
    # a 2 x 2 grid of one seed has no noise to judge a difference by
    verdict = re.search(r"compare: (the fresh run is identical to the reference|inconclusive: )", result.stdout)
    assert verdict, result.stdout[-3000:]
    assert "rule train" not in result.stdout + result.stderr
    text = (compare / "compare.md").read_text()
    assert "**Verdict: the fresh run is identical to the reference**" in text or "**Verdict: inconclusive**" in text
    table = pd.read_csv(compare / "compare.csv")
    assert table["verdict"].eq("inconclusive").all() and (table["cells"] == 4).all()
    assert table["noise_source"].str.startswith("the reference has one seed, and its 2 x 2 grid").all()
    assert (compare / "difference.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def smoke_report(smoke_run):
    """The report of the smoke run after `snakemake compare`, whose verdict and figure it then shows."""
    workdir, _ = smoke_run
    compared = snakemake(workdir, "compare", "--cores", "1", "--config", "preset=smoke")
    assert compared.returncode == 0, compared.stderr[-3000:]
    result = snakemake(workdir, "--config", "preset=smoke", "--report", "report.html")
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir / "report.html", result.stdout + result.stderr


@pytest.mark.slow
def test_report_holds_each_figure_png_and_the_tables(smoke_report):
    report, log = smoke_report
    assert report.stat().st_size > 10_000
    added = sorted(line.split()[1] for line in log.splitlines() if line.startswith("Adding "))
    figures = ["adafactor", "adam_vs_adamw", "adamw_normalized", "learning_curves", "sgd_vs_adam"]
    expected = [*(f"{name}.png" for name in figures), "difference.png", "tables.html"]
    assert added == sorted(expected)  # no PDF, CSV or Markdown
    text = report.read_text()
    assert "Adam with L2 regularization (top) versus AdamW (bottom)" in text  # the caption, from the config
    # the compare's verdict, from compare.md, in difference.png's caption: identical or inconclusive (2 x 2 grid)
    assert re.search(r"Verdict: (the fresh run is identical to the reference|inconclusive)", text)
    assert "Fresh run:" not in text  # the caption stops at the verdict


@pytest.mark.slow
def test_report_opens_at_its_title_and_shows_its_tables_in_a_browser(smoke_report, tmp_path):
    """The report in a real headless browser, 1400 px wide: it opens at its title, at the top of the page, and
    its first page renders the summary, claims and memory tables across the width, no cell on more than two
    lines. Skipped without Chromium, unless OPTBENCH_REQUIRE_BROWSER=1 (CI installs it and sets that)."""
    report, _ = smoke_report
    layout = measured_layout(report, tmp_path, size=(1400, 900))
    width, height = layout["viewport"]
    assert width == 1400
    assert layout["title"] == "optbench: AdamW and Adafactor, preset smoke"
    assert 0 <= layout["title_box"]["top"] and layout["title_box"]["bottom"] <= height, layout
    assert layout["scrolled"] == 0 and layout["content_top"] >= 0, layout  # nothing above the window
    summary, claims, memory = ([c["text"] for c in table["cells"]] for table in layout["tables"])
    assert "slope of log2 best lambda on log2 lr [95% CI]" in summary and "AdamW, cosine" in summary
    assert "relative improvement [95% CI]" in claims and "Adam (L2), cosine" in claims
    assert "Transformer-base" in memory and "ratio to Adam" in memory  # a model over its columns
    for table in layout["tables"]:
        assert table["right"] <= width, table["cells"][:12]
        assert [c for c in table["cells"] if c["lines"] > 2] == []
    shot = tmp_path / "report.png"
    assert chromium("--window-size=1400,2400", f"--screenshot={shot}", page=report).returncode == 0
    pixels = plt_image.imread(shot)
    assert pixels.shape[:2] == (2400, 1400) and pixels.std() > 0.05  # a page, not a blank


@pytest.mark.slow
def test_figures_redraw_the_committed_reference_byte_for_byte(tmp_path):
    """A fresh clone: the committed quick reference, no run records, every file with a new mtime."""
    reference = Path("results") / "reference" / "quick"
    workdir = copy_workflow(tmp_path, extra=[str(reference)])
    committed = tree_digest(workdir / reference)
    files = [p for p in workdir.rglob("*") if p.is_file()]
    random.Random(0).shuffle(files)
    now = time.time()
    for i, path in enumerate(files):
        os.utime(path, (now + i * 1e-3, now + i * 1e-3))
    figure = workdir / reference / "figures" / "adam_vs_adamw.png"
    before = figure.stat().st_mtime
    start = time.monotonic()
    result = snakemake(workdir, "figures", "--cores", "1")
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr[-5000:]
    log = result.stdout + result.stderr
    assert "rule train" not in log and "rule aggregate" not in log
    assert figure.stat().st_mtime > before  # regenerated ...
    assert tree_digest(workdir / reference) == committed  # ... to the same bytes, and nothing added
    assert not (workdir / "results" / "quick" / "runs").exists()
    assert elapsed < 60, f"snakemake figures took {elapsed:.0f} s"


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["reproduce", "budgets", "adafactor", "zoo", "adafactor_zoo"])
def test_every_committed_reference_redraws_from_the_config(tmp_path, preset):
    """The config's labels, figures and comparisons still draw each committed reference to the same bytes."""
    reference = Path("results") / "reference" / preset
    workdir = copy_workflow(tmp_path, extra=[str(reference)])
    committed = tree_digest(workdir / reference)
    result = snakemake(workdir, "figures", "--cores", "1", "--config", f"preset={preset}")
    assert result.returncode == 0, result.stderr[-5000:]
    assert tree_digest(workdir / reference) == committed


@pytest.mark.slow
def test_figures_draw_a_named_run(smoke_run, tmp_path):
    """`--config results=DIR`: the tables and figures of another run, from its runs.csv alone."""
    workdir = copy_workflow(tmp_path)
    run = workdir / "elsewhere"
    shutil.copytree(smoke_run[0] / "results" / "smoke" / "tables", run / "tables")
    result = snakemake(workdir, "figures", "--cores", "1", "--config", "preset=smoke", f"results={run}")
    assert result.returncode == 0, result.stderr[-5000:]
    assert (run / "figures" / "adam_vs_adamw.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (run / "tables" / "summary.md").is_file()
    assert not (workdir / "results" / "reference").exists() and "rule train" not in result.stdout
    # the preset's own run, whose jobs ran: naming it changes no job's params, so only `figures` runs
    planned = snakemake(smoke_run[0], "figures", "-n", "--config", "preset=smoke", "results=results/smoke")
    assert re.findall(r"^(?:local)?rule (\w+):$", planned.stdout, flags=re.MULTILINE) == ["figures"], planned.stdout


def test_figures_redraw_the_presets_own_run_by_default_and_say_where(smoke_run):
    """Once the preset has a run of its own, `snakemake figures` redraws that run, not the committed reference."""
    workdir, _ = smoke_run
    reference = workdir / "results" / "reference" / "smoke"
    before = tree_digest(reference)
    result = snakemake(workdir, "figures", "--cores", "1", "--config", "preset=smoke")
    assert result.returncode == 0, result.stderr[-5000:]
    said = re.findall(r"^optbench outputs: wrote (\d+) tables and figures under (\S+) from (\S+)$", result.stdout, re.M)
    assert len(said) == 1 and int(said[0][0]) > 10, result.stdout[-3000:]
    assert said[0][1:] == ("results/smoke", "results/smoke/tables/runs.csv")
    assert tree_digest(reference) == before


def test_a_fresh_clone_plans_the_training(tmp_path):
    """The committed reference is apart: on a fresh clone the default target trains the default preset."""
    workdir = copy_workflow(tmp_path, extra=["results/reference/quick"])
    result = snakemake(workdir, "--dry-run", "--quiet", "rules", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = {rule: int(n) for rule, n in re.findall(r"^(\w+)\s+(\d+)$", result.stdout, flags=re.MULTILINE)}
    expected = {"prepare_data": 1, "train": 34, "aggregate": 1, "outputs": 1, "report_tables": 1, "all": 1}
    assert jobs == {**expected, "total": 39}  # 17 variants x 2 training jobs


def test_more_cores_than_the_machine_has_run_no_more_jobs_at_once_than_it_holds():
    """`--cores` beyond this machine's cores: each training job takes a share of them, one thread each."""
    cores = 4 * machine_cores()
    result = snakemake(ROOT, "--dry-run", "--printshellcmds", "--cores", str(cores), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    taken = job_cores(cores, 1, machine_cores())
    assert set(re.findall(r"^    threads: (\d+)$", result.stdout, flags=re.MULTILINE)) == {str(taken)}
    assert f"each training job takes {taken} of them, so {machine_cores()} run at once" in result.stderr
    assert "-m optbench --threads 1 train" in result.stdout


def test_on_a_cluster_training_jobs_take_the_presets_threads_whatever_cores():
    """`--cores` counts this machine's cores: with a cluster executor (`--jobs`) a job asks for its preset's."""
    result = snakemake(ROOT, "--dry-run", "--profile", "profiles/slurm", "--cores", "64", "--config", "preset=smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training job takes" not in result.stderr
    assert re.findall(r"^    threads: (\d+)$", result.stdout, flags=re.MULTILINE) == []  # 1, which is not printed


def test_more_than_a_thousand_jobs_per_variant_plan(tmp_path):
    """Shard names go on past shard999: one run per job on a 33 x 31 grid plans 1023 training jobs."""
    workdir = copy_workflow(tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    preset = config["presets"]["smoke"]
    preset.update(variants=["adamw_cosine"], runs_per_job=1)
    preset["grids"]["raw"] = {"lr": {"log2": [-40, -8]}, "weight_decay": {"log2": [-40, -10]}}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(workdir, "--dry-run", "--quiet", "rules", "--config", "preset=smoke", timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train 1023" in " ".join(result.stdout.split())


def test_a_variant_no_preset_runs_is_named(tmp_path):
    """A row added to the variant table but to no preset's list trains nowhere: Snakemake says so, and goes on."""
    workdir = copy_workflow(tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["variants"]["my_adamw"] = {**config["variants"]["adamw_cosine"], "in_all": False}
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(workdir, "--dry-run", "--quiet", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        "snakemake: warning: no preset runs variant(s) my_adamw; add each to the variants: list of the presets "
        "that should run it" in result.stderr.splitlines()
    )


def test_use_conda_without_conda_is_one_line():
    """--use-conda on a machine without conda: our line, before Snakemake's 'conda: command not found'."""
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # the system's programs, without a conda installation's
    if shutil.which("conda", path=env["PATH"]):
        pytest.skip("conda is installed in /usr/bin or /bin")
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--use-conda", "--cores", "1", "--config", "preset=smoke"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert result.stderr.splitlines()[-1].startswith(
        "snakemake: --use-conda needs conda on the PATH, and there is none"
    )
    assert "command not found" not in result.stderr


def test_compare_needs_a_reference():
    result = snakemake(ROOT, "compare", "--dry-run", "--config", "preset=paper", timeout=120)
    assert result.returncode != 0
    assert "results/reference/paper/tables/runs.csv" in result.stdout + result.stderr


def test_lint_is_clean():
    result = snakemake(ROOT, "--lint", timeout=120)
    assert result.returncode == 0
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


def test_paper_preset_dag_builds():
    result = snakemake(ROOT, "--dry-run", "--quiet", "rules", "--config", "preset=paper", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    # one training job per run: every variant's 132 cells (`variants: all` leaves out those marked in_all: false)
    variants = yaml.safe_load((ROOT / "config.yaml").read_text())["variants"]
    in_all = [v for v in variants.values() if v.get("in_all", True)]
    assert f"train {len(in_all) * 132}" in " ".join(result.stdout.split())


def test_budgets_preset_dag_builds():
    result = snakemake(ROOT, "--dry-run", "--quiet", "rules", "--config", "preset=budgets", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    # 2 variants x (4 budgets + 3 training-set sizes) + 2 warm-restarts variants: one heatmap per job
    assert "train 16" in " ".join(result.stdout.split())


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
    variants = {name: v for name, v in config["variants"].items() if v.get("in_all", True)}
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
