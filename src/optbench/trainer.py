"""Train one run spec and return its record.

Training runs with denormal floats flushed to zero (:func:`flushed_denormals`).

Divergence is a result: when an epoch's mean training loss is not finite or exceeds
``DIVERGENCE_FACTOR * ln(num_classes)`` (100 times the loss of a uniform guess),
training stops, the record's status is ``"diverged"`` and its final and best test
errors are chance level, ``1 - 1/num_classes``, so heatmaps show it as the worst cell.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import resource
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import DataBundle, load_data
from .models import build_model
from .optim import make_optimizer, normalized_weight_decay, predicted_state_bytes, state_bytes
from .optim.transforms import Scalar
from .records import environment, write_record
from .schedules import Schedule, build_schedule
from .spec import RunSpec
from .stacking import SingleModel, StackedModels, can_stack

log = logging.getLogger("optbench")

DIVERGENCE_FACTOR = 100.0


@contextlib.contextmanager
def flushed_denormals() -> Iterator[None]:
    """Denormal floats flushed to zero inside (x86 FTZ/DAZ), IEEE behaviour restored after.

    CPUs compute on denormals (below 1.2e-38 in float32) many times slower, and small
    learning rates and decayed weights produce them: flushing made stacked quick-preset
    runs 14% faster here. Most CUDA kernels flush them anyway.
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


def weight_decay_rule(normalized: bool, base: Scalar, data: DataBundle, schedule: Schedule) -> Callable[[], Scalar]:
    """The raw lambda for the next step: ``base``, or ``base`` as lambda_norm scaled by the current cycle length."""
    if not normalized:
        return lambda: base
    return lambda: base * normalized_weight_decay(1.0, batch_size=data.batch_size, n_train=data.n_train,
                                                  epochs=schedule.cycle_epochs)


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
    data = load_data(spec.dataset, data_dir=spec.data_dir, batch_size=spec.batch_size, seed=spec.seed,
                     device=device, options=spec.dataset_options)
    torch.manual_seed(spec.seed)  # the same initialization for every cell of a heatmap
    model = build_model(spec.model, num_classes=data.num_classes, input_shape=data.input_shape,
                        device=device).to(dtype)
    if stacked and not can_stack(model):
        log.info("model %s cannot be stacked (optbench.stacking.can_stack): training its %d runs one at a time",
                 spec.model, len(specs))
        for s in specs:
            yield train(s, quiet=quiet)
        return
    models = StackedModels(model, len(specs)) if stacked else SingleModel(model)
    count = models.count
    opt = make_optimizer(spec.optimizer.preset, [models.param_group(models.per_model([s.lr for s in specs]))],
                         lr=spec.lr, weight_decay=0.0, switches=spec.optimizer.switches)
    schedule = build_schedule(opt, spec.schedule, epochs=spec.epochs, steps_per_epoch=data.steps_per_epoch)
    decay = weight_decay_rule(spec.optimizer.normalized_decay, models.per_model([s.weight_decay for s in specs]),
                              data, schedule)
    first_decay = _per_model_floats(decay(), count)
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
            train_losses, lam, multiplier = _train_epoch(models, opt, schedule, decay, data.train_batches(epoch),
                                                         dtype, autocast, diverged)
            tock = time.perf_counter()
            train_seconds += tock - tick
            errors = test_errors(models, data, dtype, autocast)
            eval_seconds += time.perf_counter() - tock
            running = [k for k in range(count) if k not in diverged]
            for k, lam_k in zip(running, _per_model_floats(lam, count, running)):
                loss = train_losses[k]
                blew_up = not math.isfinite(loss) or loss > bound
                histories[k].append({"epoch": epoch, "train_loss": loss if math.isfinite(loss) else None,
                                     "test_error": chance if blew_up else errors[k], "lr_multiplier": multiplier,
                                     "weight_decay": lam_k})
                if blew_up:
                    diverged.append(k)
                    log.info("%s diverged at epoch %d (train loss %s)", specs[k].run_id, epoch, loss)
            if not quiet:
                log.info("%s epoch %d/%d loss %.4f test error %.2f%% lr x%.3g %d/%d running %.1fs", label, epoch,
                         spec.epochs, min(train_losses[k] for k in running), 100 * min(errors[k] for k in running),
                         multiplier, count - len(diverged), count, time.perf_counter() - start)
            models.zero_models(diverged)
            if len(diverged) == count:
                break

    shared = {
        "memory": {
            "optimizer_state_bytes": state_bytes(opt) // count,
            "optimizer_state_bytes_predicted": predicted_state_bytes(opt) // count,
            "parameter_bytes": sum(p.numel() * p.element_size() for p in models.params) // count,
            "peak_bytes": peak_bytes(device),
        },
        "timing": {
            "wall_seconds": (time.perf_counter() - start) / count,
            "train_seconds": train_seconds / count,
            "eval_seconds": eval_seconds / count,
            "setup_seconds": setup_seconds / count,
            "stacked_models": count,
        },
        "device": device.type,
        "environment": environment(device),
    }
    for k, (s, history) in enumerate(zip(specs, histories)):
        status = "diverged" if k in diverged else "ok"
        steps = len(history) * data.steps_per_epoch
        record = {
            **_record_fields(s, status, history, chance),
            "weight_decay_applied": first_decay[k],
            **shared,
            "timing": {**shared["timing"], "steps_per_second": steps * count / train_seconds if train_seconds else 0.0},
        }
        log.info("%s %s: final test error %.2f%%, %.1fs", s.run_id, status, 100 * record["final_test_error"],
                 record["timing"]["wall_seconds"])
        yield record


