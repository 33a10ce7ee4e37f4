r"""Train one run spec and return its record.

Training runs with denormal floats flushed to zero (:func:`flushed_denormals`).

Divergence is a result: when an epoch's mean training loss is not finite or exceeds
``DIVERGENCE_FACTOR * ln(num_classes)`` (100 times the loss of a uniform guess),
training stops, the record's status is ``"diverged"`` and its final and best test
errors are chance level, ``1 - 1/num_classes``, so heatmaps show it as the worst cell.
For a language model (``DataBundle.bits_per_token``) each evaluation also records the
validation loss in bits per token, :math:`\mathrm{mean}(-\ln p(y)) / \ln 2`, and that of a
uniform guess, :math:`\log_2` of the vocabulary, at the epoch a run diverges.

A spec with ``trace_every = k > 0`` also records a trace (:class:`Trace`): every step's
training loss, and every k steps the optimizer's RMS(U) report
(:class:`~optbench.optim.optimizer.UpdateRMS`), each value to 4 significant digits (a diagnostic, kept small
in the record).
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
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from optbench.data.loaders import DataBundle, load_data
from optbench.models import build_model
from optbench.optim import AdaptiveOptimizer, make_optimizer, predicted_state_bytes, state_bytes
from optbench.optim.transforms import Scalar
from optbench.records.record import make_record
from optbench.spec.run import RunSpec
from optbench.train import checkpoints
from optbench.train.progress import Progress
from optbench.train.schedules import Schedule, build_schedule
from optbench.train.stacking import SingleModel, StackedModels, can_stack

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


def _inputs(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A batch's inputs as the model takes them: floating inputs in the run's dtype, token ids as they are."""
    return x.to(dtype) if x.is_floating_point() else x


