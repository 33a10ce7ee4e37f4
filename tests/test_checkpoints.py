"""Checkpoint and resume: a training job killed with SIGKILL and run again writes the records of an uninterrupted
run (timing and the process's peak memory aside), and a checkpoint of other specs is ignored."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import damage
import pytest
import torch
from run_specs import spec_dict
from workflow_copy import SNAKEMAKE, copy_workflow

from optbench import checksummed
from optbench.spec.run import RunSpec
from optbench.train import checkpoint_files, checkpoints
from optbench.train.loop import train_many, train_together
from optbench.train.progress import Progress

pytestmark = pytest.mark.usefixtures("one_thread")

# Fields that describe the process rather than the training (optbench.train.checkpoints).
PROCESS_FIELDS = ("timing",)


def comparable(record: dict) -> dict:
    """A record without what may differ after a resume: timing and the process's peak memory."""
    kept = {key: value for key, value in record.items() if key not in PROCESS_FIELDS}
    kept["memory"] = {key: value for key, value in record["memory"].items() if key != "peak_bytes"}
    return kept


def records(directory) -> dict[str, dict]:
    return {path.name: comparable(json.loads(path.read_text())) for path in sorted(directory.glob("*.json"))}


def train_command(spec_file, out_dir, *extra):
    return [
        sys.executable,
        "-m",
        "optbench",
        "--threads",
        "1",
        "train",
        "--spec",
        str(spec_file),
        "--out-dir",
        str(out_dir),
        *extra,
    ]


def kill_when(command, path, timeout=120):
    """Runs ``command`` and kills it with SIGKILL as soon as ``path`` exists."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not path.exists():
            assert proc.poll() is None, "the job ended before it could be killed"
            assert time.monotonic() < deadline, f"no {path} after {timeout} s"
            time.sleep(0.005)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def epochs_done(path) -> int:
    return checksummed.load(path)["loop"]["epoch"]


def kill_and_resume(tmp_path, specs, stop_at, *stack):
    """Trains ``specs`` uninterrupted, then again killed once checkpoint ``stop_at`` exists, its records deleted as
    Snakemake deletes a failed job's output, and run again. Returns the two record sets and the last run."""
    spec_file = tmp_path / "specs.json"
    spec_file.write_text(json.dumps(specs))
    reference = subprocess.run(train_command(spec_file, tmp_path / "reference", *stack), capture_output=True)
    assert reference.returncode == 0, reference.stderr.decode()[-3000:]

    out, ckpt = tmp_path / "out", tmp_path / "checkpoints"
    command = train_command(spec_file, out, *stack, "--checkpoint-dir", str(ckpt))
    kill_when(command, ckpt / stop_at)
    assert 1 <= epochs_done(ckpt / stop_at) < specs[0]["epochs"]  # killed in the middle
    shutil.rmtree(out, ignore_errors=True)
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert not ckpt.exists()  # deleted once the records are written
    return records(tmp_path / "reference"), records(out), resumed


def test_killed_single_run_resumes_bit_for_bit(tmp_path, data_dir):
    spec = spec_dict(data_dir, epochs=4, dataset_options={"num_samples": 1000})
    reference, resumed, run = kill_and_resume(tmp_path, [spec], "stack000.pt")
    assert resumed == reference and len(resumed) == 1
    assert "resuming from checkpoint" in run.stderr
    assert "run-epochs restored from checkpoints" in run.stdout


@pytest.mark.slow
def test_killed_stacked_shard_resumes_bit_for_bit(tmp_path, data_dir):
    """Two stacks of cnn_bn (BatchNorm statistics); the job is killed in the second, so the first's records, gone,
    are written again from those it kept, and the second resumes from its checkpoint. The first holds a run that
    diverges at once (the diverged set), the second Adafactor (factored moments) with a trace."""
    common = {"epochs": 3, "model": "cnn_bn", "dataset_options": {"num_samples": 1000}}
    adamw = [spec_dict(data_dir, lr=lr, **common) for lr in (2**-8, 2**-6, 1e6)]
    adafactor = [
        spec_dict(data_dir, variant="adafactor", lr=lr, optimizer={"base": "Adafactor"}, trace_every=3, **common)
        for lr in (2**-6, 2**-4)
    ]
    reference, resumed, run = kill_and_resume(tmp_path, adamw + adafactor, "stack001.pt", "--stack")
    assert resumed == reference and len(resumed) == 5
    assert sorted(record["status"] for record in resumed.values()) == ["diverged"] + ["ok"] * 4
    assert run.stderr.count("record(s) written again") == run.stderr.count("resuming from checkpoint") == 1


