"""Bad input is caught before any training or at aggregation, with one line naming the key or the file.

- Configs: what the schema rejects and what a training job would reject, when the config is loaded
  (``optbench.experiment.config.load_checked``, which the Snakefile runs before any job starts).
- Run specs: what a training job rejects before it trains a run, written nowhere.
- Records: what aggregation rejects; ``runs.csv`` stays as it was.
- Environment faults: a refused write names the path and the system's error and leaves nothing behind.
- Two runs of one preset: the second stops before its first job.
"""

import errno
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from fake_records import make_record
from run_specs import spec_dict
from workflow_copy import copy_workflow, snakemake

from optbench.__main__ import main
from optbench.atomic import atomic_write_text
from optbench.data.loaders import LOADERS
from optbench.experiment import run_lock
from optbench.experiment.config import load_checked
from optbench.experiment.layout import record_paths
from optbench.experiment.preset import load_experiment
from optbench.records.checks import expected_fields
from optbench.records.record import record_schema, write_record
from optbench.spec.datasets import DATASETS
from optbench.spec.switches import ADDED_SINCE_V2
from optbench.train.cuda import check_cuda

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
INF, NAN = math.inf, math.nan


def config(preset="quick"):
    c = yaml.safe_load((ROOT / "config.yaml").read_text())
    c["preset"] = preset
    return c


def quick(c):
    return c["presets"]["quick"]


def grid(c, axis):
    return quick(c)["grids"]["raw"][axis]


