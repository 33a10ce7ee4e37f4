"""An external optimizer's class (:mod:`optbench.spec.external`): imported by its path and given its keywords.

torch is imported only here, when a class is loaded, so that checking a config
(:mod:`optbench.train.external_check`) without an external optimizer stays free of it.
"""

from __future__ import annotations

import importlib
from typing import Any

from optbench.spec.external import ExternalOptimizerSpec


def load_class(path: str) -> type:
    """The ``torch.optim.Optimizer`` subclass at import path ``path``; ValueError saying what is wrong."""
    import torch

    module_name, _, name = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ValueError(f"cannot import module {module_name!r} ({err}); is it installed, or on PYTHONPATH?") from None
    cls = getattr(module, name, None)
    if cls is None:
        raise ValueError(f"module {module_name!r} has no attribute {name!r}")
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(f"{path} is not a torch.optim.Optimizer subclass (got {cls!r})")
    return cls


def keywords(spec: ExternalOptimizerSpec, lr: float, weight_decay: float) -> dict[str, Any]:
    """The keyword arguments the class is built with: the axes' values, then the fixed ``kwargs``."""
    return {spec.axes["lr"]: lr, spec.axes["weight_decay"]: weight_decay, **spec.kwargs}
