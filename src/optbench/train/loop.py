r"""Train one run spec (:func:`train`), or runs trained together (:func:`train_together`), and return
their records; or train a shard's specs stack by stack, writing each record (:func:`train_many`).

Runs trained together are built (:mod:`optbench.train.build`: data, models, optimizer, schedule),
resumed from their checkpoint if it holds them (:mod:`optbench.train.checkpoints`), trained epoch by
epoch (:mod:`optbench.train.epoch`), checkpointed at epoch boundaries, and finally each given its record
(:func:`optbench.records.record.make_record`, with the fields of :mod:`optbench.train.record_fields`).
Training runs with denormal floats flushed to zero (:func:`flushed_denormals`).

Divergence is a result: when an epoch's mean training loss is not finite or exceeds
``DIVERGENCE_FACTOR * ln(num_classes)`` (100 times the loss of a uniform guess;
:mod:`optbench.train.epoch`), training stops, the record's status is ``"diverged"`` and its final and
best test errors are chance level, ``1 - 1/num_classes``, so heatmaps show it as the worst cell.
For a language model (``DataBundle.bits_per_token``) each evaluation also records the
validation loss in bits per token, :math:`\mathrm{mean}(-\ln p(y)) / \ln 2`, and that of a
uniform guess, :math:`\log_2` of the vocabulary, at the epoch a run diverges.

A spec with ``trace_every = k > 0`` also records a trace (:class:`~optbench.train.state.Trace`): every
step's training loss, and every k steps the optimizer's RMS(U) report
(:class:`~optbench.optim.optimizer.UpdateRMS`), each value to 4 significant digits (a diagnostic, kept small
in the record).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch

from optbench.records.record import make_record, write_record
from optbench.spec.run import RunSpec
from optbench.train import checkpoints
from optbench.train.build import Runs, build_runs, prepare
from optbench.train.checkpoint_files import records_path, remove, run_path, stack_path
from optbench.train.checkpoints import finish, finished_records
from optbench.train.checkpoints import specs_key as checkpoints_key
from optbench.train.epoch import EpochResult, chance_error, evaluate, record_epoch, train_epoch
from optbench.train.external import optimizer_mode, stacks
from optbench.train.progress import Progress
from optbench.train.record_fields import shared_fields
from optbench.train.stacking import can_stack
from optbench.train.state import LoopState

log = logging.getLogger("optbench")


#: Models per stack at most. Smaller stacks keep a step's activations in the CPU's caches;
#: benchmarks/README.md has the measurement behind this value.
MAX_STACK = 16


@contextlib.contextmanager
def flushed_denormals() -> Iterator[None]:
    """Denormal floats flushed to zero inside (x86 FTZ/DAZ), IEEE behaviour restored after.

    CPUs compute on denormals (below 1.2e-38 in float32) many times slower, and small
    learning rates and decayed weights produce them (what flushing saves: benchmarks/README.md).
    Most CUDA kernels flush them anyway.
    """
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def train(spec: RunSpec, *, quiet: bool = False) -> dict:
    """Runs one spec to the end (or to divergence) and returns its record."""
    return next(train_together([spec], stacked=False, quiet=quiet))


def train_together(
    specs: Sequence[RunSpec],
    *,
    stacked: bool,
    quiet: bool = False,
    checkpoint: Path | None = None,
    progress: Progress | None = None,
) -> Iterator[dict]:
    """Trains specs that differ only in ``lr``, ``weight_decay`` and ``run_id``; yields their records in order.

    ``stacked``: as one :class:`~optbench.train.stacking.StackedModels`, each model with its own lr and
    weight decay, or, for a model that cannot stack (:func:`~optbench.train.stacking.can_stack`), one after
    another, saying so in the log; otherwise ``specs`` must be a single spec. A stacked model that diverges
    has its parameters held at zero from then on, its record ends there, and the others go on untouched.

    ``checkpoint``: a file to keep the runs' checkpoint in, written at epoch boundaries
    (:class:`~optbench.train.checkpoints.Writer`), and to resume from if it holds theirs
    (:mod:`optbench.train.checkpoints`).
    ``progress``: the job's progress, whose line every epoch logs unless ``quiet``
    (:class:`~optbench.train.progress.Progress`; default: these runs alone).
    """
    start = time.perf_counter()
    if progress is None:
        progress = Progress([(len(specs), specs[0].epochs)])
        progress.next_stack()
    device, dtype, data, model = prepare(specs[0])
    if stacked and not (can_stack(model) and stacks(specs[0])):
        yield from _one_at_a_time(specs, quiet, checkpoint, progress)
        return
    runs = build_runs(specs, stacked, device, dtype, data, model)
    loop = LoopState.fresh(runs.count, runs.spec.trace_every)
    writer = None if checkpoint is None else checkpoints.Writer(checkpoint, checkpoints.specs_key(specs, stacked))
    if writer is not None and _resume(writer, runs, loop):
        progress.restore(loop.epoch * runs.count, (entry for k in loop.going() for entry in loop.histories[k]))
    loop.seconds["setup"] += time.perf_counter() - start
    earlier_wall = loop.seconds["wall"]  # of earlier attempts, up to their last checkpoint

    def wall() -> float:
        """The wall seconds of every attempt so far."""
        return earlier_wall + time.perf_counter() - start

    with flushed_denormals():
        while loop.epoch < runs.spec.epochs and len(loop.diverged) < runs.count:
            losses, errors = _run_epoch(runs, loop)
            if writer is not None:
                _checkpoint(writer, runs, loop, wall)
            going = loop.going()
            line = progress.epoch_line(
                loop.epoch, runs.spec.epochs, runs.count, [losses[k] for k in going], [errors[k] for k in going]
            )
            if not quiet:
                log.info("%s", line)
    yield from _records(runs, loop, {**loop.seconds, "wall": wall()})


def _one_at_a_time(
    specs: Sequence[RunSpec], quiet: bool, checkpoint: Path | None, progress: Progress
) -> Iterator[dict]:
    """The records of specs whose model cannot stack, or whose external optimizer says ``stack: false``, trained
    one after another (each with a checkpoint of its own next to ``checkpoint``,
    :func:`~optbench.train.checkpoint_files.run_path`), after a log line saying why."""
    why = (
        f"model {specs[0].model} cannot be stacked (optbench.train.stacking.can_stack)"
        if stacks(specs[0])
        else f"optimizer {specs[0].optimizer.class_path} says stack: false"
    )
    log.info("%s: training its %d runs one at a time", why, len(specs))
    for i, s in enumerate(specs):
        path = None if checkpoint is None else run_path(checkpoint, i)
        yield from train_together([s], stacked=False, quiet=quiet, checkpoint=path, progress=progress)


def _resume(writer: checkpoints.Writer, runs: Runs, loop: LoopState) -> bool:
    """Restores the runs, just built, from their checkpoint (the one ``writer`` keeps) if it holds theirs;
    whether it did."""
    saved = checkpoints.load(writer.path, writer.key, runs.device)
    if saved is None:
        return False
    runs.models.load_state_dict(saved["models"])
    runs.schedule.load_state_dict(saved["schedule"])
    runs.opt.load_state_dict(saved["optimizer"])
    loop.load_state_dict(saved["loop"])
    log.info("resuming from checkpoint %s: %d epoch(s) done", writer.path, loop.epoch)
    return True


def _run_epoch(runs: Runs, loop: LoopState) -> tuple[list[float], list[float]]:
    """Trains and evaluates the runs for the next epoch, adds it to the histories of those still going (the
    ones that diverge in it held at zero from then on), and counts its seconds; each run's mean training
    loss and test error in it."""
    epoch = loop.epoch + 1
    tick = time.perf_counter()
    batches = runs.data.train_batches(epoch)
    train_losses, lam, multiplier = train_epoch(
        runs.models, runs.opt, runs.schedule, batches, runs.dtype, runs.autocast, loop.diverged, loop.trace
    )
    tock = time.perf_counter()
    loop.seconds["train"] += tock - tick
    optimizer_mode(runs.opt, training=False)
    errors, test_losses = evaluate(runs.models, runs.data, runs.dtype, runs.autocast)
    loop.seconds["eval"] += time.perf_counter() - tock
    result = EpochResult(epoch, train_losses, lam, multiplier, errors, test_losses)
    record_epoch(loop, result, runs.data, [s.run_id for s in runs.specs])
    runs.models.zero_models(loop.diverged)
    loop.epoch = epoch
    return train_losses, errors


def _checkpoint(writer: checkpoints.Writer, runs: Runs, loop: LoopState, wall: Callable[[], float]) -> None:
    """After an epoch: the runs' checkpoint written if it is time to (always after their last epoch), its
    loop state holding the wall seconds of every attempt so far (``wall()``)."""
    loop.seconds["wall"] = wall()
    last = loop.epoch == runs.spec.epochs or len(loop.diverged) == runs.count
    writer.after_epoch(lambda: _parts(runs, loop), last=last)


def _parts(runs: Runs, loop: LoopState) -> dict[str, dict]:
    """What the runs' checkpoint holds (:mod:`optbench.train.checkpoints`)."""
    return {
        "models": runs.models.state_dict(),
        "optimizer": runs.opt.state_dict(),
        "schedule": runs.schedule.state_dict(),
        "loop": loop.state_dict(),
    }