@pytest.mark.slow
def test_killed_external_optimizer_stack_resumes_bit_for_bit(tmp_path, data_dir):
    """An external class's state (its state_dict) and Schedule-Free's train/eval modes survive a kill: two stacks,
    torch.optim.NAdam and Schedule-Free AdamW, killed in the second."""
    common = {"epochs": 3, "model": "cnn_bn", "dataset_options": {"num_samples": 1000}}
    nadam = {"class": "torch.optim.NAdam", "weight_decay_mode": "torch", "kwargs": {"decoupled_weight_decay": True}}
    schedule_free = {"class": "schedulefree.AdamWScheduleFree", "weight_decay_mode": "torch"}
    stacks = [
        spec_dict(data_dir, variant=name, optimizer=optimizer, lr=lr, weight_decay=0.25, **common)
        for name, optimizer in (("nadam", nadam), ("schedule_free", schedule_free))
        for lr in (2**-8, 2**-6)
    ]
    reference, resumed, run = kill_and_resume(tmp_path, stacks, "stack001.pt", "--stack")
    assert resumed == reference and len(resumed) == 4
    assert run.stderr.count("record(s) written again") == run.stderr.count("resuming from checkpoint") == 1


def specs(directory, **overrides):
    cells = [(2**-8, 2**-10), (2**-6, 2**-8)]
    fields = {"epochs": 2, "dataset_options": {"num_samples": 1000}, **overrides}
    return [RunSpec.from_dict(spec_dict(directory, lr=lr, weight_decay=wd, **fields)) for lr, wd in cells]


def test_a_finished_checkpoint_gives_the_records_without_training(tmp_path, data_dir, caplog):
    path = tmp_path / "stack000.pt"
    first = list(train_together(specs(data_dir), stacked=True, checkpoint=path))
    with caplog.at_level(logging.INFO, logger="optbench"):
        again = list(train_together(specs(data_dir), stacked=True, checkpoint=path))
    assert list(map(comparable, again)) == list(map(comparable, first))
    assert "2 epoch(s) done" in caplog.text and "epoch 1/2" not in caplog.text


def test_a_kept_job_run_again_writes_its_records_without_training(tmp_path, data_dir, caplog):
    """With keep_checkpoints (as the workflow runs it), a job leaves each stack's records in place of its
    checkpoints; run again once its output is deleted (as Snakemake deletes an output it marked incomplete), it
    writes the same files, byte for byte, without training, and then deletes them."""
    out, kept = tmp_path / "out", tmp_path / "checkpoints"
    runs = specs(data_dir)
    outs = [out / f"{spec.run_id}.json" for spec in runs]
    train_many(runs, outs, checkpoints=kept, keep_checkpoints=True, quiet=True)
    assert sorted(path.name for path in kept.iterdir()) == ["stack000-records.pt", "stack001-records.pt"]
    written = {path.name: path.read_bytes() for path in out.iterdir()}
    shutil.rmtree(out)
    with caplog.at_level(logging.INFO, logger="optbench"):
        progress = train_many(runs, outs, checkpoints=kept)
    assert {path.name: path.read_bytes() for path in out.iterdir()} == written
    assert caplog.messages == [
        f"{kept / name}: the stack had finished; its 1 record(s) written again"
        for name in ("stack000-records.pt", "stack001-records.pt")
    ]
    assert progress.summary("job").endswith(", 4 of 4 run-epochs restored from checkpoints")
    assert not kept.exists()


def test_a_checkpoint_of_other_specs_is_ignored(tmp_path, data_dir, caplog):
    path = tmp_path / "stack000.pt"
    list(train_together(specs(data_dir), stacked=True, checkpoint=path))
    other = specs(data_dir, seed=1)
    with caplog.at_level(logging.INFO, logger="optbench"):
        resumed = list(train_together(other, stacked=True, checkpoint=path))
    assert f"checkpoint {path} is of other run specs" in caplog.text
    fresh = list(train_together(other, stacked=True))
    assert list(map(comparable, resumed)) == list(map(comparable, fresh))