# (what is wrong, how to make the config so, the start of the one-line message)
BAD_CONFIGS = [
    (
        "warm-up as long as the run",
        lambda c: quick(c)["schedules"]["cosine"].update(warmup_epochs=quick(c)["epochs"]),
        "presets.quick.schedules.cosine: warmup_epochs must be < epochs (8)",
    ),
    (
        "milestones out of order",
        lambda c: quick(c)["schedules"]["step"].update(milestones=[6, 3]),
        "presets.quick.schedules.step: milestones must be non-negative, strictly increasing",
    ),
    (
        "warm restarts given t_0 and cycles",
        lambda c: quick(c)["schedules"]["restarts"].update(t_0=2),
        "presets.quick.schedules.restarts: warm_restarts needs exactly one of t_0",
    ),
    (
        "a batch larger than the data set",
        lambda c: quick(c).update(batch_size=5000),
        "presets.quick.batch_size: 5000 exceeds the 4000 training examples of mnist1d",
    ),
    (
        "an unknown dataset option",
        lambda c: quick(c).update(dataset_options={"colour": "red"}),
        "presets.quick.dataset_options.colour: unknown option for dataset 'mnist1d'",
    ),
    (
        "a bad dataset option",
        lambda c: quick(c).update(dataset_options={"num_samples": 1005}),
        "presets.quick.dataset_options.num_samples: must be a positive multiple of 10, got 1005",
    ),
    (
        "an infinite dataset option",
        lambda c: quick(c).update(dataset_options={"num_samples": INF}),
        "presets.quick.dataset_options.num_samples: must be a positive multiple of 10, got inf",
    ),
    (
        "an infinite grid factor",
        lambda c: grid(c, "lr").update(times=INF),
        "presets.quick.grids.raw.lr.times: inf is not a finite number",
    ),
    (
        "an infinite grid value",
        lambda c: quick(c)["grids"]["raw"].update(weight_decay={"values": [0.1, INF]}),
        "presets.quick.grids.raw.weight_decay.values[1]: inf is not a finite number",
    ),
    (
        "a NaN eps",
        lambda c: c["variants"]["adamw_fixed"]["optimizer"].update(eps=NAN),
        "variants.adamw_fixed.optimizer.eps: nan is not a finite number",
    ),
    (
        "an infinite beta2_decay",
        lambda c: c["variants"]["adafactor"]["optimizer"].update(beta2_decay=INF),
        "variants.adafactor.optimizer.beta2_decay: inf is not a finite number",
    ),
    (
        "a NaN milestone",
        lambda c: quick(c)["schedules"]["step"].update(milestones=[3, NAN]),
        "presets.quick.schedules.step.milestones[1]: nan is not a finite number",
    ),
    (
        "a reversed log2 axis",
        lambda c: grid(c, "lr").update(log2=[-1, -11]),
        "presets.quick.grids.raw.lr.log2: [-1, -11] is an empty range",
    ),
    (
        "an empty axis",
        lambda c: quick(c)["grids"]["raw"].update(lr={"values": []}),
        "presets.quick.grids.raw.lr.values: [] should be non-empty",
    ),
    (
        "a grid value twice",
        lambda c: quick(c)["grids"]["raw"].update(lr={"values": [0.001, 0.002, 0.001]}),
        "presets.quick.grids.raw.lr.values: 0.001 and 0.001 are equal to 6 significant digits",
    ),
    (
        "grid values equal to 6 significant digits",
        lambda c: quick(c)["grids"]["raw"].update(weight_decay={"values": [0.001, 0.0010000001]}),
        "presets.quick.grids.raw.weight_decay.values: 0.001 and 0.0010000001 are equal to 6 significant digits",
    ),
    ("a seed twice", lambda c: quick(c).update(seeds=[0, 0]), "presets.quick.seeds: [0, 0] has non-unique elements"),
    ("a negative seed", lambda c: quick(c).update(seeds=[-1]), "presets.quick.seeds[0]: -1 is less than the minimum"),
    (
        "an unknown variant in a figure",
        lambda c: c["figures"]["adam_vs_adamw"]["panels"][0].__setitem__(1, "adamw_cosin"),
        "figures.adam_vs_adamw.panels[0][1]: unknown variant 'adamw_cosin'",
    ),
    (
        "a title per row of panels, one short",
        lambda c: c["figures"]["sgd_vs_adam"].update(row_titles=["SGD"]),
        "figures.sgd_vs_adam.row_titles: 1 given for 2 rows of panels; give one title per row",
    ),
    (
        "an unknown variant in a comparison",
        lambda c: c["comparisons"][0].update(candidate="adamw_cosin"),
        "comparisons[0].candidate: unknown variant 'adamw_cosin'",
    ),
    (
        "an unknown top-level key",
        lambda c: c.update(bogus=1),
        "(top level): Additional properties are not allowed ('bogus' was unexpected)",
    ),
    (
        "a misspelt preset key",
        lambda c: quick(c).update(epoch=3),
        "presets.quick: Additional properties are not allowed ('epoch' was unexpected)",
    ),
    ("zero epochs", lambda c: quick(c).update(epochs=0), "presets.quick.epochs: 0 is less than the minimum of 1"),
    (
        "a renamed optimizer key",
        lambda c: c["variants"]["adamw_fixed"]["optimizer"].update(decay="l2"),
        "variants.adamw_fixed.optimizer.decay: renamed to weight_decay_mode",
    ),
    (
        "a milestone at the run's end",
        lambda c: quick(c)["schedules"]["step"].update(milestones=[2, 5, 8]),
        "presets.quick.schedules.step: milestones must be < epochs (8), or the drop never happens",
    ),
    (
        "a variant name too long for a file name",
        lambda c: (
            c["variants"].update({"v" * 250: c["variants"]["adamw_fixed"]}) or quick(c)["variants"].append("v" * 250)
        ),
        "presets.quick.variant: at most 200 bytes (it names files), got 250",
    ),
]


