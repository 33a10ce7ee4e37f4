"""Adafactor's own experiment: the language-model presets, their records (validation bits, trace, RMS(U)),
the ablation table and update-RMS figure, and the smoke form end to end."""

import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from test_models import one_thread  # noqa: F401  (an autouse fixture: one thread in this module too)
from test_workflow import copy_workflow, snakemake

from optbench.ablation_outputs import cell_table, spikes
from optbench.ablations import load_ablations
from optbench.aggregate import aggregate
from optbench.experiment import load_experiment
from optbench.outputs import write_outputs
from optbench.records import read_record, validate_record
from optbench.shard import train_many
from optbench.spec import RunSpec
from optbench.trainer import train

ROOT = Path(__file__).resolve().parents[1]


def config(preset):
    c = yaml.safe_load((ROOT / "config.yaml").read_text())
    c["preset"] = preset
    return c


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("data"))


# --- the presets ---------------------------------------------------------------------------------


def test_the_adafactor_preset_runs_each_row_with_and_without_warm_up_three_seeds():
    exp = load_experiment(config("adafactor"))
    assert len(exp.variants) == 20 and all(name.startswith("lm_") for name in exp.variants)
    runs = [run for v in exp.variants for run in exp.runs(v)]
    assert len(runs) == 60 and {r["seed"] for r in runs} == {0, 1, 2}
    specs = [RunSpec.from_dict(run) for run in runs]
    assert {(s.model, s.dataset, s.epochs, s.batch_size, s.trace_every) for s in specs} == {
        ("lm_tiny", "text_stdlib", 8, 32, 10)
    }
    warmup = {s.variant: s.schedule.warmup_epochs for s in specs}
    assert all((warmup[v] > 0) == v.endswith("_warmup") for v in warmup)
    (ablation,) = exp.ablations
    assert ablation.columns == ("no warm-up", "warm-up") and len(ablation.rows) == 10
    assert sorted(ablation.variants) == sorted(exp.variants)


@pytest.mark.parametrize("preset", ["quick", "reproduce", "smoke", "paper"])
def test_other_presets_run_no_language_model_variant(preset):
    exp = load_experiment(config(preset))
    assert not any(name.startswith("lm_") for name in exp.variants)
    assert exp.ablations == () and exp.outputs("r")["ablations"] == {}
    assert all("trace_every" not in run for v in exp.variants for run in exp.runs(v)[:1])


def test_the_smoke_form_keeps_the_no_warm_up_column():
    exp = load_experiment(config("adafactor_smoke"))
    assert set(exp.settings["seeds"]) == {0} and not any(v.endswith("_warmup") for v in exp.variants)
    (ablation,) = exp.ablations
    assert ablation.columns == ("no warm-up",) and len(ablation.rows) == 10
    assert ablation.curves == (("lm_factored",), ("lm_decay",))
    assert exp.outputs("r")["ablations"]["adafactor"] == [
        "r/tables/adafactor.csv",
        "r/tables/adafactor.md",
        "r/figures/adafactor_update_rms.png",
        "r/figures/adafactor_update_rms.pdf",
    ]


@pytest.mark.parametrize(
    "change,message",
    [
        (
            lambda a: a["rows"][0].update(variants=["lm_adam", "lm_adm"]),
            r"ablations.adafactor.rows\[0\].variants: unknown",
        ),
        (
            lambda a: a["rows"][1].update(variants=["lm_adam"]),
            r"rows\[1\].variants: needs one variant per column \(2\)",
        ),
        (lambda a: a["rows"][2].update(paper=[25.6]), r"rows\[2\].paper: needs one number or null per column"),
        (lambda a: a["update_rms"].append(["lm_adam", "nope"]), r"ablations.adafactor.update_rms\[2\]: unknown"),
    ],
)
def test_bad_ablation_entries_are_named(change, message):
    c = config("adafactor")
    change(c["ablations"]["adafactor"])
    with pytest.raises(ValueError, match=message):
        load_experiment(c)


def test_an_ablation_of_variants_a_preset_does_not_run_is_dropped():
    c = config("adafactor")["ablations"]
    assert load_ablations(c, config("adafactor")["variants"], ["adamw_cosine"]) == ()


def test_spikes_are_steps_above_factor_times_the_best_loss_before():
    # 6.1 > 1.5 x 4; 4.6 > 1.5 x 3; a non-finite loss counts; 4.4 < 4.5 does not
    assert spikes([5.0, 4.0, 6.1, 3.0, 4.6, None, 4.4, 2.0], 1.5) == 3
    assert spikes([], 1.5) == 0


# --- records -------------------------------------------------------------------------------------


def lm_spec(data_dir, **overrides):
    d = {
        "variant": "lm_factored",
        "optimizer": {"base": "AdamW", "beta1": 0.0, "factored": True},
        "lr": 1e-3,
        "weight_decay": 0.0,
        "dataset": "text_stdlib",
        "dataset_options": {"steps_per_epoch": 3, "eval_windows": 8},
        "model": "lm_tiny",
        "schedule": {"kind": "inverse_sqrt", "decay_start": 0.5, "warmup_epochs": 0.5},
        "epochs": 2,
        "batch_size": 4,
        "device": "cpu",
        "data_dir": data_dir,
        "trace_every": 2,
        "preset": "test",
    }
    return RunSpec.from_dict({**d, **overrides})


