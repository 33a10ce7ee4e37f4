r"""Learning-rate schedules, stepped once per training batch.

Every schedule is a multiplier :math:`\eta_t` of each parameter group's initial
learning rate, :math:`\text{lr}_t = \eta_t \, \text{lr}_0`, the
"schedule multiplier" of Loshchilov & Hutter, "Decoupled Weight Decay
Regularization". :math:`t = 0, 1, \dots` counts batches, so time in epochs is
fractional, :math:`t / \text{steps\_per\_epoch}`, as in SGDR.

Kinds (see :class:`ScheduleSpec`):

* ``fixed``: :math:`\eta_t = 1`.
* ``step``: :math:`\eta_t = \gamma^{\#\{m \in \text{milestones}\,:\, t \ge
  \text{round}(m \cdot \text{steps\_per\_epoch})\}}`
  (:class:`~torch.optim.lr_scheduler.MultiStepLR`).
* ``cosine``: :math:`\eta_t = \frac{1}{2}\left(1 + \cos\frac{\pi t}{T}\right)`
  with :math:`T` the run's total number of batches
  (:class:`~torch.optim.lr_scheduler.CosineAnnealingLR`).
* ``warm_restarts`` (SGDR): :math:`\eta_t = \frac{1}{2}\left(1 +
  \cos\frac{\pi T_{cur}}{T_i}\right)`, :math:`T_{i+1} = T_i \cdot
  \text{t\_mult}`, computed here in closed form (see :func:`_sgdr_position`).
* ``inverse_sqrt``: :math:`\eta_t = \min\left(1, \sqrt{T_d / (t + 1)}\right)`, flat
  until batch :math:`T_d = \text{round}(\text{decay\_start} \cdot \text{steps\_per\_epoch})`,
  then the inverse square root of the step: the step size of Shazeer & Stern (2018),
  Section 9, :math:`0.1 \min(10^{-2}, 1/\sqrt{t})`, with :math:`T_d = 10^4` of their
  :math:`10^5` steps; with a warm-up of :math:`W = T_d` batches it is their
  :math:`0.1 \min(10^{-6} t, 1/\sqrt{t})` (see docs/adafactor.md).

An optional linear warm-up of :math:`W` batches scales any kind:
:math:`\eta_t = \min\left(1, \frac{t + 1}{W}\right) \eta^{\text{main}}_t`.
The main schedule's clock starts at batch 0, not at the end of the warm-up, so
milestones, the cosine's end and restart boundaries stay at the epochs the
configuration names, and ``cycles`` still end at the last epoch; this is also
how Adafactor's :math:`\min(10^{-2}, 1/\sqrt{t})` is built (the decay is a
function of the absolute step).

The torch scheduler runs on a private one-group "clock" optimizer with
:math:`\text{lr} = 1`, so its learning rate *is* :math:`\eta^{\text{main}}_t`
(well defined even for :math:`\text{lr}_0 = 0`). :class:`Schedule` owns every
per-step hyperparameter of the real optimizer: it writes each group's
:math:`\text{lr}_t = \text{lr}_0 \eta_t` (``initial_lr`` holds :math:`\text{lr}_0`,
as torch's schedulers would set it), its ``schedule_multiplier`` :math:`\eta_t`
and its weight decay :math:`\lambda_t`, which is constant or, with normalized
weight decay (Loshchilov & Hutter, Appendix B.1), follows the restart cycle
(:func:`normalized_weight_decay`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    LambdaLR,
    LRScheduler,
    MultiStepLR,
)

from optbench.optim.optimizer import INITIAL_LR, SCHEDULE_MULTIPLIER, AdaptiveOptimizer, lr_ratio
from optbench.optim.transforms import Scalar
from optbench.spec.schedule import ScheduleSpec, geometric_sum

# A restart boundary within this much (in units of the first cycle, or of
# log_{t_mult}) of a batch counts as reached: absorbs rounding in T_0 * steps_per_epoch.
_EPS = 1e-9


def _sgdr_position(step: int, first: float, t_mult: float) -> tuple[float, float]:
    r"""Return :math:`(T_{cur}, T_i)` at batch ``step``, both in batches.

    The cycles last ``first``, ``first * t_mult``, ... batches; the :math:`n`-th
    cycle (from 0) starts at :math:`\text{first} \cdot \sum_{j<n} t_{mult}^j`, so

    .. math::
        n = \left\lfloor \log_{t_{mult}}\left(\frac{t}{\text{first}}(t_{mult} - 1)
        + 1\right) \right\rfloor \quad (n = \lfloor t / \text{first} \rfloor
        \text{ if } t_{mult} = 1).

    torch's ``CosineAnnealingWarmRestarts.step(epoch)`` uses the same closed form
    but needs integer ``T_0``/``T_mult`` and drops a restart where ``math.log``
    rounds down (``T_mult=3``: the restart at 121 T_0 is missed); the ``_EPS``
    here makes boundaries land on their batch.
    """
    units = step / first
    if t_mult == 1:
        n = math.floor(units + _EPS)
    else:
        n = math.floor(math.log(units * (t_mult - 1) + 1, t_mult) + _EPS)
    return max(step - first * geometric_sum(n, t_mult), 0.0), first * t_mult**n


def _half_cosine(t_cur: float, t_i: float) -> float:
    """The cosine annealing multiplier at ``t_cur`` of a cycle of length ``t_i``."""
    return 0.5 * (1 + math.cos(math.pi * t_cur / t_i))


def normalized_weight_decay(
    lambda_norm: float | Tensor, *, batch_size: int, n_train: int, epochs: float
) -> float | Tensor:
    r"""The raw decay :math:`\lambda = \lambda_{norm} \sqrt{b / (B T)}` (per model for a (K,) ``lambda_norm``).

    ``b`` the batch size, ``B`` the number of training points, ``T`` the number of
    epochs of the run or, under warm restarts, of the current restart cycle
    :math:`T_i` (so :math:`\lambda` changes at every restart).
    """
    for name, value in (("batch_size", batch_size), ("n_train", n_train), ("epochs", epochs)):
        if not value > 0:
            raise ValueError(f"{name}: must be > 0, got {value!r}")
    return lambda_norm * math.sqrt(batch_size / (n_train * epochs))


class Schedule:
    r"""Owns the per-step hyperparameters of one optimizer; built by :func:`build_schedule`.

    Call :meth:`step` once per batch, after ``optimizer.step()``. At batch
    :math:`t` (the number of :meth:`step` calls so far) every param group has

    .. math::
        \text{lr}_t = \text{lr}_0 \, \eta_t, \qquad
        \eta_t = \min\left(1, \frac{t + 1}{W}\right) \eta^{\text{main}}_t, \qquad
        \lambda_t = \lambda_0 \sqrt{b / (B T_i)} \text{ (normalized) or } \lambda_0,

    with :math:`\text{lr}_0` the group's ``initial_lr`` and :math:`\lambda_0` its
    ``initial_weight_decay`` (set to its ``lr`` and ``weight_decay`` on construction if
    absent; :math:`\lambda_0` is :math:`\lambda_{norm}` with normalized weight decay),
    :math:`W` the warm-up length in batches (no factor when :math:`W = 0`),
    :math:`\eta^{\text{main}}_t` the learning rate ``scheduler`` gives its unit-lr clock
    optimizer, and :math:`T_i` the :attr:`cycle_epochs`. The group's ``schedule_multiplier``
    is :math:`\eta_t`, computed as :math:`\text{lr}_t / \text{lr}_0` (:func:`~optbench.optim.optimizer.lr_ratio`,
    :math:`\eta_t` itself where :math:`\text{lr}_0 = 0`) so that decoupled decay uses the ratio
    of the learning rate actually applied, per model for (K,) vectors. The values are set
    for batch 0 on construction. ``keys``: the group keys of the learning rate and the weight decay
    (an external optimizer's keywords of the grid's axes, :mod:`optbench.spec.external`).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        scheduler: LRScheduler,
        *,
        steps_per_epoch: int,
        warmup_steps: int,
        cycle_steps: Callable[[int], float],
        normalized_weight_decay: tuple[int, int] | None = None,
        keys: tuple[str, str] = ("lr", "weight_decay"),
    ) -> None:
        """Takes over ``optimizer``'s hyperparameters and sets them for batch 0 (see the class's docstring)."""
        self.optimizer = optimizer
        self.lr_key, self.decay_key = keys
        self.scheduler = scheduler
        self.steps_per_epoch = steps_per_epoch
        self.warmup_steps = warmup_steps
        self._cycle_steps = cycle_steps
        self._normalized = normalized_weight_decay
        self._step = 0
        for group in optimizer.param_groups:
            group.setdefault(INITIAL_LR, group[self.lr_key])
            group.setdefault("initial_weight_decay", group[self.decay_key])
        self._set_hyperparameters()

    def step(self) -> None:
        """Advance one batch (call after ``optimizer.step()``)."""
        self.scheduler.step()
        self._step += 1
        self._set_hyperparameters()

    def state_dict(self) -> dict[str, int]:
        """The batch count :math:`t`, all the schedule's state is a function of (:meth:`load_state_dict`)."""
        return {"step": self._step}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Steps a schedule still at batch 0 to batch ``state["step"]``, as training took it there: torch's
        chainable schedulers compute each value from the previous one, so replaying the steps gives the
        same numbers bit for bit."""
        if self._step:
            raise ValueError(f"load_state_dict: needs a schedule at batch 0; this one is at batch {self._step}")
        for _ in range(state["step"]):
            self.step()

    def _set_hyperparameters(self) -> None:
        """Writes the next batch's lr, multiplier and weight decay into every group of the optimizer."""
        eta = self.multiplier
        for group in self.optimizer.param_groups:
            lr0, lambda0 = group[INITIAL_LR], group["initial_weight_decay"]
            group[self.lr_key] = lr = lr0 * eta
            group[SCHEDULE_MULTIPLIER] = lr_ratio(lr, lr0, eta)
            if self._normalized is None:
                group[self.decay_key] = lambda0
            else:
                batch_size, n_train = self._normalized
                group[self.decay_key] = normalized_weight_decay(
                    lambda0, batch_size=batch_size, n_train=n_train, epochs=self.cycle_epochs
                )

    @property
    def weight_decay(self) -> Scalar:
        r""":math:`\lambda_t` for the next batch: the one group's (a number, or a (K,) vector of stacked models'),
        or, over a group per model, one per model as a (K,) vector."""
        values = [group[self.decay_key] for group in self.optimizer.param_groups]
        return values[0] if len(values) == 1 else torch.tensor(values, dtype=torch.float64)

    @property
    def multiplier(self) -> float:
        r""":math:`\eta_t` for the next batch: :math:`\text{lr}_t / \text{lr}_0` of every group."""
        warmup = min(1.0, (self._step + 1) / self.warmup_steps) if self.warmup_steps else 1.0
        return warmup * self.scheduler.get_last_lr()[0]

    @property
    def cycle_epochs(self) -> float:
        r""":math:`T_i` of the current restart cycle in epochs (``warm_restarts``);
        the run's total epochs for the other kinds: the :math:`T` of normalized weight decay."""
        return self._cycle_steps(self._step) / self.steps_per_epoch