def _train_epoch(models: SingleModel | StackedModels, opt: torch.optim.Optimizer, schedule: Schedule,
                 decay: Callable[[], Scalar], batches: Iterable, dtype: torch.dtype, autocast,
                 diverged: list[int]) -> tuple[list[float], Scalar, float]:
    """One pass over the training batches: each model's mean loss, the last step's lambda and lr multiplier."""
    models.train()
    loss_sum, steps = torch.zeros(models.count, device=models.params[0].device), 0
    for x, y in batches:
        opt.param_groups[0]["weight_decay"] = lam = decay()
        multiplier = schedule.multiplier
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


def _record_fields(spec: RunSpec, status: str, history: list[dict], chance: float) -> dict:
    """The fields of a record that come from its spec and its history."""
    final = history[-1]
    return {
        "schema_version": 1,
        "run_id": spec.run_id,
        "preset": spec.preset,
        "variant": spec.variant,
        "optimizer": spec.optimizer.to_dict(),
        "lr": spec.lr,
        "weight_decay": spec.weight_decay,
        "schedule": spec.schedule.to_dict(),
        "seed": spec.seed,
        "dataset": spec.dataset,
        "model": spec.model,
        "epochs": spec.epochs,
        "batch_size": spec.batch_size,
        "dtype": spec.dtype,
        "status": status,
        "history": history,
        "final_test_error": chance if status == "diverged" else final["test_error"],
        "best_test_error": chance if status == "diverged" else min(h["test_error"] for h in history),
        "final_train_loss": final["train_loss"],
    }


def stack_key(spec: RunSpec) -> str:
    """Specs with the same key differ only in lr, weight decay and run id: they can train stacked."""
    d = spec.to_dict()
    for name in ("lr", "weight_decay", "run_id"):
        del d[name]
    return json.dumps(d, sort_keys=True)


#: Models per stack. Smaller stacks keep a step's activations in the CPU's caches: on this
#: project's 2-core CPU, stacks of 11 to 16 CNNs trained 7% faster per run than one of 66.
MAX_STACK = 16


def train_many(specs: Iterable[RunSpec], outs: Iterable[str | Path], *, stack: bool = False,
               max_stack: int = MAX_STACK, quiet: bool = False) -> None:
    """Trains specs in this process, writing each record as soon as it is done.

    ``stack``: specs with the same :func:`stack_key` train together as stacked models
    (:func:`train_together`), in stacks of at most ``max_stack`` as equal in size as can
    be; without it, one after another.
    """
    groups: dict[str | int, list[tuple[RunSpec, str | Path]]] = {}
    for spec, out in zip(specs, outs, strict=True):
        key = stack_key(spec) if stack else len(groups)  # without stack: a group of one per spec
        groups.setdefault(key, []).append((spec, out))
    for members in groups.values():
        n_stacks = math.ceil(len(members) / max_stack)
        for i in range(n_stacks):
            chunk = members[i * len(members) // n_stacks:(i + 1) * len(members) // n_stacks]
            records = train_together([spec for spec, _ in chunk], stacked=len(chunk) > 1, quiet=quiet)
            for (_, out), record in zip(chunk, records, strict=True):
                write_record(record, out)
