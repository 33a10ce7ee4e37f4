"""A shard, the run specs of one ``train`` command: read (:func:`read_specs`), given their record paths
(:func:`record_paths`), grouped into stacks, trained and each record written (:func:`train_many`)."""

from __future__ import annotations

import ctypes
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from optbench.records.record import write_record
from optbench.spec.run import RunSpec
from optbench.train.checkpoints import remove, stack_path
from optbench.train.loop import train_together
from optbench.train.progress import Progress

#: Models per stack at most. Smaller stacks keep a step's activations in the CPU's caches;
#: benchmarks/README.md has the measurement behind this value.
MAX_STACK = 16


def stack_key(spec: RunSpec) -> str:
    """Specs with the same key differ only in lr, weight decay and run id: they can train stacked."""
    d = spec.to_dict()
    for name in ("lr", "weight_decay", "run_id"):
        del d[name]
    return json.dumps(d, sort_keys=True)


def read_specs(text: str, source: str) -> list[RunSpec]:
    """The run specs in JSON ``text``, one spec or a list of them, checked; ``source`` names where the text
    came from in the ValueError that a text that is not JSON, or a bad spec, raises."""
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: not valid JSON: {err}") from None
    raw = loaded if isinstance(loaded, list) else [loaded]
    specs = []
    for i, d in enumerate(raw):
        try:
            specs.append(RunSpec.from_dict(d))
        except ValueError as err:
            raise ValueError(f"{source}, run spec {i}: {err}") from None
    return specs


def record_paths(
    specs: Sequence[RunSpec], out: Sequence[str] | None, out_dir: str | None, source: str
) -> list[str | Path]:
    """Where each spec's record goes: ``out`` (the ``train`` command's ``--out``), one path per spec in order,
    or else ``<out_dir>/<run_id>.json``. ValueError (naming ``source``, where the specs came from) when the
    counts differ or two specs would write the same file."""
    outs = out or [Path(out_dir) / f"{spec.run_id}.json" for spec in specs]
    if len(outs) != len(specs):
        raise ValueError(f"--out: {len(specs)} run spec(s) but {len(outs)} output path(s)")
    first = {}
    for i, path in enumerate(map(str, outs)):
        if first.setdefault(path, i) != i:
            raise ValueError(
                f"{source}, run specs {first[path]} and {i}: both would write {path}; give each its own run id"
            )
    return outs


def reuse_freed_memory() -> None:
    """Keep freed memory in the process (glibc only; elsewhere nothing happens).

    glibc hands every freed block above 128 KiB back to the operating system, so a CPU
    training loop pays page faults for each step's activations again. Raising the mmap
    and trim thresholds lets the allocator reuse them (measured in benchmarks/README.md).
    The ``train`` command calls it before training.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 32 * 2**20)  # glibc's maximum
    libc.mallopt(m_trim_threshold, 2**30)


def train_many(
    specs: Iterable[RunSpec],
    outs: Iterable[str | Path],
    *,
    stack: bool = False,
    max_stack: int = MAX_STACK,
    quiet: bool = False,
    checkpoints: str | Path | None = None,
) -> Progress:
    """Trains specs in this process, writing each record as soon as it is done; returns the job's progress,
    whose :meth:`~optbench.train.progress.Progress.summary` is its one-line summary.

    ``stack``: specs with the same :func:`stack_key` train together as stacked models
    (:func:`~optbench.train.loop.train_together`), in stacks of at most ``max_stack`` as equal
    in size as can be; without it, one after another. ``quiet``: no line per epoch in the log.

    ``checkpoints``: a directory to keep each stack's checkpoint in (:mod:`optbench.train.checkpoints`): a job
    run again with the same specs resumes where the last one stopped, and once every record is written
    the checkpoints are deleted.
    """
    groups: dict[str | int, list[tuple[RunSpec, str | Path]]] = {}
    for spec, out in zip(specs, outs, strict=True):
        key = stack_key(spec) if stack else len(groups)  # without stack: a group of one per spec
        groups.setdefault(key, []).append((spec, out))
    stacks = [chunk for members in groups.values() for chunk in _split(members, max_stack)]
    progress = Progress([(len(chunk), chunk[0][0].epochs) for chunk in stacks])
    for i, chunk in enumerate(stacks):
        progress.next_stack()
        records = train_together(
            [spec for spec, _ in chunk],
            stacked=len(chunk) > 1,
            quiet=quiet,
            checkpoint=None if checkpoints is None else stack_path(checkpoints, i),
            progress=progress,
        )
        for (_, out), record in zip(chunk, records, strict=True):
            write_record(record, out)
            progress.finished(record)
    if checkpoints is not None:
        remove(checkpoints)
    return progress


def _split(members: list, max_stack: int) -> list[list]:
    """``members`` in as few stacks of at most ``max_stack`` as can be, as equal in size as can be."""
    n_stacks = math.ceil(len(members) / max_stack)
    return [members[i * len(members) // n_stacks : (i + 1) * len(members) // n_stacks] for i in range(n_stacks)]