@pytest.mark.parametrize("change, message", [case[1:] for case in BAD_CONFIGS], ids=[case[0] for case in BAD_CONFIGS])
def test_a_bad_config_is_one_line_naming_the_key(change, message):
    c = config()
    change(c)
    with pytest.raises(ValueError) as error:
        load_checked(c, SCHEMA)
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_a_milestone_past_a_swept_budget_is_named():
    """The preset's epochs fit the milestones; the shortest budget of its sweep does not."""
    c = config("budgets")
    budgets = c["presets"]["budgets"]
    budgets["variants"].append("adamw_step")
    budgets["schedules"]["step"] = {"kind": "step", "milestones": [5, 30]}
    budgets["sweeps"]["epochs"]["variants"].append("adamw_step")
    with pytest.raises(ValueError) as error:
        load_checked(c, SCHEMA)
    assert str(error.value) == (
        "presets.budgets.schedules.step: milestones must be < epochs (3), or the drop never happens; "
        "got [5.0, 30.0] (in the runs of variant adamw_step-epochs3, 3 epochs)"
    )


def test_the_schemas_are_valid_json_schemas():
    for schema in (yaml.safe_load(SCHEMA.read_text()), record_schema()):
        jsonschema.validators.validator_for(schema).check_schema(schema)


def test_every_preset_passes_every_check():
    for preset in config()["presets"]:
        load_checked(config(preset), SCHEMA)


def test_a_variant_the_preset_does_not_run_leaves_a_figure_panel_blank():
    experiment = load_checked(config("smoke"), SCHEMA)
    assert experiment.figures["adam_vs_adamw"]["panels"] == [["adam_l2_cosine"], ["adamw_cosine"]]


def test_cuda_without_a_gpu_is_named(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match=r"^presets\.paper\.device: 'cuda', but torch sees no CUDA device"):
        check_cuda("paper", "cuda")
    check_cuda("quick", "cpu")


def test_every_dataset_has_a_loader():
    assert set(LOADERS) == set(DATASETS)


@pytest.mark.parametrize("case", ["warm-up as long as the run", "a NaN eps", "an unknown top-level key"])
def test_snakemake_stops_with_the_one_line(tmp_path, case):
    change, message = {name: rest for name, *rest in BAD_CONFIGS}[case]
    c = config()
    change(c)
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(c))
    result = snakemake(ROOT, "--dry-run", "--configfile", str(tmp_path / "bad.yaml"), timeout=120)
    assert result.returncode != 0
    assert last_line(result.stderr).startswith(f"{tmp_path / 'bad.yaml'}: {message}")  # the file the value is in
    assert "Traceback" not in result.stderr and "rule train" not in result.stdout
    assert len(result.stdout.splitlines() + result.stderr.splitlines()) <= 3


@pytest.mark.parametrize(
    ("args", "source"),
    [
        (["--config", "preset=nope"], "--config: preset: unknown preset 'nope'"),
        (["--configfile", "{tmp}/epochs.yaml"], "{tmp}/epochs.yaml: presets.quick.epochs: 0 is less than the minimum"),
        (["--config", "preset=smoke"], "config.yaml: presets.smoke.variants: unknown variant 'adamw_cosin'"),
    ],
    ids=["--config", "--configfile", "config.yaml"],
)
def test_a_config_error_names_the_file_its_value_came_from(tmp_path, args, source):
    (tmp_path / "epochs.yaml").write_text("presets:\n  quick:\n    epochs: 0\n")
    c = config()
    c["presets"]["smoke"]["variants"] = ["adamw_cosin"]  # in config.yaml itself: a copy of the workflow
    workdir = copy_workflow(tmp_path / "workflow")
    (workdir / "config.yaml").write_text(yaml.safe_dump(c, sort_keys=False))
    result = snakemake(workdir, "--dry-run", *(a.format(tmp=tmp_path) for a in args), timeout=120)
    assert result.returncode != 0
    assert last_line(result.stderr).startswith(source.format(tmp=tmp_path)), last_line(result.stderr)


def quick_line(text: str) -> int:
    """The line of config.yaml that opens the quick preset."""
    return text[: text.index("\n  quick:\n")].count("\n") + 2


