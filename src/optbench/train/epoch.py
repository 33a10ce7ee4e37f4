r"""One epoch of runs trained together: the training steps (:func:`train_epoch`), the evaluation
(:func:`evaluate`), and the epoch's entry in each run's history, with the divergence check
(:func:`record_epoch`).

Divergence is a result: when an epoch's mean training loss is not finite or exceeds
``DIVERGENCE_FACTOR * ln(num_classes)`` (100 times the loss of a uniform guess), the run's
history ends with that epoch, whose test error is chance level, ``1 - 1/num_classes``
(:func:`chance_error`), and for a language model (``DataBundle.bits_per_token``) whose validation
loss is that of a uniform guess, :math:`\log_2` of the vocabulary, in bits per token.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from optbench.data.bundle import DataBundle
from optbench.optim.optimizer import AdaptiveOptimizer
from optbench.optim.transforms import Scalar
from optbench.train.external import External, optimizer_mode
from optbench.train.schedules import Schedule
from optbench.train.stacking import SingleModel, StackedModels, per_model_floats
from optbench.train.state import LoopState, Trace

log = logging.getLogger("optbench")

DIVERGENCE_FACTOR = 100.0

#: A context to run the models' forward passes in (bf16 autocast, or none), made afresh for each batch.
Autocast = Callable[[], AbstractContextManager]


def chance_error(num_classes: int) -> float:
    """The test error of a uniform guess among ``num_classes``: that of a diverged run."""
    return 1.0 - 1.0 / num_classes


def _inputs(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A batch's inputs as the model takes them: floating inputs in the run's dtype, token ids as they are."""
    return x.to(dtype) if x.is_floating_point() else x


def _losses(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-model cross-entropy ``(K, n)`` of logits ``(K, *y.shape, classes)`` against targets ``y``
    (classes ``(B,)``, or next tokens ``(B, T)``): one value per example or token."""
    count = logits.shape[0]
    losses = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1).repeat(count), reduction="none")
    return losses.view(count, -1)


def train_epoch(
    models: SingleModel | StackedModels,
    opt: AdaptiveOptimizer | External,
    schedule: Schedule,
    batches: Iterable,
    dtype: torch.dtype,
    autocast: Autocast,
    diverged: list[int],
    trace: Trace | None,
) -> tuple[list[float], Scalar, float]:
    """One pass over the training batches: each model's mean loss, the last step's lambda and lr multiplier.

    The schedule sets every per-step hyperparameter (lr, eta_t, lambda); the loop only steps it. The
    parameters of the ``diverged`` models are held at zero after every step. ``trace`` (if any) records
    every step's losses and, on its sampled steps, asks the optimizer for RMS(U).
    """
    models.train()
    optimizer_mode(opt, training=True)
    loss_sum, steps = torch.zeros(models.count, dtype=dtype, device=models.params[0].device), 0  # run's precision
    for x, y in batches:
        lam, multiplier = schedule.weight_decay, schedule.multiplier  # this batch's (history)
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


@torch.no_grad()
def evaluate(
    models: SingleModel | StackedModels, data: DataBundle, dtype: torch.dtype, autocast: Autocast
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


@dataclass(frozen=True)
class EpochResult:
    """What one epoch gave each of the runs trained together (those diverged before it included): from
    :func:`train_epoch`, the mean training losses and the last step's weight decay (a number, or one per
    model) and lr multiplier; from :func:`evaluate`, the test errors and mean test losses (nats)."""

    epoch: int
    train_losses: list[float]
    weight_decay: Scalar
    lr_multiplier: float
    test_errors: list[float]
    test_losses: list[float]


def record_epoch(loop: LoopState, result: EpochResult, data: DataBundle, run_ids: Sequence[str]) -> None:
    """Adds the epoch's entry to the history of each run still going in ``loop``, and marks those whose
    training loss blew up as diverged (saying so in the log; their entry is chance level)."""
    chance, uniform_bits = chance_error(data.num_classes), math.log2(data.num_classes)
    bound = DIVERGENCE_FACTOR * math.log(data.num_classes)
    running = loop.going()
    for k, lam_k in zip(running, per_model_floats(result.weight_decay, len(run_ids), running)):
        loss = result.train_losses[k]
        blew_up = not math.isfinite(loss) or loss > bound
        loop.histories[k].append(
            {
                "epoch": result.epoch,
                "train_loss": loss if math.isfinite(loss) else None,
                "test_error": chance if blew_up else result.test_errors[k],
                "lr_multiplier": result.lr_multiplier,
                "weight_decay": lam_k,
                **(
                    {"val_bits_per_token": uniform_bits if blew_up else result.test_losses[k] / math.log(2)}
                    if data.bits_per_token
                    else {}
                ),
            }
        )
        if blew_up:
            loop.diverged.append(k)
            log.info("%s diverged at epoch %d (train loss %s)", run_ids[k], result.epoch, loss)
