"""Train one run spec and return its record.

Training runs with denormal floats flushed to zero (:func:`flushed_denormals`).

Divergence is a result: when an epoch's mean training loss is not finite or exceeds
``DIVERGENCE_FACTOR * ln(num_classes)`` (100 times the loss of a uniform guess),
training stops, the record's status is ``"diverged"`` and its final and best test
errors are chance level, ``1 - 1/num_classes``, so heatmaps show it as the worst cell.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import platform
import resource
import socket
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .data import DataBundle, load_data
from .models import build_model
from .optim import make_optimizer, predicted_state_bytes, state_bytes
from .optim.transforms import Scalar
from .records import make_record
from .schedules import Schedule, build_schedule
from .spec import RunSpec
from .stacking import SingleModel, StackedModels, can_stack

log = logging.getLogger("optbench")

DIVERGENCE_FACTOR = 100.0


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but torch sees no CUDA device; use 'auto' or 'cpu'")
    return torch.device(name)


@torch.no_grad()
def test_errors(models: SingleModel | StackedModels, data: DataBundle, dtype: torch.dtype, autocast) -> list[float]:
    """Test error of each model."""
    models.train(False)
    wrong, total = torch.zeros(models.count, dtype=torch.long), 0
    for x, y in data.test_batches():
        with autocast():
            wrong += (models(x.to(dtype)).argmax(dim=-1) != y).sum(dim=1).cpu()
        total += y.numel()
    return [w / total for w in wrong.tolist()]


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # process peak RSS (kB on Linux)


@functools.cache
def git_commit() -> str | None:
    """The commit of the checkout the package runs from, or None outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment(device: torch.device) -> dict[str, Any]:
    """Where a run trained: versions, device, commit, host and threads (a record's ``environment``)."""

    def version(package: str) -> str | None:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": version("torchvision"),
        "numpy": version("numpy"),
        "optbench": version("optbench"),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "threads": torch.get_num_threads(),
    }


def train(spec: RunSpec, *, quiet: bool = False) -> dict:
    """Runs one spec to the end (or to divergence) and returns its record."""
    return next(train_together([spec], stacked=False, quiet=quiet))


def train_together(specs: Sequence[RunSpec], *, stacked: bool, quiet: bool = False) -> Iterator[dict]:
    """Trains specs that differ only in ``lr``, ``weight_decay`` and ``run_id``; yields their records in order.

    ``stacked``: as one :class:`StackedModels`, each model with its own lr and weight decay,
    or, for a model that cannot stack (:func:`can_stack`), one after another, saying so in
    the log; otherwise ``specs`` must be a single spec. A stacked model that diverges has
    its parameters held at zero from then on, its record ends there, and the others go
    on untouched.
    """
    start = time.perf_counter()
    spec = specs[0]
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
    if stacked and not can_stack(model):
        log.info(
            "model %s cannot be stacked (optbench.stacking.can_stack): training its %d runs one at a time",
            spec.model,
            len(specs),
        )
        for s in specs:
            yield train(s, quiet=quiet)
        return
    models = StackedModels(model, len(specs)) if stacked else SingleModel(model)
    count = models.count
    group = {
        **models.param_group(models.per_model([s.lr for s in specs])),
        "weight_decay": models.per_model([s.weight_decay for s in specs]),
    }
    opt = make_optimizer(
        spec.optimizer.base, [group], lr=spec.lr, weight_decay=spec.weight_decay, switches=spec.optimizer.switches
    )
    normalized = (data.batch_size, data.n_train) if spec.normalized_weight_decay else None
    schedule = build_schedule(
        opt, spec.schedule, epochs=spec.epochs, steps_per_epoch=data.steps_per_epoch, normalized_weight_decay=normalized
    )
    first_decay = _per_model_floats(opt.param_groups[0]["weight_decay"], count)
    use_bf16 = spec.bf16 and device.type == "cuda"
    autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()  # noqa: E731
    chance = 1.0 - 1.0 / data.num_classes
    bound = DIVERGENCE_FACTOR * math.log(data.num_classes)
    label = spec.run_id if count == 1 else f"{count} stacked runs of {spec.variant}"
    setup_seconds = time.perf_counter() - start

    histories, diverged = [[] for _ in specs], []
    train_seconds = eval_seconds = 0.0
    with flushed_denormals():
        for epoch in range(1, spec.epochs + 1):
            tick = time.perf_counter()
            train_losses, lam, multiplier = _train_epoch(
                models, opt, schedule, data.train_batches(epoch), dtype, autocast, diverged
            )
            tock = time.perf_counter()
            train_seconds += tock - tick
            errors = test_errors(models, data, dtype, autocast)
            eval_seconds += time.perf_counter() - tock
            running = [k for k in range(count) if k not in diverged]
            for k, lam_k in zip(running, _per_model_floats(lam, count, running)):
                loss = train_losses[k]
                blew_up = not math.isfinite(loss) or loss > bound
                histories[k].append(
                    {
                        "epoch": epoch,
                        "train_loss": loss if math.isfinite(loss) else None,
                        "test_error": chance if blew_up else errors[k],
                        "lr_multiplier": multiplier,
                        "weight_decay": lam_k,
                    }
                )
                if blew_up:
                    diverged.append(k)
                    log.info("%s diverged at epoch %d (train loss %s)", specs[k].run_id, epoch, loss)
            if not quiet:
                log.info(
                    "%s epoch %d/%d loss %.4f test error %.2f%% lr x%.3g %d/%d running %.1fs",
                    label,
                    epoch,
                    spec.epochs,
                    min(train_losses[k] for k in running),
                    100 * min(errors[k] for k in running),
                    multiplier,
                    count - len(diverged),
                    count,
                    time.perf_counter() - start,
                )
            models.zero_models(diverged)
            if len(diverged) == count:
                break

    shared = _shared_fields(
        opt,
        models,
        device,
        {"wall": time.perf_counter() - start, "train": train_seconds, "eval": eval_seconds, "setup": setup_seconds},
    )
    for k, (s, history) in enumerate(zip(specs, histories)):
        record = make_record(
            s,
            "diverged" if k in diverged else "ok",
            history,
            chance,
            shared=shared,
            weight_decay_applied=first_decay[k],
            steps_per_epoch=data.steps_per_epoch,
        )
        log.info(
            "%s %s: final test error %.2f%%, %.1fs",
            s.run_id,
            record["status"],
            100 * record["final_test_error"],
            record["timing"]["wall_seconds"],
        )
        yield record