@pytest.mark.parametrize(
    ("break_it", "message"),
    [
        (
            lambda text: text.replace("\n  quick:\n", "\n\tquick:\n", 1),
            lambda text: f"config.yaml, line {quick_line(text)}, column 1: not valid YAML: found character '\\t'",
        ),
        (lambda text: text.replace("seeds: [0]", "seeds: [0", 1), lambda text: "config.yaml, line "),
    ],
    ids=["a tab", "an unclosed bracket"],
)
def test_a_config_that_is_not_yaml_is_named_with_its_line(tmp_path, break_it, message):
    workdir = copy_workflow(tmp_path)
    text = (workdir / "config.yaml").read_text()
    (workdir / "config.yaml").write_text(break_it(text))
    result = snakemake(workdir, "--dry-run", timeout=120)
    assert result.returncode != 0
    line = last_line(result.stderr)
    assert line.startswith(message(text)) and ": not valid YAML: " in line, line


# --- run specs: rejected by the job before it trains anything ---------------------------------------------


def last_line(text: str) -> str:
    return [line for line in text.splitlines() if line.strip()][-1]


def spec(data_dir, **changes):
    return spec_dict(str(data_dir), **changes)


BAD_SPECS = [
    ({"lr": INF}, "lr: must be a finite number >= 0, got inf"),
    ({"weight_decay": NAN}, "weight_decay: must be a finite number >= 0, got nan"),
    ({"schedule": {"kind": "cosine", "warmup_epochs": 2}}, "schedule: warmup_epochs must be < epochs (2)"),
    ({"schedule": {"kind": "step", "milestones": [2, 1]}}, "schedule: milestones must be non-negative"),
    ({"batch_size": 5000}, "batch_size: 5000 exceeds the 4000 training examples of mnist1d"),
    ({"dataset_options": {"num_samples": 1005}}, "dataset_options.num_samples: must be a positive multiple of 10"),
    ({"dataset_options": {"colour": 1}}, "dataset_options.colour: unknown option for dataset 'mnist1d'"),
    ({"seed": -1}, "seed: must be an integer >= 0, got -1"),
    ({"optimizer": {"base": "AdamW", "eps": NAN}}, "optimizer.eps: must be a finite number >= 0, got nan"),
    ({"schedule": {"kind": "step", "milestones": [1, 2]}}, "schedule: milestones must be < epochs (2), or the drop"),
    ({"schedule": {"milestones": [1]}}, "schedule: kind is required, one of fixed, step,"),
    ({"bf16": "yes"}, "bf16: must be true or false, got 'yes'"),
    ({"run_id": ".."}, "run_id: must be a file name (not empty, '.' or '..', no '/'), got '..'"),
    ({"lr": "0.01"}, "lr: must be a finite number >= 0, got '0.01'"),
    ({"variant": "v" * 250}, "variant: at most 200 bytes (it names files), got 250"),
]


def train(capsys, *args) -> tuple[int, list[str]]:
    status = main(["train", *map(str, args)])
    return status, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("change, message", BAD_SPECS, ids=[next(iter(change)) for change, _ in BAD_SPECS])
def test_a_bad_spec_stops_the_job_before_it_trains(tmp_path, capsys, change, message):
    path = tmp_path / "specs.json"
    path.write_text(json.dumps([spec(tmp_path), spec(tmp_path, **change)]))  # Python writes NaN and Infinity
    status, lines = train(capsys, "--spec", path, "--out-dir", tmp_path / "runs")
    assert status == 2 and len(lines) == 1
    assert lines[0].startswith(f"optbench train: error: {path}, run spec 1: {message}")
    assert not (tmp_path / "runs").exists()


def test_an_empty_spec_list_stops_the_job(tmp_path, capsys):
    status, lines = train(capsys, "--spec-json", "[]", "--out-dir", tmp_path / "runs")
    assert (status, lines) == (2, ["optbench train: error: --spec-json: no run specs (an empty list)"])


def test_the_same_run_twice_stops_the_job_before_it_trains(tmp_path, capsys):
    status, lines = train(capsys, "--spec-json", json.dumps([spec(tmp_path)] * 2), "--out-dir", tmp_path / "runs")
    assert status == 2
    assert lines == [
        f"optbench train: error: --spec-json, run specs 0 and 1: both would write "
        f"{tmp_path / 'runs' / 'adamw_cosine-lr0.00390625-wd0.015625-s0.json'}; give each its own run id"
    ]
    assert not (tmp_path / "runs").exists()