def build_schedule(
    optimizer: Optimizer,
    spec: ScheduleSpec,
    *,
    epochs: int,
    steps_per_epoch: int,
    normalized_weight_decay: tuple[int, int] | None = None,
    keys: tuple[str, str] = ("lr", "weight_decay"),
) -> Schedule:
    r"""Build the :class:`Schedule` ``spec`` describes for a run of ``epochs``
    epochs of ``steps_per_epoch`` batches.

    ``normalized_weight_decay``: the batch size :math:`b` and number of training
    points :math:`B` for :math:`\lambda_t = \lambda_{norm} \sqrt{b / (B T_i)}`, each
    group's ``weight_decay`` being :math:`\lambda_{norm}`; None keeps :math:`\lambda` constant.
    ``keys``: the group keys of the learning rate and the weight decay.

    Epoch times become batch steps: milestones, the start of the inverse square root
    decay and the warm-up are rounded to the nearest batch; restart boundaries are exact
    (fractional epochs).

    Raises:
        ValueError: ``epochs`` or ``steps_per_epoch`` not positive, or
            ``spec.warmup_epochs >= epochs``.
    """
    if not epochs > 0:
        raise ValueError(f"epochs must be > 0; got {epochs}")
    if not steps_per_epoch > 0:
        raise ValueError(f"steps_per_epoch must be > 0; got {steps_per_epoch}")
    spec.check_run(epochs)
    scheduler, cycle_steps = _main_scheduler(spec, epochs, steps_per_epoch)
    return Schedule(
        optimizer,
        scheduler,
        steps_per_epoch=steps_per_epoch,
        warmup_steps=round(spec.warmup_epochs * steps_per_epoch),
        cycle_steps=cycle_steps,
        normalized_weight_decay=normalized_weight_decay,
        keys=keys,
    )


