"""A job's log: ``python -m optbench <command> --log FILE`` sends everything the command writes to standard error
(its progress, warnings, a traceback, a native library's messages) to FILE, as ``2> FILE`` did, and its error
lines to the terminal as well.

The workflow's rules run every command so. Snakemake shows a failed job's command and the path of its log; with
``2> FILE`` the line that said what went wrong was only in the log, and a newcomer saw the command alone.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


@contextlib.contextmanager
def stderr_into(log: str | os.PathLike | None) -> Iterator[TextIO]:
    """Standard error (file descriptor 2, so that what torch or a C library writes goes there too) into ``log``
    for the block; yields the stream of the terminal, the standard error the process started with. Without a
    log, nothing changes and the block gets ``sys.stderr``."""
    if log is None:
        yield sys.stderr
        return
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    terminal = os.dup(2)
    with open(log, "w") as file:
        os.dup2(file.fileno(), 2)
    try:
        with os.fdopen(os.dup(terminal), "w") as stream:
            yield stream
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)
        os.close(terminal)


def report(lines: list[str], terminal: TextIO) -> None:
    """Error lines to standard error (the log, under ``--log``) and, when that is not the terminal, to it too."""
    for stream in dict.fromkeys([sys.stderr, terminal]):
        print("\n".join(lines), file=stream, flush=True)
