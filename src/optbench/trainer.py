"""Train one run spec and return its record.

Divergence is a result: when an epoch's mean training loss is not finite or exceeds
``DIVERGENCE_FACTOR * ln(num_classes)`` (100 times the loss of a uniform guess),
training stops, the record's status is ``"diverged"`` and its final and best test
errors are chance level, ``1 - 1/num_classes``, so heatmaps show it as the worst cell.
"""

from __future__ import annotations

import contextlib
import logging
import math
import resource
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F

from .data import DataBundle, load_data
from .models import build_model
from .optim import make_optimizer, normalized_weight_decay, predicted_state_bytes, state_bytes
from .records import environment, write_record
from .schedules import Schedule, build_schedule
from .spec import RunSpec

log = logging.getLogger("optbench")

DIVERGENCE_FACTOR = 100.0


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: 'cuda' was asked for but torch sees no CUDA device; use 'auto' or 'cpu'")
    return torch.device(name)


def weight_decay_rule(spec: RunSpec, data: DataBundle, schedule: Schedule) -> Callable[[], float]:
    """The raw lambda for the next step: constant, or normalized from the current cycle length."""
    if not spec.optimizer.normalized_decay:
        return lambda: spec.weight_decay
    return lambda: normalized_weight_decay(spec.weight_decay, batch_size=spec.batch_size, n_train=data.n_train,
                                           epochs=schedule.cycle_epochs)


@torch.no_grad()
def test_error(model: torch.nn.Module, data: DataBundle, autocast) -> float:
    model.eval()
    wrong = total = 0
    for x, y in data.test_batches():
        with autocast():
            wrong += (model(x).argmax(dim=1) != y).sum().item()
        total += y.numel()
    return wrong / total


def peak_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # process peak RSS (kB on Linux)


def train(spec: RunSpec, *, quiet: bool = False) -> dict:
    """Runs one spec to the end (or to divergence) and returns its record."""
    start = time.perf_counter()
    device = resolve_device(spec.device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    data = load_data(spec.dataset, data_dir=spec.data_dir, batch_size=spec.batch_size, seed=spec.seed,
                     device=device, options=spec.dataset_options)
    torch.manual_seed(spec.seed)  # the same initialization for every cell of a heatmap
    model = build_model(spec.model, num_classes=data.num_classes, input_shape=data.input_shape, device=device)
    opt = make_optimizer(spec.optimizer.preset, model.parameters(), lr=spec.lr, weight_decay=0.0,
                         switches=spec.optimizer.switches)
    schedule = build_schedule(opt, spec.schedule, epochs=spec.epochs, steps_per_epoch=data.steps_per_epoch)
    decay = weight_decay_rule(spec, data, schedule)
    first_decay = decay()
    use_bf16 = spec.bf16 and device.type == "cuda"
    autocast = lambda: torch.autocast("cuda", dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()  # noqa: E731
    chance = 1.0 - 1.0 / data.num_classes
    bound = DIVERGENCE_FACTOR * math.log(data.num_classes)
    setup_seconds = time.perf_counter() - start

    history, status, train_seconds, eval_seconds = [], "ok", 0.0, 0.0
    for epoch in range(1, spec.epochs + 1):
        tick = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        for x, y in data.train_batches(epoch):
            opt.param_groups[0]["weight_decay"] = lam = decay()
            multiplier = schedule.multiplier
            with autocast():
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
            loss_sum += loss.detach().float()
        train_loss = loss_sum.item() / data.steps_per_epoch
        tock = time.perf_counter()
        train_seconds += tock - tick
        diverged = not math.isfinite(train_loss) or train_loss > bound
        error = chance if diverged else test_error(model, data, autocast)
        eval_seconds += time.perf_counter() - tock
        history.append({"epoch": epoch, "train_loss": train_loss if math.isfinite(train_loss) else None,
                        "test_error": error, "lr_multiplier": multiplier, "weight_decay": lam})
        if not quiet:
            log.info("%s epoch %d/%d loss %.4f test error %.2f%% lr x%.3g %.1fs", spec.run_id, epoch, spec.epochs,
                     train_loss, 100 * error, multiplier, time.perf_counter() - start)
        if diverged:
            status = "diverged"
            log.info("%s diverged at epoch %d (train loss %s)", spec.run_id, epoch, train_loss)
            break

    steps = len(history) * data.steps_per_epoch
    final = history[-1]
    record = {
        "schema_version": 1,
        "run_id": spec.run_id,
        "preset": spec.preset,
        "variant": spec.variant,
        "optimizer": spec.optimizer.to_dict(),
        "lr": spec.lr,
        "weight_decay": spec.weight_decay,
        "weight_decay_applied": first_decay,
        "schedule": spec.schedule.to_dict(),
        "seed": spec.seed,
        "dataset": spec.dataset,
        "model": spec.model,
        "epochs": spec.epochs,
        "batch_size": spec.batch_size,
        "device": device.type,
        "status": status,
        "history": history,
        "final_test_error": chance if status == "diverged" else final["test_error"],
        "best_test_error": chance if status == "diverged" else min(h["test_error"] for h in history),
        "final_train_loss": final["train_loss"],
        "memory": {
            "optimizer_state_bytes": state_bytes(opt),
            "optimizer_state_bytes_predicted": predicted_state_bytes(opt),
            "parameter_bytes": sum(p.numel() * p.element_size() for p in model.parameters()),
            "peak_bytes": peak_bytes(device),
        },
        "timing": {
            "wall_seconds": time.perf_counter() - start,
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
            "setup_seconds": setup_seconds,
            "steps_per_second": steps / train_seconds if train_seconds > 0 else 0.0,
        },
        "environment": environment(device),
    }
    log.info("%s %s: final test error %.2f%%, %.1fs", spec.run_id, status, 100 * record["final_test_error"],
             record["timing"]["wall_seconds"])
    return record


def train_many(specs: Iterable[RunSpec], outs: Iterable[str | Path], *, quiet: bool = False) -> None:
    """Trains specs one after another in this process, writing each record as soon as it is done."""
    for spec, out in zip(specs, outs, strict=True):
        write_record(train(spec, quiet=quiet), out)