class Stop(Exception):
    """Ends a training loop right after its first checkpoint, as a kill would."""


def stopped_after_first_checkpoint(spec, directory, monkeypatch):
    """The checkpoint of ``spec`` (a single run) in ``directory`` after its first epoch, its training stopped there."""
    path, save = directory / "stack000.pt", checkpoints.save

    def save_then_stop(*args, **kwargs):
        save(*args, **kwargs)
        raise Stop

    monkeypatch.setattr(checkpoints, "save", save_then_stop)
    with pytest.raises(Stop):
        next(train_together(spec, stacked=False, checkpoint=path))
    monkeypatch.setattr(checkpoints, "save", save)
    return path


def flip_weights(path):
    """Up to 4,000 bytes of the largest tensor of the checkpoint's model inverted (as the issue saw)."""
    weights = max(checksummed.load(path)["models"].values(), key=torch.Tensor.numel)
    data = weights.numpy().tobytes()
    damage.flip(path, damage.find(path, data), min(4000, len(data)))


def without_checksum(path):
    """The file rewritten as optbench wrote checkpoints before they carried a checksum: torch.save alone."""
    torch.save(checksummed.load(path), path)


CHANGED = "does not match its SHA-256 (changed or cut short)"


@pytest.mark.parametrize(
    ("harm", "why"),
    [
        (flip_weights, CHANGED),
        (damage.cut_short, CHANGED),
        (without_checksum, "has no checksum (written by an older optbench, or not a file of its own)"),
    ],
    ids=["weights flipped", "cut short", "older, without checksum"],
)
def test_a_damaged_checkpoint_is_never_trained_on(tmp_path, data_dir, monkeypatch, caplog, harm, why):
    """A mid-stack checkpoint damaged: one line naming it and what is wrong, and the stack trains from the start,
    as if there were no checkpoint."""
    spec = specs(data_dir, epochs=3)[:1]
    uninterrupted = next(train_together(spec, stacked=False))
    path = stopped_after_first_checkpoint(spec, tmp_path, monkeypatch)
    harm(path)
    with caplog.at_level(logging.INFO, logger="optbench"):
        resumed = next(train_together(spec, stacked=False, checkpoint=path))
    lines = [record.getMessage() for record in caplog.records if str(path) in record.getMessage()]
    assert lines == [f"checkpoint {path} {why}: ignored, training from the start"]
    assert "epoch 1/3" in caplog.text and "resuming" not in caplog.text
    assert comparable(resumed) == comparable(uninterrupted)


def test_resume_continues_the_global_random_stream(tmp_path, data_dir, monkeypatch):
    """A model that draws from torch's global generator while training (dropout here, Shake-Shake's branch
    weights in the paper preset) trains on from where the stream was, whatever drew from it in between."""
    import optbench.train.build

    build = optbench.train.build.build_model

    def with_dropout(*args, **kwargs):
        model = build(*args, **kwargs)
        return torch.nn.Sequential(*list(model.children())[:-1], torch.nn.Dropout(0.3), list(model.children())[-1])

    monkeypatch.setattr(optbench.train.build, "build_model", with_dropout)
    spec = specs(data_dir, epochs=3)[:1]
    uninterrupted = next(train_together(spec, stacked=False))
    path = stopped_after_first_checkpoint(spec, tmp_path, monkeypatch)
    torch.manual_seed(12345)  # another process's stream
    resumed = next(train_together(spec, stacked=False, checkpoint=path))
    assert comparable(resumed) == comparable(uninterrupted)


def test_writes_take_at_most_their_share_of_the_time(tmp_path, monkeypatch):
    """10-second epochs and 1-second writes: at most 2% (MAX_OVERHEAD) of the time goes to writing, so a write
    comes after the first epoch, then every 5 epochs, and after the last."""
    clock = [0.0]
    monkeypatch.setattr(checkpoints.time, "perf_counter", lambda: clock[0])
    written = []

    def slow_save(path, key, **parts):
        clock[0] += 1.0
        written.append(parts["epoch"])

    monkeypatch.setattr(checkpoints, "save", slow_save)
    writer = checkpoints.Writer(tmp_path / "stack000.pt", "key")
    for epoch in range(1, 121):
        clock[0] += 10.0
        writer.after_epoch(lambda epoch=epoch: {"epoch": epoch}, last=epoch == 120)
    assert checkpoints.MAX_OVERHEAD == 0.02
    assert written == [*range(1, 120, 5), 120]


