r"""The pieces the optimizer is composed of, one per column of the variant table.

Each piece works on a *bucket*: the lists of parameters, gradients and state dicts
of one parameter group that share device, dtype, step count and second-moment
layout, so every piece is a handful of ``torch._foreach_*`` calls over the whole
bucket rather than a Python loop over tensors. (On a CPU, a bucket is stepped in
cache-sized chunks: :func:`optbench.optim.optimizer.cache_sized`.)

*Stacked* buckets hold K models at once: every tensor's leading dimension indexes the
model, per-tensor statistics (RMS for clipping and the relative step, factored
row and column averages) are taken per model, and the learning rate and weight decay
may be per-model vectors of shape ``(K,)``. The same functions serve both cases; a
per-tensor factor is a vector ``(n,)`` for n ordinary tensors and a matrix ``(n, K)``
for n stacked ones.

=========================  ==========================================================
column                     piece
=========================  ==========================================================
``weight_decay_mode``      :func:`add_l2_gradient`, :func:`decay_weights`
second-moment decay        :func:`beta2_schedule`
second moment ``factored``, :mod:`optbench.optim.moments`
``factored_axes`` and
``second_moment``
direction ``momentum``     :func:`gradient_momentum`, :func:`heavy_ball_momentum`,
                           :func:`rms_direction`, :func:`raw_direction`, :func:`update_momentum`
update clipping ``d``      :func:`clip_by_block_rms`
step size                  :func:`per_tensor` (:math:`\alpha_t = \mathrm{lr}_t`), :func:`relative_step_size`
=========================  ==========================================================
"""

from __future__ import annotations

import functools
import math

import torch
from torch import Tensor

Scalar = float | Tensor  # a number, or one per model (K,) in a stacked bucket


def _rows(factors: Tensor, tensors: list[Tensor]) -> list[Tensor]:
    """Row i of ``factors`` ((n,) or (n, K)) shaped to broadcast against ``tensors[i]``; a 0-d row (a number)
    broadcasts as it is (n reshapes, ~2 us each, saved per call)."""
    if factors.ndim == 1:
        return list(factors.unbind())
    return [f.reshape(f.shape + (1,) * (x.ndim - f.ndim)) for f, x in zip(factors, tensors)]


def per_tensor(value: Scalar, n: int) -> Scalar:
    """A per-model vector (K,) repeated as one row per tensor (n, K); a number as it is."""
    return value.expand(n, -1) if isinstance(value, Tensor) else value


def add_l2_gradient(grads: list[Tensor], params: list[Tensor], weight_decay: Scalar) -> list[Tensor]:
    r"""L2 regularization folded into the gradient: :math:`G \leftarrow G + \lambda X`.

    Returns new tensors; ``p.grad`` is left as it was.
    """
    if isinstance(weight_decay, Tensor):
        return torch._foreach_add(
            grads, torch._foreach_mul(params, _rows(per_tensor(weight_decay, len(params)), params))
        )
    return torch._foreach_add(grads, params, alpha=weight_decay)


def decay_weights(params: list[Tensor], rate: Scalar) -> None:
    r"""Weight decay applied to the weights: :math:`X \leftarrow (1 - r) X`.

    ``r = eta_t * lambda`` for decoupled decay (AdamW, Algorithm 2) and
    ``r = lr_t * lambda`` for torch's convention.
    """
    if isinstance(rate, Tensor):
        torch._foreach_mul_(params, _rows(per_tensor(1.0 - rate, len(params)), params))
    elif rate != 0.0:
        torch._foreach_mul_(params, 1.0 - rate)


def beta2_schedule(t: int, beta2: float, beta2_decay: float | None) -> tuple[float, float]:
    r"""Second-moment decay rate at step ``t`` and the bias correction of its average.

    Constant: :math:`\hat\beta_{2,t} = \beta_2`, correction :math:`1 - \beta_2^t` (Adam).
    Increasing: :math:`\hat\beta_{2,t} = 1 - t^{-c}` (Adafactor), correction 1: since
    :math:`\hat\beta_{2,1} = 0` the average is unbiased from the first step on.
    """
    if beta2_decay is None:
        return beta2, 1.0 - beta2**t
    return 1.0 - t ** (-beta2_decay), 1.0


class Direction:
    r"""The update direction :math:`U = k \cdot N / D`, held as a fraction.

    Pieces rescale it (:meth:`scale`) without touching memory; it is divided out
    (:meth:`values`) only when a piece needs the values, so the plain Adam step stays
    a single ``addcdiv`` as in ``torch.optim.AdamW``. ``k`` is a float, or one row per
    tensor ((n,), or (n, K) when stacked) for per-tensor clipping and step sizes.
    """

    def __init__(self, num: list[Tensor], den: list[Tensor] | None, coef: Scalar = 1.0):
        self.num, self.den, self.coef = num, den, coef

    def scale(self, factor: float | Tensor) -> None:
        unit = isinstance(self.coef, float) and self.coef == 1.0
        self.coef = factor if unit else self.coef * factor  # 1 * k is k: no tensor op for it

    def values(self, keep: bool = True) -> list[Tensor]:
        """U as tensors (never the caller's gradients modified in place). ``keep``: U replaces the fraction,
        so it is computed once; otherwise the fraction stays, and the step is bit for bit the one it
        would be had U never been looked at."""
        unit = isinstance(self.coef, float) and self.coef == 1.0
        if self.den is None and unit:
            return self.num
        coef = self.coef if isinstance(self.coef, float) else _rows(self.coef, self.num)
        if self.den is None:
            u = torch._foreach_mul(self.num, coef)
        else:
            u = torch._foreach_div(self.num, self.den)
            if not unit:
                torch._foreach_mul_(u, coef)
        if keep:
            self.num, self.den, self.coef = u, None, 1.0
        return u

    def subtract_from(self, params: list[Tensor]) -> None:
        r""":math:`X \leftarrow X - U`."""
        if isinstance(self.coef, float) and self.den is not None:
            torch._foreach_addcdiv_(params, self.num, self.den, value=-self.coef)
        elif isinstance(self.coef, float):
            torch._foreach_add_(params, self.num, alpha=-self.coef)
        else:
            torch._foreach_sub_(params, self.values())