def _losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-model cross-entropy ``(K, n)`` of logits ``(K, *y.shape, classes)`` against targets ``y``
    (classes ``(B,)``, or next tokens ``(B, T)``): one value per example or token."""
    count = logits.shape[0]
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1).repeat(count), reduction="none")
    return losses.view(count, -1)


@torch.no_grad()
def evaluate(
    models: SingleModel | StackedModels, data: DataBundle, dtype: torch.dtype, autocast
) -> tuple[list[float], list[float]]:
    """Test error (wrong predictions per example or token) and mean test cross-entropy (nats) of each model."""
    models.train(False)
    wrong, loss, total = torch.zeros(models.count, dtype=torch.long), torch.zeros(models.count, dtype=torch.float64), 0
    for x, y in data.test_batches():
        with autocast():
            logits = models(_inputs(x, dtype))
        wrong += (logits.argmax(dim=-1) != y).flatten(1).sum(dim=1).cpu()
        loss += _losses(logits.float(), y).sum(dim=1).double().cpu()
        total += y.numel()
    return [w / total for w in wrong.tolist()], [v / total for v in loss.tolist()]


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


#: The seconds a record's ``timing`` gives, summed over the runs trained together.
SECONDS = ("wall", "train", "eval", "setup")


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

    def state_dict(self) -> dict:
        return {
            "histories": self.histories,
            "trace": None if self.trace is None else self.trace.state_dict(),
            "diverged": self.diverged,
            "epoch": self.epoch,
            "seconds": self.seconds,
        }

    def load_state_dict(self, state: dict) -> None:
        self.histories, self.diverged, self.epoch, self.seconds = (
            state[key] for key in ("histories", "diverged", "epoch", "seconds")
        )
        if self.trace is not None:
            self.trace.load_state_dict(state["trace"])


def train_together(
    specs: Sequence[RunSpec],
    *,
    stacked: bool,
    quiet: bool = False,
    checkpoint: Path | None = None,
    progress: Progress | None = None,
) -> Iterator[dict]:
    """Trains specs that differ only in ``lr``, ``weight_decay`` and ``run_id``; yields their records in order.

    ``stacked``: as one :class:`StackedModels`, each model with its own lr and weight decay,
    or, for a model that cannot stack (:func:`can_stack`), one after another, saying so in
    the log; otherwise ``specs`` must be a single spec. A stacked model that diverges has
    its parameters held at zero from then on, its record ends there, and the others go
    on untouched.

    ``checkpoint``: a file to keep the runs' checkpoint in, written at epoch boundaries
    (:class:`~optbench.train.checkpoints.Writer`), and to resume from if it holds theirs
    (:mod:`optbench.train.checkpoints`).
    ``progress``: the job's progress, whose line every epoch logs unless ``quiet``
    (:class:`~optbench.train.progress.Progress`; default: these runs alone).
    """
    start = time.perf_counter()
    spec = specs[0]
    if progress is None:
        progress = Progress([(len(specs), spec.epochs)])
        progress.next_stack()
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
            "model %s cannot be stacked (optbench.train.stacking.can_stack): training its %d runs one at a time",
            spec.model,
            len(specs),
        )
        for i, s in enumerate(specs):
            path = None if checkpoint is None else checkpoints.run_path(checkpoint, i)
            yield from train_together([s], stacked=False, quiet=quiet, checkpoint=path, progress=progress)
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
    uniform_bits = math.log2(data.num_classes)
    bound = DIVERGENCE_FACTOR * math.log(data.num_classes)
    loop = LoopState([[] for _ in specs], Trace(spec.trace_every) if spec.trace_every else None)
    key = checkpoints.specs_key(specs, stacked)
    writer = None if checkpoint is None else checkpoints.Writer(checkpoint, key)
    if checkpoint is not None and _resume(checkpoint, key, device, models, opt, schedule, loop):
        kept = [history for k, history in enumerate(loop.histories) if k not in loop.diverged]
        progress.restore(loop.epoch * count, (entry for history in kept for entry in history))
    loop.seconds["setup"] += time.perf_counter() - start
    earlier_wall = loop.seconds["wall"]  # of earlier attempts, up to their last checkpoint

    with flushed_denormals():
        while loop.epoch < spec.epochs and len(loop.diverged) < count:
            epoch = loop.epoch + 1
            tick = time.perf_counter()
            train_losses, lam, multiplier = train_epoch(
                models, opt, schedule, data.train_batches(epoch), dtype, autocast, loop.diverged, loop.trace
            )
            tock = time.perf_counter()
            loop.seconds["train"] += tock - tick
            errors, test_losses = evaluate(models, data, dtype, autocast)
            loop.seconds["eval"] += time.perf_counter() - tock
            running = [k for k in range(count) if k not in loop.diverged]
            for k, lam_k in zip(running, _per_model_floats(lam, count, running)):
                loss = train_losses[k]
                blew_up = not math.isfinite(loss) or loss > bound
                loop.histories[k].append(
                    {
                        "epoch": epoch,
                        "train_loss": loss if math.isfinite(loss) else None,
                        "test_error": chance if blew_up else errors[k],
                        "lr_multiplier": multiplier,
                        "weight_decay": lam_k,
                        **(
                            {"val_bits_per_token": uniform_bits if blew_up else test_losses[k] / math.log(2)}
                            if data.bits_per_token
                            else {}
                        ),
                    }
                )
                if blew_up:
                    loop.diverged.append(k)
                    log.info("%s diverged at epoch %d (train loss %s)", specs[k].run_id, epoch, loss)
            models.zero_models(loop.diverged)
            loop.epoch = epoch
            if writer is not None:
                loop.seconds["wall"] = earlier_wall + time.perf_counter() - start
                last = epoch == spec.epochs or len(loop.diverged) == count
                writer.after_epoch(lambda: _parts(models, opt, schedule, loop), last=last)
            going = [k for k in range(count) if k not in loop.diverged]
            line = progress.epoch_line(
                epoch, spec.epochs, count, [train_losses[k] for k in going], [errors[k] for k in going]
            )
            if not quiet:
                log.info("%s", line)

    shared = _shared_fields(opt, models, device, {**loop.seconds, "wall": earlier_wall + time.perf_counter() - start})
    for k, (s, history) in enumerate(zip(specs, loop.histories)):
        record = make_record(
            s,
            "diverged" if k in loop.diverged else "ok",
            history,
            chance,
            shared=shared,
            weight_decay_applied=first_decay[k],
            steps_per_epoch=data.steps_per_epoch,
            trace=None if loop.trace is None else loop.trace.record(k, len(history) * data.steps_per_epoch),
        )
        log.info(
            "%s %s: final test error %.2f%%, %.1fs",
            s.run_id,
            record["status"],
            100 * record["final_test_error"],
            record["timing"]["wall_seconds"],
        )
        yield record


def _parts(
    models: SingleModel | StackedModels, opt: AdaptiveOptimizer, schedule: Schedule, loop: LoopState
) -> dict[str, dict]:
    """What the runs' checkpoint holds (:mod:`optbench.train.checkpoints`)."""
    return {
        "models": models.state_dict(),
        "optimizer": opt.state_dict(),
        "schedule": schedule.state_dict(),
        "loop": loop.state_dict(),
    }


