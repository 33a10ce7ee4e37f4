"""Where a training job keeps its checkpoints, and their removal (:mod:`optbench.train.checkpoints` writes and
reads them). Free of torch: the workflow's ``onsuccess`` removes them from Snakemake's own process, which may run
in an environment without torch."""

from __future__ import annotations

import contextlib
from pathlib import Path


def stack_path(directory: str | Path, index: int) -> Path:
    """The checkpoint of a job's stack ``index`` (from 0)."""
    return Path(directory) / f"stack{index:03d}.pt"


def run_path(path: Path, index: int) -> Path:
    """The checkpoint of run ``index`` of a stack at ``path`` whose model cannot stack (trained one run at a time)."""
    return path.with_name(f"{path.stem}-run{index:03d}{path.suffix}")


def stack_checkpoints(directory: str | Path, index: int) -> list[Path]:
    """The checkpoints there are of a job's stack ``index``: its own, and those of its runs (:func:`run_path`)."""
    path = stack_path(directory, index)
    return [path, *path.parent.glob(f"{path.stem}-run*{path.suffix}")]


def records_path(directory: str | Path, index: int) -> Path:
    """The records of a job's stack ``index`` once they are written, which replace its checkpoints."""
    return Path(directory) / f"stack{index:03d}-records.pt"


def remove(directory: str | Path) -> None:
    """Deletes a job's checkpoints (and temporary files an attempt killed while writing one left), then the
    directory if that leaves it empty."""
    directory = Path(directory)
    for path in [*directory.glob("stack*.pt"), *directory.glob(".*.stack*.pt")]:
        path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # absent, or holding files of someone else's
        directory.rmdir()
