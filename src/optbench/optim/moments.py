r"""The second-moment pieces of the optimizer (the variant table's column "second moment": ``factored``,
``factored_axes`` and ``second_moment``), and which one a parameter gets.

Each piece is a class with ``numel``, the numbers of state it keeps for a parameter shape, ``init``, that
state, and (but :class:`NoSecondMoment`) ``update``, which advances the state of a bucket
(:mod:`optbench.optim.transforms`) and returns :math:`V_t` or :math:`\hat V_t`, before the bias correction
of a constant :math:`\beta_2`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def _squared(grads: list[Tensor], eps1: float) -> list[Tensor]:
    squares = torch._foreach_mul(grads, grads)
    if eps1:
        torch._foreach_add_(squares, eps1)
    return squares


class FullSecondMoment:
    r"""Full second moment, one entry per parameter entry:

    .. math:: V_t = \hat\beta_{2,t} V_{t-1} + (1 - \hat\beta_{2,t}) (G_t^2 + \epsilon_1)
    """

    @staticmethod
    def numel(shape: torch.Size) -> int:
        return math.prod(shape)

    @staticmethod
    def init(p: Tensor) -> dict[str, Tensor]:
        return {"exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}

    @staticmethod
    def update(states: list[dict], grads: list[Tensor], beta2_t: float, eps1: float) -> list[Tensor]:
        """Advances the average in place and returns it (the state tensors themselves)."""
        v = [s["exp_avg_sq"] for s in states]
        torch._foreach_mul_(v, beta2_t)
        if eps1:
            torch._foreach_add_(v, _squared(grads, eps1), alpha=1.0 - beta2_t)
        else:
            torch._foreach_addcmul_(v, grads, grads, value=1.0 - beta2_t)
        return v


class FactoredSecondMoment:
    r"""Factored second moment over the last two dimensions (Adafactor), for tensors
    with ``ndim >= 2``; leading dimensions are a batch of matrices.

    .. math::
        R_t &= \hat\beta_{2,t} R_{t-1} + (1 - \hat\beta_{2,t})\, \mathrm{mean}_{-1}(G_t^2 + \epsilon_1) \\
        C_t &= \hat\beta_{2,t} C_{t-1} + (1 - \hat\beta_{2,t})\, \mathrm{mean}_{-2}(G_t^2 + \epsilon_1) \\
        \hat V_t &= R_t C_t / \mathrm{mean}(R_t)

    which equals the paper's :math:`R_t C_t / 1_n^\top R_t` with row and column *sums*.
    A ``(..., n, m)`` parameter keeps ``(..., n)`` and ``(..., m)`` numbers instead of ``(..., n, m)``.
    """

    @staticmethod
    def numel(shape: torch.Size) -> int:
        return math.prod(shape[:-2]) * (shape[-2] + shape[-1])

    @staticmethod
    def init(p: Tensor) -> dict[str, Tensor]:
        return {
            "exp_avg_sq_row": p.new_zeros(p.shape[:-1]),
            "exp_avg_sq_col": p.new_zeros(p.shape[:-2] + p.shape[-1:]),
        }

    @staticmethod
    def update(states: list[dict], grads: list[Tensor], beta2_t: float, eps1: float) -> list[Tensor]:
        """Advances the row and column averages and returns the reconstructed V (new tensors)."""
        squares = _squared(grads, eps1)
        rows = [s["exp_avg_sq_row"] for s in states]
        cols = [s["exp_avg_sq_col"] for s in states]
        torch._foreach_lerp_(rows, [g.mean(dim=-1) for g in squares], 1.0 - beta2_t)
        torch._foreach_lerp_(cols, [g.mean(dim=-2) for g in squares], 1.0 - beta2_t)
        # A matrix whose gradient was all zero so far has R = 0, and V = 0 in the limit:
        # the floor on mean(R) gives exactly that instead of 0 / 0.
        means = [r.mean(dim=-1, keepdim=True) for r in rows]
        torch._foreach_clamp_min_(means, torch.finfo(rows[0].dtype).tiny)
        ratios = torch._foreach_div(rows, means)
        return torch._foreach_mul([q.unsqueeze(-1) for q in ratios], [c.unsqueeze(-2) for c in cols])


class _OneFactorSecondMoment:
    r"""One factor of :class:`FactoredSecondMoment` kept alone: the average of :math:`G^2 + \epsilon_1` over
    dimension :attr:`dim`, broadcast back along it as :math:`\hat V`. Subclasses name the factor."""

    key: str  # the state tensor
    dim: int  # the dimension averaged away: -1 keeps one number per row, -2 one per column

    @classmethod
    def _shape(cls, shape: torch.Size) -> torch.Size:
        kept = list(shape)
        del kept[cls.dim]
        return torch.Size(kept)

    @classmethod
    def numel(cls, shape: torch.Size) -> int:
        return math.prod(cls._shape(shape))

    @classmethod
    def init(cls, p: Tensor) -> dict[str, Tensor]:
        return {cls.key: p.new_zeros(cls._shape(p.shape))}

    @classmethod
    def update(cls, states: list[dict], grads: list[Tensor], beta2_t: float, eps1: float) -> list[Tensor]:
        r"""Advances the average and returns :math:`\hat V` broadcast to each gradient's shape (new tensors)."""
        averages = [s[cls.key] for s in states]
        torch._foreach_lerp_(averages, [g.mean(dim=cls.dim) for g in _squared(grads, eps1)], 1.0 - beta2_t)
        return [a.unsqueeze(cls.dim).expand(g.shape).contiguous() for a, g in zip(averages, grads)]


