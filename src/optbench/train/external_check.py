"""The check of external optimizers (:mod:`optbench.spec.external`) when the config is loaded, before any job:
a bad path, a class that is not an optimizer, or a keyword it does not take, is one line naming the variant's
key.

Without torch (Snakemake run from its own conda environment) nothing is checked here: each training job
imports and builds its class when it starts, before it trains, and stops with the same line.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterable

from optbench.spec.external import ExternalOptimizerSpec
from optbench.spec.run import RunSpec
from optbench.train.optimizer_class import keywords, load_class


def check_class(spec: ExternalOptimizerSpec, lr: float, weight_decay: float) -> None:
    """ValueError, its text starting with the ``optimizer`` key at fault, unless ``spec``'s class imports, takes
    its keywords, builds on a parameter with ``lr`` and ``weight_decay`` and keeps the axes' keywords in its
    param groups (where the schedule sets them)."""
    import torch

    try:
        cls = load_class(spec.class_path)
    except ValueError as err:
        raise ValueError(f"optimizer.class: {err}") from None
    parameters = inspect.signature(cls).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        taken = [name for name in parameters if name != "params"]
        named = [(f"kwargs.{k}", k) for k in spec.kwargs] + [(f"axes.{a}", k) for a, k in spec.axes.items()]
        for key, keyword in named:
            if keyword not in taken:
                raise ValueError(
                    f"optimizer.{key}: {spec.class_path} takes no keyword {keyword!r}; it takes {', '.join(taken)}"
                )
    try:
        groups = cls([torch.zeros(2, 2, requires_grad=True)], **keywords(spec, lr, weight_decay)).param_groups
    except (TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"optimizer: {spec.class_path} rejected its keywords: {err}") from None
    for axis, keyword in spec.axes.items():
        if keyword not in groups[0]:
            raise ValueError(f"optimizer.axes.{axis}: {spec.class_path}'s param groups hold no {keyword!r} to schedule")


def check_external(specs: Iterable[RunSpec]) -> None:
    """ValueError naming the variant's key (``variants.<name>.optimizer...``) of the first of ``specs`` (a run of
    each variant stands for all of its runs) whose external class :func:`check_class` rejects. Nothing without
    torch (see the module's docstring); torch is not imported unless one of ``specs`` is external."""
    external = [s for s in specs if isinstance(s.optimizer, ExternalOptimizerSpec)]
    try:
        if external:
            import torch  # noqa: F401
    except ImportError:
        return
    for spec in external:
        try:
            check_class(spec.optimizer, spec.lr, spec.weight_decay)
        except ValueError as err:
            raise ValueError(f"variants.{spec.variant}.{err}") from None
