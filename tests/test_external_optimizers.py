"""External optimizers (a torch.optim class by import path, optbench.spec.external): checked at config load,
trained stacked exactly as one at a time, torch.optim.AdamW against our AdamW with torch's decay through the
trainer, and the README's own optimizer through the smoke preset end to end."""

import copy
import json
import logging
import re
import textwrap

import pytest
import yaml
from run_specs import assert_same_records, spec_dict
from workflow_copy import ROOT, copy_workflow, snakemake

from optbench.experiment.config import load_checked
from optbench.spec.external import ExternalOptimizerSpec
from optbench.spec.run import RunSpec
from optbench.train.external_check import check_external
from optbench.train.loop import train, train_together

pytestmark = pytest.mark.usefixtures("one_thread")

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"
CELLS = [(2**-8, 2**-3), (2**-6, 2**-1), (2**-5, 2**0)]
NADAM = {"class": "torch.optim.NAdam", "weight_decay_mode": "torch", "kwargs": {"decoupled_weight_decay": True}}
LION = {"class": "lion_pytorch.Lion", "weight_decay_mode": "torch"}
SCHEDULE_FREE = {"class": "schedulefree.AdamWScheduleFree", "weight_decay_mode": "torch"}


def shard(data_dir, optimizer, cells=CELLS, **overrides):
    fields = {"model": "cnn_bn", "dtype": "float64", "epochs": 1, "dataset_options": {"num_samples": 1000}}
    fields.update(overrides)
    return [
        RunSpec.from_dict(spec_dict(data_dir, optimizer=optimizer, lr=lr, weight_decay=wd, **fields))
        for lr, wd in cells
    ]


# --- checked at config load, one line naming the key ---------------------------------------------------------


def config_with(optimizer: dict) -> dict:
    """config.yaml with a variant ``mine`` of ``optimizer`` run by the smoke preset."""
    config = yaml.safe_load((ROOT / "config.yaml").read_text())
    config["variants"]["mine"] = {
        "label": "mine",
        "optimizer": optimizer,
        "schedule": "cosine",
        "grid": "raw",
        "in_all": False,
    }
    config["presets"]["smoke"]["variants"].append("mine")
    config["preset"] = "smoke"
    return config


def load_error(optimizer: dict) -> str:
    """The one-line error of loading and checking a config with ``optimizer`` (as common.smk does)."""
    with pytest.raises(ValueError) as err:
        experiment = load_checked(config_with(optimizer), SCHEMA)
        check_external(experiment.runs(variant)[0] for variant in experiment.variants)
    assert "\n" not in str(err.value)
    return str(err.value)


@pytest.mark.parametrize(
    "optimizer,expected",
    [
        (
            {"class": "no_such_package.Opt", "weight_decay_mode": "torch"},
            "variants.mine.optimizer.class: cannot import module 'no_such_package'",
        ),
        (
            {"class": "collections.OrderedDict", "weight_decay_mode": "torch"},
            "variants.mine.optimizer.class: collections.OrderedDict is not a torch.optim.Optimizer subclass",
        ),
        (
            {"class": "torch.optim.NoSuchAdam", "weight_decay_mode": "torch"},
            "variants.mine.optimizer.class: module 'torch.optim' has no attribute 'NoSuchAdam'",
        ),
        (
            {**NADAM, "kwargs": {"nesterov": True}},
            "variants.mine.optimizer.kwargs.nesterov: torch.optim.NAdam takes no keyword 'nesterov'; it takes lr,",
        ),
        (
            {**NADAM, "axes": {"lr": "learning_rate"}},
            "variants.mine.optimizer.axes.lr: torch.optim.NAdam takes no keyword 'learning_rate'",
        ),
        (
            {**NADAM, "kwargs": {"betas": [0.9, 1.5]}},
            "variants.mine.optimizer: torch.optim.NAdam rejected its keywords: Invalid beta parameter at index 1",
        ),
        ({**NADAM, "kwargs": {"lr": 0.1}}, "variants.mine.optimizer.kwargs.lr: set by the grid's lr axis"),
        ({"class": "torch.optim.NAdam"}, "variants.mine.optimizer"),  # the schema: weight_decay_mode required
        ({**NADAM, "weight_decay_mode": "paper"}, "variants.mine.optimizer.weight_decay_mode"),
        ({**NADAM, "base": "AdamW"}, "variants.mine.optimizer"),  # a base does not go with a class
        ({"class": "torch.optim.", "weight_decay_mode": "torch"}, "variants.mine.optimizer.class"),
    ],
)
def test_a_bad_external_optimizer_is_one_line_at_config_load(optimizer, expected):
    assert expected in load_error(optimizer)


def test_the_config_check_imports_nothing_without_an_external_optimizer(monkeypatch):
    monkeypatch.setattr("optbench.train.external_check.check_class", lambda *a: pytest.fail("checked a class"))
    experiment = load_checked(yaml.safe_load((ROOT / "config.yaml").read_text()), SCHEMA)
    check_external(experiment.runs(variant)[0] for variant in experiment.variants)


def test_the_block_round_trips_with_its_defaults():
    spec = ExternalOptimizerSpec.from_dict(NADAM)
    assert spec.to_dict() == {**NADAM, "axes": {"lr": "lr", "weight_decay": "weight_decay"}, "stack": True}
    assert ExternalOptimizerSpec.from_dict(spec.to_dict()) == spec


# --- stacked exactly as one at a time ------------------------------------------------------------------------


