"""Atomic file writes: readers see a complete file or none, never half of one.

A write that the system refuses (a read-only directory, a full disk) leaves no temporary file behind
and raises an OSError naming the target and the system's error, e.g. ``[Errno 28] No space left on
device: 'results/quick/tables/runs.csv'``; the command line prints it as one line.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Calls ``write(tmp)`` on a temporary file beside ``path``, then renames it into place.

    The temporary name is hidden and ends in the target's name, so writers that infer
    the format from the suffix (matplotlib, pandas) still do. Concurrent writers each
    rename a complete file of their own; the last rename wins.
    """
    path = Path(path)
    tmp = path.with_name(f".{uuid.uuid4().hex[:12]}.{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):  # nothing to remove, or a file system that refuses even that
            tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise OSError(err.errno, err.strerror or str(err), str(path)) from err
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write(path, lambda tmp: tmp.write_text(text))


def atomic_write_csv(path: str | os.PathLike, table) -> None:
    """A pandas DataFrame as CSV, without its index (``runs.csv`` and every table of the report)."""
    atomic_write(path, lambda tmp: table.to_csv(tmp, index=False))


@contextlib.contextmanager
def atomic_file_set(directory: str | os.PathLike) -> Iterator[Path]:
    """A set of files written as one: the block writes under a temporary directory inside ``directory``, and once
    it has succeeded each file goes to the same relative path under ``directory`` by a rename, which cannot fail
    half-way as a write can. After a failure the temporary directory goes, and ``directory`` holds what it held:
    no mix of new and old tables."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".staged-", dir=directory))
    try:
        yield stage
        for path in sorted(p for p in stage.rglob("*") if p.is_file()):
            target = directory / path.relative_to(stage)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
