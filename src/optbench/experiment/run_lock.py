"""One workflow run per preset at a time: a lock that the operating system takes atomically and drops
when the process ends, however it ends.

Snakemake's own lock (``.snakemake/locks``) is checked, then written: two runs started together both
find it free, and both run every job. The Snakefile's ``onstart`` takes this lock instead, with
``flock``, which one process at most can hold; a killed run leaves nothing stale behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import IO

_HELD: list[IO[str]] = []  # open for the rest of the process: closing the file would drop its lock


def hold(path: str | os.PathLike) -> None:
    """Takes the lock at ``path`` for the rest of this process; ValueError naming the holder if another has it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = path.open("a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "another process"
        handle.close()
        raise ValueError(f"{path}: held by {holder}, a run of the same preset; wait for it to end") from None
    handle.truncate(0)
    handle.write(f"process {os.getpid()}\n")
    handle.flush()
    _HELD.append(handle)