def _records(runs: Runs, loop: LoopState, seconds: dict[str, float]) -> Iterator[dict]:
    """Each run's record, in order, once training has ended, each with a log line; ``seconds``: those the
    runs took together (:data:`~optbench.train.state.SECONDS`)."""
    shared = shared_fields(runs.opt, runs.models, runs.device, seconds)
    steps_per_epoch = runs.data.steps_per_epoch
    for k, (s, history) in enumerate(zip(runs.specs, loop.histories)):
        record = make_record(
            s,
            "diverged" if k in loop.diverged else "ok",
            history,
            chance_error(runs.data.num_classes),
            shared=shared,
            weight_decay_applied=runs.first_decay[k],
            steps_per_epoch=steps_per_epoch,
            trace=None if loop.trace is None else loop.trace.record(k, len(history) * steps_per_epoch),
        )
        log.info(
            "%s %s: final test error %.2f%%, %.1fs",
            s.run_id,
            record["status"],
            100 * record["final_test_error"],
            record["timing"]["wall_seconds"],
        )
        yield record


def stack_key(spec: RunSpec) -> str:
    """Specs with the same key differ only in lr, weight decay and run id: they can train stacked."""
    d = spec.to_dict()
    for name in ("lr", "weight_decay", "run_id"):
        del d[name]
    return json.dumps(d, sort_keys=True)


