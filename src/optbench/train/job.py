"""What a ``train`` command does before it trains a shard: read its run specs (:func:`read_specs`), give each
its record path (:func:`record_paths`) and let the allocator keep freed memory (:func:`reuse_freed_memory`);
:func:`optbench.train.loop.train_many` then trains them."""

from __future__ import annotations

import ctypes
import json
from collections.abc import Sequence
from pathlib import Path

from optbench.spec.run import RunSpec


def read_specs(text: str, source: str) -> list[RunSpec]:
    """The run specs in JSON ``text``, one spec or a non-empty list of them, checked; ``source`` names where the
    text came from in the ValueError that a text that is not JSON, an empty list or a bad spec raises."""
    try:
        loaded = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{source}: not valid JSON: {err}") from None
    raw = loaded if isinstance(loaded, list) else [loaded]
    if not raw:
        raise ValueError(f"{source}: no run specs (an empty list)")
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
