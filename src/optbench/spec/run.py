"""Run specs: everything one training run needs, checked before anything runs."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from optbench.spec.datasets import check_dataset
from optbench.spec.external import ExternalOptimizerSpec
from optbench.spec.models import MODELS
from optbench.spec.run_ids import default_run_id
from optbench.spec.schedule import ScheduleSpec
from optbench.spec.switches import check_renamed, resolve
from optbench.spec.values import is_integer, is_number

DEVICES = ("auto", "cpu", "cuda")
#: The longest variant or preset name, in bytes: it names directories, and a run id (the variant's name and
#: about 35 bytes of cell and seed, at most 50 more than this) names the record ``<run_id>.json``, which the
#: file system must hold in 255 bytes.
MAX_NAME_BYTES = 200
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer variant: a base (``AdamW`` or ``Adafactor``) and the switches that differ from it
    (:data:`optbench.spec.switches.SWITCHES`)."""

    base: str = "AdamW"
    switches: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> OptimizerSpec:
        check_renamed(d, "optimizer")
        d = dict(d)
        spec = cls(d.pop("base", cls.base), d)
        spec.resolved()  # raises ValueError naming a bad base or switch
        return spec

    def resolved(self) -> dict[str, Any]:
        """Every switch of the optimizer, the base's defaults filled in."""
        try:
            return resolve(self.base, self.switches)
        except ValueError as err:
            raise ValueError(f"optimizer.{err}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"base": self.base, **self.resolved()}


def optimizer_spec(d: dict) -> OptimizerSpec | ExternalOptimizerSpec:
    """The spec of an ``optimizer`` block: an external class where it names one (``class``), else a base and
    switches; ValueError naming the first bad key."""
    if "class" in d:
        return ExternalOptimizerSpec.from_dict(d)
    return OptimizerSpec.from_dict(d)


@dataclass(frozen=True)
class RunSpec:
    """One training run: one cell of one heatmap for one seed.

    ``normalized_weight_decay``: ``weight_decay`` is :math:`\\lambda_{norm}` and the applied
    :math:`\\lambda` follows the restart cycle (Appendix B.1 of Loshchilov & Hutter;
    :func:`optbench.train.schedules.normalized_weight_decay`).

    ``trace_every``: 0 records no trace; k > 0 records every step's training loss and, every
    k steps, RMS(U) (:class:`optbench.train.state.Trace`).
    """

    variant: str
    optimizer: OptimizerSpec | ExternalOptimizerSpec
    lr: float
    weight_decay: float
    dataset: str = "mnist1d"
    model: str = "cnn"
    schedule: ScheduleSpec = ScheduleSpec()
    normalized_weight_decay: bool = False
    epochs: int = 20
    batch_size: int = 100
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    dtype: str = "float32"
    preset: str = "custom"
    data_dir: str = "data"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    trace_every: int = 0
    run_id: str = ""

    def __post_init__(self):
        if not self.run_id and is_number(self.lr) and is_number(self.weight_decay):  # else check() names them
            object.__setattr__(self, "run_id", default_run_id(self.variant, self.lr, self.weight_decay, self.seed))

    @classmethod
    def from_dict(cls, d: dict) -> RunSpec:
        """Builds and checks a spec; a ValueError names the first bad field."""
        if not isinstance(d, dict):
            raise ValueError(f"run spec: must be a mapping, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{unknown[0]}: unknown run spec field; allowed: {', '.join(sorted(names))}")
        missing = [n for n in ("variant", "optimizer", "lr", "weight_decay") if n not in d]
        if missing:
            raise ValueError(f"{missing[0]}: required run spec field is missing")
        values = dict(d)
        values["optimizer"] = optimizer_spec(_mapping(d, "optimizer"))
        if "schedule" in d:
            schedule = _mapping(d, "schedule")
            try:
                values["schedule"] = ScheduleSpec.from_dict(schedule)
            except ValueError as err:
                raise ValueError(f"schedule: {err}") from None
        spec = cls(**values)
        spec.check()
        return spec

    def check(self) -> None:
        _choice("model", self.model, MODELS)
        _choice("device", self.device, DEVICES)
        _choice("dtype", self.dtype, DTYPES)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not is_integer(value) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if not is_number(value) or not 0 <= value < math.inf:
                raise ValueError(f"{name}: must be a finite number >= 0, got {value!r}")
        for name in ("normalized_weight_decay", "bf16"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}: must be true or false, got {getattr(self, name)!r}")
        if not is_integer(self.seed) or self.seed < 0:
            raise ValueError(f"seed: must be an integer >= 0, got {self.seed!r}")
        if not is_integer(self.trace_every) or self.trace_every < 0:
            raise ValueError(f"trace_every: must be an integer >= 0, got {self.trace_every!r}")
        for name, longest in (("variant", MAX_NAME_BYTES), ("run_id", MAX_NAME_BYTES + 50), ("preset", MAX_NAME_BYTES)):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or "/" in value or value in (".", ".."):
                raise ValueError(f"{name}: must be a file name (not empty, '.' or '..', no '/'), got {value!r}")
            if len(value.encode()) > longest:
                raise ValueError(
                    f"{name}: at most {longest} bytes (it names files), got {len(value.encode())}: {value!r}"
                )
        try:
            self.schedule.check_run(self.epochs)
        except ValueError as err:
            raise ValueError(f"schedule: {err}") from None
        check_dataset(self.dataset, self.dataset_options, self.batch_size)  # the options, and a batch that fits

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["optimizer"] = self.optimizer.to_dict()
        d["schedule"] = self.schedule.to_dict()
        return d


def _mapping(d: dict, name: str) -> dict:
    if not isinstance(d[name], dict):
        raise ValueError(f"{name}: must be a mapping, got {d[name]!r}")
    return d[name]


def _choice(name: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: unknown value {value!r}; allowed: {', '.join(sorted(allowed))}")
