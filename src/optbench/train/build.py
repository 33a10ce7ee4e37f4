"""Building the runs of one stack before training: their device, data and model (:func:`prepare`), then
their models stacked or single, optimizer and schedule (:func:`build_runs`), as a :class:`Runs`.

Every run built from the same spec starts from the same initialization: the global generator is
seeded with the spec's seed just before the model is built, so every cell of a heatmap starts
from the same weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
from torch import nn

from optbench.data.bundle import DataBundle
from optbench.data.loaders import load_data
from optbench.models import build_model
from optbench.optim.bases import make_optimizer
from optbench.optim.optimizer import AdaptiveOptimizer
from optbench.spec.external import ExternalOptimizerSpec
from optbench.spec.run import RunSpec
from optbench.train.external import External
from optbench.train.schedules import Schedule, build_schedule
from optbench.train.stacking import SingleModel, StackedModels, per_model_floats


def resolve_device(name: str) -> torch.device:
    """The device a spec's ``device`` names: ``auto`` is CUDA where torch sees it, else the CPU;
    ValueError for ``cuda`` where torch sees no CUDA device."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but torch sees no CUDA device; use 'auto' or 'cpu'")
    return torch.device(name)


def prepare(spec: RunSpec) -> tuple[torch.device, torch.dtype, DataBundle, nn.Module]:
    """The device, dtype, data and freshly initialized model of the runs of ``spec``'s stack (their shared
    fields), in this order: the device's peak memory count is reset, the data loaded, then the global
    generator seeded with ``spec.seed`` and the model built in the dtype."""
    device = resolve_device(spec.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    dtype = getattr(torch, spec.dtype)
    data = load_data(
        spec.dataset,
        data_dir=spec.data_dir,
        batch_size=spec.batch_size,
        seed=spec.seed,
        device=device,
        options=spec.dataset_options,
    )
    torch.manual_seed(spec.seed)  # the same initialization for every cell of a heatmap
    model = build_model(spec.model, num_classes=data.num_classes, input_shape=data.input_shape, device=device).to(dtype)
    return device, dtype, data, model


@dataclass(frozen=True)
class Runs:
    """The runs of one stack, built and ready to train: their specs (which differ only in ``lr``,
    ``weight_decay`` and ``run_id``), device, dtype and data, their models (stacked or one), optimizer and
    schedule, and each run's weight decay at the first step (the records' ``weight_decay_applied``)."""

    specs: Sequence[RunSpec]
    device: torch.device
    dtype: torch.dtype
    data: DataBundle
    models: SingleModel | StackedModels
    opt: AdaptiveOptimizer | External
    schedule: Schedule
    first_decay: list[float]

    @property
    def spec(self) -> RunSpec:
        """The first run's spec: what the runs share."""
        return self.specs[0]

    @property
    def count(self) -> int:
        """How many runs train together."""
        return self.models.count

    @property
    def stacked(self) -> bool:
        """Whether the runs train as :class:`StackedModels`."""
        return isinstance(self.models, StackedModels)

    def autocast(self) -> AbstractContextManager:
        """The context of a forward pass: bf16 autocast where the spec asks for it and the runs are on CUDA."""
        if self.spec.bf16 and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()


def build_runs(
    specs: Sequence[RunSpec],
    stacked: bool,
    device: torch.device,
    dtype: torch.dtype,
    data: DataBundle,
    model: nn.Module,
) -> Runs:
    """The runs of ``specs`` from what :func:`prepare` gave for them: ``model`` as one
    :class:`StackedModels` with each run's lr and weight decay if ``stacked`` (``model`` must stack), else
    as a :class:`SingleModel` (``specs`` must then be a single spec); the optimizer (this project's, or an
    :class:`External` class) and the schedule."""
    spec = specs[0]
    models = StackedModels(model, len(specs)) if stacked else SingleModel(model)
    opt, keys = _optimizer(specs, models)
    normalized = (data.batch_size, data.n_train) if spec.normalized_weight_decay else None
    schedule = build_schedule(
        opt,
        spec.schedule,
        epochs=spec.epochs,
        steps_per_epoch=data.steps_per_epoch,
        normalized_weight_decay=normalized,
        keys=keys,
    )
    first_decay = per_model_floats(schedule.weight_decay, models.count)
    return Runs(specs, device, dtype, data, models, opt, schedule, first_decay)


def _optimizer(
    specs: Sequence[RunSpec], models: SingleModel | StackedModels
) -> tuple[AdaptiveOptimizer | External, tuple[str, str]]:
    """The optimizer of the runs of ``specs`` over ``models`` and its group keys of the lr and weight decay: an
    external class with a group per model, or this project's with one group (stacked: (K,) hyperparameters)."""
    spec = specs[0]
    if isinstance(spec.optimizer, ExternalOptimizerSpec):
        return External(spec.optimizer, specs, models), (spec.optimizer.axes["lr"], spec.optimizer.axes["weight_decay"])
    group = {
        **models.param_group(models.per_model([s.lr for s in specs])),
        "weight_decay": models.per_model([s.weight_decay for s in specs]),
    }
    opt = make_optimizer(
        spec.optimizer.base, [group], lr=spec.lr, weight_decay=spec.weight_decay, switches=spec.optimizer.switches
    )
    return opt, ("lr", "weight_decay")