def _main_scheduler(
    spec: ScheduleSpec, epochs: int, steps_per_epoch: int
) -> tuple[LRScheduler, Callable[[int], float]]:
    r"""The torch scheduler of ``spec``'s kind on a unit-lr "clock" optimizer of its own, whose learning rate
    is :math:`\eta^{\text{main}}_t`, and the length in batches of the restart cycle at a batch: the current
    cycle's under warm restarts, else the whole run's."""
    total_steps = epochs * steps_per_epoch

    def cycle_steps(step: int) -> float:
        """The run's length in batches, at every batch."""
        return float(total_steps)

    clock = AdaptiveOptimizer([torch.zeros(0)], lr=1.0)  # torch's optimizers import torch._dynamo (see there)
    if spec.kind == "fixed":
        scheduler = LambdaLR(clock, lambda step: 1.0)
    elif spec.kind == "step":
        milestones = [round(m * steps_per_epoch) for m in spec.milestones]
        scheduler = MultiStepLR(clock, milestones, gamma=spec.gamma)
    elif spec.kind == "cosine":
        scheduler = CosineAnnealingLR(clock, T_max=total_steps)
    elif spec.kind == "inverse_sqrt":
        start = max(round(spec.decay_start * steps_per_epoch), 1)
        scheduler = LambdaLR(clock, lambda step: min(1.0, math.sqrt(start / (step + 1))))
    else:
        position = partial(_sgdr_position, first=spec.first_cycle(epochs) * steps_per_epoch, t_mult=spec.t_mult)
        scheduler = LambdaLR(clock, lambda step: _half_cosine(*position(step)))

        def cycle_steps(step: int) -> float:
            """The length in batches of the restart cycle batch ``step`` falls in."""
            return position(step)[1]

    clock.step()  # (a no-op) so torch doesn't warn its scheduler steps first
    return scheduler, cycle_steps
