"""The Snakemake workflow on a real (one-node) SLURM cluster: profiles/slurm plus the CI overlay.

    snakemake --profile profiles/slurm --profile tests/slurm-ci --config preset=smoke

Later ``--profile`` entries override earlier ones per top-level key (the command
line overrides both); tests/slurm-ci/config.yaml holds only what the test
cluster lacks (see its comments). The training jobs go through ``sbatch``; the
local rules (prepare_data, aggregate, outputs, all) must not.

Needs root; the cluster comes from the session fixture in tests/slurm_fixture.py
(skipped when it cannot start, unless OPTBENCH_REQUIRE_SLURM=1).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from workflow_copy import copy_workflow

from optbench.records.record import read_record

# tests/ is on sys.path (pytest rootdir/"prepend" import mode); if tests/ ever
# becomes a package the fixture module is tests.slurm_fixture.
pytest_plugins = [f"{__package__}.slurm_fixture" if __package__ else "slurm_fixture"]

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
OVERLAY = ROOT / "tests" / "slurm-ci"
PROFILE_ARGS = ["--profile", "profiles/slurm", "--profile", str(OVERLAY)]
#: an idle 2-core machine needs about a minute per run; generous for slow CI runners
SNAKEMAKE_TIMEOUT_S = float(os.environ.get("OPTBENCH_SLURM_WORKFLOW_TIMEOUT", "420"))

SUBMITTED_RE = re.compile(r"^Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+)\)\.$", re.MULTILINE)
RUN_ID_RE = re.compile(r"^SLURM run ID: (\S+)$", re.MULTILINE)


def smoke_settings() -> dict:
    return yaml.safe_load((ROOT / "config.yaml").read_text())["presets"]["smoke"]


def snakemake(
    workdir: Path, args: list[str], env: dict[str, str], timeout: float = SNAKEMAKE_TIMEOUT_S
) -> tuple[int, str]:
    """Run snakemake in workdir (own process group, bounded); return (exit code, stdout+stderr)."""
    env = dict(env)
    # the jobs' shell commands call `python`: make it this interpreter's (venv) python,
    # in Snakemake's process here as well as inside the SLURM jobs (sbatch --export=ALL)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("SNAKEMAKE_PROFILE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM lets Snakemake scancel its jobs; the fixture's stop cancels what is left
        out = ""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                out, _ = proc.communicate(timeout=30)
                break
            except subprocess.TimeoutExpired:
                continue
        pytest.fail(f"snakemake {' '.join(args)} ran past {timeout:.0f}s:\n{(out or '')[-6000:]}", pytrace=False)
    return proc.returncode, out


def rules_by_jobid(output: str) -> dict[int, tuple[str, bool]]:
    """Snakemake job id -> (rule, printed as a local rule) from the job headers of its output."""
    jobs, current = {}, None
    for line in output.splitlines():
        m = re.match(r"^(localrule|rule) (\w+):$", line)
        if m:
            current = (m.group(2), m.group(1) == "localrule")
            continue
        m = re.match(r"^    jobid: (\d+)$", line)
        if m and current is not None:
            jobs[int(m.group(1))] = current
            current = None
    return jobs


def slurm_run_id(output: str) -> str:
    m = RUN_ID_RE.search(output)
    assert m, f"no 'SLURM run ID' in the snakemake output:\n{output[-3000:]}"
    return m.group(1)


def slurm_jobs_of_run(cluster, run_id: str) -> dict[str, dict[str, str]]:
    """The SLURM jobs Snakemake submitted in one run (the plugin names them after the run ID)."""
    res = cluster.run("squeue", "-t", "all", "-h", "-n", run_id, "-o", "%i|%T|%k|%P|%Z")
    jobs = {}
    for line in res.stdout.splitlines():
        job_id, state, comment, partition, workdir = line.strip().split("|")
        jobs[job_id] = {"state": state, "comment": comment, "partition": partition, "workdir": workdir}
    return jobs


def failure_report(cluster, output: str) -> str:
    return f"--- snakemake output (tail) ---\n{output[-6000:]}\n{cluster.log_tail()}"


def test_overlay_merges_with_profile(tmp_path):
    """Without a cluster: the overlay sets train's partition and GPUs, and the preset's resources pass through."""
    workdir = copy_workflow(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    code, out = snakemake(workdir, [*PROFILE_ARGS, "--config", "preset=smoke", "--dry-run"], env, timeout=120)
    assert code == 0, out[-5000:]
    resources = {}
    for rule, res in re.findall(r"^(?:local)?rule (\w+):\n(?:    .*\n)*?    resources: (.*)$", out, re.MULTILINE):
        resources.setdefault(rule, set()).add(res)
    smoke = smoke_settings()["resources"]
    (train,) = resources["train"]
    assert "slurm_partition=debug" in train and "gpu=0" in train, train
    assert f"runtime={smoke['runtime']}" in train and f"mem_mb={smoke['mem_mb']}" in train, train


# A SLURM without a cluster: sbatch records its command line and refuses the job; the plugin's checks get the account
# "myproj" (sacctmgr), no job history to guess one from (sacct), and the partitions batch, the default, and gpu (sinfo).
FAKE_SLURM = {
    "sbatch": 'echo "$@" >> "$SBATCH_CALLS"; echo "fake sbatch: not submitted" >&2; exit 1',
    "sacct": "exit 1",
    "sacctmgr": "echo myproj",
    "sinfo": "printf 'PARTITION\\nbatch*\\ngpu\\n'",
}
PAPER_JOB = "results/paper/runs/adamw_cosine/shard000"


def paper_sbatch_calls(tmp_path: Path, *args: str) -> tuple[list[str], str]:
    """The sbatch command lines that profiles/slurm gives one training job of the paper preset, and Snakemake's
    output. Its prepared data is faked: CIFAR-10 is not here, and the job is never run."""
    tmp_path.mkdir(exist_ok=True)
    workdir = copy_workflow(tmp_path / "workflow")
    (workdir / "results" / "paper").mkdir(parents=True)
    (workdir / "results" / "paper" / "data.json").write_text("{}")
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for name, script in FAKE_SLURM.items():
        (fake_bin / name).write_text(f"#!/bin/sh\n{script}\n")
        (fake_bin / name).chmod(0o755)
    calls = tmp_path / "sbatch_calls.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLURM_", "SBATCH_"))}
    env.update(PATH=f"{fake_bin}{os.pathsep}{env['PATH']}", SBATCH_CALLS=str(calls))
    args = [PAPER_JOB, "--profile", "profiles/slurm", "--retries", "0", *args, "--config", "preset=paper"]
    _, out = snakemake(workdir, [*args, "--slurm-init-seconds-before-status-checks", "1"], env, timeout=300)
    return (calls.read_text().splitlines() if calls.exists() else []), out


def test_the_paper_preset_s_jobs_get_its_threads_and_a_gpu(tmp_path):
    """sbatch gets the preset's 8 threads as --cpus-per-task and its GPU, and the job's command --threads 8, even
    under --cores 2, which caps a rule's threads (Snakemake's, and so the plugin's default --cpus-per-task)."""
    (call,), out = paper_sbatch_calls(tmp_path, "--cores", "2")
    options = call.split(" --wrap=")[0].split()
    assert "--cpus-per-task=8" in options and "--gpus=1" in options, call
    assert "-t 120 --mem 16000" in call, call
    assert " -p batch " in call and " -A " not in call, call  # no partition or account given: the cluster's defaults
    assert "-m optbench --threads 8 train" in out, out[-3000:]


