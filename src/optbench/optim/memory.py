"""Optimizer state memory: measured from the tensors held, and predicted from parameter shapes."""

from __future__ import annotations

import torch

from optbench.optim.moments import second_moment


def state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of every state tensor the optimizer holds now."""
    return sum(
        v.numel() * v.element_size()
        for state in optimizer.state.values()
        for v in state.values()
        if isinstance(v, torch.Tensor)
    )


def predicted_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes the state of an :class:`AdaptiveOptimizer` will take once every parameter has stepped.

    From shapes alone, so it works on parameters on the ``meta`` device: a full second
    moment is n*m numbers, a factored one n+m per matrix (n rows-only, m columns-only;
    leading dims multiply), none
    without ``second_moment`` (SGD), and the first moment (or SGD's momentum buffer) n*m
    only when beta1 > 0.
    """
    total = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            numbers = second_moment(group, p).numel(p.shape)
            if group["beta1"] > 0:
                numbers += p.numel()
            total += numbers * p.element_size()
    return total
