"""What the training loop of runs trained together carries from epoch to epoch besides the models, the
optimizer and the schedule (:class:`LoopState`), the per-step trace among it (:class:`Trace`); with them,
what a checkpoint holds (:mod:`optbench.train.checkpoints`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from optbench.optim.optimizer import AdaptiveOptimizer

#: The seconds a record's ``timing`` gives, summed over the runs trained together.
SECONDS = ("wall", "train", "eval", "setup")


class Trace:
    r"""Per-step diagnostics of the runs trained together: every step's training loss, and every ``every``
    steps (steps 1, k + 1, 2k + 1, ...) the optimizer's :math:`\mathrm{RMS}(U)` summary per model
    (:meth:`~optbench.optim.optimizer.UpdateRMS.summary`: mean and max over tensors, fraction clipped)."""

    def __init__(self, every: int):
        """An empty trace that reports RMS(U) every ``every`` steps."""
        self.every, self.steps = every, 0
        self.losses: list[torch.Tensor] = []  # (K,) per step
        self.rms_steps: list[int] = []
        self.rms: list[dict[str, list[float]]] = []

    def wants_update_rms(self) -> bool:
        """Whether the coming step is one to report RMS(U) for."""
        return self.steps % self.every == 0

    def add(self, losses: torch.Tensor, opt: AdaptiveOptimizer) -> None:
        """Records a step's per-model losses ``(K,)`` and, if it reported one, the optimizer's RMS(U)."""
        self.steps += 1
        self.losses.append(losses.detach().float())
        if opt.update_rms is not None:
            self.rms_steps.append(self.steps)
            self.rms.append(opt.update_rms.summary())

    def state_dict(self) -> dict:
        """What the trace holds so far, for a checkpoint."""
        return {"steps": self.steps, "losses": self.losses, "rms_steps": self.rms_steps, "rms": self.rms}

    def load_state_dict(self, state: dict) -> None:
        """Takes up a :meth:`state_dict` of a checkpoint."""
        self.steps, self.losses, self.rms_steps, self.rms = (
            state[key] for key in ("steps", "losses", "rms_steps", "rms")
        )

    def record(self, k: int, steps: int) -> dict:
        """Model k's trace up to step ``steps`` (where its history ends), non-finite values as None."""
        losses = torch.stack(self.losses)[:steps, k].tolist() if self.losses else []
        kept = [i for i, step in enumerate(self.rms_steps) if step <= steps]
        return {
            "every": self.every,
            "train_loss": [_finite(v) for v in losses],
            "update_rms": {
                "step": [self.rms_steps[i] for i in kept],
                **{key: [_finite(self.rms[i][key][k]) for i in kept] for key in ("mean", "max", "clipped_fraction")},
            },
        }


def _finite(value: float) -> float | None:
    """A traced value to 4 significant digits, None where not finite."""
    return float(f"{value:.4g}") if math.isfinite(value) else None


@dataclass
class LoopState:
    """What the training loop of runs trained together carries from epoch to epoch, besides the models, the
    optimizer and the schedule; with them, what a checkpoint holds (:mod:`optbench.train.checkpoints`)."""

    histories: list[list[dict]]  # per run, one entry per epoch
    trace: Trace | None
    diverged: list[int] = field(default_factory=list)
    epoch: int = 0  # epochs done
    #: :data:`SECONDS` of every attempt up to its last checkpoint (wall: as of that checkpoint)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SECONDS, 0.0))

    @classmethod
    def fresh(cls, runs: int, trace_every: int) -> LoopState:
        """The state of ``runs`` runs before their first epoch, with a :class:`Trace` if ``trace_every`` > 0."""
        return cls([[] for _ in range(runs)], Trace(trace_every) if trace_every else None)

    def going(self) -> list[int]:
        """The runs that have not diverged, in order."""
        return [k for k in range(len(self.histories)) if k not in self.diverged]

    def state_dict(self) -> dict:
        """The state, for a checkpoint."""
        return {
            "histories": self.histories,
            "trace": None if self.trace is None else self.trace.state_dict(),
            "diverged": self.diverged,
            "epoch": self.epoch,
            "seconds": self.seconds,
        }

    def load_state_dict(self, state: dict) -> None:
        """Takes up a :meth:`state_dict` of a checkpoint."""
        self.histories, self.diverged, self.epoch, self.seconds = (
            state[key] for key in ("histories", "diverged", "epoch", "seconds")
        )
        if self.trace is not None:
            self.trace.load_state_dict(state["trace"])
