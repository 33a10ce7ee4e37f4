"""The record fields common to the runs trained together (:func:`shared_fields`): their memory, their
timing, the device and the environment they trained in (:func:`environment`)."""

from __future__ import annotations

import functools
import platform
import resource
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from optbench.optim.memory import predicted_state_bytes, state_bytes
from optbench.optim.optimizer import AdaptiveOptimizer
from optbench.train.external import External
from optbench.train.stacking import SingleModel, StackedModels


def peak_bytes(device: torch.device) -> int:
    """The process's peak memory: on CUDA the device's peak allocation, else the process's peak RSS."""
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


def _version(package: str) -> str | None:
    """The installed version of ``package``, None where it is not installed."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(device: torch.device) -> dict[str, Any]:
    """Where a run trained: versions, device, commit, host and threads (a record's ``environment``)."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "numpy": _version("numpy"),
        "optbench": _version("optbench"),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "git_commit": git_commit(),
        "hostname": socket.gethostname(),
        "threads": torch.get_num_threads(),
    }


def shared_fields(
    opt: AdaptiveOptimizer | External,
    models: SingleModel | StackedModels,
    device: torch.device,
    seconds: dict[str, float],
) -> dict:
    """The record fields common to the runs trained together: each run's share of memory and of the
    ``seconds`` (wall, train, eval, setup) they took together, the device and the environment. An external
    optimizer's state has no prediction from shapes (``optimizer_state_bytes_predicted`` is None)."""
    count = models.count
    predicted = None if isinstance(opt, External) else predicted_state_bytes(opt) // count
    return {
        "memory": {
            "optimizer_state_bytes": state_bytes(opt) // count,
            "optimizer_state_bytes_predicted": predicted,
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