class RowSecondMoment(_OneFactorSecondMoment):
    r"""The row factor alone (``factored_axes="rows"``), for tensors with ``ndim >= 2``:

    .. math::
        R_t = \hat\beta_{2,t} R_{t-1} + (1 - \hat\beta_{2,t})\, \mathrm{mean}_{-1}(G_t^2 + \epsilon_1), \qquad
        \hat V_{t,ij} = R_{t,i}

    A ``(..., n, m)`` parameter keeps ``(..., n)`` numbers: every entry of a row gets the row's mean square.
    """

    key, dim = "exp_avg_sq_row", -1


class ColumnSecondMoment(_OneFactorSecondMoment):
    r"""The column factor alone (``factored_axes="columns"``), for tensors with ``ndim >= 2``:

    .. math::
        C_t = \hat\beta_{2,t} C_{t-1} + (1 - \hat\beta_{2,t})\, \mathrm{mean}_{-2}(G_t^2 + \epsilon_1), \qquad
        \hat V_{t,ij} = C_{t,j}

    A ``(..., n, m)`` parameter keeps ``(..., m)`` numbers: every entry of a column gets the column's mean square.
    """

    key, dim = "exp_avg_sq_col", -2


class NoSecondMoment:
    r"""No second moment (``second_moment=False``, SGD): no state, and the direction is not
    normalized (:func:`raw_direction` instead of :func:`rms_direction`)."""

    @staticmethod
    def numel(shape: torch.Size) -> int:
        return 0

    @staticmethod
    def init(p: Tensor) -> dict[str, Tensor]:
        return {}


#: The second-moment piece of a factored tensor, by ``factored_axes``.
FACTORED_MOMENTS = {"both": FactoredSecondMoment, "rows": RowSecondMoment, "columns": ColumnSecondMoment}


def second_moment(group: dict, p: Tensor) -> type:
    """The second-moment piece a parameter gets: none without ``second_moment``, factored only for
    (each model's) tensors with ndim >= 2."""
    if not group["second_moment"]:
        return NoSecondMoment
    if group["factored"] and p.ndim - group["stacked"] >= 2:
        return FACTORED_MOMENTS[group["factored_axes"]]
    return FullSecondMoment
