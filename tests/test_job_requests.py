"""What a preset's training jobs ask of a cluster (optbench.experiment.job_requests) and a run of some of its
variants (optbench.experiment.subset), on the repository's own config and committed references."""

from pathlib import Path

import pytest
import yaml
from workflow_copy import copy_workflow, snakemake

from optbench.experiment.config import load_checked
from optbench.experiment.job_requests import epoch_seconds, gpu_hours, runtime_warning
from optbench.experiment.subset import requested, run_only, variant_table

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
SMOKE_RUNS = ROOT / "results" / "reference" / "smoke" / "tables" / "runs.csv"


def config(preset, **settings):
    c = yaml.safe_load((ROOT / "config.yaml").read_text())
    c["preset"] = preset
    c["presets"][preset].update(settings)
    return c


def test_the_paper_preset_totals_its_gpu_hours():
    # 19 variants x 11 x 12 cells x 1 seed, one run per job
    assert gpu_hours(load_checked(config("paper"), SCHEMA)) == (
        "paper: 2508 training jobs x 1 GPU x 120 min = 5016 GPU-hours requested"
    )


def test_a_preset_without_gpus_requests_no_gpu_hours():
    assert gpu_hours(load_checked(config("quick"), SCHEMA)) is None


def test_the_pace_is_measured_per_variant_without_setup():
    paces = epoch_seconds(SMOKE_RUNS)
    assert set(paces) == {"adam_l2_cosine", "adamw_cosine", "adamw_norm_restarts", "adafactor"}
    assert all(0 < pace < 1 for pace in paces.values()), paces


def test_the_smoke_preset_fits_its_runtime():
    assert runtime_warning(load_checked(config("smoke"), SCHEMA), SMOKE_RUNS) is None


def test_a_million_epochs_in_ten_minutes_is_named():
    warning = runtime_warning(load_checked(config("smoke", epochs=1_000_000), SCHEMA), SMOKE_RUNS)
    assert warning.startswith("presets.smoke.epochs: 1000000 epochs, with runs_per_job 2, take at least")
    assert f"at the pace measured in {SMOKE_RUNS}" in warning
    assert "beyond resources.runtime (10 min)" in warning and "\n" not in warning


def test_the_paper_preset_fits_its_runtime_at_its_declared_pace():
    assert runtime_warning(load_checked(config("paper"), SCHEMA), None) is None


def test_ten_times_the_paper_s_epochs_is_named_at_its_declared_pace():
    warning = runtime_warning(load_checked(config("paper", epochs=1000), SCHEMA), None)
    assert warning.startswith("presets.paper.epochs: 1000 epochs, with runs_per_job 1, take at least 200 min per ")
    assert "at the pace of resources.epoch_seconds (12 s per run and epoch), beyond resources.runtime (120 min)" in (
        warning
    )


def test_without_a_pace_nothing_is_estimated():
    assert runtime_warning(load_checked(config("quick", epochs=1_000_000), SCHEMA), None) is None


def test_a_subset_is_read_from_the_command_line():
    assert requested({"variants": "adamw_cosine, adafactor"}) == ["adamw_cosine", "adafactor"]
    assert requested({"variants": ["adafactor"]}) == ["adafactor"]
    assert requested({"variants": None}) == []  # --config variants=
    assert requested(config("smoke")) is None  # the table itself


def test_the_table_comes_back_from_the_config_files_merged(tmp_path):
    (tmp_path / "more.yaml").write_text("variants:\n  adamw_cosine: {label: relabelled}\n  mine: {label: x}\n")
    table = variant_table([ROOT / "config.yaml", tmp_path / "more.yaml"])
    assert table["adamw_cosine"]["label"] == "relabelled" and table["adamw_cosine"]["schedule"] == "cosine"
    assert table["mine"] == {"label": "x"} and "adafactor" in table


def test_the_preset_runs_only_the_named_variants():
    c = config("smoke")
    run_only(c, ["adafactor", "adamw_cosine", "adafactor"])
    assert list(load_checked(c, SCHEMA).variants) == ["adafactor", "adamw_cosine"]


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["adamw_cosine", "adamw_cosin"], "variants: 'adamw_cosin' is not a variant of preset smoke; its variants: "),
        ([], "variants: no variant named; its variants: "),
    ],
)
def test_an_unknown_variant_is_one_line_listing_the_preset_s(names, message):
    with pytest.raises(ValueError) as error:
        run_only(config("smoke"), names)
    assert str(error.value) == message + "adam_l2_cosine, adamw_cosine, adamw_norm_restarts, adafactor"


@pytest.mark.slow
def test_a_dry_run_plans_only_the_named_variants(tmp_path):
    workdir = copy_workflow(tmp_path)
    result = snakemake(workdir, "--dry-run", "--config", "preset=smoke", "variants=adamw_cosine,adafactor", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    planned = {line.split("variant=")[1].split(",")[0] for line in result.stdout.splitlines() if "variant=" in line}
    assert planned == {"adamw_cosine", "adafactor"}, result.stdout[-3000:]
    result = snakemake(workdir, "--dry-run", "--config", "preset=smoke", "variants=adamw_cosine,nope", timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (
        "--config: variants: 'nope' is not a variant of preset smoke; its variants: "
        "adam_l2_cosine, adamw_cosine, adamw_norm_restarts, adafactor"
    )


@pytest.mark.slow
def test_a_dry_run_warns_of_jobs_beyond_their_runtime(tmp_path):
    workdir = copy_workflow(tmp_path, extra=["results/reference/smoke"])
    (tmp_path / "long.yaml").write_text("presets:\n  smoke:\n    epochs: 1000000\n")
    result = snakemake(workdir, "--dry-run", "--configfile", str(tmp_path / "long.yaml"), "--config", "preset=smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    (line,) = [line for line in result.stderr.splitlines() if "resources.runtime" in line]
    assert line.startswith(f"snakemake: warning: {tmp_path / 'long.yaml'}: presets.smoke.epochs: 1000000 epochs")