def test_a_spec_file_that_is_not_json_is_named(tmp_path, capsys):
    path = tmp_path / "specs.json"
    path.write_text("[{")
    status, lines = train(capsys, "--spec", path, "--out", tmp_path / "run.json")
    assert status == 2 and len(lines) == 1 and lines[0].startswith(f"optbench train: error: {path}: not valid JSON")


# --- records: rejected at aggregation, runs.csv unchanged -------------------------------------------------


@pytest.fixture
def aggregated(tmp_path, capsys):
    """The smoke preset's runs, one fake record each where its job would write it, aggregated once."""
    c = config("smoke")
    paths, specs = record_paths(load_experiment(c), tmp_path / "runs")
    for path, spec in zip(paths, specs):
        record = make_record(spec.variant, spec.lr, spec.weight_decay, spec.seed, 0.2, epochs=spec.epochs)
        write_record({**record, **{k: v for k, v in expected_fields(spec).items() if k in record}}, path)
    runs_csv = tmp_path / "tables" / "runs.csv"
    assert aggregate(capsys, tmp_path, c, runs_csv) == (0, [])
    return c, paths, runs_csv


def aggregate(capsys, tmp_path, c, runs_csv) -> tuple[int, list[str]]:
    status = main(
        ["aggregate", "--runs", str(tmp_path / "runs"), "--config-json", json.dumps(c), "--out", str(runs_csv)]
    )
    return status, capsys.readouterr().err.splitlines()


def edit(path, change):
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record))  # Python writes NaN and Infinity


BAD_RECORDS = [
    ("an error above 1", lambda r: r.update(final_test_error=1.7), "$.final_test_error: 1.7 is greater than"),
    ("a negative lr", lambda r: r.update(lr=-0.1), "$.lr: -0.1 is less than the minimum of 0"),
    ("no history", lambda r: r.pop("history"), "$: 'history' is a required property"),
    ("a NaN test error", lambda r: r["history"][0].update(test_error=NAN), "$.history[0].test_error: nan"),
    ("another preset", lambda r: r.update(preset="quick"), "preset is 'quick' in the record but 'smoke'"),
    ("another variant", lambda r: r.update(variant="adamw_fixed"), "variant is 'adamw_fixed' in the record"),
    ("another cell", lambda r: r.update(lr=0.5), "lr is 0.5 in the record but"),
    ("another optimizer", lambda r: r["optimizer"].update(beta1=0.5), "optimizer is {"),
    ("another run id", lambda r: r.update(run_id="x"), "run_id is 'x' in the record but"),
    (
        "a final error its history does not end at",
        lambda r: r.update(final_test_error=0.01),
        "final_test_error is 0.01 but its history gives 0.2",
    ),
    (
        "a best error above the history's least",
        lambda r: r.update(best_test_error=0.5),
        "best_test_error is 0.5 but its history gives 0.2",
    ),
    (
        "a final loss not the history's",
        lambda r: r.update(final_train_loss=9.0),
        "final_train_loss is 9.0 but its history gives",
    ),
    (
        "a history shorter than the run",
        lambda r: r.update(history=r["history"][-1:]),
        "the history has 1 epochs but the run has",
    ),
    ("epochs out of order", lambda r: r["history"][0].update(epoch=5), "the history's epochs are [5, "),
    ("an empty history", lambda r: r.update(history=[]), "the history is empty"),
]


@pytest.mark.parametrize("change, message", [case[1:] for case in BAD_RECORDS], ids=[case[0] for case in BAD_RECORDS])
def test_a_bad_record_stops_aggregation_naming_the_file(aggregated, tmp_path, capsys, change, message):
    c, paths, runs_csv = aggregated
    before = runs_csv.read_bytes()
    edit(paths[5], change)
    status, lines = aggregate(capsys, tmp_path, c, runs_csv)
    assert status == 2 and len(lines) == 1
    assert lines[0].startswith(f"optbench aggregate: error: {paths[5]}: ") and message in lines[0]
    assert runs_csv.read_bytes() == before
    assert os.listdir(runs_csv.parent) == ["runs.csv"]