def test_a_language_model_record_carries_validation_bits_and_its_trace(data_dir):
    record = train(lm_spec(data_dir), quiet=True)
    validate_record(record)
    bits = [h["val_bits_per_token"] for h in record["history"]]
    assert len(bits) == 2 and record["final_val_bits_per_token"] == bits[-1] < 8.0  # below a uniform guess
    trace = record["trace"]
    assert trace["every"] == 2 and len(trace["train_loss"]) == 6
    assert trace["update_rms"]["step"] == [1, 3, 5]
    assert all(0 < m <= x for m, x in zip(trace["update_rms"]["mean"], trace["update_rms"]["max"]))
    assert all(0 <= f <= 1 for f in trace["update_rms"]["clipped_fraction"])
    assert record["memory"]["optimizer_state_bytes"] == record["memory"]["optimizer_state_bytes_predicted"]


def test_the_trace_changes_no_result_and_costs_nothing_when_off(data_dir):
    traced, plain = train(lm_spec(data_dir), quiet=True), train(lm_spec(data_dir, trace_every=0), quiet=True)
    assert "trace" not in plain
    assert traced["history"] == plain["history"]  # bit for bit
    per_epoch = torch.tensor(traced["trace"]["train_loss"]).view(2, 3).mean(dim=1)
    assert per_epoch.tolist() == pytest.approx([h["train_loss"] for h in traced["history"]], rel=1e-6)


def test_a_diverged_language_model_ends_at_a_uniform_guess(data_dir):
    record = train(lm_spec(data_dir, lr=1e8, optimizer={"base": "SGD"}), quiet=True)
    validate_record(record)
    assert record["status"] == "diverged" and record["final_val_bits_per_token"] == 8.0
    assert len(record["trace"]["train_loss"]) == 3 * len(record["history"])


# --- the smoke form end to end -------------------------------------------------------------------


def test_smoke_form_in_one_process_makes_the_table_and_figure(tmp_path, data_dir):
    c = config("adafactor_smoke")
    c["presets"]["adafactor_smoke"]["data_dir"] = data_dir
    exp = load_experiment(c)
    specs = [RunSpec.from_dict(run) for v in exp.variants for run in exp.runs(v)]
    train_many(specs, [tmp_path / "runs" / f"{s.run_id}.json" for s in specs], quiet=True)
    aggregate(sorted((tmp_path / "runs").glob("*.json")), tmp_path / "runs.csv")
    write_outputs(tmp_path / "runs.csv", exp, tmp_path / "results")
    cells = pd.read_csv(tmp_path / "results" / "tables" / "adafactor.csv")
    assert len(cells) == 10 and set(cells["column"]) == {"no warm-up"} and cells["state_equals_predicted"].all()
    state = dict(zip(cells["variant"], cells["optimizer_state_bytes"]))
    assert state["lm_adam"] == 2 * state["lm_beta1_0"] > state["lm_factored"] > state["lm_rows"] > state["lm_columns"]
    md = (tmp_path / "results" / "tables" / "adafactor.md").read_text()
    assert md.count("\n") == 12 and "not found" in md and "Adafactor, rows-only factoring" in md
    for name in ("adafactor_update_rms", "learning_curves"):
        assert (tmp_path / "results" / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    memory = pd.read_csv(tmp_path / "results" / "tables" / "memory.csv")
    assert memory["byte-level decoder LM (2 x 128) measured == predicted"].dropna().all()


def test_far_above_counts_runs_beyond_the_margin_over_the_best_cell():
    runs = pd.DataFrame(
        {
            "variant": ["lm_adam"] * 2 + ["lm_beta1_0"] * 2,
            "seed": [0, 1, 0, 1],
            "status": ["ok"] * 4,
            "final_val_bits_per_token": [3.0, 3.2, 3.5, 3.8],
            "memory.optimizer_state_bytes": [8, 8, 4, 4],
            "memory.optimizer_state_bytes_predicted": [8, 8, 4, 4],
            "trace.train_loss": [json.dumps([5.0, 4.0, 7.0])] * 4,
        }
    )
    ablation = load_experiment(config("adafactor")).ablations[0]
    cells = cell_table(runs, ablation)
    assert cells["far_above"].tolist() == [0, 1]  # the best cell's mean is 3.1: 3.8 > 3.1 + 0.5
    assert cells["spikes"].tolist() == [2, 2] and cells["runs_with_spikes"].tolist() == [2, 2]
    assert cells["ci_low"].iloc[0] <= cells["final_val_bits_per_token"].iloc[0] <= cells["ci_high"].iloc[0]


def test_an_ablation_of_untraced_runs_names_the_missing_column():
    runs = pd.DataFrame({"variant": ["lm_adam"], "final_val_bits_per_token": [3.0]})
    with pytest.raises(ValueError, match=r"runs.csv lacks trace.train_loss: .*trace_every > 0"):
        cell_table(runs, load_experiment(config("adafactor")).ablations[0])


@pytest.mark.slow
def test_smoke_form_through_snakemake_and_figures_only(tmp_path):
    copy_workflow(tmp_path)
    run = snakemake(tmp_path, "--cores", "2", "--config", "preset=adafactor_smoke")
    assert run.returncode == 0, run.stderr[-5000:]
    results = tmp_path / "results" / "adafactor_smoke"
    records = sorted((results / "runs").glob("*/shard*/*.json"))
    assert len(records) == 10 and all("trace" in read_record(path) for path in records)
    figure = results / "figures" / "adafactor_update_rms.png"
    before = figure.stat().st_mtime
    config = ["--config", "preset=adafactor_smoke", "results=results/adafactor_smoke"]  # the run, not a reference
    again = snakemake(tmp_path, "figures", "--cores", "1", *config)
    assert again.returncode == 0, again.stderr[-5000:]
    assert "rule train" not in again.stdout + again.stderr and figure.stat().st_mtime > before


def test_adafactor_preset_dag_has_one_training_job_per_variant():
    result = snakemake(ROOT, "--dry-run", "--quiet", "rules", "--config", "preset=adafactor", timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "train 20" in " ".join(result.stdout.split())