@pytest.mark.parametrize("optimizer", [NADAM, LION, SCHEDULE_FREE], ids=["nadam", "lion", "schedulefree"])
def test_stacked_external_runs_match_one_run_at_a_time_in_float64(data_dir, optimizer):
    """cnn_bn (BatchNorm statistics per model), each run with its own lr and weight decay; Schedule-Free switches to
    its evaluation point for every evaluation."""
    specs = shard(data_dir, optimizer)
    stacked = list(train_together(specs, stacked=True, quiet=True))
    alone = [train(spec, quiet=True) for spec in specs]
    assert_same_records(stacked, alone, "float64")
    assert len({r["final_test_error"] for r in stacked}) > 1  # the cells differ: each group kept its own values


def test_stack_false_trains_one_at_a_time_and_says_so(data_dir, caplog):
    specs = shard(data_dir, {**NADAM, "stack": False}, cells=CELLS[:2], model="cnn")
    with caplog.at_level(logging.INFO, logger="optbench"):
        records = list(train_together(specs, stacked=True, quiet=True))
    assert "optimizer torch.optim.NAdam says stack: false: training its 2 runs one at a time" in caplog.text
    assert [r["timing"]["stacked_models"] for r in records] == [1, 1]


# --- the cross-check: torch.optim.AdamW against our AdamW with torch's decay -------------------------------------


def test_torch_adamw_through_the_trainer_gives_our_adamw_records_in_float64(data_dir):
    """A 2 x 2 grid of cnn_bn under cosine annealing, stacked, 2 epochs: every loss, error and applied decay of
    torch.optim.AdamW (external) agrees with our AdamW (weight_decay_mode torch) to 1e-9."""
    cells = [(lr, wd) for lr in (2**-7, 2**-5) for wd in (2**-2, 2**0)]
    torch_runs = shard(data_dir, {"class": "torch.optim.AdamW", "weight_decay_mode": "torch"}, cells, epochs=2)
    ours = shard(data_dir, {"base": "AdamW", "weight_decay_mode": "torch"}, cells, epochs=2)
    theirs, mine = (list(train_together(s, stacked=True, quiet=True)) for s in (torch_runs, ours))
    for t, o in zip(theirs, mine, strict=True):
        assert t["run_id"] == o["run_id"] and t["status"] == o["status"] == "ok"
        assert t["optimizer"]["weight_decay_mode"] == o["optimizer"]["weight_decay_mode"] == "torch"
        assert t["weight_decay_applied"] == pytest.approx(o["weight_decay_applied"], rel=1e-12)
        for ht, ho in zip(t["history"], o["history"], strict=True):
            assert ht.keys() == ho.keys() and ht["test_error"] == ho["test_error"]
            for key in ht.keys() - {"epoch", "test_error"}:
                assert ht[key] == pytest.approx(ho[key], rel=1e-9, abs=1e-12), key
        # the same moments; torch also keeps a float32 step count per parameter tensor (11 in cnn_bn)
        assert t["memory"]["optimizer_state_bytes"] - o["memory"]["optimizer_state_bytes"] == 11 * 4


# --- the README's own optimizer through the smoke preset ---------------------------------------------------------


def readme_blocks() -> tuple[str, dict]:
    """The README's "Benchmark your own optimizer": its module (the python block) and its config (the yaml one)."""
    section = (ROOT / "README.md").read_text().split("## Benchmark your own optimizer")[1].split("\n## ")[0]
    python = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    config = yaml.safe_load(re.search(r"```yaml\n(.*?)```", section, re.S).group(1))
    return python, config


def merged(config: dict, keys: dict) -> dict:
    """``config`` with ``keys`` merged in, mappings key by key (as the README says to)."""
    out = copy.deepcopy(config)
    for key, value in keys.items():
        out[key] = merged(out.get(key, {}), value) if isinstance(value, dict) else value
    return out


def test_the_readme_optimizer_is_twenty_lines_and_a_torch_optimizer():
    python, config = readme_blocks()
    assert len(python.strip().splitlines()) <= 20
    assert config["variants"]["signum"]["optimizer"]["class"] == "my_optimizers.Signum"


@pytest.mark.slow
def test_the_readme_optimizer_runs_through_the_smoke_preset(tmp_path):
    """The README's example as a user follows it: the module in the working directory, config.yaml edited, the
    smoke preset run; its heatmap, summary row and memory row are there, and its records ran its class."""
    workdir = copy_workflow(tmp_path / "wf")
    python, keys = readme_blocks()
    (workdir / "my_optimizers.py").write_text(textwrap.dedent(python))
    config = merged(yaml.safe_load((workdir / "config.yaml").read_text()), keys)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(workdir, "--cores", "2", "--config", "preset=smoke")
    assert result.returncode == 0, result.stderr[-3000:]
    results = workdir / "results" / "smoke"
    assert (results / "figures" / "signum.png").stat().st_size > 0
    assert "| Signum (mine) |" in (results / "tables" / "summary.md").read_text()
    memory = (results / "tables" / "memory.md").read_text()
    assert re.search(r"\| signum \| Signum \(mine\) \| [^|]+ \| 0\.50 \| [^|]+ \| True \|", memory), memory
    records = [json.loads(p.read_text()) for p in (results / "runs" / "signum").rglob("*.json")]
    assert len(records) == 4 and {r["optimizer"]["class"] for r in records} == {"my_optimizers.Signum"}
    assert {r["timing"]["stacked_models"] for r in records} == {2}


def test_a_missing_module_stops_the_workflow_before_any_job(tmp_path):
    workdir = copy_workflow(tmp_path / "wf")
    _, keys = readme_blocks()  # the README's config, without its module
    config = merged(yaml.safe_load((workdir / "config.yaml").read_text()), keys)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    result = snakemake(workdir, "-n", "--config", "preset=smoke")
    assert result.returncode != 0
    assert (
        "config.yaml: variants.signum.optimizer.class: cannot import module 'my_optimizers'"
        in result.stderr.strip().splitlines()[-1]
    )
    assert not (workdir / "results").exists()
