"""Session-scoped pytest fixture: a real one-node SLURM cluster on this machine.

The cluster (munged + slurmctld + slurmd, everything under a temporary state
directory) is started by ``scripts/slurm_cluster.sh start`` and stopped by
``scripts/slurm_cluster.sh stop`` at the end of the session. It needs root and
installs ``slurm-wlm``/``munge`` with apt-get when they are missing.

Use it from a test module with::

    pytest_plugins = ["slurm_fixture"]        # tests/ is on sys.path (rootdir mode)

    @pytest.mark.slow
    def test_x(slurm_cluster):
        subprocess.run(["sbatch", ...], env=slurm_cluster.env, ...)

If the cluster cannot be started the requesting tests are skipped with the
reason (and the tail of the daemon logs); with ``OPTBENCH_REQUIRE_SLURM=1`` in
the environment they fail instead.

Notes for Snakemake (snakemake-executor-plugin-slurm 2.8.0) on this cluster:

* accounting is disabled (no slurmdbd), so ``sacct`` fails with "Slurm
  accounting storage is disabled" and the plugin's default status command
  (``sacct``, chosen because the binary exists) never sees jobs finish: pass
  ``--slurm-status-command squeue`` (MinJobAge=600 keeps finished jobs visible);
  ``--slurm-no-account`` is meant to skip the (failing) account guessing, but
  plugin 2.8.0 ignores it: the guess fails and it submits without an account;
  ``--default-resources slurm_partition=debug`` names the only partition.
* the jobstep plugin drops SLURM_CONF before its inner ``srun``; the script
  therefore symlinks /etc/slurm/slurm.conf to the cluster's config while it runs.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCRIPT = REPO_ROOT / "scripts" / "slurm_cluster.sh"
REQUIRE_ENV = "OPTBENCH_REQUIRE_SLURM"

#: first install (apt-get) can take minutes on a slow mirror; a warm start ~1 s
START_TIMEOUT_S = float(os.environ.get("OPTBENCH_SLURM_START_TIMEOUT", "1200"))
STOP_TIMEOUT_S = 120.0

_SLURM_ENV_PREFIXES = ("SLURM_", "SBATCH_", "SRUN_", "SALLOC_", "SQUEUE_", "SINFO_", "SACCT_", "SCONTROL_")

#: job states in which a job is still queued / running
ACTIVE_STATES = frozenset(
    {
        "PENDING",
        "CONFIGURING",
        "RUNNING",
        "COMPLETING",
        "SUSPENDED",
        "REQUEUED",
        "REQUEUE_HOLD",
        "REQUEUE_FED",
        "RESIZING",
        "SIGNALING",
        "STAGE_OUT",
        "STOPPED",
        "RESV_DEL_HOLD",
    }
)


@dataclass
class SlurmCluster:
    """Handle on the running test cluster (also readable like a dict)."""

    env: dict[str, str]
    state_dir: Path
    slurmctld_log: Path
    slurmd_log: Path
    slurm_conf: Path
    start_output: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def run(self, *cmd: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
        """Run a SLURM client command (sbatch, squeue, ...) against this cluster."""
        return subprocess.run(list(cmd), env=self.env, capture_output=True, text=True, timeout=timeout, check=check)

    def job_state(self, job_id: str | int) -> str:
        """Current state of a job (``COMPLETED``, ``FAILED``, ...), '' if unknown."""
        res = self.run("squeue", "-t", "all", "-h", "-j", str(job_id), "-o", "%T", check=False)
        state = res.stdout.strip().splitlines()
        if state:
            return state[0].strip()
        # fall back to scontrol (squeue may drop the job if it is very old)
        res = self.run("scontrol", "show", "job", str(job_id), check=False)
        for tok in res.stdout.split():
            if tok.startswith("JobState="):
                return tok.split("=", 1)[1]
        return ""

    def wait_job(self, job_id: str | int, timeout: float = 60, poll: float = 0.5) -> str:
        """Wait (bounded) until the job has left the active states; return its final state."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.job_state(job_id)
            if state and state not in ACTIVE_STATES:
                return state
            time.sleep(poll)
        raise TimeoutError(f"SLURM job {job_id} still {state or 'unknown'} after {timeout:.0f}s\n" + self.log_tail())

    def log_tail(self, lines: int = 40) -> str:
        return _log_tail(self.state_dir, lines)


