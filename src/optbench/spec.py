"""Run specs: everything one training run needs, checked before anything runs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch

from .data import DATASETS
from .models import MODELS
from .optim import make_optimizer
from .schedules import ScheduleSpec

DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer variant: a preset (``AdamW`` or ``Adafactor``) and the switches that differ from it.

    ``normalized_decay``: the run's weight decay is :math:`\\lambda_{norm}` and the applied
    :math:`\\lambda` is recomputed every step (Appendix B.1 of Loshchilov & Hutter).
    """

    preset: str = "AdamW"
    normalized_decay: bool = False
    switches: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> OptimizerSpec:
        d = dict(d)
        preset = d.pop("preset", cls.preset)
        normalized = d.pop("normalized_decay", False)
        if not isinstance(normalized, bool):
            raise ValueError(f"optimizer.normalized_decay: must be true or false, got {normalized!r}")
        spec = cls(preset, normalized, d)
        spec.resolved()  # raises ValueError naming a bad preset or switch
        return spec

    def resolved(self) -> dict[str, Any]:
        """Every switch of the optimizer, the preset's defaults filled in (lr and weight decay excluded)."""
        probe = make_optimizer(self.preset, [torch.zeros(1)], lr=0.0, weight_decay=0.0, switches=self.switches)
        return {k: v for k, v in probe.defaults.items() if k not in ("lr", "weight_decay", "stacked")}

    def to_dict(self) -> dict[str, Any]:
        return {"preset": self.preset, "normalized_decay": self.normalized_decay, **self.resolved()}


@dataclass(frozen=True)
class RunSpec:
    """One training run: one cell of one heatmap for one seed."""

    variant: str
    optimizer: OptimizerSpec
    lr: float
    weight_decay: float
    dataset: str = "mnist1d"
    model: str = "cnn"
    schedule: ScheduleSpec = ScheduleSpec()
    epochs: int = 20
    batch_size: int = 100
    seed: int = 0
    device: str = "auto"
    bf16: bool = False
    dtype: str = "float32"
    preset: str = "custom"
    data_dir: str = "data"
    dataset_options: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""

    def __post_init__(self):
        if not self.run_id:
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
        values["optimizer"] = OptimizerSpec.from_dict(_mapping(d, "optimizer"))
        values["schedule"] = ScheduleSpec.from_dict(_mapping(d, "schedule")) if "schedule" in d else ScheduleSpec()
        spec = cls(**values)
        spec.check()
        return spec

    def check(self) -> None:
        _choice("dataset", self.dataset, DATASETS)
        _choice("model", self.model, MODELS)
        _choice("device", self.device, DEVICES)
        _choice("dtype", self.dtype, DTYPES)
        for name in ("epochs", "batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: must be an integer >= 1, got {value!r}")
        for name in ("lr", "weight_decay"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not value >= 0:
                raise ValueError(f"{name}: must be a number >= 0, got {value!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"seed: must be an integer, got {self.seed!r}")
        for name in ("variant", "run_id", "preset"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value or "/" in value:
                raise ValueError(f"{name}: must be a non-empty string without '/', got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["optimizer"] = self.optimizer.to_dict()
        d["schedule"] = self.schedule.to_dict()
        return d


def default_run_id(variant: str, lr: float, weight_decay: float, seed: int) -> str:
    return f"{variant}-lr{lr:.6g}-wd{weight_decay:.6g}-s{seed}"


def _mapping(d: dict, name: str) -> dict:
    if not isinstance(d[name], dict):
        raise ValueError(f"{name}: must be a mapping, got {d[name]!r}")
    return d[name]


def _choice(name: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name}: unknown value {value!r}; allowed: {', '.join(sorted(allowed))}")
