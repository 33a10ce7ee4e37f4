"""Checkpoints of a training job at epoch boundaries, so that a killed or requeued job resumes.

A job (:func:`optbench.train.loop.train_many`) given a checkpoint directory keeps one file per stack there,
``stackNNN.pt`` (NNN: the stack's place in the job; :func:`stack_path`), rewritten atomically
(:mod:`optbench.atomic`) at epoch boundaries by a :class:`Writer`: after every epoch, as long as writing
costs at most :data:`MAX_OVERHEAD` of the time (so after every few epochs where epochs are short next to a
write, as a large model's on a GPU may be), and always after the stack's last epoch. It holds:

- ``models``: the parameters and BatchNorm running statistics (per model when stacked);
- ``optimizer``: the optimizer's ``state_dict``: its state (moments, step counts) and its parameter
  groups (per-model lr and weight decay);
- ``schedule``: the schedule's batch count (:meth:`optbench.train.schedules.Schedule.state_dict`);
- ``loop``: the epochs done, each run's history, the diverged runs, the seconds spent so far and the
  trace (:class:`optbench.train.state.LoopState`);
- ``rng``: torch's global random number generators (CPU, and CUDA where the job runs on it). Data order
  needs none: batches are drawn from generators seeded by (seed, epoch)
  (:func:`optbench.data.bundle.epoch_generator`). But a model may draw from the global generator while
  training (Shake-Shake's branch weights), and only restoring it continues that stream;
- ``key``: :func:`specs_key`, the hash of the stack's run specs.

A stack that starts with its file present resumes from it (:func:`load`): at the epoch it holds, or, for a
stack that had finished, with no training at all, so that records deleted after the stack finished (as
Snakemake deletes a failed job's output) are written again. A file whose key differs (another config, or
other code's format) is ignored, with a log line, and overwritten; so is a damaged one: every file carries a
SHA-256 of its content, checked before torch reads it (:mod:`optbench.checksummed`), and one that is changed,
cut short or has none is never trained on.

Once a stack's records are written, its checkpoints give way to a file of those records,
``stackNNN-records.pt`` (:func:`finish`), with the same key and checksum: a job run again after its output was
deleted writes them again as they were, without building or training anything (:func:`finished_records`). This
is what a job interrupted after it finished needs: Snakemake, stopped by SIGINT, waits for its running jobs, then
leaves their outputs marked incomplete and deletes them on the next run. The job deletes its files once every
record is written (:func:`~optbench.train.checkpoint_files.remove`), unless told to keep them, as the workflow's
rule tells it; the workflow deletes them once Snakemake has recorded the job's output complete (its ``onsuccess``).

Resumed records are the uninterrupted ones, bit for bit, but for what describes the processes rather than
the training: ``timing`` (the seconds of every attempt up to its last checkpoint; the time an attempt lost
after its last checkpoint is not counted), ``memory.peak_bytes`` (the process that finished) and
``environment`` (where it finished: host, threads, device). The key covers the specs, not the code: after
changing the code mid-run, delete the checkpoints.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from optbench import checksummed
from optbench.train.checkpoint_files import records_path, stack_checkpoints

if TYPE_CHECKING:
    from optbench.spec.run import RunSpec

log = logging.getLogger("optbench")

#: The checkpoint format; part of the key, so a checkpoint of another format is ignored.
FORMAT = 1

#: The largest fraction of a stack's time its checkpoint writes may take (:class:`Writer`).
MAX_OVERHEAD = 0.02


def specs_key(specs: Sequence[RunSpec], stacked: bool) -> str:
    """The hash of what a stack trains: its run specs in order, whether stacked, and :data:`FORMAT`."""
    text = json.dumps({"format": FORMAT, "stacked": stacked, "specs": [s.to_dict() for s in specs]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def save(path: Path, key: str, **parts: Any) -> None:
    """Writes ``parts`` (tensors, numbers, strings and containers of them), the key and torch's RNG states
    to ``path``, atomically, with their checksum (:func:`optbench.checksummed.save`)."""
    rng = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    checksummed.save(path, {"format": FORMAT, "key": key, "rng": rng, **parts})


class Writer:
    """Writes a stack's checkpoint at epoch boundaries: after an epoch when the time since the last write is
    at least that write's duration over :data:`MAX_OVERHEAD` (after the first epoch, then after every epoch
    where epochs are long next to a write), and always after the stack's last epoch."""

    def __init__(self, path: Path, key: str):
        """A writer of the checkpoint in ``path`` of the stack of :func:`specs_key` ``key``."""
        self.path, self.key = path, key
        self.last = time.perf_counter()  # when the last write ended (or the writer was made)
        self.took = 0.0  # how long the last write took

    def after_epoch(self, parts: Callable[[], dict[str, Any]], *, last: bool) -> None:
        """Saves ``parts()`` (:func:`save`) if it is time to, or ``last``: the stack's last epoch."""
        start = time.perf_counter()
        if last or start - self.last >= self.took / MAX_OVERHEAD:
            save(self.path, self.key, **parts())
            self.last = time.perf_counter()
            self.took = self.last - start


def load(path: Path, key: str, device: torch.device) -> dict | None:
    """The parts saved in ``path``, its tensors on ``device``, with torch's RNG states restored; None, after a
    log line saying why, when there is no checkpoint, it is damaged, or it is of other specs than ``key``'s."""
    saved = _read(path, key, device)
    if saved is not None:
        torch.set_rng_state(saved["rng"]["cpu"].cpu())
        if "cuda" in saved["rng"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([state.cpu() for state in saved["rng"]["cuda"]])
    return saved


def finish(directory: str | Path, index: int, key: str, records: list[dict]) -> None:
    """Replaces the checkpoints of the job's stack ``index`` (of :func:`specs_key` ``key``), whose ``records``
    are written, by a file of those records (:func:`finished_records`). They are kept as JSON, the text their
    files hold: a record holds values torch would not read back with ``weights_only``, such as torch's version."""
    content = {"format": FORMAT, "key": key, "records": json.dumps(records)}
    checksummed.save(records_path(directory, index), content)
    for path in stack_checkpoints(directory, index):
        path.unlink(missing_ok=True)


def finished_records(directory: str | Path, index: int, key: str) -> list[dict] | None:
    """The records of the job's stack ``index`` that :func:`finish` kept, if it kept those of ``key``; else None."""
    saved = _read(records_path(directory, index), key, torch.device("cpu"))
    return None if saved is None else json.loads(saved["records"])


def _read(path: Path, key: str, device: torch.device) -> dict | None:
    """What ``path`` holds, its tensors on ``device``; None, after a log line saying why, when there is no file,
    it is damaged, or it is of other specs than ``key``'s."""
    if not path.exists():
        return None
    try:
        saved = checksummed.load(path, device)
    except checksummed.Damaged as err:
        log.warning("checkpoint %s: ignored, training from the start", err)
        return None
    if not isinstance(saved, dict) or saved.get("key") != key:
        log.info("checkpoint %s is of other run specs or another format: ignored, training from the start", path)
        return None
    return saved