def train_many(
    specs: Iterable[RunSpec],
    outs: Iterable[str | Path],
    *,
    stack: bool = False,
    max_stack: int = MAX_STACK,
    quiet: bool = False,
    checkpoints: str | Path | None = None,
    keep_checkpoints: bool = False,
) -> Progress:
    """Trains specs in this process, writing each record as soon as it is done; returns the job's progress,
    whose :meth:`~optbench.train.progress.Progress.summary` is its one-line summary.

    ``stack``: specs with the same :func:`stack_key` train together as stacked models
    (:func:`~optbench.train.loop.train_together`), in stacks of at most ``max_stack`` as equal
    in size as can be; without it, one after another. ``quiet``: no line per epoch in the log.

    ``checkpoints``: a directory to keep each stack's checkpoint in (:mod:`optbench.train.checkpoints`): a job
    run again with the same specs resumes where the last one stopped, and a stack whose records were written
    writes them again without training. Once every record is written the checkpoints are deleted, unless
    ``keep_checkpoints``: then whoever ran the job deletes them once it knows the job's output complete.
    """
    groups: dict[str | int, list[tuple[RunSpec, str | Path]]] = {}
    for spec, out in zip(specs, outs, strict=True):
        key = stack_key(spec) if stack else len(groups)  # without stack: a group of one per spec
        groups.setdefault(key, []).append((spec, out))
    stacks = [chunk for members in groups.values() for chunk in _split(members, max_stack)]
    progress = Progress([(len(chunk), chunk[0][0].epochs) for chunk in stacks])
    for i, chunk in enumerate(stacks):
        progress.next_stack()
        stack_specs = [spec for spec, _ in chunk]
        written = []
        for (_, out), record in zip(chunk, _stack_records(stack_specs, quiet, progress, checkpoints, i), strict=True):
            write_record(record, out)
            progress.finished(record)
            written.append(record)
        if checkpoints is not None:
            finish(checkpoints, i, checkpoints_key(stack_specs, len(chunk) > 1), written)
    if checkpoints is not None and not keep_checkpoints:
        remove(checkpoints)
    return progress


def _stack_records(
    specs: list[RunSpec], quiet: bool, progress: Progress, directory: str | Path | None, index: int
) -> Iterator[dict]:
    """The records of the job's stack ``index``, of ``specs``: those the checkpoint directory ``directory`` kept
    of it (:func:`~optbench.train.checkpoints.finished_records`), else trained (:func:`train_together`)."""
    stacked = len(specs) > 1
    if directory is None:
        return train_together(specs, stacked=stacked, quiet=quiet, progress=progress)
    kept = finished_records(directory, index, checkpoints_key(specs, stacked))
    if kept is None:
        checkpoint = stack_path(directory, index)
        return train_together(specs, stacked=stacked, quiet=quiet, checkpoint=checkpoint, progress=progress)
    log.info("%s: the stack had finished; its %d record(s) written again", records_path(directory, index), len(kept))
    history = [entry for record in kept if record["status"] == "ok" for entry in record["history"]]
    progress.restore(sum(len(record["history"]) for record in kept), history)
    return iter(kept)


def _split(members: list, max_stack: int) -> list[list]:
    """``members`` in as few stacks of at most ``max_stack`` as can be, as equal in size as can be."""
    n_stacks = math.ceil(len(members) / max_stack)
    return [members[i * len(members) // n_stacks : (i + 1) * len(members) // n_stacks] for i in range(n_stacks)]