def test_every_bad_record_is_named_one_line_each(aggregated, tmp_path, capsys):
    c, paths, runs_csv = aggregated
    before = runs_csv.read_bytes()
    edit(paths[2], lambda r: r.update(final_test_error=0.01))
    edit(paths[7], lambda r: r.update(best_test_error=0.5, lr=0.5))
    status, lines = aggregate(capsys, tmp_path, c, runs_csv)
    assert status == 2 and len(lines) == 2
    assert lines[0].startswith(f"optbench aggregate: error: {paths[2]}: final_test_error is 0.01")
    assert lines[1].startswith(f"optbench aggregate: error: {paths[7]}: best_test_error is 0.5")
    assert "; lr is 0.5 in the record but" in lines[1]
    assert runs_csv.read_bytes() == before


def test_a_record_from_before_a_switch_existed_reads_as_its_default(aggregated, tmp_path, capsys):
    """Adding a switch to the table (and to ADDED_SINCE_V2, which the record schema leaves optional) leaves old
    records valid: a switch a record lacks is read as its default, in the check and in runs.csv."""
    c, paths, runs_csv = aggregated
    before = runs_csv.read_bytes()
    for path in paths:
        edit(path, lambda r: [r["optimizer"].pop(name) for name in ADDED_SINCE_V2])
    assert aggregate(capsys, tmp_path, c, runs_csv) == (0, [])
    assert runs_csv.read_bytes() == before


def test_a_missing_record_stops_aggregation_naming_the_file(aggregated, tmp_path, capsys):
    c, paths, runs_csv = aggregated
    before = runs_csv.read_bytes()
    paths[3].unlink()
    assert aggregate(capsys, tmp_path, c, runs_csv) == (
        2,
        [f"optbench aggregate: error: [Errno 2] No such file or directory: '{paths[3]}'"],
    )
    assert runs_csv.read_bytes() == before


# --- environment faults: one line naming the path and the error, nothing half-written ----------------------


def refuse(code):
    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    return fail


def test_a_full_disk_names_the_table_and_leaves_it_as_it_was(aggregated, tmp_path, capsys, monkeypatch):
    c, _, runs_csv = aggregated
    before = runs_csv.read_bytes()
    monkeypatch.setattr(os, "replace", refuse(errno.ENOSPC))
    assert aggregate(capsys, tmp_path, c, runs_csv) == (
        2,
        [f"optbench aggregate: error: [Errno 28] No space left on device: '{runs_csv}'"],
    )
    assert runs_csv.read_bytes() == before
    assert os.listdir(runs_csv.parent) == ["runs.csv"]