def _log_tail(state_dir: Path, lines: int = 40) -> str:
    out = []
    log_dir = Path(state_dir) / "log"
    for name in ("slurmctld.log", "slurmd.log", "munged.stdout", "apt.log"):
        p = log_dir / name
        if p.is_file():
            try:
                text = p.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                continue
            out.append(f"--- tail of {p} ---")
            out.extend(text)
    return "\n".join(out)


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_ENV, "") == "1":
        pytest.fail(f"{REQUIRE_ENV}=1 but the SLURM test cluster is unavailable: {reason}", pytrace=False)
    pytest.skip(f"SLURM test cluster unavailable: {reason}")


def _state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The munge socket lives in here; unix socket paths are limited to ~107 bytes.
    d = tmp_path_factory.mktemp("slurm")
    if len(str(d)) > 60:
        d = Path(tempfile.mkdtemp(prefix="optbench-slurm-"))
    return d


def _parse_exports(stdout: str) -> dict[str, str]:
    env = {}
    for line in stdout.splitlines():
        line = line.strip()
        if not line.startswith("export "):
            continue
        parts = shlex.split(line[len("export ") :])
        for part in parts:
            key, sep, value = part.partition("=")
            if sep:
                env[key] = value
    return env


# Shared between every module that pulls the fixture in, so that importing the
# fixture function into several test modules still starts only one cluster.
_SHARED: dict[str, Any] = {"cluster": None, "users": 0}


def _stop(state_dir: Path) -> None:
    try:
        res = subprocess.run(
            ["bash", str(SCRIPT), "stop", str(state_dir)],
            capture_output=True,
            text=True,
            timeout=STOP_TIMEOUT_S,
        )
        if res.returncode != 0:
            print(f"warning: stopping the SLURM test cluster failed:\n{res.stderr}")
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"warning: stopping the SLURM test cluster failed: {exc}")


def _start(tmp_path_factory: pytest.TempPathFactory) -> SlurmCluster:
    if os.name != "posix" or shutil.which("bash") is None:
        _unavailable("needs a POSIX system with bash")
    if not SCRIPT.is_file():
        _unavailable(f"{SCRIPT} is missing")
    if os.geteuid() != 0:
        _unavailable("needs root (daemons run as root; packages are installed with apt-get)")
    if shutil.which("sinfo") is None and shutil.which("apt-get") is None:
        _unavailable("SLURM is not installed and apt-get is not available to install it")

    state_dir = _state_dir(tmp_path_factory)
    try:
        res = subprocess.run(
            ["bash", str(SCRIPT), "start", str(state_dir)],
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT_S,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        _stop(state_dir)
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        _unavailable(f"'slurm_cluster.sh start' timed out after {START_TIMEOUT_S:.0f}s\n{stderr[-4000:]}")
    if res.returncode != 0:
        _stop(state_dir)  # the script cleans up itself; this is belt and braces
        _unavailable(f"'slurm_cluster.sh start {state_dir}' exited with {res.returncode}:\n{res.stderr[-6000:]}")
    exports = _parse_exports(res.stdout)
    if "SLURM_CONF" not in exports:
        _stop(state_dir)
        _unavailable(f"'slurm_cluster.sh start' printed no SLURM_CONF:\n{res.stdout}\n{res.stderr[-4000:]}")

    env = os.environ.copy()
    # If the tests themselves run inside a SLURM job (or with SBATCH_* defaults),
    # those variables would leak into sbatch/srun against the test cluster.
    for key in list(env):
        if key.startswith(_SLURM_ENV_PREFIXES):
            del env[key]
    env.update(exports)
    # make the clients findable even if /usr/sbin is not on PATH
    path = env.get("PATH", "")
    for extra in ("/usr/sbin", "/sbin"):
        if extra not in path.split(os.pathsep):
            path = path + os.pathsep + extra if path else extra
    env["PATH"] = path
    return SlurmCluster(
        env=env,
        state_dir=state_dir,
        slurmctld_log=state_dir / "log" / "slurmctld.log",
        slurmd_log=state_dir / "log" / "slurmd.log",
        slurm_conf=Path(exports["SLURM_CONF"]),
        start_output=res.stderr,
    )


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running one-node SLURM cluster; see the module docstring."""
    if _SHARED["cluster"] is None:
        _SHARED["cluster"] = _start(tmp_path_factory)
    _SHARED["users"] += 1
    cluster = _SHARED["cluster"]
    try:
        yield cluster
    finally:
        _SHARED["users"] -= 1
        if _SHARED["users"] == 0:
            _SHARED["cluster"] = None
            _stop(cluster.state_dir)
