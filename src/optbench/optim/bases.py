r"""The papers' optimizers (AdamW, Adafactor, and SGD with momentum) as :class:`AdaptiveOptimizer`
with their column of defaults in :data:`optbench.spec.switches.SWITCHES`, and :func:`make_optimizer`
for a base named in a run spec."""

from __future__ import annotations

from typing import Any

from optbench.optim.optimizer import AdaptiveOptimizer
from optbench.spec.switches import SWITCHES, defaults, resolve

_ADAMW = defaults("AdamW")
_ADAFACTOR = defaults("Adafactor")
_SGD = defaults("SGD")


class AdamW(AdaptiveOptimizer):
    r"""AdamW (Loshchilov & Hutter, Algorithm 2): Adam with decoupled weight decay.

    :math:`X_t = X_{t-1} - \mathrm{lr}_t\, \hat m_t / (\sqrt{\hat v_t} + \epsilon) - \eta_t \lambda X_{t-1}`
    with the bias-corrected moments of Adam. ``weight_decay_mode="l2"`` gives the paper's "Adam"
    baseline (L2 regularization in the gradient), ``weight_decay_mode="torch"`` the decay of
    ``torch.optim.AdamW`` (:math:`X \mathrel{*}= 1 - \mathrm{lr}_t \lambda`). The signature is
    torch's: ``betas=(beta1, beta2)``, then ``eps`` and ``weight_decay``; every other switch
    (``factored``, ``clip_threshold``, ``relative_step``, ...) is accepted by keyword, which is
    how AdamW gets Adafactor's parts.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (_ADAMW["beta1"], _ADAMW["beta2"]),
        eps: float = _ADAMW["eps"],
        weight_decay: float = 0.0,
        **switches: Any,
    ):
        beta1, beta2 = betas
        super().__init__(params, lr, weight_decay=weight_decay, beta1=beta1, beta2=beta2, eps=eps, **switches)


class Adafactor(AdaptiveOptimizer):
    r"""Adafactor (Shazeer & Stern, Algorithms 4 and 5 with update clipping and relative step).

    Factored second moment :math:`\hat V_t = R_t C_t / \mathrm{mean}(R_t)` with
    :math:`\hat\beta_{2,t} = 1 - t^{-0.8}` and :math:`G^2 + \epsilon_1` inside the averages,
    :math:`U = G / \sqrt{\hat V_t}`, clipping :math:`\hat U = U / \max(1, \mathrm{RMS}(U)/d)`,
    :math:`d = 1`, and the relative step
    :math:`\alpha_t = \max(\epsilon_2, \mathrm{RMS}(X_{t-1})) \min(\mathrm{lr}, 1/\sqrt t)`.
    ``beta1`` (as in HuggingFace's Adafactor) > 0 adds momentum on the scaled update.
    Every other switch is accepted by keyword.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-2,
        beta1: float = _ADAFACTOR["beta1"],
        *,
        weight_decay: float = 0.0,
        **switches: Any,
    ):
        super().__init__(params, lr, weight_decay=weight_decay, **{**_ADAFACTOR, "beta1": beta1, **switches})


class SGD(AdaptiveOptimizer):
    r"""SGD with heavy-ball momentum, as ``torch.optim.SGD`` (dampening 0, not Nesterov), and SGDW.

    No second moment (``second_moment=False``) and torch's momentum buffer
    (``momentum="heavy_ball"``, :math:`\mu` = ``beta1``):

    .. math::
        b_t = \mu\, b_{t-1} + G_t,\ b_1 = G_1, \qquad X_t = X_{t-1} - \mathrm{lr}_t\, b_t

    By default (``weight_decay_mode="l2"``) :math:`\lambda` is L2 regularization in the
    gradient, :math:`G \leftarrow G + \lambda X_{t-1}` before the buffer, which is what
    ``torch.optim.SGD(weight_decay=lambda)`` does: the paper's "SGD" baseline.
    ``weight_decay_mode="decoupled"`` is SGDW (Loshchilov & Hutter, Algorithm 1): the gradient
    is left alone and :math:`X_t = X_{t-1} - \mathrm{lr}_t b_t - \eta_t \lambda X_{t-1}`,
    :math:`\eta_t` the schedule multiplier. (Algorithm 1 puts :math:`\eta_t \alpha` inside the
    buffer; here it multiplies the buffer, as torch does: the same under a constant schedule.)

    The signature is torch's: ``momentum`` is :math:`\mu` (``beta1`` of the table), not the
    ``momentum`` switch, which is ``"heavy_ball"`` here (set it through :class:`AdaptiveOptimizer`
    or :func:`make_optimizer`). Every other switch is accepted by keyword.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = _SGD["beta1"],
        weight_decay: float = 0.0,
        **switches: Any,
    ):
        mu = SWITCHES["beta1"]
        if not mu.accepts(momentum):  # named as the caller named it, not as beta1
            raise ValueError(f"momentum: must be {mu.allowed} (SGD's mu, the switch beta1), got {momentum!r}")
        super().__init__(params, lr, weight_decay=weight_decay, **{**_SGD, "beta1": momentum, **switches})


def make_optimizer(base: str, params, *, lr: float, weight_decay: float, switches: dict) -> AdaptiveOptimizer:
    """The optimizer of ``base`` (``"AdamW"``, ``"Adafactor"`` or ``"SGD"``) with ``switches`` set by name.

    ValueError names an unknown base or switch, or a value out of range.
    """
    return AdaptiveOptimizer(params, lr, weight_decay=weight_decay, **resolve(base, switches))