def _resume(
    path: Path,
    key: str,
    device: torch.device,
    models: SingleModel | StackedModels,
    opt: AdaptiveOptimizer,
    schedule: Schedule,
    loop: LoopState,
) -> bool:
    """Restores the runs, just built, from their checkpoint in ``path`` if it holds theirs; whether it did."""
    saved = checkpoints.load(path, key, device)
    if saved is None:
        return False
    models.load_state_dict(saved["models"])
    schedule.load_state_dict(saved["schedule"])
    opt.load_state_dict(saved["optimizer"])
    loop.load_state_dict(saved["loop"])
    log.info("resuming from checkpoint %s: %d epoch(s) done", path, loop.epoch)
    return True


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


class Trace:
    r"""Per-step diagnostics of the runs trained together: every step's training loss, and every ``every``
    steps (steps 1, k + 1, 2k + 1, ...) the optimizer's :math:`\mathrm{RMS}(U)` summary per model
    (:meth:`~optbench.optim.optimizer.UpdateRMS.summary`: mean and max over tensors, fraction clipped)."""

    def __init__(self, every: int):
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


def train_epoch(
    models: SingleModel | StackedModels,
    opt: AdaptiveOptimizer,
    schedule: Schedule,
    batches: Iterable,
    dtype: torch.dtype,
    autocast,
    diverged: list[int],
    trace: Trace | None,
) -> tuple[list[float], Scalar, float]:
    """One pass over the training batches: each model's mean loss, the last step's lambda and lr multiplier.

    The schedule sets every per-step hyperparameter (lr, eta_t, lambda); the loop only steps it. ``trace``
    (if any) records every step's losses and, on its sampled steps, asks the optimizer for RMS(U).
    """
    models.train()
    loss_sum, steps = torch.zeros(models.count, dtype=dtype, device=models.params[0].device), 0  # run's precision
    for x, y in batches:
        lam, multiplier = opt.param_groups[0]["weight_decay"], schedule.multiplier  # this batch's (history)
        with autocast():
            losses = _losses(models(_inputs(x, dtype)), y).mean(dim=1)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        opt.step(report_update_rms=trace is not None and trace.wants_update_rms())
        if trace is not None:
            trace.add(losses, opt)
        models.zero_models(diverged)
        schedule.step()
        loss_sum += losses.detach()
        steps += 1
    return (loss_sum / steps).tolist(), lam, multiplier


def _per_model_floats(value: Scalar, count: int, models: Sequence[int] | None = None) -> list[float]:
    """A number or a (K,) vector as one float per model in ``models`` (default: all)."""
    models = range(count) if models is None else models
    values = value.tolist() if isinstance(value, torch.Tensor) else [float(value)] * count
    return [values[k] for k in models]
