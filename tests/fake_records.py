"""Synthetic run records following the run-record schema, for aggregation and plot tests."""

from __future__ import annotations

import math

from optbench.records.record import SCHEMA_VERSION

CHANCE_ERROR = 0.9
LRS = [2.0**k for k in range(-12, -7)]  # 5 learning rates
WDS = [2.0**k for k in range(-6, 0)]  # 6 weight decays


def make_record(
    variant: str,
    lr: float,
    weight_decay: float,
    seed: int,
    final_test_error: float,
    status: str = "ok",
    normalized_weight_decay: bool = False,
    epochs: int = 3,
) -> dict:
    """A record following the run-record schema; the learning curve ends at ``final_test_error``.

    A diverged run's last train loss is null, as the trainer writes a non-finite loss.
    """
    diverged = status == "diverged"
    history = [
        {
            "epoch": epoch,
            "train_loss": None if diverged and epoch == epochs else 2.3 / epoch,
            "test_error": min(final_test_error + 0.1 * (epochs - epoch), 1.0),
            "lr_multiplier": 1.0 - epoch / epochs,
            "weight_decay": weight_decay,
        }
        for epoch in range(1, epochs + 1)
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": f"{variant}-lr{lr}-wd{weight_decay}-s{seed}",
        "preset": "quick",
        "variant": variant,
        "optimizer": {
            "base": "AdamW",
            "weight_decay_mode": "decoupled",
            "factored": False,
            "momentum": "gradient",
            "beta1": 0.9,
            "second_moment": True,
            "beta2": 0.999,
            "beta2_decay": None,
            "eps": 1e-8,
            "eps1": 0.0,
            "eps2": 0.001,
            "clip_threshold": None,
            "relative_step": False,
        },
        "normalized_weight_decay": normalized_weight_decay,
        "lr": lr,
        "weight_decay": weight_decay,
        "weight_decay_applied": weight_decay / 20,
        "schedule": {
            "kind": "cosine",
            "milestones": [30, 60, 80],
            "gamma": 0.1,
            "t_0": None,
            "cycles": None,
            "t_mult": 2.0,
            "warmup_epochs": 0.0,
        },
        "seed": seed,
        "dataset": "mnist1d",
        "model": "cnn",
        "epochs": epochs,
        "batch_size": 100,
        "dtype": "float32",
        "device": "cpu",
        "status": status,
        "history": history,
        "final_test_error": final_test_error,
        "best_test_error": final_test_error,
        "final_train_loss": history[-1]["train_loss"],
        "memory": {
            "optimizer_state_bytes": 40000,
            "optimizer_state_bytes_predicted": 40000,
            "parameter_bytes": 20000,
            "peak_bytes": 123456789,
        },
        "timing": {
            "wall_seconds": 3.2,
            "train_seconds": 2.9,
            "eval_seconds": 0.2,
            "setup_seconds": 0.1,
            "steps_per_second": 250.0,
            "stacked_models": 1,
        },
        "environment": {
            "python": "3.11.7",
            "torch": "2.5",
            "optbench": "0.1.0",
            "device_name": "cpu",
            "git_commit": "0123456",
            "hostname": "h",
            "threads": 4,
        },
    }


def separable_error(lr: float, weight_decay: float) -> float:
    """AdamW-like: error = f(log lr) + g(log wd), best at lr=2^-10, wd=2^-3 (interior)."""
    return 0.1 + 0.01 * (math.log2(lr) + 10) ** 2 + 0.013 * (math.log2(weight_decay) + 3) ** 2


def diagonal_error(lr: float, weight_decay: float) -> float:
    """L2-like: error depends on log lr + log wd (the product lr * wd), best where lr * wd = 2^-13.

    A small separable term breaks ties along the diagonal.
    """
    return 0.1 + 0.02 * (math.log2(lr * weight_decay) + 13) ** 2 + 0.001 * (math.log2(lr) + 10) ** 2


def corner_error(lr: float, weight_decay: float) -> float:
    """Best at the grid corner (smallest lr, largest weight decay)."""
    return 0.1 + 0.01 * (math.log2(lr) + 12) ** 2 + 0.01 * math.log2(weight_decay) ** 2


def grid_records(
    variant: str,
    error,
    seeds=(0, 1),
    lrs=LRS,
    wds=WDS,
    diverge_above_lr: float = math.inf,
    normalized_weight_decay: bool = False,
) -> list[dict]:
    """Records for a full lr x wd grid; seed s adds 0.002 * s, errors are capped at chance level,
    and runs with lr > ``diverge_above_lr`` diverge."""
    return [
        make_record(
            variant, lr, wd, seed, CHANCE_ERROR, status="diverged", normalized_weight_decay=normalized_weight_decay
        )
        if lr > diverge_above_lr
        else make_record(
            variant,
            lr,
            wd,
            seed,
            min(error(lr, wd) + 0.002 * seed, CHANCE_ERROR),
            normalized_weight_decay=normalized_weight_decay,
        )
        for lr in lrs
        for wd in wds
        for seed in seeds
    ]
