"""End-to-end checks of the one-node SLURM test cluster (scripts/slurm_cluster.sh).

Needs root; installs slurm-wlm/munge with apt-get on first use. Skipped when the
cluster cannot be started, unless OPTBENCH_REQUIRE_SLURM=1.
"""

from __future__ import annotations

import re

import pytest

# tests/ is on sys.path (pytest rootdir/"prepend" import mode); if tests/ ever
# becomes a package the fixture module is tests.slurm_fixture.
pytest_plugins = [f"{__package__}.slurm_fixture" if __package__ else "slurm_fixture"]

pytestmark = pytest.mark.slow

JOB_TIMEOUT_S = 60


def _submit(cluster, tmp_path, script: str, name: str) -> tuple[str, object]:
    out = tmp_path / f"{name}.%j.out"
    res = cluster.run(
        "sbatch",
        "--parsable",
        f"--job-name={name}",
        f"--chdir={tmp_path}",
        f"--output={out}",
        "--ntasks=1",
        "--cpus-per-task=1",
        "--mem=100M",
        "--time=5",
        "--wrap",
        script,
        check=False,
    )
    assert res.returncode == 0, f"sbatch failed: {res.stderr}\n{cluster.log_tail()}"
    job_id = res.stdout.strip().split(";")[0]
    assert job_id.isdigit(), f"unexpected sbatch --parsable output: {res.stdout!r}"
    return job_id, tmp_path / f"{name}.{job_id}.out"


def test_node_is_up(slurm_cluster):
    res = slurm_cluster.run("sinfo", "-h", "-N", "-o", "%N %P %T")
    lines = res.stdout.split()
    assert len(lines) == 3, res.stdout
    assert lines[1] == "debug*"
    assert lines[2] in {"idle", "mixed", "allocated"}, res.stdout
    assert slurm_cluster.env["SLURM_CONF"] == str(slurm_cluster.state_dir / "slurm.conf")
    assert slurm_cluster["slurmctld_log"].is_file()


def test_batch_job_completes(slurm_cluster, tmp_path):
    job_id, out = _submit(slurm_cluster, tmp_path, "hostname; echo ok", "okjob")

    state = slurm_cluster.wait_job(job_id, timeout=JOB_TIMEOUT_S)
    assert state == "COMPLETED", f"job {job_id}: {state}\n{slurm_cluster.log_tail()}"
    # MinJobAge keeps the finished job visible to squeue (the Snakemake plugin relies on it)
    res = slurm_cluster.run("squeue", "-t", "all", "-h", "-j", job_id, "-o", "%i %T")
    assert res.stdout.split() == [job_id, "COMPLETED"]

    assert out.is_file(), f"no output file {out}; dir has {sorted(p.name for p in tmp_path.iterdir())}"
    lines = out.read_text().split()
    assert lines[-1] == "ok", lines
    assert len(lines) == 2, lines  # hostname, ok

    log = slurm_cluster.slurmctld_log.read_text(errors="replace")
    assert re.search(rf"\bJobId={job_id}\b", log), f"JobId={job_id} not in {slurm_cluster.slurmctld_log}"
    assert re.search(rf"_job_complete: JobId={job_id} WEXITSTATUS 0\b", log), log[-3000:]


def test_failing_job_is_reported_failed(slurm_cluster, tmp_path):
    job_id, _ = _submit(slurm_cluster, tmp_path, "echo about to fail; exit 3", "failjob")

    state = slurm_cluster.wait_job(job_id, timeout=JOB_TIMEOUT_S)
    assert state == "FAILED", f"job {job_id}: {state}\n{slurm_cluster.log_tail()}"

    res = slurm_cluster.run("squeue", "-t", "all", "-h", "-j", job_id, "-o", "%T")
    assert res.stdout.strip() == "FAILED"
    show = slurm_cluster.run("scontrol", "show", "job", job_id).stdout
    assert "JobState=FAILED" in show, show
    assert "ExitCode=3:0" in show, show