def test_the_partition_and_the_account_come_from_the_user(tmp_path):
    (call,), _ = paper_sbatch_calls(tmp_path, "--default-resources", "slurm_partition=a100", "slurm_account=myproj")
    assert " -A myproj " in call and " -p a100 " in call, call


def test_without_a_shared_python_the_jobs_run_their_own(tmp_path):
    """README's step 6: by default the job's Snakemake, which builds the training command with its own interpreter,
    is this Python at its absolute path; without software-deployment in --shared-fs-usage, `python` of the job's
    PATH."""
    (shared,), _ = paper_sbatch_calls(tmp_path / "shared")
    assert shared.split(" --wrap=")[1].startswith(f"{sys.executable} -m snakemake "), shared
    kinds = ["input-output", "persistence", "sources", "source-cache", "storage-local-copies"]
    (own,), _ = paper_sbatch_calls(tmp_path / "own", "--shared-fs-usage", *kinds)
    assert own.split(" --wrap=")[1].startswith("python -m snakemake "), own


def test_a_dry_run_shows_the_requests_and_totals_the_gpu_hours(tmp_path):
    workdir = copy_workflow(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    code, out = snakemake(workdir, [PAPER_JOB, "--profile", "profiles/slurm", "-n", "--config", "preset=paper"], env)
    assert code == 0, out[-3000:]
    assert "snakemake: paper: 2508 training jobs x 1 GPU x 120 min = 5016 GPU-hours requested" in out.splitlines()
    (train,) = re.findall(r"^rule train:\n(?:    .*\n)*?    resources: (.*)$", out, re.MULTILINE)
    assert "cpus_per_task=8" in train and "gpu=1" in train and "slurm_partition" not in train, train


def test_smoke_preset_trains_through_slurm(slurm_cluster, tmp_path):
    workdir = copy_workflow(tmp_path)
    code, out = snakemake(workdir, [*PROFILE_ARGS, "--config", "preset=smoke"], slurm_cluster.env)
    assert code == 0, failure_report(slurm_cluster, out)

    smoke = smoke_settings()
    n_shards = len(smoke["variants"]) * 4 // smoke["runs_per_job"]  # 2 x 2 grids, one seed
    run_id = slurm_run_id(out)

    # which Snakemake jobs went to SLURM: exactly the training jobs, each once
    rules = rules_by_jobid(out)
    submitted = [(int(j), s, Path(log)) for j, s, log in SUBMITTED_RE.findall(out)]
    train_jobs = {j for j, (rule, _) in rules.items() if rule == "train"}
    assert len(train_jobs) == n_shards, rules
    assert sorted(j for j, _, _ in submitted) == sorted(train_jobs), out[-5000:]
    assert all(not local for rule, local in rules.values() if rule == "train")
    for rule in ("prepare_data", "aggregate", "outputs", "all"):
        assert [local for r, local in rules.values() if r == rule] == [True], f"{rule}: {rules}"
    slurm_ids = {s for _, s, _ in submitted}
    assert len(slurm_ids) == n_shards

    # the plugin's SLURM logs: .snakemake/slurm_logs/rule_train/<variant>_<shard>/<slurm id>.log, nothing else
    log_dir = workdir / ".snakemake" / "slurm_logs"
    expected_logs = set()
    for _jobid, slurm_id, log in submitted:
        assert log.parent.parent == log_dir / "rule_train" and log.name == f"{slurm_id}.log", log
        text = log.read_text(errors="replace")
        variant, shard = re.fullmatch(r"(\w+)_(shard\d{3})", log.parent.name).groups()
        assert f"wildcards: variant={variant}, shard={shard}" in text, text[-3000:]
        assert "Finished jobid: 0 (Rule: train)" in text, text[-3000:]
        expected_logs.add(log)
    assert set(log_dir.rglob("*.log")) == expected_logs

    # what SLURM recorded: the run's jobs are these, all training jobs of this workdir, all COMPLETED
    jobs = slurm_jobs_of_run(slurm_cluster, run_id)
    assert set(jobs) == slurm_ids, (jobs, slurm_ids)
    for slurm_id, job in jobs.items():
        assert job["state"] == "COMPLETED", (slurm_id, job)
        assert job["comment"].startswith("rule_train_wildcards_"), (slurm_id, job)
        assert job["partition"] == "debug" and Path(job["workdir"]) == workdir, (slurm_id, job)
    ctld_log = slurm_cluster.slurmctld_log.read_text(errors="replace")
    for slurm_id in slurm_ids:
        assert re.search(rf"_slurm_rpc_submit_batch_job: JobId={slurm_id}\b", ctld_log), slurm_id
        assert re.search(rf"_job_complete: JobId={slurm_id} WEXITSTATUS 0\b", ctld_log), slurm_id

    # every output
    results = workdir / "results" / "smoke"
    shard_dirs = sorted((results / "runs").glob("*/shard*"))
    assert len(shard_dirs) == n_shards
    assert {f"rule_train_wildcards_{d.parent.name}_{d.name}" for d in shard_dirs} == {
        j["comment"] for j in jobs.values()
    }
    assert all(len(list(d.glob("*.json"))) == smoke["runs_per_job"] for d in shard_dirs)
    records = sorted((results / "runs").glob("*/shard*/*.json"))
    assert len(records) == len(smoke["variants"]) * 4 == 16
    for path in records:
        record = read_record(path)
        assert record["preset"] == "smoke" and record["epochs"] == smoke["epochs"]
    runs = pd.read_csv(results / "tables" / "runs.csv")
    assert len(runs) == len(records) and set(runs["variant"]) == set(smoke["variants"])
    for name in ["summary.csv", "memory.csv", "memory.md"]:
        assert (results / "tables" / name).stat().st_size > 0, name
    for name in ["adam_vs_adamw", "adamw_normalized", "adafactor", "learning_curves"]:
        assert (results / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (results / "figures" / f"{name}.pdf").read_bytes()[:5] == b"%PDF-"


def test_a_training_job_runs_on_the_preset_s_threads(slurm_cluster, tmp_path):
    """The preset's threads reach a real job: SLURM allocates them, and the trainer runs on them."""
    workdir = copy_workflow(tmp_path / "workflow")
    (tmp_path / "threads.yaml").write_text("presets:\n  smoke:\n    resources: {threads: 2}\n")
    target = f"results/smoke/runs/{smoke_settings()['variants'][0]}/shard000"
    args = [target, *PROFILE_ARGS, "--configfile", str(tmp_path / "threads.yaml"), "--config", "preset=smoke"]
    code, out = snakemake(workdir, args, slurm_cluster.env)
    assert code == 0, failure_report(slurm_cluster, out)
    ((_, slurm_id, _),) = SUBMITTED_RE.findall(out)
    show = slurm_cluster.run("scontrol", "show", "job", slurm_id).stdout
    assert "NumCPUs=2 " in show and "CPUs/Task=2 " in show, show
    records = list((workdir / target).glob("*.json"))
    assert records and all(read_record(path)["environment"]["threads"] == 2 for path in records)


def test_failing_training_job_is_reported(slurm_cluster, tmp_path):
    """One training job that the trainer rejects at once (device cuda, no CUDA device visible)."""
    workdir = copy_workflow(tmp_path)
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["presets"]["smoke"]["device"] = "cuda"
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    variant = config["presets"]["smoke"]["variants"][0]
    target = f"results/smoke/runs/{variant}/shard000"
    env = dict(slurm_cluster.env, CUDA_VISIBLE_DEVICES="")  # fails the same on a machine with a GPU

    # --retries 0 on the command line overrides the profile's `retries: 3`: one SLURM job, not four
    code, out = snakemake(workdir, [target, *PROFILE_ARGS, "--retries", "0", "--config", "preset=smoke"], env)
    assert code != 0, failure_report(slurm_cluster, out)

    submitted = SUBMITTED_RE.findall(out)
    assert len(submitted) == 1, out[-5000:]
    ((_, slurm_id, log),) = submitted
    assert "Error in rule train:" in out, out[-5000:]
    assert f"SLURM-job '{slurm_id}' failed, SLURM status is: 'FAILED'" in out, out[-5000:]
    assert f"external_jobid: {slurm_id}" in out

    assert slurm_cluster.job_state(slurm_id) == "FAILED"
    assert set(slurm_jobs_of_run(slurm_cluster, slurm_run_id(out))) == {slurm_id}
    show = slurm_cluster.run("scontrol", "show", "job", slurm_id).stdout
    assert "JobState=FAILED" in show and "ExitCode=1:0" in show, show
    ctld_log = slurm_cluster.slurmctld_log.read_text(errors="replace")
    assert re.search(rf"_job_complete: JobId={slurm_id} WEXITSTATUS 1\b", ctld_log), ctld_log[-3000:]

    # it failed for the intended reason, and the plugin kept the failed job's SLURM log
    train_log = workdir / "results" / "smoke" / "logs" / "train" / variant / "shard000.log"
    assert "'cuda' was asked for but torch sees no CUDA device" in train_log.read_text(), train_log.read_text()[-3000:]
    assert "Error in rule train" in Path(log).read_text(errors="replace")

    # no partial record; the local data preparation did run (outside SLURM)
    shard = workdir / target
    assert not shard.exists() or not list(shard.glob("*.json")), sorted(shard.iterdir())
    assert (workdir / "results" / "smoke" / "data.json").is_file()