def test_a_write_that_fails_midway_leaves_nothing(tmp_path, monkeypatch):
    def half_then_full(self, text):
        Path.write_bytes(self, text[: len(text) // 2].encode())
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_text", half_then_full)
    with pytest.raises(OSError, match=rf"No space left on device: '{tmp_path / 'run.json'}'"):
        atomic_write_text(tmp_path / "run.json", "{}" * 100)
    assert os.listdir(tmp_path) == []


def test_a_read_only_data_directory_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(os, "replace", refuse(errno.EROFS))
    status = main(
        ["prepare-data", "--dataset", "mnist1d", "--data-dir", str(tmp_path / "data")]
        + ["--options", '{"num_samples": 100}', "--out", str(tmp_path / "data.json")]
    )
    data = tmp_path / "data" / "mnist1d-100.pt"
    assert (status, capsys.readouterr().err.splitlines()) == (
        2,
        [f"optbench prepare-data: error: [Errno 30] Read-only file system: '{data}'"],
    )
    assert os.listdir(tmp_path / "data") == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_results_directory_is_one_line(aggregated, tmp_path, capsys):
    c, _, runs_csv = aggregated
    runs_csv.parent.chmod(0o500)
    try:
        status, lines = aggregate(capsys, tmp_path, c, runs_csv)
    finally:
        runs_csv.parent.chmod(0o700)
    assert (status, lines) == (2, [f"optbench aggregate: error: [Errno 13] Permission denied: '{runs_csv}'"])


# --- two runs of one preset --------------------------------------------------------------------------------


@pytest.fixture
def lock_held_elsewhere(tmp_path):
    """A process holding the smoke preset's run lock in a copy of the workflow, as a running Snakemake would."""
    workdir = copy_workflow(tmp_path)
    lock = workdir / ".snakemake" / "optbench" / "smoke.lock"
    code = (
        f"import sys; from optbench.experiment import run_lock; run_lock.hold({str(lock)!r}); print('held', flush=True)"
    )
    code += "; sys.stdin.read()"  # until the test ends
    holder = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    yield workdir, lock, holder.pid
    holder.communicate("", timeout=30)


def test_the_lock_names_its_holder_and_goes_with_it(lock_held_elsewhere, tmp_path):
    _, lock, pid = lock_held_elsewhere
    with pytest.raises(ValueError, match=rf"^{lock}: held by process {pid}, a run of the same preset"):
        run_lock.hold(lock)


def test_a_second_run_of_a_preset_stops_before_its_first_job(lock_held_elsewhere):
    workdir, lock, pid = lock_held_elsewhere
    result = snakemake(workdir, "results/smoke/data.json", "--cores", "1", "--config", "preset=smoke", timeout=120)
    assert result.returncode != 0
    assert last_line(result.stderr) == (
        f"snakemake: .snakemake/optbench/smoke.lock: held by process {pid}, a run of the same preset; "
        "wait for it to end"
    )
    assert not (workdir / "results").exists()


@pytest.mark.slow
def test_a_big_shard_trains_and_a_bad_record_leaves_no_runs_csv(tmp_path):
    """A job whose two specs are 300 KB of JSON (a step schedule with 20,000 milestones in its first half epoch,
    each dropping the learning rate by a factor of 1)
    trains: they reach it by file. Then a record of another preset stops aggregation, and leaves no runs.csv that
    a later run could take for current (Snakemake deletes it as aggregation starts)."""
    workdir = copy_workflow(tmp_path)
    c = config("tiny")
    c["presets"]["tiny"] = {
        **c["presets"]["smoke"],
        "variants": ["adamw_step"],
        "epochs": 1,
        "runs_per_job": 2,
        "schedules": {"step": {"kind": "step", "milestones": [i / 40_000 for i in range(1, 20_001)], "gamma": 1.0}},
        "grids": {"raw": {"lr": {"log2": [-7, -7]}, "weight_decay": {"log2": [-10, -9]}}},
    }
    assert (
        len(json.dumps([s.to_dict() for s in load_experiment(c).shards("adamw_step")[0]])) > 2**17
    )  # Linux's limit on one argument
    (workdir / "config.yaml").write_text(yaml.safe_dump(c))
    runs_csv = workdir / "results" / "tiny" / "tables" / "runs.csv"
    result = snakemake(workdir, str(runs_csv.relative_to(workdir)), "--cores", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    record = next((workdir / "results" / "tiny" / "runs" / "adamw_step" / "shard000").glob("*.json"))
    edit(record, lambda r: r.update(preset="smoke"))
    result = snakemake(workdir, str(runs_csv.relative_to(workdir)), "--cores", "1", "--forcerun", "aggregate")
    assert result.returncode != 0
    log = (workdir / "results" / "tiny" / "logs" / "aggregate.log").read_text().splitlines()
    assert log == [
        f"optbench aggregate: error: {record.relative_to(workdir)}: preset is 'smoke' in the record but 'tiny' "
        "in config.yaml (preset tiny)"
    ]
    assert not runs_csv.exists()
