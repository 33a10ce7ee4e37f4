"""A training job's progress: one log line per epoch, and one summary line when the job ends.

A job trains its stacks one after another (:func:`optbench.train.loop.train_many`). After each epoch of a
stack, :meth:`Progress.epoch_line` gives the line the job's log gets, e.g.::

    stack 2/5, epoch 7/10: 15/16 runs going, best loss 0.0312, error 2.60%, 41s, ETA 1m20s

- ``stack 2/5``: the stack being trained, of the job's (left out when the job trains one stack);
- ``15/16 runs going``: the stack's runs that have not diverged;
- ``best loss``, ``error``: the lowest training loss and test error of any run of the job so far,
  diverged runs left out;
- ``41s``: the time since the job began training; ``ETA``: the time the job's remaining run-epochs take at
  the rate this process has trained so far (epochs restored from a checkpoint do not count towards the
  rate). A run-epoch is one epoch of one run, so a stack of 16 runs does 16 per epoch.

When the job ends, :meth:`Progress.summary` gives one line for the terminal, e.g.::

    results/quick/runs/adamw_cosine/shard000: 66 runs (66 ok) trained in 5m12s, best final test error 2.70%
    (adamw_cosine-lr0.015625-wd0.000244141-s0)

(one line; the time is the training's, from the first stack's start, without the process's start-up).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Iterable, Sequence


def duration(seconds: float) -> str:
    """``41s``, ``3m05s`` or ``2h03m``."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    """The progress of a job that trains ``stacks``, a (runs, epochs) pair per stack in the order it trains them."""

    def __init__(self, stacks: Sequence[tuple[int, int]]):
        """A job about to train ``stacks``: nothing done, the clock started."""
        self.plan = [runs * epochs for runs, epochs in stacks]  # run-epochs per stack
        self.stack = 0  # the stack being trained, from 1
        self.done = self.restored = 0  # run-epochs done, and of those, restored from a checkpoint
        self.start = time.perf_counter()
        self.best_loss = self.best_error = math.inf
        self.statuses: Counter[str] = Counter()
        self.best_run = (math.inf, "")  # final test error, run id

    def next_stack(self) -> None:
        """Moves on to the next stack. The run-epochs of the stacks before it count as done, those that
        a stack whose runs all diverged did not train included."""
        self.done = max(self.done, sum(self.plan[: self.stack]))
        self.stack += 1

    def restore(self, run_epochs: int, history: Iterable[dict]) -> None:
        """Counts ``run_epochs`` restored from a checkpoint as done (and as no part of the rate); ``history``:
        their entries (:func:`optbench.records.record.make_record`) of the runs still going, for the best so far."""
        self.done += run_epochs
        self.restored += run_epochs
        for entry in history:
            self.best_loss = min(self.best_loss, entry["train_loss"])
            self.best_error = min(self.best_error, entry["test_error"])

    def epoch_line(self, epoch: int, epochs: int, runs: int, losses: Sequence[float], errors: Sequence[float]) -> str:
        """Counts one epoch of a stack of ``runs`` runs as done; ``losses`` and ``errors``: the training loss and
        test error of the stack's runs still going after it. The log line (see the module's docstring)."""
        self.done += runs
        self.best_loss = min(self.best_loss, *losses, math.inf)
        self.best_error = min(self.best_error, *errors, math.inf)
        elapsed = time.perf_counter() - self.start
        trained = self.done - self.restored
        eta = duration(elapsed / trained * max(self.total - self.done, 0)) if trained else "?"
        where = f"stack {self.stack}/{len(self.plan)}, " if len(self.plan) > 1 else ""
        return (
            f"{where}epoch {epoch}/{epochs}: {len(losses)}/{runs} runs going, best loss {_number(self.best_loss, 1)}, "
            f"error {_number(self.best_error, 100, '.2f')}%, {duration(elapsed)}, ETA {eta}"
        )

    @property
    def total(self) -> int:
        """The job's run-epochs."""
        return sum(self.plan)

    def finished(self, record: dict) -> None:
        """Counts a run whose record is written."""
        self.statuses[record["status"]] += 1
        self.best_run = min(self.best_run, (record["final_test_error"], record["run_id"]))

    def summary(self, label: str) -> str:
        """One line for the job: its runs by status, the time it took, its best run (see the module's docstring)."""
        statuses = ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items()))
        error, run_id = self.best_run
        resumed = f", {self.restored} of {self.total} run-epochs restored from checkpoints" if self.restored else ""
        took = duration(time.perf_counter() - self.start)
        return (
            f"{label}: {self.statuses.total()} runs ({statuses}) trained in {took}, "
            f"best final test error {_number(error, 100, '.2f')}% ({run_id}){resumed}"
        )


def _number(value: float, scale: float, spec: str = ".4g") -> str:
    """``value * scale`` formatted, or ``-`` where no value is known yet (infinite)."""
    return format(value * scale, spec) if math.isfinite(value) else "-"
