"""Learning-rate schedule specs: what a run's schedule is, checked without building it.

:class:`ScheduleSpec` names a kind and its times in epochs; :mod:`optbench.train.schedules`
builds the per-batch schedule from it. The
Snakefile checks a preset's schedules with it when the config is loaded, before any job.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from optbench.spec.values import is_integer, is_number

KINDS = ("fixed", "step", "cosine", "warm_restarts", "inverse_sqrt")


@dataclass(frozen=True)
class ScheduleSpec:
    r"""Configuration of a learning-rate schedule; times are in epochs.

    Args:
        kind (str): ``fixed``, ``step``, ``cosine``, ``warm_restarts`` or ``inverse_sqrt``.
        milestones (tuple[float, ...]): ``step``: strictly increasing,
            non-negative epochs at which the multiplier is multiplied by
            ``gamma``; those at or after the run's end never fire.
            Default: ``(30, 60, 80)`` (the paper's 100-epoch runs).
        gamma (float): ``step``: decay factor, > 0. Default: 0.1.
        t_0 (float, optional): ``warm_restarts``: length :math:`T_0` of the
            first cycle in epochs, may be fractional.
        cycles (int, optional): ``warm_restarts``: number of cycles :math:`k`;
            :math:`T_0` is chosen so that the :math:`k`-th cycle ends exactly at
            the last epoch :math:`E`:

            .. math::
                T_0 = \begin{cases}
                    E \, \frac{t_{mult} - 1}{t_{mult}^k - 1} & t_{mult} > 1 \\
                    E / k & t_{mult} = 1
                \end{cases}

            Give exactly one of ``t_0`` and ``cycles``.
        t_mult (float): ``warm_restarts``: :math:`T_{i+1} = T_i \cdot
            t_{mult}`, >= 1 (any real; torch's class needs an integer, this
            module does not use it). Default: 2.
        decay_start (float, optional): ``inverse_sqrt``, and only it: the epoch
            :math:`T_d` from which :math:`\eta_t = \sqrt{T_d / (t + 1)}` (1 before), > 0;
            rounded to the nearest batch, at least the first.
        warmup_epochs (float): length of the linear warm-up, >= 0 and less than
            the run. Default: 0.
    """

    kind: str = "fixed"
    milestones: tuple[float, ...] = (30.0, 60.0, 80.0)
    gamma: float = 0.1
    t_0: float | None = None
    cycles: int | None = None
    t_mult: float = 2.0
    decay_start: float | None = None
    warmup_epochs: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        if any(not m >= 0 for m in self.milestones) or any(
            b <= a for a, b in zip(self.milestones, self.milestones[1:])
        ):
            raise ValueError(f"milestones must be non-negative, strictly increasing epochs; got {self.milestones}")
        if not self.gamma > 0:
            raise ValueError(f"gamma must be > 0; got {self.gamma}")
        restarts = self.kind == "warm_restarts"
        if not restarts and (self.t_0 is not None or self.cycles is not None):
            raise ValueError(f"t_0 and cycles apply only to kind 'warm_restarts'; got kind {self.kind!r}")
        if restarts and (self.t_0 is None) == (self.cycles is None):
            raise ValueError(
                "warm_restarts needs exactly one of t_0 (first cycle, epochs) and cycles "
                f"(number of cycles); got t_0={self.t_0}, cycles={self.cycles}"
            )
        if self.t_0 is not None and not self.t_0 > 0:
            raise ValueError(f"t_0 must be > 0 epochs; got {self.t_0}")
        if self.cycles is not None and (not is_integer(self.cycles) or self.cycles < 1):
            raise ValueError(f"cycles must be an integer >= 1; got {self.cycles!r}")
        if not self.t_mult >= 1:
            raise ValueError(f"t_mult must be >= 1; got {self.t_mult}")
        if (self.kind == "inverse_sqrt") != (self.decay_start is not None):
            raise ValueError(
                f"decay_start applies to kind 'inverse_sqrt', which needs it; got kind {self.kind!r}, "
                f"decay_start={self.decay_start}"
            )
        if self.decay_start is not None and not self.decay_start > 0:
            raise ValueError(f"decay_start must be > 0 epochs; got {self.decay_start}")
        if not self.warmup_epochs >= 0:
            raise ValueError(f"warmup_epochs must be >= 0; got {self.warmup_epochs}")

    @classmethod
    def from_dict(cls, d: dict) -> ScheduleSpec:
        """Build from a JSON/YAML mapping; missing keys but ``kind`` take their defaults.

        Raises:
            ValueError: on an unknown key or a bad value; the message names the
                key and what it accepts.
        """
        unknown = sorted(set(d) - set(_PARSERS))
        if unknown:
            raise ValueError(f"unknown schedule key(s) {unknown}; allowed keys: {', '.join(_PARSERS)}")
        if "kind" not in d:
            raise ValueError(f"kind is required, one of {', '.join(KINDS)}; got keys {sorted(d)}")
        kwargs = {}
        for key, value in d.items():
            parse, accepts = _PARSERS[key]
            try:
                kwargs[key] = parse(value)
            except (TypeError, ValueError):
                raise ValueError(f"{key} must be {accepts}; got {value!r}") from None
        return cls(**kwargs)

    def to_dict(self) -> dict:
        """JSON-friendly dict; ``ScheduleSpec.from_dict(spec.to_dict()) == spec``."""
        return {**dataclasses.asdict(self), "milestones": list(self.milestones)}

    def check_run(self, epochs: float) -> None:
        """ValueError unless the schedule fits a run of ``epochs`` epochs: its warm-up ends, and a step schedule
        drops its learning rate at each milestone, before the run does."""
        if not self.warmup_epochs < epochs:
            raise ValueError(f"warmup_epochs must be < epochs ({epochs}); got {self.warmup_epochs}")
        late = [m for m in self.milestones if m >= epochs]
        if self.kind == "step" and late:
            raise ValueError(
                f"milestones must be < epochs ({epochs}), or the drop never happens; got {list(self.milestones)}"
            )

    def first_cycle(self, epochs: float) -> float:
        r""":math:`T_0` of a ``warm_restarts`` spec in a run of ``epochs`` epochs: ``t_0``, or the one that ends
        the ``cycles``-th cycle at ``epochs``."""
        return self.t_0 if self.t_0 is not None else epochs / geometric_sum(self.cycles, self.t_mult)

    def cycle_ends(self, epochs: float) -> list[float]:
        r"""The epochs at which the cycles of a ``warm_restarts`` spec end within a run of ``epochs`` epochs:
        :math:`T_0 \sum_{j<n} t_{mult}^j` for :math:`n = 1, 2, \dots` (3, 9, 21, 45 for ``cycles=4, t_mult=2``
        in 45 epochs, where :math:`T_0 = 3`), each rounded to 1e-9 of an epoch.

        Raises:
            ValueError: the spec is not ``warm_restarts``.
        """
        if self.kind != "warm_restarts":
            raise ValueError(f"kind: cycle ends need kind 'warm_restarts'; got {self.kind!r}")
        t_0, ends = self.first_cycle(epochs), []
        while (end := round(t_0 * geometric_sum(len(ends) + 1, self.t_mult), 9)) <= epochs:
            ends.append(end)
        return ends


def geometric_sum(n: float, ratio: float) -> float:
    r""":math:`\sum_{j<n} \text{ratio}^j`: the length of ``n`` cycles, in units of the first."""
    return n if ratio == 1 else (ratio**n - 1) / (ratio - 1)


def _number(value) -> float:
    if not is_number(value):
        raise TypeError
    return float(value)


def _integer(value) -> int:
    if not _number(value).is_integer():
        raise ValueError
    return int(value)


def _optional(parse: Callable) -> Callable:
    return lambda value: None if value is None else parse(value)


#: key -> the JSON schema of its value in the config (:func:`optbench.spec.schema.config_schedule`).
FIELDS: dict[str, dict] = {
    "kind": {"enum": list(KINDS)},
    "milestones": {"type": "array", "items": {"type": "number", "minimum": 0}},
    "gamma": {"type": "number", "exclusiveMinimum": 0},
    "t_0": {"type": "number", "exclusiveMinimum": 0},
    "cycles": {"type": "integer", "minimum": 1},
    "t_mult": {"type": "number", "minimum": 1},
    "decay_start": {"type": "number", "exclusiveMinimum": 0, "description": "inverse_sqrt: the epoch the decay starts"},
    "warmup_epochs": {"type": "number", "minimum": 0},
}

# key -> (parser, what it accepts), for ScheduleSpec.from_dict.
_PARSERS: dict[str, tuple[Callable, str]] = {
    "kind": (str, "one of " + ", ".join(KINDS)),
    "milestones": (lambda v: tuple(map(_number, v)), "a list of epochs"),
    "gamma": (_number, "a number > 0"),
    "t_0": (_optional(_number), "null or a number of epochs > 0"),
    "cycles": (_optional(_integer), "null or an integer >= 1"),
    "t_mult": (_number, "a number >= 1"),
    "decay_start": (_optional(_number), "null or a number of epochs > 0"),
    "warmup_epochs": (_number, "a number of epochs >= 0"),
}
