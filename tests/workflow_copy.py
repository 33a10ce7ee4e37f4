"""The workflow copied into a test's directory, as a fresh clone holds it, and Snakemake run there."""

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake"]
WORKFLOW_FILES = ["Snakefile", "config.yaml", "workflow", "src", "envs", "profiles"]


def copy_workflow(dest: Path, extra=()) -> Path:
    """The files a fresh clone holds to run the workflow, and ``extra`` ones (e.g. a committed reference)."""
    for name in [*WORKFLOW_FILES, *extra]:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def snakemake(workdir: Path, *args, timeout=600) -> subprocess.CompletedProcess:
    """Snakemake with ``args`` in ``workdir``, its output captured."""
    return subprocess.run([*SNAKEMAKE, *args], cwd=workdir, capture_output=True, text=True, timeout=timeout)


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root``, by its path relative to it, to the SHA-256 of its bytes."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file()
    }