def test_remove_deletes_only_checkpoints(tmp_path):
    (tmp_path / "stack000.pt").write_bytes(b"")
    (tmp_path / ".0123abcd.stack001.pt").write_bytes(b"")  # left by a kill while writing
    checkpoint_files.remove(tmp_path)
    assert not tmp_path.exists()
    tmp_path.mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    checkpoint_files.remove(tmp_path)
    assert (tmp_path / "notes.txt").exists()


def test_progress_counts_restored_epochs_apart(monkeypatch):
    clock = iter([0.0, 10.0, 20.0])
    monkeypatch.setattr("optbench.train.progress.time.perf_counter", lambda: next(clock))
    progress = Progress([(2, 4), (2, 4)])
    progress.next_stack()
    progress.restore(4, [{"train_loss": 0.75, "test_error": 0.05}])  # 2 of the 4 epochs of stack 1
    line = progress.epoch_line(3, 4, 2, [0.5, 0.25], [0.2, 0.1])
    # 2 run-epochs trained in 10 s; 16 - 6 left
    assert line == "stack 1/2, epoch 3/4: 2/2 runs going, best loss 0.25, error 5.00%, 10s, ETA 50s"
    progress.finished({"status": "ok", "final_test_error": 0.1, "run_id": "a"})
    progress.finished({"status": "diverged", "final_test_error": 0.9, "run_id": "b"})
    assert progress.summary("job") == (
        "job: 2 runs (1 diverged, 1 ok) trained in 20s, best final test error 10.00% (a), "
        "4 of 16 run-epochs restored from checkpoints"
    )


def interrupted_smoke_run(tmp_path, to_the_group):
    """The smoke preset run by Snakemake in a copy of the workflow, sent SIGINT once a training job has started: to
    the terminal's process group (Ctrl-C) or to Snakemake alone. Returns the copy and the command."""
    workdir = copy_workflow(tmp_path)
    command = [*SNAKEMAKE, "--cores", "1", "--config", "preset=smoke"]
    run = subprocess.Popen(
        command, cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    logs = workdir / "results" / "smoke" / "logs" / "train"
    deadline = time.monotonic() + 300
    while not any(logs.glob("*/*.log")) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert run.poll() is None, "the run ended before a training job started"
    (os.killpg if to_the_group else os.kill)(run.pid, signal.SIGINT)
    run.communicate(timeout=120)
    return workdir, command


@pytest.mark.slow
def test_after_ctrl_c_the_plain_rerun_finishes(tmp_path):
    """Ctrl-C while a training job runs stops the job and leaves its output marked incomplete; the same command run
    again finishes the preset, without --rerun-incomplete (the workflow's default profile sets it)."""
    workdir, command = interrupted_smoke_run(tmp_path, to_the_group=True)
    again = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert (workdir / "results" / "smoke" / "tables" / "runs.csv").exists()


@pytest.mark.slow
def test_a_job_that_finished_after_sigint_to_snakemake_is_not_trained_again(tmp_path):
    """SIGINT to Snakemake alone: it waits for the running training job, which finishes, then leaves the job's
    output marked incomplete. The plain rerun deletes that output and runs the job again, which writes the same
    records, byte for byte, from the checkpoints it kept, without training an epoch; the preset finishes, and
    the checkpoints go."""
    workdir, command = interrupted_smoke_run(tmp_path, to_the_group=False)
    results = workdir / "results" / "smoke"
    (log,) = (results / "logs" / "train").glob("*/*.log")  # the one job that ran (--cores 1)
    shard = results / "runs" / log.parent.name / log.stem
    finished = {path.name: path.read_bytes() for path in shard.glob("*.json")}
    assert len(finished) == 2 and "epoch 3/3" in log.read_text()  # the job had trained its runs to the end
    again = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {path.name: path.read_bytes() for path in shard.glob("*.json")} == finished
    assert "record(s) written again" in log.read_text()  # the job ran again,
    assert "epoch" not in log.read_text()  # and trained nothing
    assert (results / "tables" / "runs.csv").exists()
    assert not (results / "checkpoints").exists()