def gradient_momentum(states: list[dict], grads: list[Tensor], beta1: float, t: int) -> tuple[list[Tensor], float]:
    r"""Adam's first moment :math:`m_t = \beta_1 m_{t-1} + (1 - \beta_1) G_t`.

    Returns :math:`m_t` and its bias correction factor :math:`1 / (1 - \beta_1^t)`.
    """
    m = [s["exp_avg"] for s in states]
    torch._foreach_lerp_(m, grads, 1.0 - beta1)
    return m, 1.0 / (1.0 - beta1**t)


def heavy_ball_momentum(states: list[dict], grads: list[Tensor], mu: float) -> list[Tensor]:
    r"""``torch.optim.SGD``'s momentum buffer :math:`b_t = \mu\, b_{t-1} + G_t`, :math:`b_1 = G_1`:
    no :math:`(1 - \mu)` factor (dampening 0), no bias correction, not Nesterov.

    The buffer starts at zero, so :math:`b_1 = \mu \cdot 0 + G_1 = G_1` exactly. Returns :math:`b_t`.
    """
    b = [s["momentum_buffer"] for s in states]
    torch._foreach_mul_(b, mu)
    torch._foreach_add_(b, grads)
    return b


def raw_direction(num: list[Tensor], coef: float = 1.0) -> Direction:
    r"""No normalization (``second_moment=False``): :math:`U = k N`, the first moment or the gradient itself."""
    return Direction(num, None, coef)


def rms_direction(
    num: list[Tensor], v: list[Tensor], correction: float, eps: float, *, v_is_state: bool, coef: float = 1.0
) -> Direction:
    r"""Adam-style normalization :math:`U = N / (\sqrt{V / c} + \epsilon)`, ``c`` the bias correction.

    Computed as :math:`(\sqrt{c}\, N) / (\sqrt{V} + \epsilon \sqrt{c})`, which saves a pass over memory.
    ``v`` is square-rooted in place unless it is optimizer state (``v_is_state``).
    """
    root_c = math.sqrt(correction)
    den = torch._foreach_sqrt(v) if v_is_state else v
    if not v_is_state:
        torch._foreach_sqrt_(den)
    if eps:
        torch._foreach_add_(den, eps * root_c)
    return Direction(num, den, coef * root_c)


def block_rms(tensors: list[Tensor], stacked: bool) -> Tensor:
    """RMS of each tensor as a vector (n,), or of each model's slice as a matrix (n, K) when stacked."""
    if stacked:
        norms = torch.stack([torch.linalg.vector_norm(x.flatten(1), dim=1) for x in tensors])
        sizes = tuple(max(x[0].numel(), 1) for x in tensors)
    else:
        norms = torch.stack(torch._foreach_norm(tensors))
        sizes = tuple(max(x.numel(), 1) for x in tensors)
    return norms / _root_sizes(sizes, stacked, norms.dtype, norms.device)


@functools.lru_cache(maxsize=1024)
def _root_sizes(sizes: tuple[int, ...], stacked: bool, dtype: torch.dtype, device: torch.device) -> Tensor:
    r""":math:`\sqrt{n}` per tensor of ``sizes`` entries, a column (n, 1) when stacked: made once per bucket
    layout, as two new tensors per bucket and step are a noticeable part of a small model's step."""
    root = torch.tensor(sizes, dtype=dtype, device=device).sqrt()
    return root.reshape(-1, 1) if stacked else root


def clip_by_block_rms(direction: Direction, rms: Tensor, d: float) -> None:
    r"""Update clipping: :math:`\hat U = U / \max(1, \mathrm{RMS}(U) / d)`, with ``rms`` the
    :func:`block_rms` of U per tensor (and model)."""
    direction.scale((rms / d).clamp(min=1.0).reciprocal())


def relative_step_size(params: list[Tensor], lr: Scalar, t: int, eps2: float, stacked: bool) -> Tensor:
    r"""Relative step size :math:`\alpha_t = \max(\epsilon_2, \mathrm{RMS}(X_{t-1}))\, \rho_t`,
    :math:`\rho_t = \min(\mathrm{lr}_t, 1/\sqrt{t})`, one per tensor (and model). Call it before any decay.
    """
    cap = 1.0 / math.sqrt(t)
    rho = lr.clamp(max=cap) if isinstance(lr, Tensor) else min(lr, cap)
    return block_rms(params, stacked).clamp(min=eps2) * rho


def update_momentum(states: list[dict], direction: Direction, beta1: float) -> Direction:
    r"""Momentum on the scaled update (Adafactor with :math:`\beta_1 > 0`, tensor2tensor's placement):
    :math:`M_t = \beta_1 M_{t-1} + (1 - \beta_1)\, \alpha_t \hat U_t`; the step is :math:`M_t`.
    """
    m = [s["update_avg"] for s in states]
    torch._foreach_lerp_(m, direction.values(), 1.0 - beta1)
    return Direction(m, None)