def _shared_fields(
    opt: torch.optim.Optimizer, models: SingleModel | StackedModels, device: torch.device, seconds: dict[str, float]
) -> dict:
    """The record fields common to the runs trained together: each run's share of memory and of the
    ``seconds`` (wall, train, eval, setup) they took together, the device and the environment."""
    count = models.count
    return {
        "memory": {
            "optimizer_state_bytes": state_bytes(opt) // count,
            "optimizer_state_bytes_predicted": predicted_state_bytes(opt) // count,
            "parameter_bytes": sum(p.numel() * p.element_size() for p in models.params) // count,
            "peak_bytes": peak_bytes(device),
        },
        "timing": {
            "wall_seconds": seconds["wall"] / count,
            "train_seconds": seconds["train"] / count,
            "eval_seconds": seconds["eval"] / count,
            "setup_seconds": seconds["setup"] / count,
            "stacked_models": count,
        },
        "device": device.type,
        "environment": environment(device),
    }


def _train_epoch(
    models: SingleModel | StackedModels,
    opt: torch.optim.Optimizer,
    schedule: Schedule,
    batches: Iterable,
    dtype: torch.dtype,
    autocast,
    diverged: list[int],
) -> tuple[list[float], Scalar, float]:
    """One pass over the training batches: each model's mean loss, the last step's lambda and lr multiplier.

    The schedule sets every per-step hyperparameter (lr, eta_t, lambda); the loop only steps it.
    """
    models.train()
    loss_sum, steps = torch.zeros(models.count, device=models.params[0].device), 0
    for x, y in batches:
        lam, multiplier = opt.param_groups[0]["weight_decay"], schedule.multiplier  # this batch's (history)
        with autocast():
            logits = models(x.to(dtype))
            losses = F.cross_entropy(logits.flatten(0, 1), y.repeat(models.count), reduction="none")
            losses = losses.view(models.count, -1).mean(dim=1)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        opt.step()
        models.zero_models(diverged)
        schedule.step()
        loss_sum += losses.detach().float()
        steps += 1
    return (loss_sum / steps).tolist(), lam, multiplier


def _per_model_floats(value: Scalar, count: int, models: Sequence[int] | None = None) -> list[float]:
    """A number or a (K,) vector as one float per model in ``models`` (default: all)."""
    models = range(count) if models is None else models
    values = value.tolist() if isinstance(value, torch.Tensor) else [float(value)] * count
    return [values[k] for k in models]
