"""Training runs end to end on MNIST-1D: records, determinism, divergence, bad specs."""

import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
from run_specs import spec_dict

from optbench.records.record import read_record, validate_record
from optbench.spec.run import RunSpec
from optbench.train.loop import train


def metrics(record):
    return {k: record[k] for k in ("status", "history", "final_test_error", "best_test_error", "final_train_loss")}


def test_cli_run_writes_a_valid_record(tmp_path, data_dir):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(spec_dict(data_dir)))
    out = tmp_path / "runs" / "run.json"
    result = subprocess.run(
        [sys.executable, "-m", "optbench", "train", "--spec", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    record = read_record(out)
    assert record["status"] == "ok"
    assert len(record["history"]) == 2
    assert record["final_test_error"] < 0.85  # learned something in two epochs
    assert record["memory"]["optimizer_state_bytes"] == record["memory"]["optimizer_state_bytes_predicted"]
    assert record["memory"]["optimizer_state_bytes"] == 2 * record["memory"]["parameter_bytes"]
    assert record["optimizer"]["weight_decay_mode"] == "decoupled" and record["optimizer"]["beta1"] == 0.9
    assert "epoch 2/2" in result.stderr
    assert list(out.parent.iterdir()) == [out]  # no temporary files left behind


def test_training_does_not_import_dynamo(tmp_path, data_dir):
    # the stacked path with a checkpoint: model stacking, schedule, optimizer steps, state dicts
    specs = [spec_dict(data_dir, lr=lr, run_id=f"r{i}") for i, lr in enumerate((2**-8, 2**-7))]
    script = f"""
import sys
from pathlib import Path
from optbench.spec.run import RunSpec
from optbench.train.loop import train_together

specs = [RunSpec.from_dict(d) for d in {specs!r}]
records = list(train_together(specs, stacked=True, quiet=True, checkpoint=Path({str(tmp_path / "ck.pt")!r})))
assert [r["status"] for r in records] == ["ok", "ok"]
assert "torch._dynamo" not in sys.modules
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_same_spec_same_metrics_bit_for_bit(data_dir):
    spec = RunSpec.from_dict(spec_dict(data_dir, optimizer={"base": "Adafactor", "beta1": 0.9}))
    a, b = train(spec, quiet=True), train(spec, quiet=True)
    validate_record(a)
    assert metrics(a) == metrics(b)


def test_different_cells_share_initialization_and_data_order(data_dir):
    # lr = 0 with torch's decay (lr * lambda) leaves the weights at their initialization:
    # two cells see the same losses only if they start from the same point and batches
    adamw_torch = {"base": "AdamW", "weight_decay_mode": "torch"}
    a = train(RunSpec.from_dict(spec_dict(data_dir, lr=0.0, epochs=1, optimizer=adamw_torch)), quiet=True)
    b = train(
        RunSpec.from_dict(spec_dict(data_dir, lr=0.0, weight_decay=0.5, epochs=1, optimizer=adamw_torch)), quiet=True
    )
    assert a["history"][0]["train_loss"] == b["history"][0]["train_loss"]


def test_absurd_lr_diverges_to_chance_level(data_dir):
    record = train(
        RunSpec.from_dict(
            spec_dict(data_dir, lr=1e6, epochs=3, optimizer={"base": "AdamW"}, schedule={"kind": "fixed"})
        ),
        quiet=True,
    )
    validate_record(record)
    assert record["status"] == "diverged"
    assert record["final_test_error"] == record["best_test_error"] == pytest.approx(0.9)
    assert len(record["history"]) < 3


def test_normalized_weight_decay_follows_the_restart_cycle(data_dir):
    record = train(
        RunSpec.from_dict(
            spec_dict(
                data_dir,
                epochs=3,
                normalized_weight_decay=True,
                weight_decay=0.05,
                schedule={"kind": "warm_restarts", "cycles": 2, "t_mult": 2},
            )
        ),
        quiet=True,
    )
    # cycles of 1 and 2 epochs: lambda = 0.05 sqrt(b / (B T_i))
    b, B = 100, 4000
    decays = [h["weight_decay"] for h in record["history"]]
    assert record["weight_decay_applied"] == pytest.approx(0.05 * math.sqrt(b / (B * 1)))
    assert decays[0] == pytest.approx(0.05 * math.sqrt(b / (B * 1)))
    assert decays[2] == pytest.approx(0.05 * math.sqrt(b / (B * 2)))


@pytest.mark.parametrize(
    "field,value",
    [
        ("dataset", "imagenet"),
        ("model", "vgg"),
        ("epochs", -1),
        ("batch_size", 0),
        ("lr", -0.1),
        ("colour", "red"),
    ],
)
def test_bad_spec_names_the_field(field, value, data_dir):
    with pytest.raises(ValueError, match=rf"^{field}:"):
        RunSpec.from_dict(spec_dict(data_dir, **{field: value}))


def test_unknown_optimizer_switch_names_the_switch(data_dir):
    with pytest.raises(ValueError, match=r"^optimizer\.nesterov:"):
        RunSpec.from_dict(spec_dict(data_dir, optimizer={"base": "AdamW", "nesterov": True}))
    with pytest.raises(ValueError, match=r"^optimizer\.clip_threshold:"):
        RunSpec.from_dict(spec_dict(data_dir, optimizer={"base": "AdamW", "clip_threshold": -1}))


def test_cli_reports_bad_spec_without_writing(tmp_path, data_dir):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps([spec_dict(data_dir), spec_dict(data_dir, epochs=-3)]))
    outs = [tmp_path / "a.json", tmp_path / "b.json"]
    result = subprocess.run(
        [sys.executable, "-m", "optbench", "train", "--spec", str(spec), "--out", *map(str, outs)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "run spec 1: epochs:" in result.stderr
    assert not any(p.exists() for p in outs)


def test_killed_run_leaves_no_record(tmp_path, data_dir):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(spec_dict(data_dir, epochs=200)))
    out = tmp_path / "out" / "run.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "optbench", "train", "--spec", str(spec), "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while "epoch 1/200" not in proc.stderr.readline():
            assert time.monotonic() < deadline and proc.poll() is None
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not out.exists()
    assert not out.parent.exists() or list(out.parent.iterdir()) == []
